package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firegate/firegate/internal/emulator/emulatortest"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// wait bounds every condition wait (only failures wait this long; the test
// machine may be heavily loaded).
const wait = 20 * time.Second

var (
	emu        emulatortest.Shared
	emuEnvOnce sync.Once
	projectSeq atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}

// testProject starts (or reuses) the emulator and returns a project id no
// other test uses.
func testProject(t *testing.T) string {
	t.Helper()
	e := emu.Get(t)
	emuEnvOnce.Do(func() { _ = os.Setenv("FIRESTORE_EMULATOR_HOST", e.Host) })
	return fmt.Sprintf("fg-fleet-%d", projectSeq.Add(1))
}

// poll is the interval of every condition wait (polling, not a settle
// delay).
const poll = 20 * time.Millisecond

// about prefixes cond's error with what the test waits for.
func about(what string, cond func() error) func() error {
	return func() error {
		if err := cond(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}

// natsServer is an embedded nats-server with JetStream on a directory of
// the test, on loopback. restart starts it again on the same port and
// directory (JetStream state survives).
type natsServer struct {
	t    *testing.T
	dir  string
	port int
	srv  *server.Server
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir(), port: freePort(t)}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		n.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(wait) {
		n.t.Fatal("nats-server did not start")
	}
	n.srv = srv
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// listenWatch wraps an instance's Firestore source and counts its
// listeners: running, and current (running, with their first snapshot
// applied by the Feed).
//
// Why tests wait for current listeners: Google's Firestore emulator can
// lose a write committed while a listener's target is being added (the
// listener's first snapshot has a read time after the commit but lacks the
// write, and no change for it follows; about 1 in 100 listeners started
// beside a write on a loaded machine, with the plain client library and no
// Firegate code). Firestore itself includes every commit before a
// snapshot's read time. So a test that writes right after a Feed changed
// role (its new listener may still be starting) first waits until the
// listeners it expects are current; what the write must then reach is
// unchanged.
type listenWatch struct {
	subscriptions.Source
	running, current atomic.Int64
}

func (w *listenWatch) Listen(ctx context.Context, q subscriptions.Query, emit func(*subscriptions.Snapshot)) error {
	w.running.Add(1)
	defer w.running.Add(-1)
	first := true // emit runs on this goroutine
	defer func() {
		if !first {
			w.current.Add(-1)
		}
	}()
	return w.Source.Listen(ctx, q, func(snap *subscriptions.Snapshot) {
		emit(snap)
		if first {
			first = false
			w.current.Add(1)
		}
	})
}

// listenersCurrent waits until ins run n Firestore listeners in all, every
// one of them current (see listenWatch).
func listenersCurrent(t *testing.T, what string, n int64, ins ...*instance) {
	t.Helper()
	testkit.CheckFor(t, wait, poll, about(what, func() error {
		var running, current int64
		for _, in := range ins {
			running += in.lw.running.Load()
			current += in.lw.current.Load()
		}
		if running != n || current != n {
			return fmt.Errorf("%d listeners running, %d current; want %d current", running, current, n)
		}
		return nil
	}))
}

// instance is one gateway's subscription layer: a Hub over a fleet Source
// over its own Firestore source, with its own metrics.
type instance struct {
	name  string
	logs  *testkit.LockedBuffer // the Source's and the Hub's log, printed when the test fails
	reg   *prometheus.Registry
	m     *metrics.Metrics
	fs    *subscriptions.FirestoreSource
	lw    *listenWatch // fs, as the fleet Source sees it
	src   *Source
	hub   *subscriptions.Hub
	close sync.Once
}

func newInstance(t *testing.T, name, natsURL, project string) *instance {
	t.Helper()
	return newInstanceLinger(t, name, natsURL, project, 30*time.Second)
}

func newInstanceLinger(t *testing.T, name, natsURL, project string, linger time.Duration) *instance {
	t.Helper()
	in := &instance{name: name, reg: prometheus.NewRegistry(), logs: &testkit.LockedBuffer{}}
	in.m = metrics.New(in.reg)
	log := slog.New(slog.NewTextHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", name)
	var err error
	in.fs, err = subscriptions.NewFirestoreSource(context.Background(), subscriptions.FirestoreConfig{
		ProjectID: project, MaxFeeds: 10, Logger: log,
		// No health pings: a ping slower than its timeout on a loaded
		// machine restarts every listener (see listenWatch for why a
		// restart must not race a test's write); these tests are about
		// the fleet, not Firestore outages.
		HealthInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	in.lw = &listenWatch{Source: in.fs}
	in.src, err = New(Config{URL: natsURL, Inner: in.lw, Instance: name, LeaseTTL: 1500 * time.Millisecond, Metrics: in.m, RequestTimeout: 2 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	in.hub, err = subscriptions.NewHub(in.src, subscriptions.HubConfig{Metrics: in.m, Logger: log, Linger: linger, RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.shutdown)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: %s\n%s", in.name, in.roles(), in.logs.String())
		}
	})
	return in
}

// roles describes the instance's Feeds (hash → role) and its fleet state,
// for failure messages.
func (in *instance) roles() string {
	in.src.mu.Lock()
	defer in.src.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "degraded=%v roles:", in.src.Degraded())
	for key, r := range in.src.roles {
		fmt.Fprintf(&b, " %s=%s", hashKey(key), r)
	}
	return b.String()
}

// shutdown is a graceful stop: the Hub closes its Feeds (owners release
// their leases), then the NATS connection closes.
func (in *instance) shutdown() {
	in.close.Do(func() {
		in.hub.Close()
		in.src.Close()
		_ = in.fs.Close()
	})
}

// crash stops the instance as a SIGKILL would, as far as the fleet can
// tell: its NATS connection goes first, so nothing is released or
// published, and the lease lapses by its TTL.
func (in *instance) crash() {
	in.close.Do(func() {
		in.src.Close()
		in.hub.Close()
		_ = in.fs.Close()
	})
}

func (in *instance) owned() float64 { return testutil.ToFloat64(in.m.Fleet.Feeds[metrics.FleetOwned]) }
func (in *instance) mirrored() float64 {
	return testutil.ToFloat64(in.m.Fleet.Feeds[metrics.FleetMirrored])
}
func (in *instance) local() float64 { return testutil.ToFloat64(in.m.Fleet.Feeds[metrics.FleetLocal]) }
func (in *instance) listeners() float64 {
	return testutil.ToFloat64(in.m.ListenersStarted)
}

func spec(org string) subscriptions.FeedSpec {
	return subscriptions.FeedSpec{
		Query:  subscriptions.Query{Collection: "tasks", Filters: []wire.Filter{{Field: "org_id", Op: "==", Value: org}}},
		Key:    "tasks|org_id==" + org,
		Tenant: org,
	}
}

// frame is a decoded server message as a client would see it.
type frame struct {
	Type     string          `json:"type"`
	Epoch    string          `json:"epoch"`
	Resumed  bool            `json:"resumed"`
	Seq      uint64          `json:"seq"`
	Final    bool            `json:"final"`
	Docs     []wire.Doc      `json:"docs"`
	Changes  []wire.Change   `json:"changes"`
	Reason   string          `json:"reason"`
	Data     json.RawMessage `json:"data"`
	Received time.Time       `json:"-"`
}

// client records what one subscription receives and keeps the view a
// client would build from it, checking the protocol as it goes: seq never
// decreases, a `changes` seq is the previous seq + 1 (continuity), and
// only the first data message may be a snapshot.
type client struct {
	name string
	mu   sync.Mutex
	// guarded by mu:
	frames    []frame
	epoch     string
	seq       uint64
	docs      map[string]string // id → canonical data
	snapshots int               // snapshot messages (final chunks) received
	problems  []string
	sub       *subscriptions.Subscription
	// jumps allows a `changes` seq beyond the previous + 1 (a Feed that
	// ran degraded moves its numbering ahead; seq still never goes back).
	jumps  bool
	inSnap bool // inside a chunked snapshot
}

func newClient(name string) *client { return &client{name: name, docs: map[string]string{}} }

func (c *client) Deliver(m *subscriptions.Message, _ bool) {
	c.apply(m.Frame.AppendTo(nil, []byte(`"`+c.name+`"`)))
}

// apply decodes one server message and updates the view.
func (c *client) apply(raw []byte) {
	var f frame
	if err := json.Unmarshal(raw, &f); err != nil {
		panic(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, f)
	switch f.Type {
	case wire.TypeSubscribed:
		c.epoch = f.Epoch
	case wire.TypeSnapshot:
		if !c.inSnap { // a snapshot replaces the whole view
			clear(c.docs)
			c.inSnap = true
		}
		if f.Final {
			c.inSnap = false
			c.snapshots++
			if c.snapshots > 1 {
				c.problems = append(c.problems, fmt.Sprintf("second snapshot at seq %d", f.Seq))
			}
		}
		if f.Seq < c.seq {
			c.problems = append(c.problems, fmt.Sprintf("snapshot seq %d after %d", f.Seq, c.seq))
		}
		c.seq = f.Seq
		for _, d := range f.Docs {
			c.docs[d.ID] = canon(d.Data)
		}
	case wire.TypeChanges:
		if c.jumps && f.Seq <= c.seq && len(f.Changes) > 0 {
			c.problems = append(c.problems, fmt.Sprintf("changes seq %d after %d (back)", f.Seq, c.seq))
		}
		if !c.jumps && c.seq != 0 && f.Seq != c.seq+1 && !(f.Seq == c.seq && len(f.Changes) == 0) {
			c.problems = append(c.problems, fmt.Sprintf("changes seq %d after %d (gap)", f.Seq, c.seq))
		}
		c.seq = f.Seq
		for _, ch := range f.Changes {
			if ch.Kind == wire.KindRemoved {
				delete(c.docs, ch.ID)
			} else {
				c.docs[ch.ID] = canon(ch.Data)
			}
		}
	}
}

func canon(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "!" + string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (c *client) state() (epoch string, seq uint64, docs map[string]string, problems []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := make(map[string]string, len(c.docs))
	for k, v := range c.docs {
		d[k] = v
	}
	return c.epoch, c.seq, d, append([]string(nil), c.problems...)
}

func (c *client) framesOf(typ string) []frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []frame
	for _, f := range c.frames {
		if f.Type == typ {
			out = append(out, f)
		}
	}
	return out
}

// subscribe attaches a new client to in's Hub.
func subscribe(t *testing.T, in *instance, name, org string, resume *wire.Resume) *client {
	t.Helper()
	c := newClient(name)
	s, err := in.hub.Subscribe(spec(org), c, resume)
	if err != nil {
		t.Fatalf("%s: subscribe: %v", name, err)
	}
	c.mu.Lock()
	c.sub = s
	c.mu.Unlock()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s on %s: %s", name, in.name, c.summary())
		}
	})
	return c
}

// summary lists what the client received (types, seqs, changed ids; no
// document data), for failure messages.
func (c *client) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "epoch %s seq %d, %d docs, frames:", c.epoch, c.seq, len(c.docs))
	for _, f := range c.frames {
		fmt.Fprintf(&b, " %s", f.Type)
		switch f.Type {
		case wire.TypeSnapshot:
			fmt.Fprintf(&b, "(seq %d, %d docs)", f.Seq, len(f.Docs))
		case wire.TypeChanges:
			fmt.Fprintf(&b, "(seq %d:", f.Seq)
			for _, ch := range f.Changes {
				fmt.Fprintf(&b, " %s %s", ch.Kind, ch.ID)
			}
			b.WriteString(")")
		case wire.TypeSubscribed:
			fmt.Fprintf(&b, "(%s resumed=%v)", f.Epoch, f.Resumed)
		default:
			if f.Reason != "" {
				fmt.Fprintf(&b, "(%s)", f.Reason)
			}
		}
	}
	return b.String()
}

