package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/internal/emulator/emulatortest"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/revocation"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
	"github.com/firegate/firegate/writes"
)

var emu emulatortest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}

const testOrigin = "https://app.example.test"

const testPolicy = `
collections:
  - path: tasks
    scope: org
    filter: "!has(doc.visibility) || doc.visibility != 'private' || auth.org_role == 'org:admin'"
  - path: invoices
    scope: org
    allow: "'org:invoices:read' in auth.org_permissions"
  - path: notes
    scope: user
    scope_field: owner_id
  - path: projects/{project}/tasks
    scope: org
`

// env is one gateway under test with its collaborators.
type env struct {
	t        *testing.T
	issuer   *authz.DevIssuer
	jwks     *httptest.Server
	srv      *gateway.Server
	hub      *subscriptions.Hub
	reg      *prometheus.Registry
	m        *metrics.Metrics
	ts       *httptest.Server
	admin    *httptest.Server
	fs       *firestore.Client
	wsURL    string
	verifier *authz.Verifier
}

var (
	sourceOnce sync.Once
	source     *subscriptions.FirestoreSource
	sourceErr  error
)

func sharedSource(t *testing.T) *subscriptions.FirestoreSource {
	t.Helper()
	host := emu.Get(t).Host
	sourceOnce.Do(func() {
		os.Setenv("FIRESTORE_EMULATOR_HOST", host)
		source, sourceErr = subscriptions.NewFirestoreSource(context.Background(), subscriptions.FirestoreConfig{ProjectID: "firegate-gw-test", MaxFeeds: 200})
	})
	if sourceErr != nil {
		t.Fatalf("firestore source: %v", sourceErr)
	}
	return source
}

type envOpts struct {
	cfg    gateway.Config
	hub    subscriptions.HubConfig
	policy string
	leeway time.Duration
	clock  gateway.Clock // nil: real time
	// revocations and publisher share revocations between envs (nil: the
	// gateway's own instance-local Store).
	revocations *revocation.Store
	publisher   gateway.Publisher
	logger      *slog.Logger // nil: discard
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	return buildEnv(t, sharedSource(t), o)
}

// upstream is what buildEnv needs of a source: the Hub's listeners and the
// gateway's readiness probe. *subscriptions.FirestoreSource (the
// emulator) and *fakeUpstream (a fake Source the test drives) are ones.
type upstream interface {
	subscriptions.Source
	Health() error
}

// buildEnv builds a gateway with its own Hub on src. e.fs is the emulator's
// client when src is a FirestoreSource, nil otherwise.
func buildEnv(t *testing.T, src upstream, o envOpts) *env {
	t.Helper()
	e := &env{t: t}
	if fsrc, ok := src.(*subscriptions.FirestoreSource); ok {
		e.fs = fsrc.Client()
	}
	var err error
	e.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.issuer.JWKSHandler().ServeHTTP(w, r) }))
	t.Cleanup(e.jwks.Close)
	e.issuer, err = authz.NewDevIssuer(e.jwks.URL)
	if err != nil {
		t.Fatal(err)
	}
	if o.leeway == 0 {
		o.leeway = 5 * time.Second
	}
	e.reg = prometheus.NewRegistry()
	e.m = metrics.New(e.reg)
	if o.hub.Linger == 0 {
		o.hub.Linger = 30 * time.Second
	}
	o.hub.Metrics = e.m
	e.hub, err = subscriptions.NewHub(src, o.hub)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.AllowedOrigins == nil {
		o.cfg.AllowedOrigins = []string{testOrigin, "https://*.example.test"}
	}
	if o.cfg.Leeway == 0 {
		o.cfg.Leeway = o.leeway
	}
	origins, err := gateway.OriginMatcher(o.cfg.AllowedOrigins)
	if err != nil {
		t.Fatal(err)
	}
	e.verifier, err = authz.NewVerifier(authz.VerifierConfig{JWKSURL: e.jwks.URL + "/jwks", Issuer: e.jwks.URL, AuthorizedParty: origins, AllowMissingAzp: true, Leeway: o.leeway})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.verifier.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if o.policy == "" {
		o.policy = testPolicy
	}
	pol, err := authz.ParsePolicy([]byte(o.policy))
	if err != nil {
		t.Fatal(err)
	}
	var wr *writes.Writer // nil on a fake Source: writes are refused
	if e.fs != nil {
		if wr, err = writes.New(writes.Config{Client: e.fs}); err != nil {
			t.Fatal(err)
		}
	}
	e.srv, err = gateway.New(o.cfg, gateway.Deps{Verifier: e.verifier, Policy: pol, Hub: e.hub, Metrics: e.m, Gatherer: e.reg, Upstream: func(context.Context) error { return src.Health() }, Clock: o.clock,
		Revocations: o.revocations, Publisher: o.publisher, Writer: wr, Logger: o.logger})
	if err != nil {
		t.Fatal(err)
	}
	e.ts = httptest.NewServer(e.srv.Handler())
	e.admin = httptest.NewServer(e.srv.AdminHandler())
	e.wsURL = "ws" + strings.TrimPrefix(e.ts.URL, "http") + "/v1/stream"
	t.Cleanup(func() {
		e.ts.CloseClientConnections()
		e.ts.Close()
		e.admin.Close()
		e.hub.Close()
	})
	return e
}

