package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/coder/websocket"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/internal/emulator"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// convergeWithin bounds how long clients may take to converge after an
// upstream or gateway failure: the Firestore client library retries a
// broken Listen stream with its own backoff (1 s growing by 1.5x), on top
// of a JVM start of the emulator.
const convergeWithin = 60 * time.Second

// ---------------------------------------------------------------------------
// Environment on a private emulator.

// ownEmulator is a Firestore emulator private to one test, on a fixed port
// so that it can be killed and started again where its clients expect it.
type ownEmulator struct {
	port int
	mu   sync.Mutex
	cur  *emulator.Emulator
}

// startOwnEmulator starts an emulator on a free loopback port; it is
// killed in t.Cleanup.
func startOwnEmulator(t *testing.T) *ownEmulator {
	t.Helper()
	o := &ownEmulator{port: freeTCPPort(t)}
	if err := o.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.cur != nil {
			_ = o.cur.Stop()
		}
	})
	return o
}

func (o *ownEmulator) host() string { return fmt.Sprintf("127.0.0.1:%d", o.port) }

func (o *ownEmulator) start() error {
	e, err := emulator.Start(context.Background(), emulator.Options{Port: o.port, StartTimeout: 2 * time.Minute})
	if err != nil {
		return fmt.Errorf("start emulator on port %d: %w", o.port, err)
	}
	o.mu.Lock()
	o.cur = e
	o.mu.Unlock()
	return nil
}

// kill SIGKILLs the emulator's whole process group (no graceful shutdown,
// no GOAWAY: its clients see their connections reset) and waits for it.
func (o *ownEmulator) kill() error {
	o.mu.Lock()
	e := o.cur
	o.cur = nil
	o.mu.Unlock()
	if err := syscall.Kill(-e.Pid(), syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill emulator: %w", err)
	}
	select {
	case <-e.Done():
	case <-time.After(waitFor):
		return errors.New("the emulator did not die")
	}
	_ = e.Stop() // sweeps the group; the SIGKILL exit is not an error
	return nil
}

