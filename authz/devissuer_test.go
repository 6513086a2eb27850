package authz

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
)

// decodeToken splits a compact token into its decoded header and claims.
func decodeToken(t *testing.T, tok string) (header, claims map[string]any, sig []byte) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	dec := func(s string, v any) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	dec(parts[0], &header)
	dec(parts[1], &claims)
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	return header, claims, sig
}

func TestNewDevIssuer(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", true},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080", true},
		{"https://clerk.example.com", "https://clerk.example.com", true},
		{"", "", false},
		{"127.0.0.1:8080", "", false},
		{"ftp://x", "", false},
	} {
		if !tt.ok {
			if _, err := NewDevIssuer(tt.in); err == nil {
				t.Errorf("NewDevIssuer(%q) accepted", tt.in)
			}
			continue
		}
		// Build with a cached key for speed; one real NewDevIssuer below.
		d, err := newDevIssuerWithKey(strings.TrimSuffix(tt.in, "/"), testKey(t, 0), "k")
		if err != nil || d.Issuer() != tt.want {
			t.Errorf("issuer %q: %v %q", tt.in, err, d.Issuer())
		}
	}

	d, err := NewDevIssuer("http://127.0.0.1:8080/")
	if err != nil {
		t.Fatal(err)
	}
	if d.Issuer() != "http://127.0.0.1:8080" {
		t.Fatalf("Issuer() = %q", d.Issuer())
	}
	if d.key.N.BitLen() != 2048 {
		t.Fatalf("key of %d bits", d.key.N.BitLen())
	}
	if !strings.HasPrefix(d.KeyID(), "ins_dev_") || len(d.KeyID()) != len("ins_dev_")+16 {
		t.Fatalf("kid %q", d.KeyID())
	}

	// The JWKS decodes, with the SDK's own type, to the issuer's public key.
	var set clerk.JSONWebKeySet
	if err := json.Unmarshal(d.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	k := set.Keys[0]
	pub, ok := k.Key.(*rsa.PublicKey)
	if !ok || !pub.Equal(&d.key.PublicKey) || k.KeyID != d.KeyID() || k.Algorithm != "RS256" || k.Use != "sig" {
		t.Fatalf("JWKS key %+v", k)
	}
	var raw struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(d.JWKS(), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Keys[0]["kty"] != "RSA" || raw.Keys[0]["e"] != "AQAB" {
		t.Fatalf("JWKS key fields %v", raw.Keys[0])
	}

	// The PEM is the same key.
	block, _ := pem.Decode([]byte(d.PublicKeyPEM()))
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("PEM %q", d.PublicKeyPEM())
	}
	pemPub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil || !d.key.PublicKey.Equal(pemPub) {
		t.Fatalf("PEM key differs: %v", err)
	}

	// Two issuers never share a key or kid.
	d2, err := NewDevIssuer("http://127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	if d2.KeyID() == d.KeyID() || d2.key.Equal(d.key) {
		t.Fatal("two dev issuers share a key")
	}
}

func TestJWKSHandler(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	srv := httptest.NewServer(d.JWKSHandler())
	defer srv.Close()
	for _, tt := range []struct {
		method     string
		wantStatus int
		wantBody   string
	}{
		{http.MethodGet, 200, string(d.JWKS())},
		{http.MethodHead, 200, ""},
		{http.MethodPost, 405, "method not allowed\n"},
		{http.MethodDelete, 405, "method not allowed\n"},
	} {
		t.Run(tt.method, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+"/.well-known/jwks.json", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if tt.wantStatus == 200 && resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if tt.wantStatus == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Fatalf("Allow %q", resp.Header.Get("Allow"))
			}
		})
	}
	// Served through the handler, the JWKS verifies the issuer's tokens.
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL + "/.well-known/jwks.json", Issuer: d.Issuer(), AllowMissingAzp: true})
	if _, err := v.Verify(context.Background(), mint(t, d, MintOptions{UserID: "user_1"})); err != nil {
		t.Fatal(err)
	}
}

func TestMintDefaults(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	before := time.Now().Truncate(time.Second)
	tok := mint(t, d, MintOptions{UserID: "user_1"})
	after := time.Now()
	h, c, sig := decodeToken(t, tok)
	if h["alg"] != "RS256" || h["kid"] != d.KeyID() || h["typ"] != "JWT" {
		t.Fatalf("header %v", h)
	}
	iat := time.Unix(int64(c["iat"].(float64)), 0)
	if iat.Before(before) || iat.After(after) {
		t.Fatalf("iat %v not now", iat)
	}
	if c["exp"].(float64)-c["iat"].(float64) != 60 || c["iat"].(float64)-c["nbf"].(float64) != 10 {
		t.Fatalf("exp/nbf %v", c)
	}
	if c["iss"] != testIssuerURL || c["sub"] != "user_1" {
		t.Fatalf("claims %v", c)
	}
	if sid, _ := c["sid"].(string); !strings.HasPrefix(sid, "sess_") || len(sid) < 20 {
		t.Fatalf("sid %q", c["sid"])
	}
	for _, k := range []string{"azp", "org_id", "org_role", "org_slug", "org_permissions", "v", "o", "fea"} {
		if _, ok := c[k]; ok {
			t.Errorf("unexpected claim %q", k)
		}
	}
	// The signature is RS256 over header.payload with the issuer's key.
	digest := sha256.Sum256([]byte(tok[:strings.LastIndexByte(tok, '.')]))
	if err := rsa.VerifyPKCS1v15(&d.key.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatal(err)
	}
	// Random session ids differ.
	_, c2, _ := decodeToken(t, mint(t, d, MintOptions{UserID: "user_1"}))
	if c2["sid"] == c["sid"] {
		t.Fatal("two tokens share a random sid")
	}
}

