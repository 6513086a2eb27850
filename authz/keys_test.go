package authz

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"github.com/firegate/firegate/internal/testkit"
)

// checkFor is testkit.CheckFor with this package's wait and poll period.
func checkFor(t *testing.T, cond func() error) {
	t.Helper()
	testkit.CheckFor(t, 10*time.Second, 2*time.Millisecond, cond)
}

// ready is a condition: v has keys.
func ready(v *Verifier) func() error {
	return func() error {
		if !v.Ready() {
			return errors.New("the verifier has no keys (not Ready)")
		}
		return nil
	}
}

// hits is a condition: srv has been asked at least n times.
func hits(srv *jwksServer, n int64) func() error {
	return func() error {
		if got := srv.hits.Load(); got < n {
			return fmt.Errorf("%d JWKS fetches, want %d", got, n)
		}
		return nil
	}
}

// forgedKid returns good with its header replaced by one naming kid.
func forgedKid(good, kid string) string {
	i := strings.IndexByte(good, '.')
	return b64(`{"alg":"RS256","kid":"`+kid+`","typ":"JWT"}`) + good[i:]
}

// flood verifies n tokens with distinct forged kids at once and checks
// that each is refused as unknown_kid. started counts goroutines about to
// call Verify.
func flood(t *testing.T, v *Verifier, good string, n int, tag string, started *atomic.Int64) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	var wrong atomic.Int64
	var firstErr atomic.Pointer[error]
	for i := range n {
		tok := forgedKid(good, fmt.Sprintf("forged_%s_%d", tag, i))
		wg.Go(func() {
			<-start
			if started != nil {
				started.Add(1)
			}
			_, err := v.Verify(context.Background(), tok)
			if ReasonOf(err) != ReasonUnknownKID {
				wrong.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	close(start)
	wg.Wait()
	if w := wrong.Load(); w != 0 {
		t.Fatalf("%d forged kids not refused as unknown_kid, e.g. %v", w, *firstErr.Load())
	}
}

// TestUnknownKidFlood checks that a flood of forged kids causes at most
// one JWKS fetch per refetch interval, at and past the interval's edge.
func TestUnknownKidFlood(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	srv := newJWKSServer(t, d.JWKS())
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock})
	good := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0})
	const n = 1000

	// Nothing loaded yet: the flood shares one fetch. Hold the server until
	// every goroutine has started, so that most of them join the flight.
	block := make(chan struct{})
	srv.block.Store(&block)
	var started atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		flood(t, v, good, n, "a", &started)
	}()
	checkFor(t, func() error {
		if s, h := started.Load(), srv.hits.Load(); s != n || h != 1 {
			return fmt.Errorf("%d of %d goroutines started, %d fetches in flight (want all started and one fetch)", s, n, h)
		}
		return nil
	})
	close(block)
	<-done
	srv.block.Store(nil)
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("first flood: %d fetches, want 1", got)
	}

	steps := []struct {
		name      string
		advance   time.Duration
		wantTotal int64
	}{
		{"same instant", 0, 1},
		{"interval minus 1ns", DefaultRefetchInterval - 1, 1},
		{"exactly the interval", 1, 2},
		{"right after that refetch", time.Second, 2},
		{"next interval", DefaultRefetchInterval, 3},
	}
	for i, st := range steps {
		clock.Add(st.advance)
		flood(t, v, good, n, fmt.Sprint(i), nil)
		if got := srv.hits.Load(); got != st.wantTotal {
			t.Fatalf("%s: %d fetches in total, want %d", st.name, got, st.wantTotal)
		}
	}
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("the real key stopped working: %v", err)
	}
}

// TestRefetchRechecksInterval covers the race the flood test cannot force:
// a caller that saw the interval elapsed but starts its flight only after
// another flight has fetched must not fetch again.
func TestRefetchRechecksInterval(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	srv := newJWKSServer(t, d.JWKS())
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer(), Clock: clock})
	if _, err := v.keys.get(context.Background(), "forged"); !errors.Is(err, errUnknownKID) {
		t.Fatalf("get = %v", err)
	}
	clock.Add(DefaultRefetchInterval)
	if _, err := v.keys.get(context.Background(), "forged"); !errors.Is(err, errUnknownKID) {
		t.Fatalf("get = %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2", got)
	}
	// The late caller's flight.
	if r := <-v.keys.flight.DoChan("jwks", v.keys.refetch); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("late flight fetched: %d fetches, want 2", got)
	}
	// A forced refresh does fetch.
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := srv.hits.Load(); got != 3 {
		t.Fatalf("Refresh: %d fetches, want 3", got)
	}
}