// restart kills the emulator and starts an empty one on the same port.
func (o *ownEmulator) restart() error {
	if err := o.kill(); err != nil {
		return err
	}
	return o.start()
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newOwnSource creates a FirestoreSource on the emulator at host. The
// client library reads FIRESTORE_EMULATOR_HOST when a client is created
// (it ignores endpoint options then), so the variable points at host
// while the source is built and is restored afterwards.
func newOwnSource(t *testing.T, host, project string) *subscriptions.FirestoreSource {
	t.Helper()
	prev, had := os.LookupEnv("FIRESTORE_EMULATOR_HOST")
	os.Setenv("FIRESTORE_EMULATOR_HOST", host)
	src, err := subscriptions.NewFirestoreSource(context.Background(), subscriptions.FirestoreConfig{ProjectID: project, MaxFeeds: 20, HealthInterval: 200 * time.Millisecond})
	if had {
		os.Setenv("FIRESTORE_EMULATOR_HOST", prev)
	} else {
		os.Unsetenv("FIRESTORE_EMULATOR_HOST")
	}
	if err != nil {
		t.Fatalf("firestore source on %s: %v", host, err)
	}
	return src
}

// newEnvOn is newEnv on a given source: the source is closed in t.Cleanup
// after the gateway and the Hub.
func newEnvOn(t *testing.T, src *subscriptions.FirestoreSource, o envOpts) *env {
	t.Helper()
	t.Cleanup(func() { _ = src.Close() })
	return buildEnv(t, src, o)
}

// ---------------------------------------------------------------------------
// Client-side state and Firestore's truth.

// docVersion is one document as a client holds it: canonical JSON data and
// the update time.
type docVersion struct {
	data       string
	updateTime string
}

func (v docVersion) String() string { return v.data + "@" + v.updateTime }

// canonJSON re-encodes JSON so that equal values compare equal as strings
// (sorted keys, numbers as float64).
func canonJSON(b []byte) string {
	if len(b) == 0 {
		return "{}"
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "!" + string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// subView is a client's picture of one subscription, built only from what
// the gateway sent: snapshots replace it, changes patch it.
type subView struct {
	sp      subSpec // what was subscribed: every document must fit it
	epoch   string
	resumed bool
	seq     uint64
	synced  bool // a final snapshot or a catch-up has been applied
	// catchUps counts the catch-ups received: changes without a read
	// time, and snapshots sent to an already synced view.
	catchUps int
	docs     map[string]docVersion
	partial  map[string]docVersion // snapshot chunks not yet final
}

func newSubView() *subView { return &subView{docs: map[string]docVersion{}} }

// apply folds one message for this subscription into the view. It
// returns an error for a protocol violation: a live seq that is not the
// next one, a seq going backwards, a removed change carrying data, a
// document outside the subscription's confinement.
func (v *subView) apply(m wire.ServerMessage) error {
	switch m.Type {
	case wire.TypeSubscribed:
		v.epoch, v.resumed = m.Epoch, m.Resumed
		if !m.Resumed {
			// A fresh snapshot follows; its seq counts in this epoch.
			v.seq, v.synced, v.partial = 0, false, nil
		}
	case wire.TypeSnapshot:
		if v.partial == nil {
			v.partial = map[string]docVersion{}
		}
		for _, d := range m.Docs {
			if err := v.sp.admits(d.ID, d.Data); err != nil {
				return err
			}
			v.partial[d.ID] = docVersion{canonJSON(d.Data), d.UpdateTime}
		}
		if m.Final {
			if v.synced && m.Seq < v.seq {
				return fmt.Errorf("snapshot seq %d after seq %d", m.Seq, v.seq)
			}
			if v.synced {
				v.catchUps++
			}
			v.docs, v.partial, v.seq, v.synced = v.partial, nil, m.Seq, true
		}
	case wire.TypeChanges:
		// A live message (it has a read time) follows the previous one by
		// exactly one; a catch-up (no read time) jumps to the Feed's seq.
		switch {
		case v.synced && m.ReadTime != "" && m.Seq != v.seq+1:
			return fmt.Errorf("live changes seq %d after seq %d: a gap or a repeat", m.Seq, v.seq)
		case v.synced && m.Seq < v.seq:
			return fmt.Errorf("catch-up seq %d after seq %d", m.Seq, v.seq)
		}
		if m.ReadTime == "" {
			v.catchUps++
		}
		for _, c := range m.Changes {
			switch c.Kind {
			case wire.KindRemoved:
				if c.Data != nil || c.UpdateTime != "" {
					return fmt.Errorf("removed %s carries data", c.ID)
				}
				delete(v.docs, c.ID)
			case wire.KindAdded, wire.KindModified:
				if err := v.sp.admits(c.ID, c.Data); err != nil {
					return err
				}
				v.docs[c.ID] = docVersion{canonJSON(c.Data), c.UpdateTime}
			default:
				return fmt.Errorf("unknown change kind %q", c.Kind)
			}
		}
		v.seq, v.synced = m.Seq, true
	}
	return nil
}

func (v *subView) clone() map[string]docVersion {
	out := make(map[string]docVersion, len(v.docs))
	for k, x := range v.docs {
		out[k] = x
	}
	return out
}

// subSpec is a subscription as both the client and the check see it: the
// subscribe request, and how to run the same query on Firestore.
type subSpec struct {
	collection string
	where      []wire.Filter // equality filters only
	orderBy    string
	limit      int
	// scope is the field the gateway confines the query with and value
	// the caller's org or user id.
	scopeField, scopeValue string
	// admin is the caller's org:admin role (the tasks rule's filter reads
	// it).
	admin bool
}

// admits checks the confinement a document delivered for s must obey:
// the scope field names the caller's org or user, and a private task
// reaches only an org admin.
func (s subSpec) admits(id string, data json.RawMessage) error {
	if s.collection == "" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("document %s: bad data %s", id, data)
	}
	if m[s.scopeField] != s.scopeValue {
		return fmt.Errorf("document %s with %s=%v delivered to a subscription confined to %s", id, s.scopeField, m[s.scopeField], s.scopeValue)
	}
	if s.collection == "tasks" && !s.admin && m["visibility"] == "private" {
		return fmt.Errorf("private document %s delivered to a non-admin", id)
	}
	for _, f := range s.where {
		if f.Op == "==" && m[f.Field] != f.Value {
			return fmt.Errorf("document %s with %s=%v delivered to a subscription for %s == %v", id, f.Field, m[f.Field], f.Field, f.Value)
		}
	}
	return nil
}

func (s subSpec) request(id string) map[string]any {
	m := map[string]any{"type": "subscribe", "id": id, "collection": s.collection}
	if len(s.where) > 0 {
		m["where"] = s.where
	}
	if s.orderBy != "" {
		m["order_by"] = []wire.Order{{Field: s.orderBy}}
	}
	if s.limit > 0 {
		m["limit"] = s.limit
	}
	return m
}

// queryTruth runs the subscription's query on Firestore afresh and applies the
// testPolicy filter of its collection, as the gateway must.
func queryTruth(ctx context.Context, fs *firestore.Client, s subSpec) (map[string]docVersion, error) {
	q := fs.Collection(s.collection).Where(s.scopeField, "==", s.scopeValue)
	for _, f := range s.where {
		q = q.Where(f.Field, f.Op, f.Value)
	}
	if s.orderBy != "" {
		q = q.OrderBy(s.orderBy, firestore.Asc)
	}
	if s.limit > 0 {
		q = q.Limit(s.limit)
	}
	docs, err := q.Documents(ctx).GetAll()
	if err != nil {
		return nil, err
	}
	out := map[string]docVersion{}
	for _, d := range docs {
		data := d.Data()
		if s.collection == "tasks" && !s.admin && data["visibility"] == "private" {
			continue
		}
		b, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		out[d.Ref.ID] = docVersion{canonJSON(b), d.UpdateTime.UTC().Format(time.RFC3339Nano)}
	}
	return out, nil
}

// diffStates describes how got differs from want ("" when equal).
func diffStates(got, want map[string]docVersion) string {
	if reflect.DeepEqual(got, want) {
		return ""
	}
	var lines []string
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			lines = append(lines, "missing "+id+" "+w.String())
		case g != w:
			lines = append(lines, "stale "+id+": have "+g.String()+" want "+w.String())
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			lines = append(lines, "extra "+id+" "+g.String())
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

// tracked is a client whose messages are applied, by a goroutine of its
// own, to one view per subscription id.
type tracked struct {
	cl *client

	mu       sync.Mutex
	views    map[string]*subView
	ended    map[string]string // sub id → unsubscribed reason
	welcomes []wire.ServerMessage
	errs     []string // protocol violations and unexpected messages
	// resumedHits counts `subscribed` messages with resumed:true.
	resumedHits int
	applied     chan struct{}
}

// trackClient starts applying cl's messages. cl's own next/expect must not be
// used afterwards.
func trackClient(cl *client) *tracked {
	tc := &tracked{cl: cl, views: map[string]*subView{}, ended: map[string]string{}, applied: make(chan struct{})}
	go func() {
		defer close(tc.applied)
		for {
			select {
			case m := <-cl.msgs:
				<-cl.raw
				tc.apply(m)
			case <-cl.done:
				for {
					select {
					case m := <-cl.msgs:
						<-cl.raw
						tc.apply(m)
					default:
						return
					}
				}
			}
		}
	}()
	return tc
}

func (tc *tracked) apply(m wire.ServerMessage) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	id := m.Sub
	if m.Type == wire.TypeSubscribed {
		id = m.ID
	}
	switch m.Type {
	case wire.TypeSubscribed:
		if m.Resumed {
			tc.resumedHits++
		}
	case wire.TypeWelcome:
		tc.welcomes = append(tc.welcomes, m)
		return
	case wire.TypePong, wire.TypeAuthExpiring:
		return
	case wire.TypeUnsubscribed:
		delete(tc.views, id)
		tc.ended[id] = m.Reason
		return
	case wire.TypeError:
		tc.errs = append(tc.errs, fmt.Sprintf("error %+v", m))
		return
	}
	v := tc.views[id]
	if v == nil {
		tc.errs = append(tc.errs, fmt.Sprintf("%s for unknown subscription %q", m.Type, id))
		return
	}
	if err := v.apply(m); err != nil {
		tc.errs = append(tc.errs, fmt.Sprintf("sub %s: %v", id, err))
	}
}

// subscribe sends a subscribe for s under id, starting from base (the
// docs a resuming client holds) or from nothing.
func (tc *tracked) subscribe(id string, s subSpec, resume *wire.Resume, base map[string]docVersion) {
	v := newSubView()
	v.sp = s
	if base != nil {
		v.docs = base
	}
	if resume != nil {
		// Until `subscribed` answers, the client still holds the old
		// position (and may resume from it again).
		v.epoch, v.seq, v.synced = resume.Epoch, resume.Seq, true
	}
	tc.mu.Lock()
	tc.views[id] = v
	delete(tc.ended, id)
	tc.mu.Unlock()
	req := s.request(id)
	if resume != nil {
		req["resume"] = resume
	}
	tc.sendNoFail(req)
}

// sendNoFail writes a message; a connection that is gone is not an error
// here (the client is being torn down or the server went away).
func (tc *tracked) sendNoFail(v any) {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tc.cl.c.Write(ctx, websocket.MessageText, b)
}

// state returns a copy of the view of sub id, whether it is synced.
func (tc *tracked) state(id string) (map[string]docVersion, *subView, bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	v := tc.views[id]
	if v == nil {
		return nil, nil, false
	}
	cp := *v
	return v.clone(), &cp, v.synced
}

func (tc *tracked) problems() []string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return append([]string(nil), tc.errs...)
}

// closeErr is why the connection ended (nil while it is open).
func (tc *tracked) closeErr() error {
	if !tc.isDone() {
		return nil
	}
	return tc.cl.err
}

func (tc *tracked) isDone() bool {
	select {
	case <-tc.cl.done:
		return true
	default:
		return false
	}
}

// awaitConverged polls until every (client, sub, spec) view equals a fresh
// Firestore query of its subSpec, or fails after d with the differences.
func awaitConverged(t *testing.T, fs *firestore.Client, d time.Duration, checks []convergeCheck) {
	t.Helper()
	if bad := waitConverged(fs, d, checks); bad != nil {
		t.Fatalf("clients did not converge to Firestore within %v:\n  %s", d, strings.Join(bad, "\n  "))
	}
}

// waitConverged is awaitConverged returning the differences left at the
// deadline (nil when every view converged).
func waitConverged(fs *firestore.Client, d time.Duration, checks []convergeCheck) []string {
	var bad []string
	_ = testkit.Poll(d, 100*time.Millisecond, func() error {
		bad = nil
		for _, c := range checks {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			want, err := queryTruth(ctx, fs, c.spec)
			cancel()
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: query: %v", c.name, err))
				continue
			}
			got, _, synced := c.tc.state(c.sub)
			if !synced {
				bad = append(bad, c.name+": no snapshot yet")
				continue
			}
			if diff := diffStates(got, want); diff != "" {
				bad = append(bad, c.name+": "+diff)
				if p := c.tc.problems(); len(p) > 0 {
					bad = append(bad, fmt.Sprintf("%s: client problems: %v", c.name, p))
				}
			}
		}
		if len(bad) == 0 {
			return nil
		}
		return errors.New(strings.Join(bad, "; "))
	})
	return bad
}

