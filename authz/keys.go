package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	"golang.org/x/sync/singleflight"
)

// maxJWKSBytes bounds a JWKS response body. Clerk's JWKS is well under 4 KiB.
const maxJWKSBytes = 1 << 20

// fetchTimeout bounds one JWKS fetch, whatever the HTTP client's timeout. A
// fetch runs detached from the context of the request that triggered it, so
// that one caller giving up does not fail the others sharing the flight.
const fetchTimeout = 10 * time.Second

// errUnknownKID is the cause of a ReasonUnknownKID failure when no fetch
// error is to blame.
var errUnknownKID = errors.New("no key with this kid")

// jwksSource fetches a JSON Web Key Set. Implementations are safe for
// concurrent use.
type jwksSource interface {
	fetch(ctx context.Context) (*clerk.JSONWebKeySet, error)
	// String names the source in logs and errors (never a secret).
	String() string
}

// urlSource fetches the JWKS with a plain GET from a URL, such as Clerk's
// Frontend API /.well-known/jwks.json or the dev issuer.
type urlSource struct {
	url    string
	client *http.Client
}

func (s *urlSource) String() string { return s.url }

func (s *urlSource) fetch(ctx context.Context) (*clerk.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxJWKSBytes))
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("body larger than %d bytes", maxJWKSBytes)
	}
	return parseJWKS(body)
}

// backendSource fetches the JWKS from Clerk's Backend API (GET /v1/jwks),
// authenticated with the instance's secret key.
type backendSource struct {
	url    string
	client *jwks.Client
}

func (s *backendSource) String() string { return "Clerk Backend API " + s.url }

func (s *backendSource) fetch(ctx context.Context) (*clerk.JSONWebKeySet, error) {
	set, err := s.client.Get(ctx, &jwks.GetParams{})
	if err != nil {
		// The SDK turns an unexpected error body into the error text: bound it.
		return nil, boundedError{err}
	}
	return set, nil
}

// boundedError keeps the chain of err but shortens its text, which may be a
// whole HTTP response body.
type boundedError struct{ err error }

func (e boundedError) Error() string {
	const max = 300
	s := e.err.Error()
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

func (e boundedError) Unwrap() error { return e.err }

// parseJWKS decodes a JWKS document ({"keys":[...]}).
func parseJWKS(data []byte) (*clerk.JSONWebKeySet, error) {
	set := &clerk.JSONWebKeySet{}
	if err := json.Unmarshal(data, set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	return set, nil
}

// cacheKey identifies a verification key: the issuer the key source serves
// (the configured issuer, possibly empty) and the key id.
type cacheKey struct {
	issuer string
	kid    string
}

// keySet is an immutable snapshot of the usable keys. It is replaced whole,
// never modified, so readers need no lock.
type keySet struct {
	keys map[cacheKey]*clerk.JSONWebKey
	// any, when set, verifies every kid (a PEM key has no kid).
	any *clerk.JSONWebKey
}

// buildKeySet keeps the keys of set that can verify signatures: public
// RSA, ECDSA or Ed25519 keys meant for signing, with a kid and an algorithm
// that fits the key type (an RSA key without alg is taken as RS256). The
// first key wins when a kid repeats. A set without any usable key is an
// error, so that a broken response never wipes the cached keys.
func buildKeySet(issuer string, set *clerk.JSONWebKeySet) (*keySet, error) {
	if set == nil {
		return nil, errors.New("empty JWKS")
	}
	ks := &keySet{keys: make(map[cacheKey]*clerk.JSONWebKey, len(set.Keys))}
	for _, k := range set.Keys {
		if k == nil || k.KeyID == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		alg, ok := keyAlgorithm(k.Key, k.Algorithm)
		if !ok {
			continue
		}
		ck := cacheKey{issuer: issuer, kid: k.KeyID}
		if _, dup := ks.keys[ck]; dup {
			continue
		}
		kk := &clerk.JSONWebKey{Key: k.Key, KeyID: k.KeyID, Algorithm: alg, Use: k.Use}
		ks.keys[ck] = kk
	}
	if len(ks.keys) == 0 {
		return nil, fmt.Errorf("JWKS holds no usable signing key (%d entries)", len(set.Keys))
	}
	return ks, nil
}

// keyAlgorithm returns the JWS algorithm to verify with key, given the alg
// the JWK names, and whether that pair is acceptable.
func keyAlgorithm(key any, alg string) (string, bool) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < 2048 {
			return "", false
		}
		switch alg {
		case "":
			return "RS256", true
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return alg, true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256", "ES384", "ES512":
			return alg, true
		}
	case ed25519.PublicKey:
		if alg == "EdDSA" {
			return alg, true
		}
	}
	return "", false
}