// store writes test documents through its own Firestore client.
type store struct {
	t  *testing.T
	fc *firestore.Client
}

func newStore(t *testing.T, project string) *store {
	t.Helper()
	fc, err := firestore.NewClient(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fc.Close() })
	return &store{t: t, fc: fc}
}

func (s *store) set(id string, data map[string]any) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := s.fc.Collection("tasks").Doc(id).Set(ctx, data); err != nil {
		s.t.Fatal(err)
	}
}

func (s *store) del(id string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := s.fc.Collection("tasks").Doc(id).Delete(ctx); err != nil {
		s.t.Fatal(err)
	}
}

// fresh runs the query once, as a new client would see it: id → canonical
// data (document data only, as the gateway encodes it).
func (s *store) fresh(org string) map[string]string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	docs, err := s.fc.Collection("tasks").Where("org_id", "==", org).Documents(ctx).GetAll()
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range docs {
		b, _ := json.Marshal(d.Data())
		out[d.Ref.ID] = canon(b)
	}
	return out
}

// converged waits until every client holds want, with no protocol problem.
func converged(t *testing.T, what string, want map[string]string, cs ...*client) {
	t.Helper()
	testkit.CheckFor(t, wait, poll, about(what, func() error {
		for _, c := range cs {
			_, _, docs, problems := c.state()
			if len(problems) > 0 {
				return fmt.Errorf("%s: %v", c.name, problems)
			}
			if len(docs) != len(want) {
				return fmt.Errorf("%s holds %d docs, want %d (%v vs %v)", c.name, len(docs), len(want), docs, want)
			}
			for id, v := range want {
				if docs[id] != v {
					return fmt.Errorf("%s: doc %s = %s, want %s", c.name, id, docs[id], v)
				}
			}
		}
		return nil
	}))
}
