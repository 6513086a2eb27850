package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

func TestHandshakeLimitPerIP(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{cfg: gateway.Config{Limits: gateway.Limits{HandshakesPerIP: 0.001, HandshakeBurst: 3}}})
	tok := e.token(authz.MintOptions{UserID: uniq("u")})
	for i := 0; i < 3; i++ { // at the edge: the burst is allowed
		if _, _, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}}); err != nil {
			t.Fatalf("handshake %d refused: %v", i, err)
		}
	}
	_, resp, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("past the edge: err=%v resp=%v", err, resp)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 {
		t.Fatalf("Retry-After = %q", resp.Header.Get("Retry-After"))
	}
	if v := e.counter("firegate_rate_limited_total", map[string]string{"limit": "handshake"}); v != 1 {
		t.Fatalf("rate_limited{handshake} = %v", v)
	}
}

func TestTrustedProxyForwardedFor(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{cfg: gateway.Config{
		TrustedProxies: mustPrefixes("127.0.0.0/8"),
		Limits:         gateway.Limits{HandshakesPerIP: 0.001, HandshakeBurst: 1},
	}})
	tok := e.token(authz.MintOptions{UserID: uniq("u")})
	hdr := func(xff string) dialOpts {
		return dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}, "X-Forwarded-For": {xff}}}
	}
	// Distinct forwarded clients each get their own bucket.
	for _, ip := range []string{"203.0.113.1", "203.0.113.2"} {
		if _, _, err := e.dial(hdr(ip)); err != nil {
			t.Fatalf("client %s refused: %v", ip, err)
		}
	}
	if _, resp, err := e.dial(hdr("203.0.113.1")); err == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("same forwarded client not limited: %v", err)
	}
	// A spoofed hop left of an untrusted one is ignored: the nearest
	// untrusted address counts.
	if _, resp, err := e.dial(hdr("198.51.100.9, 203.0.113.2")); err == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("spoofed left-most hop was trusted: %v", err)
	}
}

func TestAuthFailuresPerIP(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{cfg: gateway.Config{Limits: gateway.Limits{AuthFailuresPerIP: 0.001, AuthFailureBurst: 2}}})
	for i := 0; i < 2; i++ {
		cl, _, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer garbage"}}})
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if code, _ := cl.closed(); code != wire.CloseUnauthenticated {
			t.Fatalf("code %d", code)
		}
	}
	// Past the edge even a good token is refused before any token work.
	good := e.token(authz.MintOptions{UserID: uniq("u")})
	_, resp, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer " + good}}})
	if err == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after failures: err=%v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "auth_failures") {
		t.Fatalf("refusal does not name the limit: %s", body)
	}
}

func TestConnectionsPerUser(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{cfg: gateway.Config{Limits: gateway.Limits{ConnectionsPerUser: 2}}})
	user := uniq("u")
	a := e.connect(e.token(authz.MintOptions{UserID: user}))
	e.connect(e.token(authz.MintOptions{UserID: user}))
	cl, _, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer " + e.token(authz.MintOptions{UserID: user})}}})
	if err != nil {
		t.Fatal(err)
	}
	m := cl.expect("error")
	if m.Code != "rate_limited" || !strings.Contains(m.Message, "connections_per_user") || m.RetryAfterMS <= 0 {
		t.Fatalf("got %+v", m)
	}
	if code, _ := cl.closed(); code != wire.CloseRateLimited {
		t.Fatalf("close %d", code)
	}
	// A slot frees when a connection ends.
	a.c.Close(websocket.StatusNormalClosure, "")
	testkit.CheckFor(t, waitFor, pollEvery, func() error {
		c, _, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer " + e.token(authz.MintOptions{UserID: user})}}})
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		if m := c.next(); m.Type != "welcome" {
			return fmt.Errorf("the slot was not released: got %s %q", m.Type, m.Message)
		}
		return nil
	})
}

func TestMessagesPerConnectionAndAbuse(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{cfg: gateway.Config{Limits: gateway.Limits{MessagesPerConn: 0.001, MessageBurst: 5, AbuseThreshold: 4}}})
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u")}))
	for i := 0; i < 5; i++ {
		cl.send(map[string]any{"type": "ping", "id": fmt.Sprint(i)})
		cl.expect("pong")
	}
	cl.send(map[string]any{"type": "ping", "id": "over"})
	m := cl.expect("error")
	if m.Code != "rate_limited" || m.RetryAfterMS <= 0 || !strings.Contains(m.Message, "messages") {
		t.Fatalf("got %+v", m)
	}
	for i := 0; i < 3; i++ {
		cl.send(map[string]any{"type": "ping"})
	}
	if code, _ := cl.closed(); code != wire.CloseRateLimited {
		t.Fatalf("close %d, want 4008", code)
	}
}

