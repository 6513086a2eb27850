package devmode

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/internal/clock"
)

// fixedNow is the clock of token tests.
var fixedNow = time.Date(2026, time.March, 3, 12, 0, 0, 0, time.UTC)

func verifierFor(t *testing.T, iss *authz.DevIssuer, now time.Time) *authz.Verifier {
	t.Helper()
	v, err := authz.NewVerifier(authz.VerifierConfig{
		PEMKey:          iss.PublicKeyPEM(),
		Issuer:          iss.Issuer(),
		AuthorizedParty: func(azp string) bool { return azp == "http://127.0.0.1:8080" },
		Clock:           clock.NowFunc(func() time.Time { return now }),
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenEndpoint(t *testing.T) {
	h, _ := testHandler(t)
	h.now = func() time.Time { return fixedNow.Add(300 * time.Millisecond) }
	v := verifierFor(t, testDevIssuer(t), fixedNow)
	perms64 := make([]string, 64)
	for i := range perms64 {
		perms64[i] = "org:f:p" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
	}

	tests := []struct {
		name      string
		query     string
		wantOrg   string
		wantSlug  string
		wantRole  string
		wantPerms []string
		wantTTL   time.Duration
	}{
		{"admin default role and permissions", "user=user_alice&org=org_acme", "org_acme", "acme", "org:admin", []string{"org:invoices:read", "org:invoices:write"}, time.Minute},
		{"member default", "user=user_bob&org=org_acme", "org_acme", "acme", "org:member", nil, time.Minute},
		{"second membership", "user=user_dave&org=org_globex", "org_globex", "globex", "org:member", []string{"org:invoices:read"}, time.Minute},
		{"demo user outside the org", "user=user_alice&org=org_globex", "org_globex", "globex", "org:member", nil, time.Minute},
		{"unknown user and org", "user=user_zed&org=org_initech", "org_initech", "initech", "org:member", nil, time.Minute},
		{"no org", "user=user_erin", "", "", "", nil, time.Minute},
		{"demo member without org param", "user=user_alice", "", "", "", nil, time.Minute},
		{"role override", "user=user_alice&org=org_acme&role=org:member", "org_acme", "acme", "org:member", []string{"org:invoices:read", "org:invoices:write"}, time.Minute},
		{"custom role", "user=user_bob&org=org_acme&role=org:billing_manager", "org_acme", "acme", "org:billing_manager", nil, time.Minute},
		{"permissions override", "user=user_bob&org=org_acme&permissions=org:invoices:read,+org:x:y+,,", "org_acme", "acme", "org:member", []string{"org:invoices:read", "org:x:y"}, time.Minute},
		{"empty permissions drop the defaults", "user=user_alice&org=org_acme&permissions=", "org_acme", "acme", "org:admin", nil, time.Minute},
		{"64 permissions", "user=u&org=o&permissions=" + strings.Join(perms64, ","), "o", "o", "org:member", perms64, time.Minute},
		{"ttl min", "user=u&ttl=1s", "", "", "", nil, time.Second},
		{"ttl max", "user=u&ttl=24h", "", "", "", nil, 24 * time.Hour},
		{"ttl minutes", "user=u&ttl=5m", "", "", "", nil, 5 * time.Minute},
		{"v2 token", "user=user_alice&org=org_acme&v2=1", "org_acme", "acme", "org:admin", []string{"org:invoices:read", "org:invoices:write"}, time.Minute},
		{"v2 false", "user=user_alice&org=org_acme&v2=false", "org_acme", "acme", "org:admin", []string{"org:invoices:read", "org:invoices:write"}, time.Minute},
		{"128-byte user", "user=" + strings.Repeat("u", 128), "", "", "", nil, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := do(t, h, http.MethodGet, "/dev/token?"+tt.query, "")
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body.String())
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			var res tokenResponse
			decode(t, w, &res)
			q, _ := url.ParseQuery(tt.query)
			wantExp := fixedNow.Add(tt.wantTTL)
			if res.ExpiresAt != wantExp.Format(time.RFC3339) {
				t.Errorf("expires_at = %s, want %s", res.ExpiresAt, wantExp.Format(time.RFC3339))
			}
			if res.UserID != q.Get("user") || res.OrgID != tt.wantOrg || res.OrgRole != tt.wantRole {
				t.Errorf("response user/org/role = %q/%q/%q, want %q/%q/%q", res.UserID, res.OrgID, res.OrgRole, q.Get("user"), tt.wantOrg, tt.wantRole)
			}
			if res.SessionID != h.sessionID(res.UserID) || !strings.HasPrefix(res.SessionID, "sess_dev_") {
				t.Errorf("session_id = %q, want %q", res.SessionID, h.sessionID(res.UserID))
			}
			// The token verifies through the production verifier and says
			// what the response says.
			p, err := v.Verify(context.Background(), res.Token)
			if err != nil {
				t.Fatalf("minted token does not verify: %v", err)
			}
			if p.UserID != res.UserID || p.OrgID != tt.wantOrg || p.OrgSlug != tt.wantSlug || p.OrgRole != tt.wantRole || p.SessionID != res.SessionID {
				t.Errorf("principal = %+v", p)
			}
			if !slices.Equal(p.OrgPermissions, tt.wantPerms) && !(len(p.OrgPermissions) == 0 && len(tt.wantPerms) == 0) {
				t.Errorf("permissions = %v, want %v", p.OrgPermissions, tt.wantPerms)
			}
			if !p.ExpiresAt.Equal(wantExp) || !p.IssuedAt.Equal(fixedNow) {
				t.Errorf("iat/exp = %s/%s, want %s/%s", p.IssuedAt, p.ExpiresAt, fixedNow, wantExp)
			}
			if p.Azp != "http://127.0.0.1:8080" {
				t.Errorf("azp = %q", p.Azp)
			}
			if isV2 := p.Claims["v"] != nil; isV2 != res.V2 || (res.V2 != (q.Get("v2") == "1")) {
				t.Errorf("v2 = %v (claim v %v), query %q", res.V2, p.Claims["v"], q.Get("v2"))
			}
		})
	}
}

// TestTokenSessionID checks that a user's tokens share one session id (an
// org switch refreshes the same session), distinct per user and per run.
func TestTokenSessionID(t *testing.T) {
	h, _ := testHandler(t)
	sid := func(h *DevHandler, query string) string {
		t.Helper()
		w := do(t, h, http.MethodGet, "/dev/token?"+query, "")
		var res tokenResponse
		decode(t, w, &res)
		return res.SessionID
	}
	a1 := sid(h, "user=user_dave&org=org_acme")
	a2 := sid(h, "user=user_dave&org=org_globex&ttl=5m")
	b := sid(h, "user=user_bob&org=org_acme")
	h2, _ := testHandler(t)
	other := sid(h2, "user=user_dave&org=org_acme")
	if a1 != a2 || a1 == b || a1 == other || len(a1) != len("sess_dev_")+24 {
		t.Errorf("session ids: same user %q %q, other user %q, other run %q", a1, a2, b, other)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	h, _ := testHandler(t)
	perms65 := strings.TrimSuffix(strings.Repeat("p,", 65), ",")
	tests := []struct {
		name, query, wantErr string
	}{
		{"missing user", "org=org_acme", "user is required"},
		{"empty user", "user=", "user is required"},
		{"user with space", "user=a+b", "user:"},
		{"user with control", "user=a%01b", "user:"},
		{"129-byte user", "user=" + strings.Repeat("u", 129), "user:"},
		{"invalid utf-8 user", "user=%ff", "user:"},
		{"129-byte org", "user=u&org=" + strings.Repeat("o", 129), "org:"},
		{"role without org", "user=user_alice&role=org:admin", "role needs an org"},
		{"role without prefix", "user=u&org=o&role=admin", "role must read org:"},
		{"role bad chars", "user=u&org=o&role=org:a%20b", "role"},
		{"role too long", "user=u&org=o&role=org:" + strings.Repeat("r", 61), "role must read"},
		{"permissions without org", "user=u&permissions=org:a:b", "permissions need an org"},
		{"65 permissions", "user=u&org=o&permissions=" + perms65, "at most 64"},
		{"permission too long", "user=u&org=o&permissions=" + strings.Repeat("p", 129), "longer than"},
		{"v2 permission shape", "user=u&org=o&v2=1&permissions=invoices", "org:<feature>:<permission>"},
		{"ttl not a duration", "user=u&ttl=abc", "not a Go duration"},
		{"ttl bare number", "user=u&ttl=60", "not a Go duration"},
		{"ttl zero", "user=u&ttl=0s", "out of range"},
		{"ttl negative", "user=u&ttl=-5s", "out of range"},
		{"ttl under min", "user=u&ttl=999ms", "out of range"},
		{"ttl over max", "user=u&ttl=24h0m0.000000001s", "out of range"},
		{"v2 not bool", "user=u&v2=maybe", "not a boolean"},
		{"unknown parameter", "user=u&perms=x", "unknown parameter"},
		{"repeated parameter", "user=u&user=v", "given 2 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := do(t, h, http.MethodGet, "/dev/token?"+tt.query, "")
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", w.Code, w.Body.String())
			}
			if msg := errorOf(t, w); !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error %q does not mention %q", msg, tt.wantErr)
			}
		})
	}
}

