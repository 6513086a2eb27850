package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// TestIPv6ClientsBucketedBySlash64 is the attack of a client holding an
// IPv6 /64 (every home and VM gets one) rotating its address to dodge the
// per-IP handshake limit: addresses in one /64 share a bucket, another /64
// gets its own.
func TestIPv6ClientsBucketedBySlash64(t *testing.T) {
	e := newEnv(t, envOpts{cfg: gateway.Config{
		TrustedProxies: mustPrefixes("127.0.0.0/8"),
		Limits:         gateway.Limits{HandshakesPerIP: 0.001, HandshakeBurst: 2},
	}})
	tok := e.token(authz.MintOptions{UserID: uniq("u")})
	dial := func(client string) int {
		t.Helper()
		_, resp, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}, "X-Forwarded-For": {client}}})
		if err == nil {
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatalf("dial from %s: %v", client, err)
		}
		return resp.StatusCode
	}
	steps := []struct {
		client string
		want   int
	}{
		{"2001:db8:1:2::1", http.StatusSwitchingProtocols},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", http.StatusSwitchingProtocols}, // at the edge: same /64, burst 2
		{"2001:db8:1:2::abcd", http.StatusTooManyRequests},                  // past it: a third address of that /64
		{"2001:db8:1:3::1", http.StatusSwitchingProtocols},                  // the next /64 is another client
		{"198.51.100.7", http.StatusSwitchingProtocols},                     // IPv4 stays per address
		{"198.51.100.8", http.StatusSwitchingProtocols},
	}
	for _, s := range steps {
		if got := dial(s.client); got != s.want {
			t.Fatalf("handshake from %s: %d, want %d", s.client, got, s.want)
		}
	}
}

