package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	clerkjwt "github.com/clerk/clerk-sdk-go/v2/jwt"
	jose "github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
)

func TestPrincipalFromClaims(t *testing.T) {
	tests := []struct {
		name   string
		claims string
		want   Principal
	}{
		{
			name:   "v1 with org",
			claims: `{"sub":"user_1","sid":"sess_1","azp":"https://app.example","iat":1700000000,"exp":1700000060,"org_id":"org_1","org_slug":"acme","org_role":"org:admin","org_permissions":["org:a:read","org:b:write"]}`,
			want: Principal{UserID: "user_1", SessionID: "sess_1", Azp: "https://app.example", OrgID: "org_1", OrgSlug: "acme", OrgRole: "org:admin",
				OrgPermissions: []string{"org:a:read", "org:b:write"}, IssuedAt: time.Unix(1700000000, 0).UTC(), ExpiresAt: time.Unix(1700000060, 0).UTC()},
		},
		{
			name:   "v1 without org",
			claims: `{"sub":"user_1","sid":"sess_1"}`,
			want:   Principal{UserID: "user_1", SessionID: "sess_1"},
		},
		{
			name:   "v2 admin",
			claims: `{"v":2,"sub":"user_2","sid":"sess_2","fea":"o:invoices,o:reports,u:profile","o":{"id":"org_2","slg":"beta","rol":"admin","per":"read,write,delete","fpm":"3,4,7"}}`,
			// invoices: 3 = 0b011 -> read, write; reports: 4 = 0b100 -> delete; u:profile is not an org feature.
			want: Principal{UserID: "user_2", SessionID: "sess_2", OrgID: "org_2", OrgSlug: "beta", OrgRole: "org:admin",
				OrgPermissions: []string{"org:invoices:read", "org:invoices:write", "org:reports:delete"}},
		},
		{
			name:   "v2 least significant bit is the first permission",
			claims: `{"v":2,"sub":"u","fea":"o:docs","o":{"id":"org_3","rol":"member","per":"read,write","fpm":"1"}}`,
			want:   Principal{UserID: "u", OrgID: "org_3", OrgRole: "org:member", OrgPermissions: []string{"org:docs:read"}},
		},
		{
			name:   "v2 mask wider than per is skipped",
			claims: `{"v":2,"sub":"u","fea":"o:docs,o:x","o":{"id":"org_3","rol":"member","per":"read","fpm":"2,1"}}`,
			want:   Principal{UserID: "u", OrgID: "org_3", OrgRole: "org:member", OrgPermissions: []string{"org:x:read"}},
		},
		{
			name:   "v2 scope with o among others",
			claims: `{"v":2,"sub":"u","fea":"uo:docs","o":{"id":"org_3","rol":"member","per":"read","fpm":"1"}}`,
			want:   Principal{UserID: "u", OrgID: "org_3", OrgRole: "org:member", OrgPermissions: []string{"org:docs:read"}},
		},
		{
			name:   "v2 without org falls back to v1 claims",
			claims: `{"v":2,"sub":"u","fea":"u:profile"}`,
			want:   Principal{UserID: "u"},
		},
		{
			name:   "v2 empty o.id",
			claims: `{"v":2,"sub":"u","o":{"id":"","rol":"admin"}}`,
			want:   Principal{UserID: "u"},
		},
		{
			name:   "v1 claims ignored under v2 org",
			claims: `{"v":2,"sub":"u","org_id":"org_old","o":{"id":"org_new","rol":"member"}}`,
			want:   Principal{UserID: "u", OrgID: "org_new", OrgRole: "org:member", OrgPermissions: []string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var claims map[string]any
			if err := json.Unmarshal([]byte(tt.claims), &claims); err != nil {
				t.Fatal(err)
			}
			got := PrincipalFromClaims(claims)
			if !reflect.DeepEqual(got.Claims, claims) {
				t.Fatalf("Claims = %v, want the input map", got.Claims)
			}
			got.Claims = nil
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("PrincipalFromClaims =\n%+v\nwant\n%+v", *got, tt.want)
			}
		})
	}
}