type convergeCheck struct {
	name string
	tc   *tracked
	sub  string
	spec subSpec
	// token, when set, lets a failed check subscribe a fresh client to the
	// same query (see awaitConvergedDiag).
	token string
}

// awaitConvergedDiag is awaitConverged on e that, when the views do not
// converge, also reports each failing view's position and what a fresh
// subscriber of the same query gets now: right points at the delivery to
// the old clients, wrong at the Feed (or upstream) itself.
func awaitConvergedDiag(t *testing.T, e *env, d time.Duration, checks []convergeCheck) {
	t.Helper()
	bad := waitConverged(e.fs, d, checks)
	if bad == nil {
		return
	}
	bad = append(bad, fmt.Sprintf("listeners started: %d", e.hub.ListenersStarted()))
	fresh := map[string]*tracked{}
	for i, c := range checks {
		if still := waitConverged(e.fs, 0, []convergeCheck{c}); still == nil {
			continue
		}
		if _, v, _ := c.tc.state(c.sub); v != nil {
			bad = append(bad, fmt.Sprintf("%s: epoch %s seq %d resumed %v", c.name, v.epoch, v.seq, v.resumed))
		}
		if c.token == "" {
			continue
		}
		f := fresh[c.token]
		if f == nil {
			f = trackClient(e.connect(c.token))
			fresh[c.token] = f
		}
		id := fmt.Sprintf("fresh%d", i)
		f.subscribe(id, c.spec, nil, nil)
		fc := convergeCheck{name: "fresh subscriber like " + c.name, tc: f, sub: id, spec: c.spec}
		if fb := waitConverged(e.fs, 5*time.Second, []convergeCheck{fc}); fb != nil {
			bad = append(bad, fb...)
		} else {
			_, v, _ := f.state(id)
			bad = append(bad, fmt.Sprintf("%s is right (epoch %s seq %d)", fc.name, v.epoch, v.seq))
		}
	}
	t.Fatalf("clients did not converge to Firestore within %v:\n  %s", d, strings.Join(bad, "\n  "))
}

// putRetrying writes a document, retrying while the emulator is not
// reachable yet (a gRPC connection that saw its server die fails RPCs at
// once until it has reconnected) or answers with a spurious error (the
// emulator sometimes fails a write with "Canceled: call already
// cancelled" while it tears down the Listen streams of a client that
// died).
func putRetrying(t *testing.T, fs *firestore.Client, path string, data map[string]any) {
	t.Helper()
	retryWrite(t, "set "+path, func(ctx context.Context) error {
		_, err := fs.Doc(path).Set(ctx, data)
		return err
	})
}

// delRetrying deletes a document, retrying as putRetrying does.
func delRetrying(t *testing.T, fs *firestore.Client, path string) {
	t.Helper()
	retryWrite(t, "delete "+path, func(ctx context.Context) error {
		_, err := fs.Doc(path).Delete(ctx)
		return err
	})
}

