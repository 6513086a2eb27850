package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/clock"
)

// Test fixtures. RSA key generation is slow, so keys are made once.

const testIssuerURL = "http://127.0.0.1:8080"

var (
	testKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
		keys := make([]*rsa.PrivateKey, 2)
		for i := range keys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				return nil, err
			}
			keys[i] = k
		}
		return keys, nil
	})
	t0 = time.Unix(1_800_000_000, 0).UTC()
)

func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keys, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	return keys[i]
}

// testIssuer returns a DevIssuer for iss signing with test key 0 (kid
// "ins_test_0").
func testIssuer(t testing.TB, iss string) *DevIssuer {
	t.Helper()
	return testIssuerWithKey(t, iss, 0, "ins_test_0")
}

func testIssuerWithKey(t testing.TB, iss string, key int, kid string) *DevIssuer {
	t.Helper()
	d, err := newDevIssuerWithKey(iss, testKey(t, key), kid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// jwksOf merges the JWKS of issuers into one document.
func jwksOf(t testing.TB, issuers ...*DevIssuer) []byte {
	t.Helper()
	var keys []json.RawMessage
	for _, d := range issuers {
		var doc struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(d.JWKS(), &doc); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, doc.Keys...)
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type fakeClock = clock.Fake

func newFakeClock(t time.Time) *fakeClock { return clock.NewFake(t) }

// jwksServer serves a swappable JWKS document and counts requests.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int64
	body   atomic.Pointer[[]byte]
	status atomic.Int32                            // 0: 200
	block  atomic.Pointer[chan struct{}]           // non-nil: requests wait until it is closed
	check  atomic.Pointer[func(*http.Request) int] // optional request check: non-zero status refuses
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if ch := s.block.Load(); ch != nil {
			select {
			case <-*ch:
			case <-r.Context().Done():
				return
			}
		}
		if f := s.check.Load(); f != nil {
			if code := (*f)(r); code != 0 {
				// Shaped like a Clerk Backend API error.
				w.WriteHeader(code)
				_, _ = w.Write([]byte(`{"errors":[{"code":"refused","message":"refused by the test server"}]}`))
				return
			}
		}
		if code := s.status.Load(); code != 0 {
			w.WriteHeader(int(code))
			_, _ = w.Write([]byte(`{"errors":[]}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte) { s.body.Store(&body) }

func newTestVerifier(t testing.TB, cfg VerifierConfig) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func mint(t testing.TB, d *DevIssuer, o MintOptions) string {
	t.Helper()
	tok, err := d.Mint(o)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

// signRaw signs an arbitrary header and payload with d's key (RS256).
func signRaw(t testing.TB, d *DevIssuer, header, payload string) string {
	t.Helper()
	tok, err := signCompact(d.key, "RS256", []byte(header), []byte(payload), d.pem)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// wantReason asserts err is an *AuthError with reason want that does not
// reveal the token.
func wantReason(t testing.TB, err error, want, token string) {
	t.Helper()
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T), want *AuthError %s", err, err, want)
	}
	if ae.Reason != want {
		t.Fatalf("reason %q (%v), want %q", ae.Reason, err, want)
	}
	if ReasonOf(err) != want {
		t.Fatalf("ReasonOf = %q, want %q", ReasonOf(err), want)
	}
	if len(token) > 20 && strings.Contains(err.Error(), token) {
		t.Fatalf("error reveals the token: %v", err)
	}
	// No segment of a real token (header, payload, signature) either.
	for _, seg := range strings.Split(token, ".") {
		if len(seg) > 20 && strings.Contains(err.Error(), seg) {
			t.Fatalf("error reveals a token segment: %v", err)
		}
	}
}

const (
	appOrigin  = "https://app.example.com"
	evilOrigin = "https://evil.example.com"
)

func TestVerifyReasons(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	srv := newJWKSServer(t, d.JWKS())
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{
		JWKSURL:         srv.URL,
		Issuer:          d.Issuer(),
		Clock:           clock,
		AuthorizedParty: func(azp string) bool { return azp == appOrigin },
	})
	base := MintOptions{UserID: "user_1", Azp: appOrigin, IssuedAt: t0}
	with := func(f func(*MintOptions)) string {
		o := base
		f(&o)
		return mint(t, d, o)
	}
	good := mint(t, d, base)
	parts := strings.Split(good, ".")
	goodHeader := `{"alg":"RS256","kid":"ins_test_0","typ":"JWT"}`
	goodPayload := `{"azp":"` + appOrigin + `","exp":` + itoa(t0.Unix()+60) + `,"iat":` + itoa(t0.Unix()) +
		`,"iss":"` + testIssuerURL + `","sid":"sess_1","sub":"user_1"}`
	other := mint(t, d, MintOptions{UserID: "user_2", Azp: appOrigin, IssuedAt: t0})

	tests := []struct {
		name  string
		token string
		want  string // "" means accepted
	}{
		{"valid", good, ""},
		{"valid raw", signRaw(t, d, goodHeader, goodPayload), ""},
		{"empty", "", ReasonMissing},
		{"one segment", "abc", ReasonMalformed},
		{"two segments", "abc.def", ReasonMalformed},
		{"four segments", good + ".x", ReasonMalformed},
		{"five segments (JWE)", "a.b.c.d.e", ReasonMalformed},
		{"padding", parts[0] + "=." + parts[1] + "." + parts[2], ReasonMalformed},
		{"whitespace", " " + good, ReasonMalformed},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, ReasonMalformed},
		{"empty header", "." + parts[1] + "." + parts[2], ReasonMalformed},
		{"header not base64", "A." + parts[1] + "." + parts[2], ReasonMalformed},
		{"header not JSON", b64("not json") + "." + parts[1] + "." + parts[2], ReasonMalformed},
		{"header JSON array", b64(`["RS256"]`) + "." + parts[1] + "." + parts[2], ReasonMalformed},
		{"kid not a string", b64(`{"alg":"RS256","kid":7}`) + "." + parts[1] + "." + parts[2], ReasonMalformed},
		{"crit header", signRaw(t, d, `{"alg":"RS256","kid":"ins_test_0","crit":["exp"],"exp":1}`, goodPayload), ReasonMalformed},
		{"payload not base64", parts[0] + ".A." + parts[2], ReasonMalformed},
		{"payload not JSON", signRaw(t, d, goodHeader, "not json"), ReasonMalformed},
		{"payload JSON array", signRaw(t, d, goodHeader, `[1,2]`), ReasonMalformed},
		{"no exp", with(func(o *MintOptions) { o.Extra = map[string]any{"exp": nil} }), ReasonMalformed},
		{"exp null", signRaw(t, d, goodHeader, `{"azp":"`+appOrigin+`","exp":null,"iss":"`+testIssuerURL+`","sub":"user_1"}`), ReasonMalformed},
		{"no sub", with(func(o *MintOptions) { o.Extra = map[string]any{"sub": nil} }), ReasonMalformed},
		{"no sid (template token)", with(func(o *MintOptions) { o.Extra = map[string]any{"sid": nil} }), ReasonMalformed},
		{"empty sid", with(func(o *MintOptions) { o.Extra = map[string]any{"sid": ""} }), ReasonMalformed},
		{"no iat", with(func(o *MintOptions) { o.Extra = map[string]any{"iat": nil} }), ReasonMalformed},
		{"exp before iat", with(func(o *MintOptions) {
			o.Extra = map[string]any{"iat": t0.Unix() + 4, "exp": t0.Unix() + 2, "nbf": t0.Unix() - 10} // both within the leeway
		}), ReasonMalformed},
		{"lifetime at the bound", with(func(o *MintOptions) { o.TTL = DefaultMaxTokenLifetime }), ""},
		{"lifetime past the bound", with(func(o *MintOptions) { o.TTL = DefaultMaxTokenLifetime + time.Second }), ReasonMalformed},
		{"empty sub", with(func(o *MintOptions) { o.Extra = map[string]any{"sub": ""} }), ReasonMalformed},
		{"exp not a number", with(func(o *MintOptions) { o.Extra = map[string]any{"exp": "soon"} }), ReasonMalformed},
		{"org_permissions not a list", with(func(o *MintOptions) { o.Extra = map[string]any{"org_permissions": 5} }), ReasonMalformed},
		{"v2 o not an object", with(func(o *MintOptions) { o.Extra = map[string]any{"v": 2, "o": "org_1"} }), ReasonMalformed},
		{"alg none", with(func(o *MintOptions) { o.Alg = "none" }), ReasonBadAlg},
		{"alg HS256 keyed with the public key", with(func(o *MintOptions) { o.Alg = "HS256" }), ReasonBadAlg},
		{"alg RS384 mismatches key", with(func(o *MintOptions) { o.Alg = "RS384" }), ReasonBadAlg},
		{"alg ES256 mismatches key", with(func(o *MintOptions) { o.Alg = "ES256" }), ReasonBadAlg},
		{"alg missing", signRaw(t, d, `{"kid":"ins_test_0"}`, goodPayload), ReasonBadAlg},
		{"alg unknown and long", with(func(o *MintOptions) { o.Alg = strings.Repeat("X", 500) }), ReasonBadAlg},
		{"unknown kid", with(func(o *MintOptions) { o.KeyID = "ins_forged" }), ReasonUnknownKID},
		{"no kid", signRaw(t, d, `{"alg":"RS256"}`, goodPayload), ReasonUnknownKID},
		{"other key same kid", func() string {
			tok, err := d.MintWithKey(testKey(t, 1), base)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}(), ReasonBadSignature},
		{"payload swapped", parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2], ReasonBadSignature},
		{"signature truncated", good[:len(good)-8], ReasonBadSignature},
		{"signature empty", parts[0] + "." + parts[1] + ".", ReasonBadSignature},
		{"expired", with(func(o *MintOptions) { o.IssuedAt = t0.Add(-2 * time.Minute) }), ReasonExpired},
		{"nbf in the future", with(func(o *MintOptions) { o.NotBefore = t0.Add(time.Minute) }), ReasonNotYetValid},
		{"iat in the future", with(func(o *MintOptions) {
			o.IssuedAt = t0.Add(time.Minute)
			o.NotBefore = t0.Add(-time.Minute)
		}), ReasonNotYetValid},
		{"other issuer", with(func(o *MintOptions) { o.Extra = map[string]any{"iss": "https://clerk.other.example"} }), ReasonBadIssuer},
		{"issuer with trailing slash", with(func(o *MintOptions) { o.Extra = map[string]any{"iss": testIssuerURL + "/"} }), ReasonBadIssuer},
		{"no issuer", with(func(o *MintOptions) { o.Extra = map[string]any{"iss": nil} }), ReasonBadIssuer},
		{"azp not authorized", with(func(o *MintOptions) { o.Azp = evilOrigin }), ReasonBadAzp},
		{"azp missing", with(func(o *MintOptions) { o.Azp = "" }), ReasonBadAzp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if p.UserID != "user_1" {
					t.Fatalf("UserID = %q", p.UserID)
				}
				return
			}
			if p != nil {
				t.Fatalf("got a principal with error reason %s expected", tt.want)
			}
			wantReason(t, err, tt.want, tt.token)
		})
	}
	// Only the initial load: neither unknown kids (the interval has not
	// passed) nor bad algorithms caused a refetch.
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", got)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestVerifyTemplateTokens: a token without sid (a Clerk JWT-template
// token, which session revocations cannot reach) is refused unless
// AcceptTemplateTokens is set; with it, tokens with a sid still verify.
func TestVerifyTemplateTokens(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	clock := newFakeClock(t0)
	noSID := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0, Extra: map[string]any{"sid": nil}})
	withSID := mint(t, d, MintOptions{UserID: "user_1", SessionID: "sess_1", IssuedAt: t0})
	for _, tc := range []struct {
		accept    bool
		tok       string
		wantError bool
	}{
		{false, noSID, true},
		{false, withSID, false},
		{true, noSID, false},
		{true, withSID, false},
	} {
		v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock, AcceptTemplateTokens: tc.accept})
		p, err := v.Verify(context.Background(), tc.tok)
		if tc.wantError {
			wantReason(t, err, ReasonMalformed, tc.tok)
			continue
		}
		if err != nil {
			t.Fatalf("accept=%v: %v", tc.accept, err)
		}
		if !p.IssuedAt.Equal(t0) {
			t.Fatalf("IssuedAt = %v, want %v", p.IssuedAt, t0)
		}
	}
}

// TestVerifyMaxTokenLifetime: a configured bound applies at and past its
// edge.
func TestVerifyMaxTokenLifetime(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock, MaxTokenLifetime: time.Hour})
	if v.MaxTokenLifetime() != time.Hour {
		t.Fatalf("MaxTokenLifetime = %v", v.MaxTokenLifetime())
	}
	at := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0, TTL: time.Hour})
	if _, err := v.Verify(context.Background(), at); err != nil {
		t.Fatalf("lifetime at the bound: %v", err)
	}
	past := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0, TTL: time.Hour + time.Second})
	_, err := v.Verify(context.Background(), past)
	wantReason(t, err, ReasonMalformed, past)
	if _, err := NewVerifier(VerifierConfig{PEMKey: d.PublicKeyPEM(), MaxTokenLifetime: -time.Second}); err == nil {
		t.Fatal("negative MaxTokenLifetime accepted")
	}
}

func TestVerifyMaxTokenBytes(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	o := MintOptions{UserID: "user_1", IssuedAt: t0}
	tok := mint(t, d, o)
	clock := newFakeClock(t0)
	for _, tt := range []struct {
		name string
		max  int
		want string
	}{
		{"at the limit", len(tok), ""},
		{"one byte over", len(tok) - 1, ReasonMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock, MaxTokenBytes: tt.max})
			_, err := v.Verify(context.Background(), tok)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantReason(t, err, tt.want, tok)
		})
	}
	// The default admits Clerk-sized tokens with room for custom claims, and
	// no more than DefaultMaxTokenBytes.
	v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock})
	big := o
	big.Extra = map[string]any{"public_metadata": map[string]any{"pad": strings.Repeat("a", 8<<10)}}
	if _, err := v.Verify(context.Background(), mint(t, d, big)); err != nil {
		t.Fatalf("8 KiB claim: %v", err)
	}
	big.Extra = map[string]any{"public_metadata": map[string]any{"pad": strings.Repeat("a", DefaultMaxTokenBytes)}}
	huge := mint(t, d, big)
	_, err := v.Verify(context.Background(), huge)
	wantReason(t, err, ReasonMalformed, huge)
}

func TestVerifyLeeway(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	exp := t0.Add(DefaultDevTokenTTL)
	nbf := t0.Add(30 * time.Second)
	tests := []struct {
		name   string
		leeway time.Duration
		opts   MintOptions
		now    time.Time
		want   string
	}{
		{"expired by 4s", 0, MintOptions{IssuedAt: t0}, exp.Add(4 * time.Second), ""},
		{"expired by exactly the leeway", 0, MintOptions{IssuedAt: t0}, exp.Add(5 * time.Second), ""},
		{"expired by leeway+1ns", 0, MintOptions{IssuedAt: t0}, exp.Add(5*time.Second + 1), ReasonExpired},
		{"expired by 6s", 0, MintOptions{IssuedAt: t0}, exp.Add(6 * time.Second), ReasonExpired},
		{"custom leeway 1s, expired by 1s", time.Second, MintOptions{IssuedAt: t0}, exp.Add(time.Second), ""},
		{"custom leeway 1s, expired by 2s", time.Second, MintOptions{IssuedAt: t0}, exp.Add(2 * time.Second), ReasonExpired},
		{"nbf 4s ahead", 0, MintOptions{IssuedAt: t0, NotBefore: nbf}, nbf.Add(-4 * time.Second), ""},
		{"nbf exactly leeway ahead", 0, MintOptions{IssuedAt: t0, NotBefore: nbf}, nbf.Add(-5 * time.Second), ""},
		{"nbf leeway+1ns ahead", 0, MintOptions{IssuedAt: t0, NotBefore: nbf}, nbf.Add(-5*time.Second - 1), ReasonNotYetValid},
		{"nbf 6s ahead", 0, MintOptions{IssuedAt: t0, NotBefore: nbf}, nbf.Add(-6 * time.Second), ReasonNotYetValid},
		{"iat 5s ahead", 0, MintOptions{IssuedAt: t0, NotBefore: t0.Add(-time.Minute)}, t0.Add(-5 * time.Second), ""},
		{"iat 6s ahead", 0, MintOptions{IssuedAt: t0, NotBefore: t0.Add(-time.Minute)}, t0.Add(-6 * time.Second), ReasonNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(tt.now)
			v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock, Leeway: tt.leeway})
			o := tt.opts
			o.UserID = "user_1"
			tok := mint(t, d, o)
			_, err := v.Verify(context.Background(), tok)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantReason(t, err, tt.want, tok)
		})
	}
}

func TestVerifyAzp(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	clock := newFakeClock(t0)
	only := func(azp string) bool { return azp == appOrigin }
	tests := []struct {
		name         string
		allowed      func(string) bool
		allowMissing bool
		azp          string
		want         string
	}{
		{"allowed", only, false, appOrigin, ""},
		{"not allowed", only, false, evilOrigin, ReasonBadAzp},
		{"missing, not allowed", only, false, "", ReasonBadAzp},
		{"missing, allowed", only, true, "", ""},
		{"missing allowed does not admit a bad azp", only, true, evilOrigin, ReasonBadAzp},
		{"nil handler accepts any azp", nil, false, evilOrigin, ""},
		{"nil handler still refuses a missing azp", nil, false, "", ReasonBadAzp},
		{"nil handler, missing allowed", nil, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), Clock: clock,
				AuthorizedParty: tt.allowed, AllowMissingAzp: tt.allowMissing})
			tok := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0, Azp: tt.azp})
			p, err := v.Verify(context.Background(), tok)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if p.Azp != tt.azp {
					t.Fatalf("Azp = %q, want %q", p.Azp, tt.azp)
				}
				return
			}
			wantReason(t, err, tt.want, tok)
		})
	}
}

func TestVerifyIssuerRule(t *testing.T) {
	clock := newFakeClock(t0)
	tests := []struct {
		name       string
		configured string
		iss        string
		want       string
	}{
		{"sdk rule: clerk. domain", "", "https://clerk.example.com", ""},
		{"sdk rule: accounts.dev", "", "https://happy-cat-12.clerk.accounts.dev", ""},
		{"sdk rule: other domain", "", "https://auth.example.com", ReasonBadIssuer},
		{"sdk rule: plain http clerk.", "", "http://clerk.example.com", ReasonBadIssuer},
		{"pinned: exact", "https://auth.example.com", "https://auth.example.com", ""},
		{"pinned: configured with trailing slash", "https://auth.example.com/", "https://auth.example.com", ""},
		{"pinned: clerk domain no longer enough", "https://auth.example.com", "https://clerk.example.com", ReasonBadIssuer},
		{"pinned: prefix", "https://auth.example.com", "https://auth.example.com.evil", ReasonBadIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testIssuer(t, tt.iss)
			v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: tt.configured, AllowMissingAzp: true, Clock: clock})
			tok := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0})
			_, err := v.Verify(context.Background(), tok)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantReason(t, err, tt.want, tok)
		})
	}
}

func TestVerifyKeySources(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	clock := newFakeClock(t0)
	const secret = "sk_test_firegate"

	jwksSrv := newJWKSServer(t, d.JWKS())

	backend := newJWKSServer(t, d.JWKS())
	checkBackend := func(r *http.Request) int {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/jwks" {
			return http.StatusNotFound
		}
		if r.Header.Get("Authorization") != "Bearer "+secret {
			return http.StatusUnauthorized
		}
		return 0
	}
	backend.check.Store(&checkBackend)

	pemEscaped := strings.ReplaceAll(strings.TrimSpace(d.PublicKeyPEM()), "\n", `\n`)

	tests := []struct {
		name   string
		cfg    VerifierConfig
		server *jwksServer
		// anyKid: the source verifies a token whatever its kid (PEM).
		anyKid bool
	}{
		{"JWKS URL", VerifierConfig{JWKSURL: jwksSrv.URL + "/.well-known/jwks.json", Issuer: d.Issuer()}, jwksSrv, false},
		{"Backend API", VerifierConfig{SecretKey: secret, BackendURL: backend.URL + "/v1", Issuer: d.Issuer()}, backend, false},
		{"PEM", VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer()}, nil, true},
		{"PEM with escaped newlines", VerifierConfig{PEMKey: pemEscaped, Issuer: d.Issuer()}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Clock = clock
			cfg.AllowMissingAzp = true
			v := newTestVerifier(t, cfg)
			if got := v.Ready(); got != (tt.server == nil) {
				t.Fatalf("Ready before any fetch = %v", got)
			}
			var before int64
			if tt.server != nil {
				before = tt.server.hits.Load()
			}
			p, err := v.Verify(context.Background(), mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0}))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.UserID != "user_1" {
				t.Fatalf("UserID = %q", p.UserID)
			}
			if !v.Ready() {
				t.Fatal("not Ready after a verification")
			}
			if tt.server != nil {
				if got := tt.server.hits.Load() - before; got != 1 {
					t.Fatalf("JWKS fetched %d times, want 1", got)
				}
				// Cached: more verifications fetch nothing.
				for range 5 {
					if _, err := v.Verify(context.Background(), mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0})); err != nil {
						t.Fatal(err)
					}
				}
				if got := tt.server.hits.Load() - before; got != 1 {
					t.Fatalf("JWKS fetched %d times after cached verifications, want 1", got)
				}
			}
			tok := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0, KeyID: "ins_other"})
			_, err = v.Verify(context.Background(), tok)
			if tt.anyKid {
				if err != nil {
					t.Fatalf("PEM key should verify any kid: %v", err)
				}
			} else {
				wantReason(t, err, ReasonUnknownKID, tok)
			}
		})
	}

	t.Run("Backend API refuses the secret", func(t *testing.T) {
		v := newTestVerifier(t, VerifierConfig{SecretKey: "sk_test_wrong", BackendURL: backend.URL + "/v1", Issuer: d.Issuer(), Clock: clock})
		if err := v.Refresh(context.Background()); err == nil || strings.Contains(err.Error(), "sk_test_wrong") {
			t.Fatalf("Refresh = %v, want an error that does not reveal the secret", err)
		}
		if v.Ready() {
			t.Fatal("Ready after a failed fetch")
		}
	})
}

func TestNewVerifierConfig(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	tests := []struct {
		name    string
		cfg     VerifierConfig
		wantErr []string // substrings; nil: valid
	}{
		{"no source", VerifierConfig{}, []string{"CLERK_SECRET_KEY", "CLERK_JWKS_URL", "CLERK_JWT_KEY"}},
		{"blank source", VerifierConfig{SecretKey: "  "}, []string{"CLERK_SECRET_KEY", "CLERK_JWKS_URL", "CLERK_JWT_KEY"}},
		{"two sources", VerifierConfig{SecretKey: "sk_x", PEMKey: d.PublicKeyPEM()}, []string{"exactly one", "CLERK_SECRET_KEY"}},
		{"three sources", VerifierConfig{SecretKey: "sk_x", PEMKey: d.PublicKeyPEM(), JWKSURL: "https://x.example/jwks", Issuer: "https://x.example"}, []string{"exactly one"}},
		{"JWKS URL without issuer", VerifierConfig{JWKSURL: "https://x.example/.well-known/jwks.json"}, []string{"CLERK_ISSUER"}},
		{"JWKS URL not http", VerifierConfig{JWKSURL: "ftp://x.example/jwks", Issuer: "https://x.example"}, []string{"CLERK_JWKS_URL"}},
		{"JWKS URL relative", VerifierConfig{JWKSURL: "/jwks", Issuer: "https://x.example"}, []string{"CLERK_JWKS_URL"}},
		{"issuer not a URL", VerifierConfig{SecretKey: "sk_x", Issuer: "clerk.example.com"}, []string{"CLERK_ISSUER"}},
		{"backend URL invalid", VerifierConfig{SecretKey: "sk_x", BackendURL: "api.clerk.com"}, []string{"backend URL"}},
		{"PEM garbage", VerifierConfig{PEMKey: "not a key"}, []string{"CLERK_JWT_KEY"}},
		{"PEM private key block", VerifierConfig{PEMKey: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}))}, []string{"CLERK_JWT_KEY"}},
		{"PEM RSA-1024", VerifierConfig{PEMKey: pemOf(&small.PublicKey)}, []string{"CLERK_JWT_KEY", "2048"}},
		{"PEM EC key", VerifierConfig{PEMKey: pemOf(&ec.PublicKey)}, []string{"CLERK_JWT_KEY", "RSA"}},
		{"negative leeway", VerifierConfig{SecretKey: "sk_x", Leeway: -1}, []string{"Leeway"}},
		{"negative refetch interval", VerifierConfig{SecretKey: "sk_x", RefetchInterval: -1}, []string{"RefetchInterval"}},
		{"negative refresh interval", VerifierConfig{SecretKey: "sk_x", RefreshInterval: -1}, []string{"RefreshInterval"}},
		{"negative max token", VerifierConfig{SecretKey: "sk_x", MaxTokenBytes: -1}, []string{"MaxTokenBytes"}},
		{"secret key only", VerifierConfig{SecretKey: "sk_x"}, nil},
		{"JWKS URL and issuer", VerifierConfig{JWKSURL: "https://x.example/.well-known/jwks.json", Issuer: "https://x.example"}, nil},
		{"PEM only", VerifierConfig{PEMKey: d.PublicKeyPEM()}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.cfg)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				if v.Leeway() != DefaultLeeway {
					t.Fatalf("Leeway() = %v, want %v", v.Leeway(), DefaultLeeway)
				}
				return
			}
			if err == nil {
				t.Fatal("NewVerifier accepted an invalid config")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Leeway: 2 * time.Second})
	if v.Leeway() != 2*time.Second {
		t.Fatalf("Leeway() = %v, want 2s", v.Leeway())
	}
}

func TestVerifyPrincipal(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	clock := newFakeClock(t0.Add(10 * time.Second))
	v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), Clock: clock})
	tok := mint(t, d, MintOptions{
		UserID: "user_42", SessionID: "sess_42", Azp: appOrigin, IssuedAt: t0, TTL: 90 * time.Second,
		OrgID: "org_1", OrgSlug: "acme", OrgRole: "org:member", OrgPermissions: []string{"org:tasks:read"},
		Extra: map[string]any{
			"public_metadata": map[string]any{"plan": "pro", "seats": 5, "beta": true, "tags": []string{"a", "b"}},
			"email":           "u@example.com",
		},
	})
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.UserID != "user_42" || p.SessionID != "sess_42" || p.Azp != appOrigin ||
		p.OrgID != "org_1" || p.OrgSlug != "acme" || p.OrgRole != "org:member" ||
		!slices.Equal(p.OrgPermissions, []string{"org:tasks:read"}) {
		t.Fatalf("principal = %+v", p)
	}
	if !p.IssuedAt.Equal(t0) || !p.ExpiresAt.Equal(t0.Add(90*time.Second)) {
		t.Fatalf("IssuedAt %v ExpiresAt %v", p.IssuedAt, p.ExpiresAt)
	}
	md, ok := p.Claims["public_metadata"].(map[string]any)
	if !ok {
		t.Fatalf("public_metadata = %#v", p.Claims["public_metadata"])
	}
	if md["plan"] != "pro" || md["seats"] != float64(5) || md["beta"] != true {
		t.Fatalf("public_metadata = %#v", md)
	}
	if tags, ok := md["tags"].([]any); !ok || len(tags) != 2 || tags[0] != "a" {
		t.Fatalf("tags = %#v", md["tags"])
	}
	for k, want := range map[string]any{"email": "u@example.com", "sub": "user_42", "sid": "sess_42", "iss": testIssuerURL,
		"azp": appOrigin, "org_id": "org_1", "exp": float64(t0.Unix() + 90), "iat": float64(t0.Unix())} {
		if p.Claims[k] != want {
			t.Errorf("Claims[%q] = %#v, want %#v", k, p.Claims[k], want)
		}
	}
}

// TestVerifyV1V2 checks that both session-token formats yield the same
// Principal, the v2 one decoded by the SDK from what Mint encodes.
func TestVerifyV1V2(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock})
	tests := []struct {
		name  string
		role  string
		perms []string
	}{
		{"admin, two features", "org:admin", []string{"org:invoices:read", "org:invoices:write", "org:tasks:read", "org:tasks:manage"}},
		{"interleaved features", "org:member", []string{"org:tasks:read", "org:invoices:read", "org:tasks:write"}},
		{"one permission", "org:viewer", []string{"org:sys_memberships:read"}},
		{"no permissions", "org:member", nil},
		{"custom role", "org:billing_manager", []string{"org:billing:manage"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [2]*Principal
			for i, v2 := range []bool{false, true} {
				tok := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0, OrgID: "org_1", OrgSlug: "acme",
					OrgRole: tt.role, OrgPermissions: tt.perms, V2: v2})
				p, err := v.Verify(context.Background(), tok)
				if err != nil {
					t.Fatalf("v2=%v: %v", v2, err)
				}
				got[i] = p
			}
			v1, v2 := got[0], got[1]
			if v2.Claims["v"] != float64(2) || v2.Claims["org_id"] != nil {
				t.Fatalf("v2 token claims %v", v2.Claims)
			}
			for _, p := range got {
				if p.OrgID != "org_1" || p.OrgSlug != "acme" || p.OrgRole != tt.role {
					t.Fatalf("org = %q %q %q", p.OrgID, p.OrgSlug, p.OrgRole)
				}
			}
			p1, p2 := slices.Sorted(slices.Values(v1.OrgPermissions)), slices.Sorted(slices.Values(v2.OrgPermissions))
			want := slices.Sorted(slices.Values(tt.perms))
			if !slices.Equal(p1, want) || !slices.Equal(p2, want) {
				t.Fatalf("permissions v1 %v v2 %v, want %v", p1, p2, want)
			}
		})
	}
	t.Run("no active org", func(t *testing.T) {
		for _, v2 := range []bool{false, true} {
			p, err := v.Verify(context.Background(), mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0, V2: v2}))
			if err != nil {
				t.Fatal(err)
			}
			if p.OrgID != "" || p.OrgRole != "" || len(p.OrgPermissions) != 0 {
				t.Fatalf("v2=%v: principal has an org: %+v", v2, p)
			}
		}
	})
}

// TestVerifyConcurrent verifies from many goroutines (run with -race).
func TestVerifyConcurrent(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	srv := newJWKSServer(t, d.JWKS())
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock})
	tok := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 20 {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", got)
	}
}

func FuzzVerify(f *testing.F) {
	d := testIssuer(f, testIssuerURL)
	srv := newJWKSServer(f, d.JWKS())
	clock := newFakeClock(t0)
	jwksV := newTestVerifier(f, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer(), Clock: clock})
	pemV := newTestVerifier(f, VerifierConfig{PEMKey: d.PublicKeyPEM(), Clock: clock, AllowMissingAzp: true})
	good := mint(f, d, MintOptions{UserID: "user_1", Azp: appOrigin, IssuedAt: t0})
	parts := strings.Split(good, ".")
	for _, s := range []string{
		"", ".", "..", "...", "a.b.c", good, good + "x", good[:len(good)/2],
		mint(f, d, MintOptions{UserID: "u", IssuedAt: t0, V2: true, OrgID: "org_1", OrgRole: "org:admin", OrgPermissions: []string{"org:a:b"}}),
		mint(f, d, MintOptions{UserID: "u", IssuedAt: t0, Alg: "none"}),
		mint(f, d, MintOptions{UserID: "u", IssuedAt: t0, Alg: "HS256"}),
		mint(f, d, MintOptions{UserID: "u", IssuedAt: t0, KeyID: "zzz"}),
		b64(`{"alg":"RS256","kid":"ins_test_0"}`) + "." + b64(`{"sub":1}`) + "." + parts[2],
		b64(`{"alg":"RS256","crit":["b64"],"b64":false}`) + ".x." + parts[2],
		b64(`{"alg":"RS256","kid":"ins_test_0","jwk":{"kty":"oct","k":"AA"}}`) + "." + parts[1] + "." + parts[2],
		`{"payload":"e30","signatures":[]}`,
		"eyJ.eyJ.", "\x00.\x00.\x00", "é.é.é",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		for _, v := range []*Verifier{jwksV, pemV} {
			p, err := v.Verify(context.Background(), token)
			if err == nil {
				if p == nil || p.UserID == "" || p.ExpiresAt.IsZero() {
					t.Fatalf("accepted a token with an incomplete principal: %+v", p)
				}
				continue
			}
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is %T, want *AuthError", err, err)
			}
			switch ae.Reason {
			case ReasonMissing, ReasonMalformed, ReasonExpired, ReasonNotYetValid, ReasonBadSignature,
				ReasonUnknownKID, ReasonBadIssuer, ReasonBadAzp, ReasonBadAlg:
			default:
				t.Fatalf("unknown reason %q", ae.Reason)
			}
			if p != nil {
				t.Fatal("principal returned with an error")
			}
			if len(token) > 100 && strings.Contains(err.Error(), token) {
				t.Fatal("error reveals the token")
			}
		}
		// The fixed clock never allows a refetch after the first load.
		if got := srv.hits.Load(); got > 1 {
			t.Fatalf("JWKS fetched %d times", got)
		}
	})
}

func BenchmarkVerifyCachedKey(b *testing.B) {
	d := testIssuer(b, testIssuerURL)
	srv := newJWKSServer(b, d.JWKS())
	clock := newFakeClock(t0)
	v := newTestVerifier(b, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer(), Clock: clock,
		AuthorizedParty: func(azp string) bool { return azp == appOrigin }})
	tok := mint(b, d, MintOptions{UserID: "user_1", SessionID: "sess_1", Azp: appOrigin, IssuedAt: t0,
		OrgID: "org_1", OrgSlug: "acme", OrgRole: "org:admin", OrgPermissions: []string{"org:tasks:read", "org:tasks:write"},
		Extra: map[string]any{"public_metadata": map[string]any{"plan": "pro"}}})
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCachedKeyParallel(b *testing.B) {
	d := testIssuer(b, testIssuerURL)
	clock := newFakeClock(t0)
	v := newTestVerifier(b, VerifierConfig{PEMKey: d.PublicKeyPEM(), Issuer: d.Issuer(), Clock: clock, AllowMissingAzp: true})
	tok := mint(b, d, MintOptions{UserID: "user_1", IssuedAt: t0})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyRejectUnknownKID measures the cost of a forged kid once the
// refetch budget is spent: no network, no signature check.
func BenchmarkVerifyRejectUnknownKID(b *testing.B) {
	d := testIssuer(b, testIssuerURL)
	srv := newJWKSServer(b, d.JWKS())
	clock := newFakeClock(t0)
	v := newTestVerifier(b, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer(), Clock: clock})
	tok := mint(b, d, MintOptions{UserID: "user_1", IssuedAt: t0, KeyID: "ins_forged"})
	ctx := context.Background()
	_, _ = v.Verify(ctx, tok)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); ReasonOf(err) != ReasonUnknownKID {
			b.Fatal(err)
		}
	}
	if srv.hits.Load() != 1 {
		b.Fatalf("JWKS fetched %d times", srv.hits.Load())
	}
}
