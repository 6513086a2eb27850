// Package gateway is Firegate's HTTP and WebSocket server: the handshake
// (origin allowlist, per-IP limits, token transports), the per-connection
// read loop and writer, protocol v1, refresh and expiry, the admin server
// (metrics, health, readiness, pprof) and graceful drain. It builds on authz
// (who is calling, what may they see) and subscriptions (shared Feeds).
// docs/architecture.md draws the data flow through its files and states
// the lock order.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/internal/clock"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/revocation"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
	"github.com/firegate/firegate/writes"
)

// Verifier authenticates tokens; *authz.Verifier implements it.
type Verifier interface {
	Verify(ctx context.Context, token string) (*authz.Principal, error)
	Ready() bool
}

// Deps are the gateway's collaborators.
type Deps struct {
	Verifier Verifier            // required
	Policy   *authz.Policy       // required; replace with SetPolicy
	Hub      *subscriptions.Hub  // required
	Metrics  *metrics.Metrics    // nil → unregistered collectors
	Gatherer prometheus.Gatherer // what /metrics serves; nil → empty registry
	Logger   *slog.Logger        // nil → discard
	Clock    Clock               // nil → real time
	// Upstream reports whether Firestore is reachable (for /readyz); nil
	// means always. It is called on every probe, so it must not read
	// Firestore: the app passes FirestoreSource.Health, the verdict of the
	// listeners' own health monitor (with its hysteresis).
	Upstream func(ctx context.Context) error
	// ReadyDetails, when set, adds lines to the /readyz body (fleet mode:
	// whether NATS is reachable); it does not decide readiness.
	ReadyDetails func() string
	// Extra serves every path of the main address the gateway does not
	// own (the dev page, dev endpoints); nil → 404.
	Extra http.Handler
	// Revocations is the Store tokens are checked against (shared with a
	// revocation.Sync); nil → an instance-local Store keeping revocations
	// authz.DefaultMaxTokenLifetime + Config.Leeway.
	Revocations *revocation.Store
	// Publisher shares webhook revocations with other instances (a
	// *revocation.Sync on the Store above); nil → this instance only.
	Publisher Publisher
	// Writer applies writes (the `write` message, POST /v1/write); nil →
	// writes are answered `unavailable`.
	Writer *writes.Writer
}

// Server is the gateway. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	verifier Verifier
	policy   atomic.Pointer[authz.Policy]
	hub      *subscriptions.Hub
	m        *metrics.Metrics
	gatherer prometheus.Gatherer
	log      *slog.Logger
	clock    Clock
	upstream func(ctx context.Context) error
	details  func() string
	extra    http.Handler
	origins  *originMatcher

	revocations *revocation.Store // immutable; safe for concurrent use
	publisher   Publisher         // nil: instance-local revocations

	connLogs   *logLimiter
	handshakes *keyedLimiter
	authFails  *keyedLimiter
	users      *userCounter
	writer     *writes.Writer
	userWrites *keyedLimiter // per-user write rate (write.go)

	baseCtx    context.Context
	baseCancel context.CancelFunc
	nextConnID atomic.Uint64
	draining   atomic.Bool

	connsMu sync.Mutex // guards conns
	conns   map[*conn]struct{}
}

// New validates cfg and builds a Server.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("invalid gateway config: %w", err)
	}
	if d.Verifier == nil || d.Policy == nil || d.Hub == nil {
		return nil, errors.New("gateway needs a verifier, a policy and a hub")
	}
	origins, err := newOriginMatcher(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, verifier: d.Verifier, hub: d.Hub, m: d.Metrics, gatherer: d.Gatherer,
		log: d.Logger, clock: d.Clock, upstream: d.Upstream, details: d.ReadyDetails, extra: d.Extra, origins: origins,
		conns: make(map[*conn]struct{})}
	if s.m == nil {
		s.m = metrics.New(nil)
	}
	if s.gatherer == nil {
		s.gatherer = prometheus.NewRegistry()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = clock.Real
	}
	if s.extra == nil {
		s.extra = http.NotFoundHandler()
	}
	s.policy.Store(d.Policy)
	s.revocations, s.publisher = d.Revocations, d.Publisher
	if s.revocations == nil {
		s.revocations, err = revocation.NewStore(revocation.Config{TTL: authz.DefaultMaxTokenLifetime + cfg.Leeway})
		if err != nil {
			return nil, fmt.Errorf("failed to create the revocation store: %w", err)
		}
	}
	s.revocations.Watch(s.applyRevocation)
	s.connLogs = newLogLimiter()
	l := cfg.Limits
	s.handshakes = newKeyedLimiter(l.HandshakesPerIP, l.HandshakeBurst, l.MaxTrackedIPs, s.clock.Now)
	s.authFails = newKeyedLimiter(l.AuthFailuresPerIP, l.AuthFailureBurst, l.MaxTrackedIPs, s.clock.Now)
	s.users = &userCounter{max: l.ConnectionsPerUser, m: make(map[string]int)}
	s.writer = d.Writer
	s.userWrites = newKeyedLimiter(l.WritesPerUser, l.WriteBurstPerUser, l.MaxTrackedIPs, s.clock.Now)
	s.baseCtx, s.baseCancel = context.WithCancel(context.Background())
	s.m.Ready.Set(1)
	return s, nil
}