func TestSubscriptionsPerConnection(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{cfg: gateway.Config{Limits: gateway.Limits{SubscriptionsPerConn: 2}}})
	user := uniq("u")
	cl := e.connect(e.token(authz.MintOptions{UserID: user}))
	cl.subscribe(map[string]any{"id": "a", "collection": "notes"})
	cl.subscribe(map[string]any{"id": "b", "collection": "notes", "limit": 5})
	cl.send(map[string]any{"type": "subscribe", "id": "c", "collection": "notes", "limit": 6})
	if m := cl.expect("error"); m.ID != "c" || m.Code != "limit_exceeded" {
		t.Fatalf("got %+v", m)
	}
	cl.send(map[string]any{"type": "unsubscribe", "id": "a"})
	cl.expect("unsubscribed")
	cl.subscribe(map[string]any{"id": "c", "collection": "notes", "limit": 6})
}

func TestFeedsPerOrgAndOverall(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{hub: subscriptions.HubConfig{MaxFeeds: 3, MaxFeedsPerTenant: 2, Linger: -1}})
	org := uniq("org")
	// Admins: their tasks filter is true, so a limit is allowed.
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org, OrgRole: "org:admin"}))
	cl.subscribe(map[string]any{"id": "a", "collection": "tasks", "limit": 1})
	cl.subscribe(map[string]any{"id": "b", "collection": "tasks", "limit": 2})
	cl.send(map[string]any{"type": "subscribe", "id": "c", "collection": "tasks", "limit": 3})
	if m := cl.expect("error"); m.Code != "limit_exceeded" || !strings.Contains(m.Message, "feeds_per_org") || m.RetryAfterMS <= 0 {
		t.Fatalf("got %+v", m)
	}
	// Joining an existing Feed is never limited.
	other := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org, OrgRole: "org:admin"}))
	other.subscribe(map[string]any{"id": "a", "collection": "tasks", "limit": 1})
	// Overall cap: a third Feed from another org fits, a fourth does not.
	c2 := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: uniq("org")}))
	c2.subscribe(map[string]any{"id": "a", "collection": "tasks"})
	c3 := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: uniq("org")}))
	c3.send(map[string]any{"type": "subscribe", "id": "a", "collection": "tasks"})
	if m := c3.expect("error"); m.Code != "limit_exceeded" || !strings.Contains(m.Message, "feeds") {
		t.Fatalf("got %+v", m)
	}
	if v := e.counter("firegate_rate_limited_total", map[string]string{"limit": "feeds"}); v != 1 {
		t.Fatalf("rate_limited{feeds} = %v", v)
	}
}

// TestDrainSpreadsClosesAndFailsReadiness: Drain fails readiness at once,
// refuses new sockets and closes the connections 1012 one step of
// DrainTimeout/n apart on the server's clock: with the injected clock
// held, exactly one more connection closes per step.
func TestDrainSpreadsClosesAndFailsReadiness(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	const n = 4
	const window = 900 * time.Millisecond
	e, _ := newFakeEnv(t, envOpts{cfg: gateway.Config{DrainTimeout: window}, clock: clock})
	clock.CatchUp()
	var clients []*client
	for i := 0; i < n; i++ {
		clients = append(clients, e.connect(e.token(authz.MintOptions{UserID: uniq("u")})))
	}
	resp, err := http.Get(e.admin.URL + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ready before drain: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	done := make(chan struct{})
	go func() { e.srv.Drain(context.Background()); close(done) }()
	testkit.CheckFor(t, waitFor, pollEvery, func() error {
		r, err := http.Get(e.admin.URL + "/readyz")
		if err != nil {
			return err
		}
		r.Body.Close()
		if r.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz answers %s while draining", r.Status)
		}
		return nil
	})
	closed := func() int {
		k := 0
		for _, cl := range clients {
			select {
			case <-cl.done:
				k++
			default:
			}
		}
		return k
	}
	for step := 1; step <= n; step++ {
		testkit.CheckFor(t, waitFor, pollEvery, func() error {
			if k := closed(); k < step {
				return fmt.Errorf("%d of %d connections closed after %d steps of the drain, want %d", k, n, step-1, step)
			}
			return nil
		})
		// The clock has not moved past this step: no further close yet.
		if k := closed(); k != step {
			t.Fatalf("%d connections closed within %d steps of the drain, want %d: closes not spread", k, step-1, step)
		}
		clock.Advance(window / n)
	}
	for i, cl := range clients {
		if code, _ := cl.closed(); code != wire.CloseServiceRestart {
			t.Errorf("client %d: close code %d, want 1012", i, code)
		}
	}
	<-done
	// New sockets are refused while draining.
	if _, resp, err := e.dial(dialOpts{}); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial during drain: %v", err)
	}
	if v := e.counter("firegate_disconnects_total", map[string]string{"reason": "drain"}); v != n {
		t.Fatalf("disconnects{drain} = %v", v)
	}
}