func TestTokenEndpointMethod(t *testing.T) {
	h, _ := testHandler(t)
	w := do(t, h, http.MethodPost, "/dev/token?user=u", "")
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /dev/token: %d Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

// FuzzParseTokenQuery checks that any query either parses into a request
// within the documented bounds, or is refused with an error; never a panic.
func FuzzParseTokenQuery(f *testing.F) {
	for _, s := range []string{
		"user=user_alice&org=org_acme",
		"user=u&org=o&role=org:admin&permissions=org:a:b,org:c:d&ttl=5m&v2=1",
		"user=u&ttl=24h", "user=u&ttl=-1s", "user=u&ttl=1e9h", "user=%ff", "user=u&permissions=,,,",
		"user=u&role=org:", "user=u&user=v", "", "=&=", "user=u&org=o&v2=t&permissions=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := parseTokenQuery(q)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if checkID(req.User) != nil || (req.Org != "" && checkID(req.Org) != nil) {
			t.Fatalf("accepted bad ids %q %q", req.User, req.Org)
		}
		if req.TTL < MinTokenTTL || req.TTL > MaxTokenTTL {
			t.Fatalf("ttl %s out of range", req.TTL)
		}
		if req.Org == "" && (req.Role != "" || len(req.Permissions) > 0) {
			t.Fatalf("role/permissions without org: %+v", req)
		}
		if len(req.Permissions) > maxPermissions {
			t.Fatalf("%d permissions", len(req.Permissions))
		}
		o := req.resolve()
		if o.OrgID != "" && !strings.HasPrefix(o.OrgRole, "org:") {
			t.Fatalf("resolved role %q", o.OrgRole)
		}
	})
}