// TestPrincipalFromClaimsMatchesClerk signs v1 and v2 tokens, verifies them
// with clerk-sdk-go/v2/jwt and checks that PrincipalFromClaims decodes the
// org fields exactly as the SDK does.
func TestPrincipalFromClaimsMatchesClerk(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	jwk := &clerk.JSONWebKey{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}
	now := time.Now().Unix()
	cases := []map[string]any{
		{"org_id": "org_1", "org_slug": "acme", "org_role": "org:admin", "org_permissions": []any{"org:a:read"}},
		{"v": 2, "fea": "o:invoices,o:reports,u:profile", "o": map[string]any{"id": "org_2", "slg": "b", "rol": "admin", "per": "read,write,delete", "fpm": "3,4,7"}},
		{"v": 2, "fea": "o:a,o:b,o:c", "o": map[string]any{"id": "org_2", "rol": "member", "per": "x,y", "fpm": "1,8,3"}},
		{"v": 2, "fea": "o:a,bad,o:c", "o": map[string]any{"id": "org_2", "rol": "member", "per": "x,y", "fpm": "2,1,zz"}},
		{"v": 2, "fea": "", "o": map[string]any{"id": "org_2", "rol": "member", "per": "", "fpm": ""}},
		{"v": 2, "fea": "o:a", "o": map[string]any{"id": "org_2", "rol": "viewer", "per": "x", "fpm": "1"}},
		{"v": 2},
	}
	for i, extra := range cases {
		claims := map[string]any{"sub": "user_1", "sid": "sess_1", "iss": "https://clerk.example.com", "iat": now, "nbf": now - 1, "exp": now + 60}
		for k, v := range extra {
			claims[k] = v
		}
		token, err := josejwt.Signed(signer).Claims(claims).CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		sc, err := clerkjwt.Verify(context.Background(), &clerkjwt.VerifyParams{Token: token, JWK: jwk, Leeway: 5 * time.Second})
		if err != nil {
			t.Fatalf("case %d: clerk Verify: %v", i, err)
		}
		// Decode the payload as the gateway would (plain JSON).
		var raw map[string]any
		payload := strings.Split(token, ".")[1]
		b, err := base64.RawURLEncoding.DecodeString(payload)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		pr := PrincipalFromClaims(raw)
		wantPerms := sc.ActiveOrganizationPermissions
		if len(wantPerms) == 0 && len(pr.OrgPermissions) == 0 {
			wantPerms, pr.OrgPermissions = nil, nil
		}
		if pr.OrgID != sc.ActiveOrganizationID || pr.OrgSlug != sc.ActiveOrganizationSlug ||
			pr.OrgRole != sc.ActiveOrganizationRole || !reflect.DeepEqual(pr.OrgPermissions, wantPerms) ||
			pr.SessionID != sc.SessionID || pr.UserID != sc.Subject {
			t.Errorf("case %d: PrincipalFromClaims = org %q %q %q %v; clerk = %q %q %q %v", i,
				pr.OrgID, pr.OrgSlug, pr.OrgRole, pr.OrgPermissions,
				sc.ActiveOrganizationID, sc.ActiveOrganizationSlug, sc.ActiveOrganizationRole, sc.ActiveOrganizationPermissions)
		}
	}
}