func TestMintClaims(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	iat := t0
	tests := []struct {
		name string
		opts MintOptions
		want map[string]any // claims to compare (JSON-decoded values); nil value: absent
	}{
		{"explicit times and session", MintOptions{SessionID: "sess_x", IssuedAt: iat, TTL: 90 * time.Second, NotBefore: iat.Add(5 * time.Second), Azp: appOrigin},
			map[string]any{"sid": "sess_x", "iat": float64(iat.Unix()), "exp": float64(iat.Unix() + 90), "nbf": float64(iat.Unix() + 5), "azp": appOrigin}},
		{"negative TTL", MintOptions{IssuedAt: iat, TTL: -time.Minute}, map[string]any{"exp": float64(iat.Unix() - 60)}},
		{"v1 org", MintOptions{IssuedAt: iat, OrgID: "org_1", OrgSlug: "acme", OrgRole: "org:admin", OrgPermissions: []string{"org:a:read"}},
			map[string]any{"org_id": "org_1", "org_slug": "acme", "org_role": "org:admin", "org_permissions": []any{"org:a:read"}, "v": nil, "o": nil}},
		{"v1 org without permissions", MintOptions{IssuedAt: iat, OrgID: "org_1", OrgRole: "org:member"},
			map[string]any{"org_permissions": []any{}}},
		{"v2 admin", MintOptions{IssuedAt: iat, V2: true, OrgID: "org_1", OrgSlug: "acme", OrgRole: "org:admin",
			OrgPermissions: []string{"org:invoices:read", "org:invoices:write"}},
			map[string]any{"v": float64(2), "fea": "o:invoices", "org_id": nil,
				"o": map[string]any{"id": "org_1", "slg": "acme", "rol": "admin", "per": "read,write", "fpm": "3"}}},
		{"v2 two features sharing permission names", MintOptions{IssuedAt: iat, V2: true, OrgID: "org_1", OrgRole: "org:member",
			OrgPermissions: []string{"org:tasks:write", "org:invoices:read", "org:tasks:read"}},
			map[string]any{"fea": "o:tasks,o:invoices",
				"o": map[string]any{"id": "org_1", "slg": "", "rol": "member", "per": "write,read", "fpm": "3,2"}}},
		{"v2 without permissions", MintOptions{IssuedAt: iat, V2: true, OrgID: "org_1", OrgRole: "org:member"},
			map[string]any{"fea": nil, "o": map[string]any{"id": "org_1", "slg": "", "rol": "member", "per": "", "fpm": ""}}},
		{"v2 without org", MintOptions{IssuedAt: iat, V2: true}, map[string]any{"v": float64(2), "o": nil, "fea": nil}},
		{"extra claims", MintOptions{IssuedAt: iat, Extra: map[string]any{"public_metadata": map[string]any{"plan": "pro"}}},
			map[string]any{"public_metadata": map[string]any{"plan": "pro"}}},
		{"extra overrides and removes", MintOptions{IssuedAt: iat, Extra: map[string]any{"iss": "https://x.example", "exp": nil, "sid": nil}},
			map[string]any{"iss": "https://x.example", "exp": nil, "sid": nil, "sub": "user_1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.UserID = "user_1"
			_, c, _ := decodeToken(t, mint(t, d, o))
			for k, want := range tt.want {
				got, ok := c[k]
				if want == nil {
					if ok {
						t.Errorf("claim %q = %#v, want absent", k, got)
					}
					continue
				}
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				if string(gb) != string(wb) {
					t.Errorf("claim %q = %s, want %s", k, gb, wb)
				}
			}
		})
	}
}