// Origins reports whether origin is an allowed browser origin; the
// verifier's authorized-party check uses it by default.
func (s *Server) Origins() func(string) bool { return s.origins.Allowed }

// SetPolicy replaces the policy and re-checks every live subscription:
// those no longer allowed end with `unsubscribed` reason forbidden, those
// whose rule changed move to a Feed planned under the new rule (see
// recheck). Then every Feed planned under a rule the new policy no longer
// has is retired: closed at once when it lingers, and never joined again.
func (s *Server) SetPolicy(p *authz.Policy) {
	s.policy.Store(p)
	for _, c := range s.snapshotConns() {
		if pr := c.principal.Load(); pr != nil {
			c.recheck(nil, pr)
		}
	}
	s.hub.Retire(func(spec subscriptions.FeedSpec) bool { return spec.Rule != "" && !p.CurrentRule(spec.Rule) })
}

// Policy returns the policy in force.
func (s *Server) Policy() *authz.Policy { return s.policy.Load() }

func (s *Server) track(c *conn, add bool) {
	s.connsMu.Lock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	s.connsMu.Unlock()
}

func (s *Server) snapshotConns() []*conn {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// ConnCount is the number of open connections.
func (s *Server) ConnCount() int {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	return len(s.conns)
}

// Handler serves the main address: /v1/stream, /healthz, /readyz and
// everything else through Deps.Extra.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/stream", s.handleStream)
	mux.HandleFunc("GET /v1/sse", s.handleSSE)
	mux.HandleFunc("POST /v1/write", s.handleWrite)
	mux.HandleFunc("OPTIONS /v1/write", s.handleWritePreflight)
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("/", s.extra)
	return mux
}

// AdminHandler serves the admin address.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("GET /debug/memory", s.handleMemory)
	if s.cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// Ready reports why the gateway is not ready, or nil.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("draining")
	}
	if !s.verifier.Ready() {
		return errors.New("clerk keys not loaded")
	}
	if s.upstream == nil {
		return nil
	}
	if err := s.upstream(ctx); err != nil {
		return fmt.Errorf("firestore unreachable: %w", err)
	}
	return nil
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.Ready(r.Context()); err != nil {
		s.m.Ready.Set(0)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
		s.writeDetails(w)
		return
	}
	s.m.Ready.Set(1)
	_, _ = w.Write([]byte("ready\n"))
	s.writeDetails(w)
}

// writeDetails appends Deps.ReadyDetails to a /readyz body.
func (s *Server) writeDetails(w io.Writer) {
	if s.details != nil {
		if d := s.details(); d != "" {
			_, _ = fmt.Fprintln(w, d)
		}
	}
}