func polClaims(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber() // Explain must cope with json.Number as well
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestExplain(t *testing.T) {
	p := polLoad(t)
	member := `{"sub":"user_m","sid":"s","org_id":"org_1","org_role":"org:member","org_permissions":[]}`
	admin := `{"sub":"user_a","sid":"s","v":2,"o":{"id":"org_1","rol":"admin"}}`
	noOrg := `{"sub":"user_n","sid":"s"}`
	pro := `{"sub":"user_p","sid":"s","org_id":"org_1","org_role":"org:member","public_metadata":{"plan":"pro","n":3}}`
	bt, bf := true, false
	tests := []struct {
		name     string
		claims   string
		coll     string
		doc      string // "" = nil
		decision string
		rule     string
		filter   *bool
		keyAttrs string
		reason   []string
	}{
		{"allowed no doc", member, "tasks", "", "allow", "tasks", nil, `auth.org_role="org:member"`, []string{`rule "tasks" allows it`, `org_id == "org_1"`}},
		{"member public doc", member, "tasks", `{"org_id":"org_1","visibility":"public"}`, "allow", "tasks", &bt, `auth.org_role="org:member"`, []string{"filter is true", "visible"}},
		{"member private doc", member, "tasks", `{"org_id":"org_1","visibility":"private"}`, "deny", "tasks", &bf, `auth.org_role="org:member"`, []string{"filter is false", "hidden"}},
		{"member missing field", member, "tasks", `{"org_id":"org_1"}`, "deny", "tasks", &bf, `auth.org_role="org:member"`, []string{"filter failed", "no such key"}},
		{"admin v2 private doc", admin, "tasks", `{"org_id":"org_1","visibility":"private"}`, "allow", "tasks", &bt, `auth.org_role="org:admin"`, []string{"visible"}},
		{"other org doc", member, "tasks", `{"org_id":"org_2","visibility":"public"}`, "deny", "tasks", &bt, `auth.org_role="org:member"`, []string{`org_id is "org_2"`, "never returns it"}},
		{"doc without scope field", member, "notes", `{"text":"x"}`, "deny", "notes", &bt, "", []string{"owner_id is missing"}},
		{"no filter", member, "notes", `{"owner_id":"user_m"}`, "allow", "notes", &bt, "", []string{"no filter"}},
		{"doc id", member, "projects/p1/tasks", `{"__id__":"pub-1","org_id":"org_1","project":"p1"}`, "allow", "projects/{project}/tasks", &bt, `auth.org_role="org:member";path.project="p1"`, []string{"visible"}},
		{"doc id hidden", member, "projects/p1/tasks", `{"__id__":"priv-1","org_id":"org_1","project":"p1"}`, "deny", "projects/{project}/tasks", &bf, `auth.org_role="org:member";path.project="p1"`, []string{"hidden"}},
		{"unknown collection", member, "payroll", "", "deny", "", nil, "", []string{"no rule matches", "forbidden"}},
		{"allow false", member, "invoices", "", "deny", "invoices", nil, "", []string{"allow is false"}},
		{"allow error", member, "reports", "", "deny", "reports", nil, "", []string{"allow failed", "no such key"}},
		{"custom claim json.Number", pro, "reports", `{"org_id":"org_1","min_plan":"pro"}`, "allow", "reports", &bt, `auth.claims.public_metadata.plan="pro"`, []string{"visible"}},
		{"no org", noOrg, "tasks", "", "deny", "tasks", nil, "", []string{"no active organization", "org-scoped"}},
		{"bad path", member, "tasks/t1", "", "deny", "", nil, "", []string{"odd number", "bad_request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc map[string]any
			if tt.doc != "" {
				doc = polClaims(t, tt.doc)
			}
			ex := p.Explain(polClaims(t, tt.claims), tt.coll, doc)
			if ex.Collection != tt.coll || ex.Decision != tt.decision || ex.Rule != tt.rule || ex.KeyAttrs != tt.keyAttrs {
				t.Fatalf("Explain = %+v, want decision %s rule %q keyAttrs %q", ex, tt.decision, tt.rule, tt.keyAttrs)
			}
			if (ex.FilterResult == nil) != (tt.filter == nil) || (ex.FilterResult != nil && *ex.FilterResult != *tt.filter) {
				t.Fatalf("FilterResult = %v, want %v (%+v)", ex.FilterResult, tt.filter, ex)
			}
			for _, r := range tt.reason {
				if !strings.Contains(ex.Reason, r) {
					t.Errorf("Reason %q does not contain %q", ex.Reason, r)
				}
			}
		})
	}
}