func retryWrite(t *testing.T, what string, write func(context.Context) error) {
	t.Helper()
	testkit.CheckFor(t, convergeWithin, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := write(ctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// putSeen writes a document of a query some Feed of e listens to and
// waits until the Hub has taken the change in
// (firegate_upstream_changes_total), so that the next write is another
// upstream snapshot and another seq — also while no subscriber is attached
// to show it.
func (e *env) putSeen(path string, data map[string]any) {
	e.t.Helper()
	before := e.counter("firegate_upstream_changes_total", nil)
	e.put(path, data)
	e.waitUpstreamChanges(before + 1)
}

// delSeen deletes like putSeen writes.
func (e *env) delSeen(path string) {
	e.t.Helper()
	before := e.counter("firegate_upstream_changes_total", nil)
	e.del(path)
	e.waitUpstreamChanges(before + 1)
}

func (e *env) waitUpstreamChanges(n float64) {
	e.t.Helper()
	testkit.CheckFor(e.t, waitFor, pollEvery, func() error {
		if v := e.counter("firegate_upstream_changes_total", nil); v < n {
			return fmt.Errorf("%v upstream changes, want %v", v, n)
		}
		return nil
	})
}

// goOffline closes cl and waits until the gateway has detached it.
func (e *env) goOffline(cl *client) {
	e.t.Helper()
	cl.c.Close(websocket.StatusNormalClosure, "going offline")
	e.awaitConnCount(0)
}

// changesByID indexes a changes message; it fails on a document listed
// twice (a net change names each document once).
func changesByID(t *testing.T, m wire.ServerMessage) map[string]wire.Change {
	t.Helper()
	out := map[string]wire.Change{}
	for _, c := range m.Changes {
		if _, dup := out[c.ID]; dup {
			t.Fatalf("document %s twice in one net change: %+v", c.ID, m.Changes)
		}
		out[c.ID] = c
	}
	return out
}

// dialStalled opens a WebSocket with a tiny receive buffer, subscribes
// with it and then never reads: the gateway's writes to it block as soon
// as the kernel buffers are full.
func (e *env) dialStalled(tok string, subscribe map[string]any) *websocket.Conn {
	e.t.Helper()
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	tr := &http.Transport{DialContext: d.DialContext}
	e.t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, e.wsURL, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + tok}},
		Subprotocols: []string{wire.Subprotocol},
	})
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.CloseNow() })
	b, _ := json.Marshal(subscribe)
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		e.t.Fatalf("write: %v", err)
	}
	return c
}

func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// firegateProc is one `firegate serve` child process.
type firegateProc struct {
	cmd  *exec.Cmd
	out  *testkit.LockedBuffer
	done chan struct{}
}

// buildFiregate compiles ./cmd/firegate into a temporary directory.
func buildFiregate(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build firegate: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "firegate")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/firegate/firegate/cmd/firegate")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/firegate: %v\n%s", err, out)
	}
	return bin
}

// startFiregate runs `firegate serve` with env (on top of this process's
// environment minus every FIREGATE_, CLERK_ and FIRESTORE_ variable) and
// waits until its /readyz answers 200.
func startFiregate(t *testing.T, bin string, env map[string]string) *firegateProc {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "FIREGATE_") || strings.HasPrefix(k, "CLERK_") || strings.HasPrefix(k, "FIRESTORE_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &firegateProc{cmd: cmd, out: &testkit.LockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start firegate: %v", err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	ready := "http://" + env["FIREGATE_ADMIN_ADDR"] + "/readyz"
	hc := &http.Client{Timeout: 2 * time.Second}
	testkit.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		select {
		case <-p.done:
			return testkit.Stop(fmt.Errorf("firegate serve exited during start-up: %v\n%s", cmd.ProcessState, p.out))
		default:
		}
		resp, err := hc.Get(ready)
		if err != nil {
			return fmt.Errorf("firegate serve not ready: %w\n%s", err, p.out)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("firegate serve not ready: readyz %s\n%s", resp.Status, p.out)
		}
		return nil
	})
	hc.CloseIdleConnections()
	return p
}

// kill SIGKILLs the process and waits for it.
func (p *firegateProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill firegate: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(waitFor):
		t.Fatal("firegate did not die")
	}
}

// ---------------------------------------------------------------------------
// Tests.