// keyCache holds the verification keys of one source.
//
// Lookups (get on a known kid) take no lock: they load an atomic pointer to
// an immutable keySet. A fetch replaces the whole set, so keys removed by a
// rotation disappear. Fetches are deduplicated with singleflight: at most
// one runs at a time, and callers that need it join it. A fetch caused by
// an unknown kid happens at most once per refetchInterval, measured from
// the start of the previous fetch of any kind.
type keyCache struct {
	issuer          string
	src             jwksSource // nil: static keys (PEM)
	now             func() time.Time
	refetchInterval time.Duration
	log             *slog.Logger

	set atomic.Pointer[keySet] // nil until the first successful fetch

	flight singleflight.Group

	mu        sync.Mutex // guards lastFetch and inflight
	lastFetch time.Time  // start of the last fetch attempt; zero: none yet
	inflight  bool       // a fetch is running

	fetches atomic.Int64 // fetch attempts, for tests
}

// newStaticKeyCache returns a cache whose single key verifies every kid.
func newStaticKeyCache(key *clerk.JSONWebKey) *keyCache {
	c := &keyCache{}
	c.set.Store(&keySet{any: key})
	return c
}

// ready reports whether keys are loaded.
func (c *keyCache) ready() bool { return c.set.Load() != nil }

// lookup returns the cached key for kid, without fetching.
func (c *keyCache) lookup(kid string) (*clerk.JSONWebKey, bool) {
	ks := c.set.Load()
	if ks == nil {
		return nil, false
	}
	if ks.any != nil {
		return ks.any, true
	}
	k, ok := ks.keys[cacheKey{issuer: c.issuer, kid: kid}]
	return k, ok
}

// get returns the key for kid, fetching the JWKS first when kid is unknown
// and the refetch interval allows it (or joining a fetch in progress). The
// error explains an unknown kid; it never names the token.
func (c *keyCache) get(ctx context.Context, kid string) (*clerk.JSONWebKey, error) {
	if k, ok := c.lookup(kid); ok {
		return k, nil
	}
	if c.src == nil || kid == "" {
		return nil, errUnknownKID
	}
	now := c.now()
	c.mu.Lock()
	allowed := c.inflight || c.lastFetch.IsZero() || now.Sub(c.lastFetch) >= c.refetchInterval
	c.mu.Unlock()
	if !allowed {
		// A fetch may have completed since the first lookup.
		if k, ok := c.lookup(kid); ok {
			return k, nil
		}
		return nil, errUnknownKID
	}
	if err := c.wait(ctx, c.flight.DoChan("jwks", c.refetch)); err != nil {
		if k, ok := c.lookup(kid); ok {
			return k, nil
		}
		return nil, err
	}
	if k, ok := c.lookup(kid); ok {
		return k, nil
	}
	return nil, errUnknownKID
}

// refresh fetches the JWKS now, whatever the refetch interval, or joins the
// fetch in progress.
func (c *keyCache) refresh(ctx context.Context) error {
	if c.src == nil {
		return nil
	}
	return c.wait(ctx, c.flight.DoChan("jwks", c.forcedFetch))
}

func (c *keyCache) wait(ctx context.Context, ch <-chan singleflight.Result) error {
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refetch is the flight of an unknown kid: it fetches unless a fetch started
// within the refetch interval.
func (c *keyCache) refetch() (any, error) { return nil, c.fetch(false) }

func (c *keyCache) forcedFetch() (any, error) { return nil, c.fetch(true) }

func (c *keyCache) fetch(force bool) error {
	now := c.now()
	c.mu.Lock()
	if !force && !c.lastFetch.IsZero() && now.Sub(c.lastFetch) < c.refetchInterval {
		c.mu.Unlock()
		return nil
	}
	c.lastFetch = now
	c.inflight = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inflight = false
		c.mu.Unlock()
	}()

	c.fetches.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	set, err := c.src.fetch(ctx)
	if err == nil {
		var ks *keySet
		ks, err = buildKeySet(c.issuer, set)
		if err == nil {
			old := c.set.Swap(ks)
			c.logChange(old, ks)
			return nil
		}
	}
	c.log.Warn("JWKS fetch failed; keeping the cached keys",
		slog.String("source", c.src.String()), slog.Any("error", err),
		slog.Bool("keys_loaded", c.ready()))
	return fmt.Errorf("failed to fetch JWKS from %s: %w", c.src, err)
}

func (c *keyCache) logChange(old, cur *keySet) {
	var added, removed []string
	for k := range cur.keys {
		if old == nil || old.keys[k] == nil {
			added = append(added, k.kid)
		}
	}
	if old != nil {
		for k := range old.keys {
			if cur.keys[k] == nil {
				removed = append(removed, k.kid)
			}
		}
	}
	if len(added) == 0 && len(removed) == 0 {
		c.log.Debug("JWKS unchanged", slog.String("source", c.src.String()), slog.Int("keys", len(cur.keys)))
		return
	}
	c.log.Info("JWKS loaded", slog.String("source", c.src.String()), slog.Int("keys", len(cur.keys)),
		slog.String("added", strings.Join(added, ",")), slog.String("removed", strings.Join(removed, ",")))
}
