package authz

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DevIssuer mints Clerk-shaped session tokens for `firegate dev`,
// `firegate token` and tests. Its tokens are verified by the production
// Verifier, through its JWKS (JWKSHandler) or its PEM public key. The key is
// ephemeral: it lives as long as the process. A DevIssuer is immutable and
// safe for concurrent use.
type DevIssuer struct {
	issuer string
	key    *rsa.PrivateKey
	kid    string
	jwks   []byte
	pem    string
}

// DefaultDevTokenTTL is the lifetime of a minted token when MintOptions.TTL
// is zero; Clerk session tokens live 60s.
const DefaultDevTokenTTL = 60 * time.Second

// devNotBeforeSkew is how far before iat a minted token's nbf lies, as in
// Clerk's tokens.
const devNotBeforeSkew = 10 * time.Second

// NewDevIssuer returns an issuer with a fresh RSA-2048 key and a random kid.
// issuer is the iss of its tokens (an http(s) URL; a trailing "/" is
// dropped, as the Verifier drops it from CLERK_ISSUER).
func NewDevIssuer(issuer string) (*DevIssuer, error) {
	issuer = strings.TrimSuffix(strings.TrimSpace(issuer), "/")
	if err := checkHTTPURL(issuer); err != nil {
		return nil, fmt.Errorf("failed to create dev issuer: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("failed to create dev issuer key: %w", err)
	}
	return newDevIssuerWithKey(issuer, key, "ins_dev_"+randomHex(8))
}

// newDevIssuerWithKey builds an issuer around an existing key (tests reuse
// keys, RSA key generation being slow).
func newDevIssuerWithKey(issuer string, key *rsa.PrivateKey, kid string) (*DevIssuer, error) {
	d := &DevIssuer{issuer: issuer, key: key, kid: kid}
	var err error
	jwk := map[string]any{
		"use": "sig",
		"kty": "RSA",
		"kid": d.kid,
		"alg": "RS256",
		"n":   base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}
	d.jwks, err = json.Marshal(map[string]any{"keys": []any{jwk}})
	if err != nil {
		return nil, fmt.Errorf("failed to encode dev JWKS: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("failed to encode dev public key: %w", err)
	}
	d.pem = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return d, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// Issuer returns the iss of minted tokens.
func (d *DevIssuer) Issuer() string { return d.issuer }

// KeyID returns the kid of the signing key.
func (d *DevIssuer) KeyID() string { return d.kid }

// PublicKeyPEM returns the public key as PEM, usable as CLERK_JWT_KEY.
func (d *DevIssuer) PublicKeyPEM() string { return d.pem }

// JWKS returns the JSON Web Key Set, {"keys":[...]}, as Clerk's
// /.well-known/jwks.json serves it. The caller must not modify it.
func (d *DevIssuer) JWKS() []byte { return d.jwks }

// JWKSHandler serves JWKS() to GET and HEAD.
func (d *DevIssuer) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Length", strconv.Itoa(len(d.jwks)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(d.jwks)
		}
	})
}

// MintOptions describes a dev token. Zero values are defaults.
type MintOptions struct {
	UserID         string // sub; required
	SessionID      string // sid; empty: a random "sess_..."
	OrgID          string // active org; empty: no org claims
	OrgSlug        string
	OrgRole        string // "org:admin"; in v2 it must start with "org:"
	OrgPermissions []string
	// V2 emits Clerk's v2 session-token format ("v":2, "o":{...}, "fea")
	// instead of the v1 org_* claims. Permissions must then read
	// "org:<feature>:<permission>".
	V2  bool
	Azp string // empty: no azp claim
	// TTL is exp-iat. 0 means 60s; a negative TTL mints an expired token.
	TTL time.Duration
	// IssuedAt is iat; zero means now. nbf defaults to iat-10s, as Clerk's.
	IssuedAt  time.Time
	NotBefore time.Time
	// Extra claims are set last, so they may override standard ones; an
	// entry with a nil value removes that claim (e.g. "exp": nil).
	Extra map[string]any
	// KeyID overrides the kid header.
	KeyID string
	// Alg overrides the alg header. "none" mints an unsigned token, "HS*"
	// an HMAC keyed with the PEM public key (the classic key-confusion
	// forgery); any other value changes only the header, the signature
	// stays RS256.
	Alg string
}

// Mint signs a token with the issuer's key.
func (d *DevIssuer) Mint(o MintOptions) (string, error) { return d.MintWithKey(d.key, o) }