// TestResumeHitAndMiss: a client that goes offline and resumes within the
// linger window gets, in one `changes` message, the net change per
// document since its last seq — from the lingering Feed, with no new
// Firestore listener — and a wrong epoch gets a fresh snapshot.
func TestResumeHitAndMiss(t *testing.T) {
	e := newEnv(t, envOpts{})
	org := uniq("org")
	p := func(s string) string { return "tasks/" + org + "_" + s }
	id := func(s string) string { return org + "_" + s }
	e.put(p("keep"), map[string]any{"org_id": org, "v": 0})
	e.put(p("mod"), map[string]any{"org_id": org, "v": 0})
	e.put(p("gone"), map[string]any{"org_id": org, "v": 0})
	tok := e.token(authz.MintOptions{UserID: uniq("user"), OrgID: org, TTL: time.Hour})

	cl := e.connect(tok)
	sub, docs, seq := cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	if len(docs) != 3 {
		t.Fatalf("snapshot = %+v", docs)
	}
	// Some live changes before going offline.
	e.put(p("keep"), map[string]any{"org_id": org, "v": 1})
	if m := cl.expect("changes"); m.Seq != seq+1 || m.Changes[0].ID != id("keep") {
		t.Fatalf("live change = %+v", m)
	}
	seq++
	e.goOffline(cl)

	// Offline, each write its own upstream snapshot and so its own seq:
	// modify twice, remove, add, add-then-remove, and a write to another
	// org that must not show at all.
	e.putSeen(p("mod"), map[string]any{"org_id": org, "v": 1})
	e.putSeen(p("mod"), map[string]any{"org_id": org, "v": 2})
	e.delSeen(p("gone"))
	e.putSeen(p("new"), map[string]any{"org_id": org, "v": 1})
	e.putSeen(p("flash"), map[string]any{"org_id": org, "v": 1})
	e.delSeen(p("flash"))
	e.put("tasks/"+uniq("other")+"_x", map[string]any{"org_id": uniq("other")})

	cl = e.connect(tok)
	cl.send(map[string]any{"type": "subscribe", "id": "s", "collection": "tasks", "resume": wire.Resume{Epoch: sub.Epoch, Seq: seq}})
	if m := cl.expect("subscribed"); !m.Resumed || m.Epoch != sub.Epoch || m.ID != "s" {
		t.Fatalf("resume hit answered %+v", m)
	}
	m := cl.expect("changes")
	if m.Seq <= seq {
		t.Fatalf("catch-up seq %d not past %d", m.Seq, seq)
	}
	got := changesByID(t, m)
	if len(got) != 3 {
		t.Fatalf("net change = %+v, want mod, gone, new", m.Changes)
	}
	if c := got[id("mod")]; c.Kind != wire.KindModified || canonJSON(c.Data) != canonJSON([]byte(`{"org_id":"`+org+`","v":2}`)) || c.UpdateTime == "" {
		t.Fatalf("mod = %+v, want modified with its latest data", c)
	}
	if c := got[id("gone")]; c.Kind != wire.KindRemoved || c.Data != nil || c.Path != p("gone") {
		t.Fatalf("gone = %+v, want removed", c)
	}
	if c := got[id("new")]; c.Kind != wire.KindAdded || canonJSON(c.Data) != canonJSON([]byte(`{"org_id":"`+org+`","v":1}`)) {
		t.Fatalf("new = %+v, want added", c)
	}
	if n := e.hub.ListenersStarted(); n != 1 {
		t.Fatalf("listeners started = %d: the resume did not hit the lingering Feed", n)
	}
	// Live changes continue right after the catch-up, seq + 1.
	e.put(p("keep"), map[string]any{"org_id": org, "v": 2})
	if live := cl.expect("changes"); live.Seq != m.Seq+1 || live.Changes[0].ID != id("keep") {
		t.Fatalf("after catch-up: %+v (catch-up seq %d)", live, m.Seq)
	}
	current := m.Seq + 1

	// Resuming at the current seq: resumed, with an empty net change.
	cl.send(map[string]any{"type": "subscribe", "id": "again", "collection": "tasks", "resume": wire.Resume{Epoch: sub.Epoch, Seq: current}})
	if m := cl.expect("subscribed"); !m.Resumed {
		t.Fatalf("resume at the current seq answered %+v", m)
	}
	if m := cl.expect("changes"); m.Seq != current || len(m.Changes) != 0 {
		t.Fatalf("resume at the current seq = %+v", m)
	}

	// Misses: a wrong epoch, and a seq ahead of the Feed (a client of
	// another instance) get a fresh snapshot equal to Firestore's state.
	want, err := queryTruth(context.Background(), e.fs, subSpec{collection: "tasks", scopeField: "org_id", scopeValue: org})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []wire.Resume{{Epoch: "not-an-epoch", Seq: seq}, {Epoch: sub.Epoch, Seq: current + 100}} {
		sid := fmt.Sprintf("miss%d", i)
		res, docs, snapSeq := cl.subscribe(map[string]any{"id": sid, "collection": "tasks", "resume": r})
		if res.Resumed || res.Epoch != sub.Epoch || snapSeq != current {
			t.Fatalf("resume %+v answered %+v (snapshot seq %d, current %d)", r, res, snapSeq, current)
		}
		got := map[string]docVersion{}
		for _, d := range docs {
			got[d.ID] = docVersion{canonJSON(d.Data), d.UpdateTime}
		}
		if diff := diffStates(got, want); diff != "" {
			t.Fatalf("resume %+v snapshot differs from Firestore: %s", r, diff)
		}
	}
	if n := e.hub.ListenersStarted(); n != 1 {
		t.Fatalf("listeners started = %d", n)
	}
}

// TestResumeReplayBufferEdge: with a replay buffer of 2 messages, a client
// that missed exactly 2 resumes (the edge), one that missed 3 gets a
// snapshot.
func TestResumeReplayBufferEdge(t *testing.T) {
	e := newEnv(t, envOpts{hub: subscriptions.HubConfig{ReplayCount: 2}})
	org := uniq("org")
	p := func(s string) string { return "tasks/" + org + "_" + s }
	e.put(p("a"), map[string]any{"org_id": org, "v": 0})
	tok := e.token(authz.MintOptions{UserID: uniq("user"), OrgID: org, TTL: time.Hour})
	cl := e.connect(tok)
	sub, _, seq := cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	e.goOffline(cl)

	offline := func(n int) {
		for i := 0; i < n; i++ {
			e.putSeen(p(fmt.Sprintf("w%d", i)), map[string]any{"org_id": org, "v": time.Now().UnixNano()})
		}
	}
	offline(2)
	cl = e.connect(tok)
	cl.send(map[string]any{"type": "subscribe", "id": "s", "collection": "tasks", "resume": wire.Resume{Epoch: sub.Epoch, Seq: seq}})
	if m := cl.expect("subscribed"); !m.Resumed {
		t.Fatalf("2 missed messages with ReplayCount 2: %+v, want resumed", m)
	}
	m := cl.expect("changes")
	if m.Seq != seq+2 || len(m.Changes) != 2 {
		t.Fatalf("catch-up = %+v, want seq %d with 2 adds", m, seq+2)
	}
	seq = m.Seq
	e.goOffline(cl)

	offline(3)
	cl = e.connect(tok)
	res, docs, snapSeq := cl.subscribe(map[string]any{"id": "s", "collection": "tasks", "resume": wire.Resume{Epoch: sub.Epoch, Seq: seq}})
	if res.Resumed || snapSeq != seq+3 {
		t.Fatalf("3 missed messages with ReplayCount 2: %+v seq %d, want a snapshot at seq %d", res, snapSeq, seq+3)
	}
	if len(docs) != 4 { // a, w0, w1, w2 (w0 and w1 rewritten)
		t.Fatalf("snapshot = %d docs, want 4", len(docs))
	}
	if n := e.hub.ListenersStarted(); n != 1 {
		t.Fatalf("listeners started = %d", n)
	}
}