// TestCachedKeyDoesNotWaitForFetch checks that a token with a cached kid
// verifies while a refetch hangs, and that a caller waiting on the refetch
// gives up with its context.
func TestCachedKeyDoesNotWaitForFetch(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	srv := newJWKSServer(t, d.JWKS())
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock})
	good := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0})
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	clock.Add(DefaultRefetchInterval)
	block := make(chan struct{})
	srv.block.Store(&block)
	defer close(block)

	forgedDone := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), forgedKid(good, "forged"))
		forgedDone <- err
	}()
	checkFor(t, hits(srv, 2)) // the refetch reached the server

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatalf("cached key while a fetch hangs: %v", err)
	}

	// Another forged kid joins the hanging flight and leaves with its ctx.
	wctx, wcancel := context.WithCancel(context.Background())
	joined := make(chan error, 1)
	go func() {
		_, err := v.Verify(wctx, forgedKid(good, "forged2"))
		joined <- err
	}()
	wcancel()
	select {
	case err := <-joined:
		wantReason(t, err, ReasonUnknownKID, "")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("joined caller returned %v, want its context's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a caller waiting on the refetch ignored its context")
	}
	select {
	case err := <-forgedDone:
		t.Fatalf("the forged verification returned before the fetch: %v", err)
	default:
	}
}

// TestRotationAfterInterval follows a key rotation through unknown-kid
// refetches, on the injected clock.
func TestRotationAfterInterval(t *testing.T) {
	a := testIssuer(t, testIssuerURL)
	b := testIssuerWithKey(t, testIssuerURL, 1, "ins_test_1")
	srv := newJWKSServer(t, a.JWKS())
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: a.Issuer(), AllowMissingAzp: true, Clock: clock})
	tokA := mint(t, a, MintOptions{UserID: "user_1", IssuedAt: t0, TTL: time.Hour})
	tokB := mint(t, b, MintOptions{UserID: "user_1", IssuedAt: t0, TTL: time.Hour})

	check := func(step, tok, want string, wantHits int64) {
		t.Helper()
		_, err := v.Verify(context.Background(), tok)
		if want == "" && err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if want != "" {
			wantReason(t, err, want, tok)
		}
		if got := srv.hits.Load(); got != wantHits {
			t.Fatalf("%s: %d fetches, want %d", step, got, wantHits)
		}
	}
	check("initial", tokA, "", 1)
	srv.set(b.JWKS()) // rotate: B replaces A
	clock.Add(time.Second)
	check("new kid within the interval", tokB, ReasonUnknownKID, 1)
	check("old key still cached", tokA, "", 1)
	clock.Set(t0.Add(DefaultRefetchInterval))
	check("new kid after the interval", tokB, "", 2)
	check("removed key gone", tokA, ReasonUnknownKID, 2)
	clock.Add(DefaultRefetchInterval)
	check("removed key, next interval", tokA, ReasonUnknownKID, 3)
	check("new key cached", tokB, "", 3)
}

// TestRunFollowsRotation checks the background refresh: rotation picked up,
// the removed key dropped, and Run returns when its context ends.
func TestRunFollowsRotation(t *testing.T) {
	a := testIssuer(t, testIssuerURL)
	b := testIssuerWithKey(t, testIssuerURL, 1, "ins_test_1")
	srv := newJWKSServer(t, a.JWKS())
	clock := newFakeClock(t0) // frozen: unknown kids never refetch, only Run does
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: a.Issuer(), AllowMissingAzp: true, Clock: clock,
		RefreshInterval: 20 * time.Millisecond})
	tokA := mint(t, a, MintOptions{UserID: "user_1", IssuedAt: t0})
	tokB := mint(t, b, MintOptions{UserID: "user_1", IssuedAt: t0})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(ctx)
	}()
	checkFor(t, ready(v))
	if _, err := v.Verify(context.Background(), tokA); err != nil {
		t.Fatal(err)
	}
	srv.set(jwksOf(t, a, b)) // new key published next to the old one
	// The new key becomes known.
	checkFor(t, func() error {
		_, err := v.Verify(context.Background(), tokB)
		return err
	})
	srv.set(b.JWKS()) // old key retired
	checkFor(t, func() error {
		if _, err := v.Verify(context.Background(), tokA); ReasonOf(err) != ReasonUnknownKID {
			return fmt.Errorf("a token of the retired key verifies as %v, want %s", err, ReasonUnknownKID)
		}
		return nil
	})
	if _, err := v.Verify(context.Background(), tokB); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestRunRetriesUntilReady(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	srv := newJWKSServer(t, d.JWKS())
	srv.status.Store(500)
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer(), Clock: clock, RefreshInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	checkFor(t, hits(srv, 3)) // three failed attempts
	if v.Ready() {
		t.Fatal("Ready without keys")
	}
	srv.status.Store(0)
	checkFor(t, ready(v)) // after the source recovers
}