func TestMintHeaderOverrides(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	for _, tt := range []struct {
		name    string
		opts    MintOptions
		wantAlg string
		wantKid string
		sigLen  int
	}{
		{"kid", MintOptions{KeyID: "ins_other"}, "RS256", "ins_other", 256},
		{"none", MintOptions{Alg: "none"}, "none", "ins_test_0", 0},
		{"HS256", MintOptions{Alg: "HS256"}, "HS256", "ins_test_0", 32},
		{"HS512", MintOptions{Alg: "HS512"}, "HS512", "ins_test_0", 64},
		{"RS384 header only", MintOptions{Alg: "RS384"}, "RS384", "ins_test_0", 256},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.UserID = "user_1"
			h, _, sig := decodeToken(t, mint(t, d, o))
			if h["alg"] != tt.wantAlg || h["kid"] != tt.wantKid || len(sig) != tt.sigLen {
				t.Fatalf("header %v, signature of %d bytes", h, len(sig))
			}
		})
	}
	// MintWithKey signs with the given key under the issuer's kid.
	other := testKey(t, 1)
	tok, err := d.MintWithKey(other, MintOptions{UserID: "user_1"})
	if err != nil {
		t.Fatal(err)
	}
	h, _, sig := decodeToken(t, tok)
	digest := sha256.Sum256([]byte(tok[:strings.LastIndexByte(tok, '.')]))
	if h["kid"] != d.KeyID() || rsa.VerifyPKCS1v15(&other.PublicKey, crypto.SHA256, digest[:], sig) != nil {
		t.Fatal("MintWithKey did not sign with the given key under the issuer's kid")
	}
}

func TestMintErrors(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	for _, tt := range []struct {
		name string
		opts MintOptions
		want string
	}{
		{"no user", MintOptions{}, "UserID"},
		{"invalid UTF-8", MintOptions{UserID: "u", OrgID: "org_1", OrgRole: "org:\xfc"}, "UTF-8"},
		{"v2 role without org: prefix", MintOptions{UserID: "u", V2: true, OrgID: "org_1", OrgRole: "admin"}, "org role"},
		{"v2 empty role", MintOptions{UserID: "u", V2: true, OrgID: "org_1"}, "org role"},
		{"v2 permission without feature", MintOptions{UserID: "u", V2: true, OrgID: "org_1", OrgRole: "org:admin", OrgPermissions: []string{"org:read"}}, "permission"},
		{"v2 permission of another scope", MintOptions{UserID: "u", V2: true, OrgID: "org_1", OrgRole: "org:admin", OrgPermissions: []string{"user:a:read"}}, "permission"},
		{"v2 permission with a comma", MintOptions{UserID: "u", V2: true, OrgID: "org_1", OrgRole: "org:admin", OrgPermissions: []string{"org:a:read,write"}}, "permission"},
		{"v2 permission with 4 parts", MintOptions{UserID: "u", V2: true, OrgID: "org_1", OrgRole: "org:admin", OrgPermissions: []string{"org:a:b:c"}}, "permission"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Mint(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Mint = %v, want an error about %s", err, tt.want)
			}
		})
	}
	if _, err := d.MintWithKey(nil, MintOptions{UserID: "u"}); err == nil {
		t.Fatal("MintWithKey(nil) accepted")
	}
	// The v2 bit mask holds 63 distinct permission names, not 64.
	perms := make([]string, 64)
	for i := range perms {
		perms[i] = "org:f:p" + itoa(int64(i))
	}
	if _, err := d.Mint(MintOptions{UserID: "u", V2: true, OrgID: "org_1", OrgRole: "org:admin", OrgPermissions: perms[:63]}); err != nil {
		t.Fatalf("63 permissions: %v", err)
	}
	if _, err := d.Mint(MintOptions{UserID: "u", V2: true, OrgID: "org_1", OrgRole: "org:admin", OrgPermissions: perms}); err == nil {
		t.Fatal("64 distinct permission names accepted")
	}
}

// FuzzMintV2RoundTrip checks that any permission set Mint encodes in the v2
// format decodes, through the Verifier and the SDK, to the same set as v1.
func FuzzMintV2RoundTrip(f *testing.F) {
	d := testIssuer(f, testIssuerURL)
	clock := newFakeClock(t0)
	v := newTestVerifier(f, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock})
	f.Add("admin", "org:invoices:read org:invoices:write")
	f.Add("member", "org:tasks:read org:invoices:read org:tasks:write org:tasks:read")
	f.Add("x", "")
	f.Add("a:b", "org:é:ü")
	f.Add("", "org::read")
	f.Fuzz(func(t *testing.T, role, permList string) {
		perms := strings.Fields(permList)
		if len(perms) > 70 {
			perms = perms[:70]
		}
		o := MintOptions{UserID: "user_1", IssuedAt: t0, OrgID: "org_1", OrgRole: "org:" + role, OrgPermissions: perms, V2: true}
		tok, err := d.Mint(o)
		if err != nil {
			return // not representable in v2
		}
		p, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("Verify of a minted v2 token: %v", err)
		}
		if p.OrgRole != o.OrgRole {
			t.Fatalf("role %q, want %q", p.OrgRole, o.OrgRole)
		}
		got := slices.Compact(slices.Sorted(slices.Values(p.OrgPermissions)))
		want := slices.Compact(slices.Sorted(slices.Values(perms)))
		if !slices.Equal(got, want) {
			t.Fatalf("permissions %q, want %q", got, want)
		}
	})
}