// TestSlowReaderBoundedFastReaderExact: under a steady stream of large
// writes, a client that stops reading neither grows the gateway's memory
// (its queue overflows into catch-up instead of growing) nor holds up the
// Feed, and ends with exactly Firestore's state once it reads again; one
// that never reads again is cut off once a write to it has been blocked
// for SlowConsumerTimeout; a client reading at full speed on the same
// Feed ends with exactly Firestore's state. Writes go on until what is
// asserted has been observed, so how fast they are does not matter: the
// overflow is observed under a SlowConsumerTimeout no run can reach, the
// cut-off under a short one.
func TestSlowReaderBoundedFastReaderExact(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		docBytes, queueBytes int
	}{
		// Frames that the writer gathers into one socket write under a
		// write deadline.
		{"batched frames", 64 << 10, 256 << 10},
		// Frames bigger than a batch, written through on their own.
		{"frames above the batch size", 320 << 10, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("overflow into catch-up", func(t *testing.T) { slowReaderOverflow(t, tc.docBytes, tc.queueBytes) })
			t.Run("cut off", func(t *testing.T) { slowReaderCutOff(t, tc.docBytes, tc.queueBytes) })
		})
	}
}

const slowReaderDocs = 2

// slowReaderSetup starts an env with cfg, a fast reader converged on a
// subscription of org's tasks, and a stalled reader subscribed to the
// same query.
func slowReaderSetup(t *testing.T, cfg gateway.Config, docBytes int) (e *env, w *steadyWriter, sp subSpec, fast *tracked, slow *websocket.Conn) {
	e = newEnv(t, envOpts{cfg: cfg})
	w = &steadyWriter{e: e, org: uniq("org"), pad: strings.Repeat("x", docBytes)}
	for i := 0; i < slowReaderDocs; i++ {
		e.put(fmt.Sprintf("tasks/%s_%d", w.org, i), map[string]any{"org_id": w.org, "v": 0, "pad": w.pad})
	}
	tok := e.token(authz.MintOptions{UserID: uniq("user"), OrgID: w.org, TTL: time.Hour})
	sp = subSpec{collection: "tasks", scopeField: "org_id", scopeValue: w.org}
	fast = trackClient(e.connect(tok))
	fast.subscribe("s", sp, nil, nil)
	awaitConverged(t, e.fs, waitFor, []convergeCheck{{"fast", fast, "s", sp, ""}})
	slow = e.dialStalled(tok, sp.request("s"))
	testkit.CheckFor(t, waitFor, 10*time.Millisecond, func() error {
		if n := e.counter("firegate_subscriptions_active", nil); n != 2 {
			return fmt.Errorf("%v subscriptions active, want the fast and the slow reader's", n)
		}
		return nil
	})
	return e, w, sp, fast, slow
}

// steadyWriter rewrites slowReaderDocs documents of org, one after the
// other, from start until halt.
type steadyWriter struct {
	e        *env
	org, pad string
	v        int
	stop     chan struct{}
	done     chan error
	written  atomic.Int64
}

func (w *steadyWriter) start() {
	w.stop, w.done = make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			select {
			case <-w.stop:
				w.done <- nil
				return
			default:
			}
			w.v++
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := w.e.fs.Doc(fmt.Sprintf("tasks/%s_%d", w.org, w.v%slowReaderDocs)).Set(ctx, map[string]any{"org_id": w.org, "v": w.v, "pad": w.pad})
			cancel()
			if err != nil {
				w.done <- err
				return
			}
			w.written.Add(int64(len(w.pad)))
		}
	}()
}

// halt stops the writes and returns the first error.
func (w *steadyWriter) halt(t *testing.T) {
	t.Helper()
	close(w.stop)
	if err := <-w.done; err != nil {
		t.Fatalf("writer: %v", err)
	}
}

// slowReaderOverflow: with a SlowConsumerTimeout no run reaches, writes
// go on until the stalled reader's queue has overflowed into catch-up
// (the fast reader's own overflows, which its catch-ups reveal, do not
// count); then the slow reader reads again and both readers end with
// Firestore's state.
func slowReaderOverflow(t *testing.T, docBytes, queueBytes int) {
	e, w, sp, fast, slow := slowReaderSetup(t, gateway.Config{SlowConsumerTimeout: time.Hour, SendQueueMessages: 16, SendQueueBytes: queueBytes}, docBytes)
	overflows := func() float64 {
		return e.counter("firegate_send_queue_overflows_total", map[string]string{"action": "catchup"})
	}
	fastCatchUps := func() int {
		_, v, _ := fast.state("s")
		if v == nil {
			return 0
		}
		return v.catchUps
	}
	base := heapAfterGC()
	var peak uint64
	for round := 1; ; round++ {
		w.start()
		testkit.CheckFor(t, convergeWithin, 50*time.Millisecond, func() error {
			peak = max(peak, heapAfterGC())
			if o, f := overflows(), fastCatchUps(); o <= float64(f) {
				return fmt.Errorf("%v catch-up overflows, %d of them the fast reader's: the slow reader's queue has not filled (%d MiB written)", o, f, w.written.Load()>>20)
			}
			return nil
		})
		w.halt(t)
		// The fast reader converged has received a catch-up for each of
		// its overflows: what is left over is the slow reader's.
		awaitConverged(t, e.fs, waitFor, []convergeCheck{{"fast", fast, "s", sp, ""}})
		if o, f := overflows(), fastCatchUps(); o > float64(f) {
			break
		} else if round == 10 {
			t.Fatalf("after %d rounds of writes the slow reader's queue never overflowed (%v overflows, all the fast reader's)", round, o)
		}
	}
	t.Logf("%d MiB written; heap after GC: base %d MiB, peak %d MiB", w.written.Load()>>20, base>>20, peak>>20)
	if n := e.srv.ConnCount(); n != 2 {
		t.Fatalf("%d connections: a reader was cut off although no write can reach SlowConsumerTimeout", n)
	}
	if v := e.counter("firegate_send_queue_overflows_total", map[string]string{"action": "disconnect"}); v != 0 {
		t.Fatalf("send_queue_overflows_total{action=disconnect} = %v with a queue that overflows into catch-up", v)
	}

	// The slow reader reads again: it catches up to Firestore's state.
	slowTC := e.adopt(slow, map[string]subSpec{"s": sp})
	e.put(fmt.Sprintf("tasks/%s_final", w.org), map[string]any{"org_id": w.org, "v": -1})
	awaitConverged(t, e.fs, waitFor, []convergeCheck{{"fast", fast, "s", sp, ""}, {"slow", slowTC, "s", sp, ""}})
	for name, tc := range map[string]*tracked{"fast": fast, "slow": slowTC} {
		if p := tc.problems(); len(p) > 0 {
			t.Fatalf("%s reader: %v", name, p)
		}
	}
	if _, v, _ := slowTC.state("s"); v.catchUps == 0 {
		t.Fatal("the slow reader converged without a catch-up after its queue overflowed")
	}
}