// uniq returns a test-unique id with prefix, so tests sharing the emulator
// never see each other's documents.
func uniq(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

func (e *env) token(o authz.MintOptions) string {
	e.t.Helper()
	if o.Azp == "" {
		o.Azp = testOrigin
	}
	tok, err := e.issuer.Mint(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// client is a test WebSocket client.
type client struct {
	t    *testing.T
	c    *websocket.Conn
	msgs chan wire.ServerMessage
	raw  chan []byte
	done chan struct{}
	err  error
}

type dialOpts struct {
	header       http.Header
	subprotocols []string
}

func (e *env) dial(o dialOpts) (*client, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if o.subprotocols == nil {
		o.subprotocols = []string{wire.Subprotocol}
	}
	c, resp, err := websocket.Dial(ctx, e.wsURL, &websocket.DialOptions{HTTPHeader: o.header, Subprotocols: o.subprotocols})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(16 << 20)
	cl := &client{t: e.t, c: c, msgs: make(chan wire.ServerMessage, 4096), raw: make(chan []byte, 4096), done: make(chan struct{})}
	go cl.readLoop()
	e.t.Cleanup(func() { c.CloseNow() })
	return cl, resp, nil
}

// connect dials with the token in the Authorization header and waits for
// the welcome.
func (e *env) connect(tok string) *client {
	e.t.Helper()
	cl, _, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	cl.expect("welcome")
	return cl
}

func (cl *client) readLoop() {
	defer close(cl.done)
	for {
		_, b, err := cl.c.Read(context.Background())
		if err != nil {
			cl.err = err
			return
		}
		var m wire.ServerMessage
		if err := json.Unmarshal(b, &m); err != nil {
			cl.err = err
			return
		}
		m.Received = time.Now()
		cl.raw <- b
		cl.msgs <- m
	}
}

func (cl *client) send(v any) {
	cl.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.sendRaw(b)
}

func (cl *client) sendRaw(b []byte) {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.c.Write(ctx, websocket.MessageText, b); err != nil {
		cl.t.Fatalf("write: %v", err)
	}
}

const waitFor = 15 * time.Second

// next returns the next message or fails after waitFor.
func (cl *client) next() wire.ServerMessage {
	cl.t.Helper()
	select {
	case m := <-cl.msgs:
		<-cl.raw
		return m
	case <-cl.done:
		// Drain what arrived before the close.
		select {
		case m := <-cl.msgs:
			<-cl.raw
			return m
		default:
		}
		cl.t.Fatalf("connection closed while waiting for a message: %v", cl.err)
	case <-time.After(waitFor):
		cl.t.Fatalf("no message within %v", waitFor)
	}
	return wire.ServerMessage{}
}

// expect returns the next message and fails unless it has type typ.
func (cl *client) expect(typ string) wire.ServerMessage {
	cl.t.Helper()
	m := cl.next()
	if m.Type != typ {
		cl.t.Fatalf("got %s %+v, want %s", m.Type, m, typ)
	}
	return m
}

// quiet fails if any message arrives within d (used after a write that
// must not reach this client; d bounds how long we look, it is not a
// timing assertion).
func (cl *client) quiet(d time.Duration) {
	cl.t.Helper()
	select {
	case m := <-cl.msgs:
		<-cl.raw
		cl.t.Fatalf("unexpected message %s %+v", m.Type, m)
	case <-time.After(d):
	}
}

// closed waits for the connection to close and returns the close status.
func (cl *client) closed() (websocket.StatusCode, string) {
	cl.t.Helper()
	select {
	case <-cl.done:
	case <-time.After(waitFor):
		cl.t.Fatalf("connection not closed within %v", waitFor)
	}
	var ce websocket.CloseError
	if errors.As(cl.err, &ce) {
		return ce.Code, ce.Reason
	}
	return -1, ""
}

// subscribe sends a subscribe and returns the subscribed message and the
// whole snapshot (all chunks).
func (cl *client) subscribe(msg map[string]any) (wire.ServerMessage, []wire.Doc, uint64) {
	cl.t.Helper()
	msg["type"] = "subscribe"
	cl.send(msg)
	sub := cl.expect("subscribed")
	var docs []wire.Doc
	for {
		m := cl.next()
		if m.Type != "snapshot" {
			cl.t.Fatalf("got %s %+v, want snapshot", m.Type, m)
		}
		docs = append(docs, m.Docs...)
		if m.Final {
			return sub, docs, m.Seq
		}
	}
}

// pollEvery is how often condition waits (testkit.CheckFor) look again.
const pollEvery = 10 * time.Millisecond

// awaitCounter waits until the metric name{labels} (see counter) equals
// want.
func (e *env) awaitCounter(name string, labels map[string]string, want float64) {
	e.t.Helper()
	testkit.CheckFor(e.t, waitFor, pollEvery, func() error {
		if v := e.counter(name, labels); v != want {
			return fmt.Errorf("%s%v = %v, want %v", name, labels, v, want)
		}
		return nil
	})
}

// awaitConnCount waits until the gateway holds n connections.
func (e *env) awaitConnCount(n int) {
	e.t.Helper()
	testkit.CheckFor(e.t, waitFor, pollEvery, func() error {
		if got := e.srv.ConnCount(); got != n {
			return fmt.Errorf("%d connections, want %d", got, n)
		}
		return nil
	})
}

func docIDs(docs []wire.Doc) map[string]bool {
	out := map[string]bool{}
	for _, d := range docs {
		out[d.ID] = true
	}
	return out
}

func (e *env) put(path string, data map[string]any) {
	e.t.Helper()
	e.needFirestore()
	if _, err := e.fs.Doc(path).Set(context.Background(), data); err != nil {
		e.t.Fatalf("set %s: %v", path, err)
	}
}

func (e *env) del(path string) {
	e.t.Helper()
	e.needFirestore()
	if _, err := e.fs.Doc(path).Delete(context.Background()); err != nil {
		e.t.Fatalf("delete %s: %v", path, err)
	}
}

// counter reads a metric value from the registry.
func (e *env) counter(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}