// MintWithKey signs a token with key, under the issuer's kid unless
// o.KeyID says otherwise (tests: a forged signature under a known kid).
func (d *DevIssuer) MintWithKey(key *rsa.PrivateKey, o MintOptions) (string, error) {
	if key == nil {
		return "", errors.New("failed to mint dev token: nil key")
	}
	if o.UserID == "" {
		return "", errors.New("failed to mint dev token: UserID is required")
	}
	for _, s := range append([]string{o.UserID, o.SessionID, o.OrgID, o.OrgSlug, o.OrgRole, o.Azp, o.KeyID, o.Alg}, o.OrgPermissions...) {
		if !utf8.ValidString(s) {
			return "", errors.New("failed to mint dev token: a claim is not valid UTF-8")
		}
	}
	claims, err := d.claims(o)
	if err != nil {
		return "", fmt.Errorf("failed to mint dev token: %w", err)
	}
	alg := "RS256"
	if o.Alg != "" {
		alg = o.Alg
	}
	kid := d.kid
	if o.KeyID != "" {
		kid = o.KeyID
	}
	header, err := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	if err != nil {
		return "", fmt.Errorf("failed to mint dev token: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("failed to mint dev token: %w", err)
	}
	return signCompact(key, alg, header, payload, d.pem)
}

// signCompact returns header.payload.signature, signed according to alg
// (see MintOptions.Alg).
func signCompact(key *rsa.PrivateKey, alg string, header, payload []byte, pubPEM string) (string, error) {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	var sig []byte
	switch {
	case alg == "none":
	case strings.HasPrefix(alg, "HS"):
		var h func() hash.Hash
		switch alg {
		case "HS384":
			h = sha512.New384
		case "HS512":
			h = sha512.New
		default:
			h = sha256.New
		}
		m := hmac.New(h, []byte(pubPEM))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		digest := sha256.Sum256([]byte(input))
		var err error
		sig, err = rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
		if err != nil {
			return "", fmt.Errorf("failed to sign dev token: %w", err)
		}
	}
	return input + "." + enc.EncodeToString(sig), nil
}

func (d *DevIssuer) claims(o MintOptions) (map[string]any, error) {
	iat := o.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = DefaultDevTokenTTL
	}
	nbf := o.NotBefore
	if nbf.IsZero() {
		nbf = iat.Add(-devNotBeforeSkew)
	}
	sid := o.SessionID
	if sid == "" {
		sid = "sess_" + randomHex(12)
	}
	c := map[string]any{
		"iss": d.issuer,
		"sub": o.UserID,
		"sid": sid,
		"iat": iat.Unix(),
		"nbf": nbf.Unix(),
		"exp": iat.Add(ttl).Unix(),
	}
	if o.Azp != "" {
		c["azp"] = o.Azp
	}
	if o.OrgID != "" {
		if o.V2 {
			org, fea, err := encodeV2Org(o)
			if err != nil {
				return nil, err
			}
			c["o"] = org
			if fea != "" {
				c["fea"] = fea
			}
		} else {
			perms := o.OrgPermissions
			if perms == nil {
				perms = []string{}
			}
			c["org_id"] = o.OrgID
			c["org_slug"] = o.OrgSlug
			c["org_role"] = o.OrgRole
			c["org_permissions"] = perms
		}
	}
	if o.V2 {
		c["v"] = 2
	}
	for k, v := range o.Extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c, nil
}

// encodeV2Org encodes the active org as Clerk's v2 "o" claim and the
// top-level "fea" claim, the inverse of what clerk-sdk-go/v2/jwt decodes:
// "per" lists the distinct permission names, "fea" the features
// ("o:<feature>"), and "fpm" per feature a bit mask over "per" whose least
// significant bit is the first entry of "per".
func encodeV2Org(o MintOptions) (map[string]any, string, error) {
	role, ok := strings.CutPrefix(o.OrgRole, "org:")
	if !ok || role == "" {
		return nil, "", fmt.Errorf("v2 token: org role %q does not read org:<role>", o.OrgRole)
	}
	var features, perms []string
	masks := map[string]uint64{}
	permIndex := map[string]int{}
	for _, p := range o.OrgPermissions {
		parts := strings.Split(p, ":")
		if len(parts) != 3 || parts[0] != "org" || parts[1] == "" || parts[2] == "" || strings.Contains(p, ",") {
			return nil, "", fmt.Errorf("v2 token: permission %q does not read org:<feature>:<permission>", p)
		}
		feature, perm := parts[1], parts[2]
		i, ok := permIndex[perm]
		if !ok {
			i = len(perms)
			if i >= 63 {
				return nil, "", errors.New("v2 token: more than 63 distinct permission names")
			}
			permIndex[perm] = i
			perms = append(perms, perm)
		}
		if _, ok := masks[feature]; !ok {
			features = append(features, feature)
		}
		masks[feature] |= 1 << i
	}
	fea := make([]string, len(features))
	fpm := make([]string, len(features))
	for i, f := range features {
		fea[i] = "o:" + f
		fpm[i] = strconv.FormatUint(masks[f], 10)
	}
	org := map[string]any{
		"id":  o.OrgID,
		"slg": o.OrgSlug,
		"rol": role,
		"per": strings.Join(perms, ","),
		"fpm": strings.Join(fpm, ","),
	}
	return org, strings.Join(fea, ","), nil
}