// slowReaderCutOff: writes go on until the gateway has cut off the
// stalled reader; the fast reader on the same Feed is untouched.
func slowReaderCutOff(t *testing.T, docBytes, queueBytes int) {
	e, w, sp, fast, slow := slowReaderSetup(t, gateway.Config{SlowConsumerTimeout: 2 * time.Second, SendQueueMessages: 16, SendQueueBytes: queueBytes}, docBytes)
	w.start()
	testkit.CheckFor(t, convergeWithin, 50*time.Millisecond, func() error {
		if n := e.srv.ConnCount(); n > 1 {
			return fmt.Errorf("%d connections: the slow reader is still connected (%d MiB written)", n, w.written.Load()>>20)
		}
		return nil
	})
	w.halt(t)
	reasons := map[string]float64{}
	for _, r := range []string{"client", "error", "slow_consumer"} {
		reasons[r] = e.counter("firegate_disconnects_total", map[string]string{"reason": r})
	}
	if reasons["slow_consumer"] != 1 {
		t.Errorf("disconnects by reason = %v, want the slow reader counted as slow_consumer", reasons)
	}
	if v := e.counter("firegate_send_queue_overflows_total", map[string]string{"action": "disconnect"}); v == 0 {
		t.Error("send_queue_overflows_total{action=disconnect} = 0 after a slow-consumer cut-off")
	}

	// The slow reader's socket is closed by the gateway: reading it now
	// yields what the kernel buffered and then the end, not a hang.
	slow.SetReadLimit(-1)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		if _, _, err := slow.Read(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatal("the slow reader's connection is still open")
			}
			break
		}
	}

	// One more write after the stream: the fast reader converges to
	// Firestore's final state.
	e.put(fmt.Sprintf("tasks/%s_final", w.org), map[string]any{"org_id": w.org, "v": -1})
	awaitConverged(t, e.fs, waitFor, []convergeCheck{{"fast", fast, "s", sp, ""}})
	if p := fast.problems(); len(p) > 0 {
		t.Fatalf("fast reader: %v", p)
	}
	if fast.isDone() {
		t.Fatal("the fast reader was disconnected")
	}
}

// adopt starts reading a connection dialled elsewhere (dialStalled) as a
// tracked client whose subscriptions subs were already requested.
func (e *env) adopt(c *websocket.Conn, subs map[string]subSpec) *tracked {
	c.SetReadLimit(16 << 20)
	cl := &client{t: e.t, c: c, msgs: make(chan wire.ServerMessage, 4096), raw: make(chan []byte, 4096), done: make(chan struct{})}
	tc := trackClient(cl)
	tc.mu.Lock()
	for id, sp := range subs {
		v := newSubView()
		v.sp = sp
		tc.views[id] = v
	}
	tc.mu.Unlock()
	go cl.readLoop()
	return tc
}

// TestEmulatorRestartConverges kills the Firestore emulator (SIGKILL, a
// separate process) under live subscriptions, starts a fresh one on the
// same port — empty, as a restarted emulator is — and writes a new state:
// every client ends with exactly what a fresh query of its subscription
// returns, documents that vanished with the old emulator included.
func TestEmulatorRestartConverges(t *testing.T) {
	emu := startOwnEmulator(t)
	const project = "firegate-restart"
	src := newOwnSource(t, emu.host(), project)
	e := newEnvOn(t, src, envOpts{hub: subscriptions.HubConfig{RetryMin: 100 * time.Millisecond, RetryMax: time.Second}})
	org, user := uniq("org"), uniq("user")
	put := func(path string, data map[string]any) {
		t.Helper()
		putRetrying(t, e.fs, path, data)
	}
	for i := 0; i < 4; i++ {
		status := "open"
		if i%2 == 1 {
			status = "done"
		}
		put(fmt.Sprintf("tasks/%s_old%d", org, i), map[string]any{"org_id": org, "status": status, "n": i})
	}
	put("notes/"+user+"_old", map[string]any{"owner_id": user, "text": "before"})

	specs := map[string]subSpec{
		"all":   {collection: "tasks", scopeField: "org_id", scopeValue: org},
		"open":  {collection: "tasks", where: []wire.Filter{{Field: "status", Op: "==", Value: "open"}}, scopeField: "org_id", scopeValue: org},
		"top2":  {collection: "tasks", orderBy: "n", limit: 2, scopeField: "org_id", scopeValue: org},
		"notes": {collection: "notes", scopeField: "owner_id", scopeValue: user},
	}
	names := []string{"all", "open", "top2", "notes"}
	var checks []convergeCheck
	// An admin: the tasks filter is true for admins, so top2's limit is
	// honoured by Firestore (a member's would be refused: its filter stays
	// in the gateway).
	tok := e.token(authz.MintOptions{UserID: user, OrgID: org, OrgRole: "org:admin", TTL: time.Hour})
	for i := 0; i < 2; i++ {
		tc := trackClient(e.connect(tok))
		for _, n := range names {
			tc.subscribe(n, specs[n], nil, nil)
			checks = append(checks, convergeCheck{fmt.Sprintf("client%d/%s", i, n), tc, n, specs[n], tok})
		}
	}
	awaitConverged(t, e.fs, waitFor, checks)
	started := e.hub.ListenersStarted()

	if err := emu.restart(); err != nil {
		t.Fatal(err)
	}
	// The new emulator is empty: write the state that must exist now. One
	// old id comes back with new data; the others are gone for good.
	put(fmt.Sprintf("tasks/%s_old1", org), map[string]any{"org_id": org, "status": "open", "n": 10})
	put(fmt.Sprintf("tasks/%s_new0", org), map[string]any{"org_id": org, "status": "open", "n": 5})
	put(fmt.Sprintf("tasks/%s_new1", org), map[string]any{"org_id": org, "status": "done", "n": 7})
	put("notes/"+user+"_new", map[string]any{"owner_id": user, "text": "after"})
	awaitConvergedDiag(t, e, convergeWithin, checks)

	// Live again: a write after convergence reaches everyone.
	put(fmt.Sprintf("tasks/%s_new2", org), map[string]any{"org_id": org, "status": "open", "n": 1})
	awaitConverged(t, e.fs, waitFor, checks)
	for _, c := range checks {
		if p := c.tc.problems(); len(p) > 0 {
			t.Fatalf("%s: %v", c.name, p)
		}
	}
	t.Logf("listeners started: %d before the kill, %d after", started, e.hub.ListenersStarted())
}