// TestBareStarOriginRefused: a bare * in the allowed origins would let any
// website open sockets carrying a visitor's __session cookie; the gateway
// refuses to start with it, saying why, while one-label wildcards work.
func TestBareStarOriginRefused(t *testing.T) {
	for _, list := range [][]string{{"*"}, {"https://app.example.test", " * "}} {
		_, err := gateway.OriginMatcher(list)
		if err == nil || !strings.Contains(err.Error(), "every website") {
			t.Fatalf("OriginMatcher(%q) = %v, want a refusal naming the risk", list, err)
		}
		cfgErr := func() error {
			pol, perr := authz.ParsePolicy([]byte(testPolicy))
			if perr != nil {
				t.Fatal(perr)
			}
			_, err := gateway.New(gateway.Config{AllowedOrigins: list}, gateway.Deps{Verifier: noVerify{}, Policy: pol, Hub: newTestHub(t)})
			return err
		}()
		if cfgErr == nil || !strings.Contains(cfgErr.Error(), "every website") {
			t.Fatalf("gateway.New with %q = %v, want a refusal", list, cfgErr)
		}
	}
	allowed, err := gateway.OriginMatcher([]string{"https://*.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"https://app.example.test":   true,
		"https://evil.example":       false,
		"https://a.b.example.test":   false,
		"https://example.test":       false,
		"http://app.example.test":    false,
		"https://app.example.test:1": false,
	} {
		if got := allowed(origin); got != want {
			t.Errorf("allowed(%q) = %v, want %v", origin, got, want)
		}
	}
}

// noVerify is a Verifier for tests that never authenticate anyone.
type noVerify struct{}

func (noVerify) Verify(context.Context, string) (*authz.Principal, error) {
	return nil, &authz.AuthError{Reason: authz.ReasonMalformed}
}
func (noVerify) Ready() bool { return true }

// newTestHub is a Hub on the shared emulator source, closed with the test.
func newTestHub(t *testing.T) *subscriptions.Hub {
	t.Helper()
	h, err := subscriptions.NewHub(sharedSource(t), subscriptions.HubConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// TestFeedSharePerUserEndToEnd is the attack of one member opening every
// Feed its org may have: with 4 Feeds per org and a 0.5 share, a member's
// third distinct query is refused `limit_exceeded` naming
// feed_share_per_user, while a colleague still opens Feeds.
func TestFeedSharePerUserEndToEnd(t *testing.T) {
	e := newEnv(t, envOpts{hub: subscriptions.HubConfig{MaxFeedsPerTenant: 4, MaxFeedSharePerUser: 0.5, Linger: -1}})
	org := uniq("org")
	hog := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
	for i := range 2 { // at the edge
		hog.subscribe(map[string]any{"id": fmt.Sprint("s", i), "collection": "tasks", "where": []any{map[string]any{"field": "n", "op": "==", "value": i}}})
	}
	hog.send(map[string]any{"type": "subscribe", "id": "s2", "collection": "tasks", "where": []any{map[string]any{"field": "n", "op": "==", "value": 2}}})
	if m := hog.expect("error"); m.Code != wire.CodeLimitExceeded || !strings.Contains(m.Message, "feed_share_per_user") {
		t.Fatalf("past the share: %+v", m)
	}
	colleague := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
	colleague.subscribe(map[string]any{"id": "c", "collection": "tasks", "where": []any{map[string]any{"field": "n", "op": "==", "value": 2}}})
	if v := e.counter("firegate_rate_limited_total", map[string]string{"limit": "feed_share_per_user"}); v != 1 {
		t.Fatalf("rate_limited_total{feed_share_per_user} = %v, want 1", v)
	}
}

// TestFeedByteBudgetEndToEnd is the attack of an org holding the
// gateway's memory with large results: once its Feeds hold the byte
// budget (len(path) + encoded data per visible document), a new Feed is
// refused; one byte more of budget admits it.
func TestFeedByteBudgetEndToEnd(t *testing.T) {
	org := uniq("org")
	id := uniq("t")
	data := map[string]any{"org_id": org, "title": "a large title"}
	enc, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len("tasks/"+id) + len(enc))
	for _, tc := range []struct {
		budget int64
		admit  bool
	}{{size, false}, {size + 1, true}} {
		e := newEnv(t, envOpts{hub: subscriptions.HubConfig{MaxFeedBytesPerTenant: tc.budget}})
		e.put("tasks/"+id, data)
		cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
		if _, docs, _ := cl.subscribe(map[string]any{"id": "big", "collection": "tasks"}); len(docs) != 1 {
			t.Fatalf("first Feed: %d docs, want 1", len(docs))
		}
		cl.send(map[string]any{"type": "subscribe", "id": "more", "collection": "tasks", "where": []any{map[string]any{"field": "title", "op": "==", "value": "x"}}})
		m := cl.next()
		switch {
		case tc.admit && m.Type != "subscribed":
			t.Fatalf("budget %d (one byte above what the org holds): %s %+v, want subscribed", tc.budget, m.Type, m)
		case !tc.admit && (m.Type != "error" || m.Code != wire.CodeLimitExceeded || !strings.Contains(m.Message, "feed_bytes_per_org")):
			t.Fatalf("budget %d (the org holds exactly that): %s %+v, want limit_exceeded feed_bytes_per_org", tc.budget, m.Type, m)
		}
	}
}

// TestReadyzReadsNoDocumentPerProbe: readiness probes (every few seconds,
// from every kubelet) must not each cost a billed Firestore read; /readyz
// reports the health monitor's verdict instead. With the monitor off, any
// number of probes makes no read at all.
func TestReadyzReadsNoDocumentPerProbe(t *testing.T) {
	sharedSource(t) // points FIRESTORE_EMULATOR_HOST at the emulator
	src, err := subscriptions.NewFirestoreSource(context.Background(), subscriptions.FirestoreConfig{ProjectID: "firegate-gw-test", MaxFeeds: 10, HealthInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	e := buildEnv(t, src, envOpts{})
	for i := range 20 {
		resp, err := http.Get(e.admin.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("probe %d: %d", i, resp.StatusCode)
		}
	}
	if n := src.Pings(); n != 0 {
		t.Fatalf("20 readiness probes made %d Firestore reads, want 0", n)
	}
}