func TestRunPEMWaitsForContext(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	v := newTestVerifier(t, VerifierConfig{PEMKey: d.PublicKeyPEM()})
	if !v.Ready() {
		t.Fatal("PEM verifier not Ready")
	}
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(ctx)
	}()
	select {
	case <-done:
		t.Fatal("Run returned before its context ended")
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestFetchFailureKeepsKeys checks that a failed or useless JWKS response
// never wipes the cached keys.
func TestFetchFailureKeepsKeys(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	encOnly, err := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": "ins_enc", "use": "enc", "alg": "RSA-OAEP",
		"n": jwkField(t, d.JWKS(), "n"), "e": "AQAB"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		status  int32
		body    []byte
		wantErr string
	}{
		{"HTTP 500", 500, nil, "HTTP status 500"},
		{"HTTP 404", 404, nil, "HTTP status 404"},
		{"not JSON", 0, []byte("<html>"), "decode JWKS"},
		{"no keys", 0, []byte(`{"keys":[]}`), "no usable signing key"},
		{"null keys", 0, []byte(`{"keys":null}`), "no usable signing key"},
		{"only an encryption key", 0, encOnly, "no usable signing key"},
		{"too big", 0, bytes.Repeat([]byte(" "), maxJWKSBytes+1), "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, d.JWKS())
			clock := newFakeClock(t0)
			v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer(), AllowMissingAzp: true, Clock: clock})
			tok := mint(t, d, MintOptions{UserID: "user_1", IssuedAt: t0})
			if err := v.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			srv.status.Store(tt.status)
			if tt.body != nil {
				srv.set(tt.body)
			}
			err := v.Refresh(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Refresh = %v, want an error containing %q", err, tt.wantErr)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("unbounded error text (%d bytes)", len(err.Error()))
			}
			if !v.Ready() {
				t.Fatal("not Ready after a failed refresh")
			}
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("cached key lost: %v", err)
			}
		})
	}
}

func jwkField(t *testing.T, jwks []byte, field string) string {
	t.Helper()
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &doc); err != nil || len(doc.Keys) == 0 {
		t.Fatalf("bad JWKS: %v", err)
	}
	s, _ := doc.Keys[0][field].(string)
	return s
}

func TestJWKSBodyLimit(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	pad := func(n int) []byte {
		b := append([]byte(nil), d.JWKS()...)
		return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
	}
	for _, tt := range []struct {
		name string
		size int
		ok   bool
	}{
		{"at the limit", maxJWKSBytes, true},
		{"one byte over", maxJWKSBytes + 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, pad(tt.size))
			v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer()})
			err := v.Refresh(context.Background())
			if tt.ok != (err == nil) {
				t.Fatalf("Refresh of a %d-byte JWKS: %v", tt.size, err)
			}
		})
	}
}

func TestRefreshHonoursContext(t *testing.T) {
	d := testIssuer(t, testIssuerURL)
	srv := newJWKSServer(t, d.JWKS())
	block := make(chan struct{})
	srv.block.Store(&block)
	defer close(block)
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: d.Issuer()})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := v.Refresh(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Refresh = %v, want the context's deadline", err)
	}
}