// TestGatewayRestartClientsReconnect runs `firegate serve` as a separate
// process, SIGKILLs it under live subscriptions, changes Firestore while
// it is down and starts it again on the same address: the clients
// reconnect, their resume names an epoch the new process never had, so
// each gets a fresh snapshot (resumed:false) and ends with Firestore's
// state; live changes flow again.
func TestGatewayRestartClientsReconnect(t *testing.T) {
	src := sharedSource(t)
	fs := src.Client()
	ge := &env{t: t, fs: fs}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ge.issuer.JWKSHandler().ServeHTTP(w, r) }))
	t.Cleanup(jwks.Close)
	var err error
	if ge.issuer, err = authz.NewDevIssuer(jwks.URL); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildFiregate(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	procEnv := map[string]string{
		"FIRESTORE_PROJECT_ID":       "firegate-gw-test",
		"FIRESTORE_EMULATOR_HOST":    emu.Get(t).Host,
		"FIREGATE_POLICY":            policy,
		"CLERK_JWKS_URL":             jwks.URL + "/jwks",
		"CLERK_ISSUER":               jwks.URL,
		"FIREGATE_ADDR":              addr,
		"FIREGATE_ADMIN_ADDR":        admin,
		"FIREGATE_ALLOWED_ORIGINS":   testOrigin,
		"FIREGATE_ALLOW_MISSING_AZP": "true",
		"FIREGATE_DRAIN_TIMEOUT":     "1s",
		"FIREGATE_LOG_LEVEL":         "warn",
	}
	ge.wsURL = "ws://" + addr + "/v1/stream"

	org, user := uniq("org"), uniq("user")
	for i := 0; i < 4; i++ {
		ge.put(fmt.Sprintf("tasks/%s_%d", org, i), map[string]any{"org_id": org, "status": []string{"open", "done"}[i%2], "n": i})
	}
	ge.put("notes/"+user+"_1", map[string]any{"owner_id": user, "text": "one"})
	specs := []subSpec{
		{collection: "tasks", scopeField: "org_id", scopeValue: org},
		{collection: "tasks", where: []wire.Filter{{Field: "status", Op: "==", Value: "open"}}, scopeField: "org_id", scopeValue: org},
		{collection: "notes", scopeField: "owner_id", scopeValue: user},
	}
	tok := ge.token(authz.MintOptions{UserID: user, OrgID: org, TTL: time.Hour})

	first := startFiregate(t, bin, procEnv)
	var (
		clients []*tracked
		checks  []convergeCheck
	)
	for i := 0; i < 3; i++ {
		tc := trackClient(ge.connect(tok))
		clients = append(clients, tc)
		for j, s := range specs {
			id := fmt.Sprintf("s%d", j)
			tc.subscribe(id, s, nil, nil)
			checks = append(checks, convergeCheck{fmt.Sprintf("client%d/%s", i, id), tc, id, s, ""})
		}
	}
	awaitConverged(t, fs, waitFor, checks)
	ge.put(fmt.Sprintf("tasks/%s_0", org), map[string]any{"org_id": org, "status": "open", "n": 100})
	awaitConverged(t, fs, waitFor, checks)

	first.kill(t)
	for i, tc := range clients {
		select {
		case <-tc.applied:
		case <-time.After(waitFor):
			t.Fatalf("client %d still connected to a killed gateway", i)
		}
	}
	// While the gateway is down: modify, remove, add.
	putRetrying(t, fs, fmt.Sprintf("tasks/%s_1", org), map[string]any{"org_id": org, "status": "open", "n": 11})
	delRetrying(t, fs, fmt.Sprintf("tasks/%s_2", org))
	putRetrying(t, fs, fmt.Sprintf("tasks/%s_9", org), map[string]any{"org_id": org, "status": "open", "n": 9})
	delRetrying(t, fs, "notes/"+user+"_1")
	putRetrying(t, fs, "notes/"+user+"_2", map[string]any{"owner_id": user, "text": "two"})

	startFiregate(t, bin, procEnv)
	checks = checks[:0]
	for i, old := range clients {
		tc := trackClient(ge.connect(tok))
		for j, s := range specs {
			id := fmt.Sprintf("s%d", j)
			docs, v, _ := old.state(id)
			tc.subscribe(id, s, &wire.Resume{Epoch: v.epoch, Seq: v.seq}, docs)
			checks = append(checks, convergeCheck{fmt.Sprintf("client%d/%s", i, id), tc, id, s, ""})
		}
		clients[i] = tc
	}
	awaitConverged(t, fs, waitFor, checks)
	for _, c := range checks {
		_, v, _ := c.tc.state(c.sub)
		if v.resumed {
			t.Fatalf("%s resumed on a restarted gateway (epoch %s)", c.name, v.epoch)
		}
	}
	putRetrying(t, fs, fmt.Sprintf("tasks/%s_3", org), map[string]any{"org_id": org, "status": "open", "n": 33})
	putRetrying(t, fs, "notes/"+user+"_3", map[string]any{"owner_id": user, "text": "three"})
	awaitConverged(t, fs, waitFor, checks)
	for _, c := range checks {
		if p := c.tc.problems(); len(p) > 0 {
			t.Fatalf("%s: %v", c.name, p)
		}
	}
}
