package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/subscriptions"
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