func (s *Server) handleMemory(w http.ResponseWriter, _ *http.Request) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"heap_alloc":%d,"heap_inuse":%d,"stack_inuse":%d,"sys":%d,"goroutines":%d,"connections":%d,"feeds":%d}`+"\n",
		ms.HeapAlloc, ms.HeapInuse, ms.StackInuse, ms.Sys, runtime.NumGoroutine(), s.ConnCount(), s.hub.FeedCount())
}

// clientIP is the TCP peer, or the nearest untrusted X-Forwarded-For hop
// when the peer is a trusted proxy.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !s.trusted(peer) {
		return host
	}
	xff := r.Header.Values("X-Forwarded-For")
	var hops []string
	for _, v := range xff {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			return host
		}
		if !s.trusted(a) {
			return a.String()
		}
	}
	return host
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// tokenFrom finds the handshake's token: Authorization header, then the
// bearer. subprotocol, then the __session cookie (only with an allowed
// Origin present, which the caller has checked).
func tokenFrom(r *http.Request, hasOrigin bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); strings.HasPrefix(p, wire.BearerPrefix) {
				return p[len(wire.BearerPrefix):]
			}
		}
	}
	if hasOrigin {
		if ck, err := r.Cookie(wire.SessionCookie); err == nil {
			return ck.Value
		}
	}
	return ""
}

func retryAfterHeader(d time.Duration) string {
	return strconv.FormatInt(max(int64((d+time.Second-1)/time.Second), 1), 10)
}

func (s *Server) refuse(w http.ResponseWriter, status int, retry time.Duration, msg string) {
	if retry > 0 {
		w.Header().Set("Retry-After", retryAfterHeader(retry))
	}
	http.Error(w, msg, status)
}

func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	start := s.clock.Now()
	if s.draining.Load() {
		s.m.Handshakes[metrics.HandshakeError].Inc()
		s.refuse(w, http.StatusServiceUnavailable, time.Second, "server is draining; reconnect to another instance")
		return
	}
	ip := s.clientIP(r)
	if ok, retry := s.handshakes.take(ip, 1); !ok {
		s.m.Handshakes[metrics.HandshakeRateLimited].Inc()
		s.m.RateLimited[metrics.LimitHandshake].Inc()
		s.refuse(w, http.StatusTooManyRequests, retry, "handshake limit: too many connections from this address")
		return
	}
	if ok, retry := s.authFails.available(ip); !ok {
		s.m.Handshakes[metrics.HandshakeRateLimited].Inc()
		s.m.RateLimited[metrics.LimitAuthFailures].Inc()
		s.refuse(w, http.StatusTooManyRequests, retry, "auth_failures limit: too many failed authentications from this address")
		return
	}
	origin := r.Header.Get("Origin")
	if origin != "" && !s.origins.Allowed(origin) {
		s.m.Handshakes[metrics.HandshakeForbiddenOrigin].Inc()
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	token := tokenFrom(r, origin != "")
	bw := &batchingWriter{ResponseWriter: w}
	ws, err := websocket.Accept(bw, r, &websocket.AcceptOptions{
		Subprotocols:       []string{wire.Subprotocol},
		InsecureSkipVerify: true, // the origin allowlist above already decided
	})
	if err != nil {
		s.m.Handshakes[metrics.HandshakeError].Inc()
		return
	}
	c := s.newConn(ws, wsTransport{ws: ws, bc: bw.bc}, ip, start)
	end := c.open()
	go func() {
		defer end()
		c.serve(token)
	}()
}

// Serve serves the main and admin listeners until ctx is cancelled, then
// drains: /readyz fails at once, no new sockets, open connections are
// closed with 1012 spread evenly over the drain window, the Hub stops.
// adminLn may be nil. It returns nil after a clean drain.
func (s *Server) Serve(ctx context.Context, ln, adminLn net.Listener) error {
	go s.sweepLimiters(ctx, time.Minute)
	main := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return s.baseCtx }}
	var admin *http.Server
	errc := make(chan error, 2)
	go func() { errc <- main.Serve(ln) }()
	if adminLn != nil {
		admin = &http.Server{Handler: s.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- admin.Serve(adminLn) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			s.baseCancel()
			return fmt.Errorf("failed to serve: %w", err)
		}
	}
	s.log.Info("draining", "connections", s.ConnCount(), "window", s.cfg.DrainTimeout)
	s.Drain(context.Background())
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = main.Shutdown(sctx)
	if admin != nil {
		_ = admin.Shutdown(sctx)
	}
	s.hub.Close()
	s.baseCancel()
	s.log.Info("drained")
	return nil
}

// Run listens on the configured addresses and calls Serve.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", s.cfg.Addr, err)
	}
	var adminLn net.Listener
	if s.cfg.AdminAddr != "-" {
		adminLn, err = net.Listen("tcp", s.cfg.AdminAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("failed to listen on admin address %s: %w", s.cfg.AdminAddr, err)
		}
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "admin", s.cfg.AdminAddr)
	return s.Serve(ctx, ln, adminLn)
}

// Drain marks the server not ready, refuses new sockets and closes every
// connection with 1012, spreading the closes evenly over the drain window
// so clients do not reconnect in one wave. It returns when all are closed
// or ctx ends.
func (s *Server) Drain(ctx context.Context) {
	s.draining.Store(true)
	s.m.Ready.Set(0)
	conns := s.snapshotConns()
	n := len(conns)
	if n == 0 {
		return
	}
	step := s.cfg.DrainTimeout / time.Duration(n)
	t0 := s.clock.Now()
	for i, c := range conns {
		if wait := t0.Add(time.Duration(i) * step).Sub(s.clock.Now()); wait > 0 {
			s.wait(ctx, wait)
		}
		c.closeWith(causeDrain)
	}
	// Give the closes up to drainCloseGrace (on the server's clock) to
	// finish; poll the connection count meanwhile.
	graceOver := make(chan struct{})
	grace := s.clock.AfterFunc(drainCloseGrace, func() { close(graceOver) })
	defer grace.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.ConnCount() > 0 {
		select {
		case <-tick.C:
		case <-graceOver:
			return
		case <-ctx.Done():
			return
		}
	}
}

// drainCloseGrace is how long Drain waits, after the last close was
// requested, for the connections to finish closing.
const drainCloseGrace = 10 * time.Second

// wait blocks for d on the server's clock, or until ctx ends.
func (s *Server) wait(ctx context.Context, d time.Duration) {
	done := make(chan struct{})
	t := s.clock.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
	case <-ctx.Done():
		t.Stop()
	}
}

// sweepLimiters evicts idle per-IP limiter entries every interval, so the
// tables shrink back after a burst of distinct addresses.
func (s *Server) sweepLimiters(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.handshakes.sweep()
			s.authFails.sweep()
			s.userWrites.sweep()
		}
	}
}