func TestMetricsExposedWithEveryLabel(t *testing.T) {
	e := newEnv(t, envOpts{})
	org := uniq("org")
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
	cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	e.put("tasks/"+org+"_m", map[string]any{"org_id": org})
	cl.expect("changes")
	resp, err := http.Get(e.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, want := range []string{
		`firegate_handshakes_total{result="forbidden_origin"} 0`,
		`firegate_auth_failures_total{reason="unknown_kid"} 0`,
		`firegate_disconnects_total{reason="slow_consumer"} 0`,
		`firegate_messages_sent_total{type="auth_expiring"} 0`,
		`firegate_client_messages_total{type="invalid"} 0`,
		`firegate_send_queue_overflows_total{action="catchup"} 0`,
		`firegate_rate_limited_total{limit="feeds_per_org"} 0`,
		`firegate_feed_errors_total{code="FailedPrecondition"} 0`,
		`firegate_connections_active 1`,
		`firegate_subscriptions_active 1`,
		`firegate_feeds_active 1`,
		`firegate_messages_sent_total{type="changes"} 1`,
		`firegate_handshakes_total{result="ok"} 1`,
		"firegate_fanout_latency_seconds_count 1",
		"firegate_upstream_lag_seconds_count",
		"process_resident_memory_bytes",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, org) {
		t.Fatal("an org id appears in /metrics")
	}
}

func TestSlowConsumerCatchesUpLosslessly(t *testing.T) {
	e := newEnv(t, envOpts{cfg: gateway.Config{SendQueueMessages: 1, SendQueueBytes: 1024}})
	org := uniq("org")
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
	_, docs, _ := cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	state := map[string]string{}
	for _, d := range docs {
		state[d.ID] = string(d.Data)
	}
	// Bursts of parallel writes, so changes pile up faster than one frame,
	// until the queue has overflowed (how many bursts that takes is the
	// machine's business).
	const n = 40
	burst := 0
	testkit.CheckFor(t, convergeWithin, pollEvery, func() error {
		burst++
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if _, err := e.fs.Doc(fmt.Sprintf("tasks/%s_%02d", org, i)).Set(context.Background(), map[string]any{"org_id": org, "i": i, "burst": burst}); err != nil {
					errs <- err
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return testkit.Stop(err)
		}
		if v := e.counter("firegate_send_queue_overflows_total", map[string]string{"action": "catchup"}); v == 0 {
			return fmt.Errorf("no catch-up overflow after %d bursts of %d writes", burst, n)
		}
		return nil
	})
	for i := 0; i < n; i += 3 {
		e.del(fmt.Sprintf("tasks/%s_%02d", org, i))
	}
	want := map[string]bool{}
	for i := 0; i < n; i++ {
		if i%3 != 0 {
			want[fmt.Sprintf("%s_%02d", org, i)] = true
		}
	}
	// Apply whatever arrives (changes, catch-ups, snapshots) until the
	// client's state equals Firestore's.
	var lastSeq uint64
	deadline := time.Now().Add(waitFor)
	for !sameKeys(state, want) {
		if time.Now().After(deadline) {
			t.Fatalf("state %d docs, want %d", len(state), len(want))
		}
		select {
		case m := <-cl.msgs:
			<-cl.raw
			switch m.Type {
			case "changes":
				if m.Seq < lastSeq {
					t.Fatalf("seq went back %d → %d", lastSeq, m.Seq)
				}
				lastSeq = m.Seq
				for _, c := range m.Changes {
					if c.Kind == "removed" {
						delete(state, c.ID)
					} else {
						state[c.ID] = string(c.Data)
					}
				}
			case "snapshot":
				// A snapshot replaces the state (all chunks).
				state = map[string]string{}
				for _, d := range m.Docs {
					state[d.ID] = string(d.Data)
				}
			}
		case <-time.After(waitFor):
			t.Fatalf("stalled with %d docs, want %d", len(state), len(want))
		}
	}
}

func sameKeys(a map[string]string, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