func jwkJSON(t *testing.T, key any, kid, alg, use string) json.RawMessage {
	t.Helper()
	b, err := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: use}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildKeySet(t *testing.T) {
	rsaKey := testKey(t, 0)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     json.RawMessage
		wantAlg string // "": dropped
	}{
		{"RSA RS256", jwkJSON(t, &rsaKey.PublicKey, "k", "RS256", "sig"), "RS256"},
		{"RSA without alg", jwkJSON(t, &rsaKey.PublicKey, "k", "", "sig"), "RS256"},
		{"RSA without use", jwkJSON(t, &rsaKey.PublicKey, "k", "RS256", ""), "RS256"},
		{"RSA PS256", jwkJSON(t, &rsaKey.PublicKey, "k", "PS256", "sig"), "PS256"},
		{"RSA claiming ES256", jwkJSON(t, &rsaKey.PublicKey, "k", "ES256", "sig"), ""},
		{"RSA claiming HS256", jwkJSON(t, &rsaKey.PublicKey, "k", "HS256", "sig"), ""},
		{"RSA for encryption", jwkJSON(t, &rsaKey.PublicKey, "k", "RS256", "enc"), ""},
		{"RSA without kid", jwkJSON(t, &rsaKey.PublicKey, "", "RS256", "sig"), ""},
		{"RSA private key", jwkJSON(t, rsaKey, "k", "RS256", "sig"), ""},
		{"RSA-1024", jwkJSON(t, &small.PublicKey, "k", "RS256", "sig"), ""},
		{"EC ES256", jwkJSON(t, &ec.PublicKey, "k", "ES256", "sig"), "ES256"},
		{"EC without alg", jwkJSON(t, &ec.PublicKey, "k", "", "sig"), ""},
		{"Ed25519", jwkJSON(t, edPub, "k", "EdDSA", "sig"), "EdDSA"},
		{"symmetric", jwkJSON(t, []byte("0123456789abcdef0123456789abcdef"), "k", "HS256", "sig"), ""},
		{"null", json.RawMessage("null"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{tt.key}})
			set, err := parseJWKS(doc)
			if err != nil {
				t.Fatalf("parseJWKS: %v", err)
			}
			ks, err := buildKeySet("iss", set)
			if tt.wantAlg == "" {
				if err == nil {
					t.Fatalf("kept %v", ks.keys)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			k := ks.keys[cacheKey{issuer: "iss", kid: "k"}]
			if k == nil || k.Algorithm != tt.wantAlg {
				t.Fatalf("key %+v, want alg %s", k, tt.wantAlg)
			}
		})
	}
	t.Run("duplicate kid keeps the first", func(t *testing.T) {
		doc, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{
			jwkJSON(t, &rsaKey.PublicKey, "k", "RS256", "sig"), jwkJSON(t, &ec.PublicKey, "k", "ES256", "sig")}})
		set, err := parseJWKS(doc)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := buildKeySet("iss", set)
		if err != nil {
			t.Fatal(err)
		}
		if k := ks.keys[cacheKey{"iss", "k"}]; len(ks.keys) != 1 || k.Algorithm != "RS256" {
			t.Fatalf("keys %v", ks.keys)
		}
	})
}

// TestVerifyECDSAKey verifies an ES256 token end to end: the cache and the
// SDK are not RSA-only.
func TestVerifyECDSAKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{jwkJSON(t, &ec.PublicKey, "ec1", "ES256", "sig")}})
	srv := newJWKSServer(t, doc)
	clock := newFakeClock(t0)
	v := newTestVerifier(t, VerifierConfig{JWKSURL: srv.URL, Issuer: testIssuerURL, AllowMissingAzp: true, Clock: clock})
	sign := func(alg jose.SignatureAlgorithm, key any) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
			(&jose.SignerOptions{}).WithHeader("kid", "ec1").WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := josejwt.Signed(signer).Claims(map[string]any{
			"iss": testIssuerURL, "sub": "user_ec", "sid": "sess_ec", "iat": t0.Unix(), "exp": t0.Unix() + 60}).CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	p, err := v.Verify(context.Background(), sign(jose.ES256, ec))
	if err != nil {
		t.Fatal(err)
	}
	if p.UserID != "user_ec" {
		t.Fatalf("UserID = %q", p.UserID)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok := sign(jose.ES256, other)
	_, err = v.Verify(context.Background(), tok)
	wantReason(t, err, ReasonBadSignature, tok)
	tok = sign(jose.RS256, testKey(t, 0))
	_, err = v.Verify(context.Background(), tok)
	wantReason(t, err, ReasonBadAlg, tok)
}

func FuzzParseJWKS(f *testing.F) {
	d := testIssuer(f, testIssuerURL)
	f.Add(d.JWKS())
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[null,{"kty":"RSA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA","kid":"x"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"x","alg":"ES256"}]}`))
	f.Add([]byte(`{"keys":{}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := parseJWKS(data)
		if err != nil {
			return
		}
		ks, err := buildKeySet("iss", set)
		if err != nil {
			return
		}
		if len(ks.keys) == 0 {
			t.Fatal("key set without keys")
		}
		for ck, k := range ks.keys {
			if ck.kid == "" || ck.kid != k.KeyID || ck.issuer != "iss" {
				t.Fatalf("bad cache key %+v for %+v", ck, k)
			}
			if alg, ok := keyAlgorithm(k.Key, k.Algorithm); !ok || alg != k.Algorithm {
				t.Fatalf("kept an unusable key %T %q", k.Key, k.Algorithm)
			}
		}
	})
}
