package authz

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwks"
	clerkjwt "github.com/clerk/clerk-sdk-go/v2/jwt"
	"github.com/firegate/firegate/internal/clock"
	jose "github.com/go-jose/go-jose/v3"
	josejson "github.com/go-jose/go-jose/v3/json"
	josejwt "github.com/go-jose/go-jose/v3/jwt"
)

// Defaults of VerifierConfig.
const (
	DefaultLeeway          = 5 * time.Second
	DefaultRefetchInterval = 30 * time.Second
	DefaultRefreshInterval = 10 * time.Minute
	DefaultHTTPTimeout     = 10 * time.Second
	// DefaultMaxTokenBytes bounds a token. Clerk session tokens travel in a
	// cookie, so they stay under 4 KiB.
	DefaultMaxTokenBytes = 16 << 10
	// DefaultMaxTokenLifetime bounds exp-iat. Clerk session tokens live 60 s;
	// the bound is what makes a revocation's retention finite (revocations
	// are kept MaxTokenLifetime + Leeway).
	DefaultMaxTokenLifetime = 24 * time.Hour
)

// VerifierConfig configures a Verifier. Exactly one key source (SecretKey,
// JWKSURL or PEMKey) must be set; every other zero value is a safe default.
type VerifierConfig struct {
	// SecretKey (CLERK_SECRET_KEY) fetches the JWKS from Clerk's Backend API.
	SecretKey string
	// BackendURL overrides the Backend API base URL used with SecretKey
	// (default https://api.clerk.com/v1; tests point it at a fake).
	BackendURL string
	// JWKSURL (CLERK_JWKS_URL) fetches the JWKS with a plain GET from this
	// URL, e.g. the Frontend API's /.well-known/jwks.json. Requires Issuer.
	JWKSURL string
	// PEMKey (CLERK_JWT_KEY) is a PEM RSA public key ("PUBLIC KEY" block;
	// literal \n sequences are accepted as newlines): networkless
	// verification. It has no kid, so it verifies tokens of any kid.
	PEMKey string
	// Issuer (CLERK_ISSUER) is the exact expected iss claim (a trailing "/"
	// is ignored). Empty: the SDK's check applies, iss must start with
	// https://clerk. or contain .clerk.accounts.
	Issuer string
	// AuthorizedParty decides whether a non-empty azp is acceptable. Nil
	// accepts any non-empty azp.
	AuthorizedParty func(azp string) bool
	// AllowMissingAzp accepts tokens without azp (native apps).
	AllowMissingAzp bool
	// Leeway tolerates clock skew on exp, nbf and iat. 0 means 5s.
	Leeway time.Duration
	// RefetchInterval is the minimum interval between JWKS fetches caused by
	// an unknown kid. 0 means 30s.
	RefetchInterval time.Duration
	// RefreshInterval is the period of the background refresh done by Run,
	// which follows key rotation. 0 means 10m.
	RefreshInterval time.Duration
	// MaxTokenBytes bounds the length of a token; longer ones are malformed.
	// 0 means DefaultMaxTokenBytes.
	MaxTokenBytes int
	// MaxTokenLifetime bounds exp-iat: a token that claims to live longer
	// is malformed. 0 means DefaultMaxTokenLifetime.
	MaxTokenLifetime time.Duration
	// AcceptTemplateTokens accepts tokens without a session id (sid), such
	// as Clerk JWT-template tokens. Off by default: a token without sid
	// cannot be revoked by session.revoked/ended/removed (only by
	// user.deleted), so the gateway refuses it as malformed.
	AcceptTemplateTokens bool
	// HTTPClient fetches the JWKS. Nil means a client with a 10s timeout.
	HTTPClient *http.Client
	// Clock is the time source of expiry checks and of the refetch
	// interval. Nil means the wall clock.
	Clock clock.Clock
	// Logger receives key fetch events (never tokens). Nil discards.
	Logger *slog.Logger
}

// Verifier verifies Clerk session tokens into Principals. It is safe for
// concurrent use: Verify of a token whose key is cached takes no lock and
// never waits on other calls; only a token with an unknown kid may wait on
// the single in-flight JWKS fetch.
type Verifier struct {
	keys            *keyCache
	issuer          string
	proxyURL        *string // &issuer when issuer is pinned, else nil
	clock           clerk.Clock
	leeway          time.Duration
	refreshInterval time.Duration
	maxTokenBytes   int
	maxLifetime     time.Duration
	acceptNoSID     bool
	authorizedParty func(string) bool
	allowMissingAzp bool
	azpHandler      clerkjwt.AuthorizedPartyHandler
	log             *slog.Logger
}

type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

const keySourceVars = "CLERK_SECRET_KEY, CLERK_JWKS_URL or CLERK_JWT_KEY"

// NewVerifier validates cfg and returns a Verifier. It does no network I/O:
// keys are fetched by Run, by Refresh, or on the first Verify.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	secret := strings.TrimSpace(cfg.SecretKey)
	jwksURL := strings.TrimSpace(cfg.JWKSURL)
	pemKey := strings.TrimSpace(cfg.PEMKey)
	n := 0
	for _, s := range []string{secret, jwksURL, pemKey} {
		if s != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, fmt.Errorf("failed to configure Clerk verification: no key source, set one of %s", keySourceVars)
	case n > 1:
		return nil, fmt.Errorf("failed to configure Clerk verification: set exactly one of %s", keySourceVars)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Leeway", cfg.Leeway}, {"RefetchInterval", cfg.RefetchInterval}, {"RefreshInterval", cfg.RefreshInterval}, {"MaxTokenLifetime", cfg.MaxTokenLifetime}} {
		if d.v < 0 {
			return nil, fmt.Errorf("failed to configure Clerk verification: negative %s %v", d.name, d.v)
		}
	}
	if cfg.MaxTokenBytes < 0 {
		return nil, fmt.Errorf("failed to configure Clerk verification: negative MaxTokenBytes %d", cfg.MaxTokenBytes)
	}
	issuer := strings.TrimSuffix(strings.TrimSpace(cfg.Issuer), "/")
	if issuer != "" {
		if err := checkHTTPURL(issuer); err != nil {
			return nil, fmt.Errorf("failed to configure Clerk verification: CLERK_ISSUER: %w", err)
		}
	}

	v := &Verifier{
		issuer:          issuer,
		leeway:          orDefault(cfg.Leeway, DefaultLeeway),
		refreshInterval: orDefault(cfg.RefreshInterval, DefaultRefreshInterval),
		maxTokenBytes:   cfg.MaxTokenBytes,
		maxLifetime:     orDefault(cfg.MaxTokenLifetime, DefaultMaxTokenLifetime),
		acceptNoSID:     cfg.AcceptTemplateTokens,
		authorizedParty: cfg.AuthorizedParty,
		allowMissingAzp: cfg.AllowMissingAzp,
		log:             cfg.Logger,
	}
	if v.maxTokenBytes == 0 {
		v.maxTokenBytes = DefaultMaxTokenBytes
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	now := clock.Or(cfg.Clock).Now
	v.clock = clockFunc(now)
	if issuer != "" {
		v.proxyURL = &v.issuer
	}
	v.azpHandler = v.azpOK
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}

	var src jwksSource
	switch {
	case pemKey != "":
		key, err := parsePEMKey(pemKey)
		if err != nil {
			return nil, fmt.Errorf("failed to configure Clerk verification: CLERK_JWT_KEY: %w", err)
		}
		v.keys = newStaticKeyCache(key)
	case jwksURL != "":
		if issuer == "" {
			return nil, errors.New("failed to configure Clerk verification: CLERK_ISSUER is required with CLERK_JWKS_URL")
		}
		if err := checkHTTPURL(jwksURL); err != nil {
			return nil, fmt.Errorf("failed to configure Clerk verification: CLERK_JWKS_URL: %w", err)
		}
		src = &urlSource{url: jwksURL, client: httpClient}
	default:
		bc := clerk.BackendConfig{HTTPClient: httpClient, Key: &secret}
		backendURL := clerk.APIURL
		if u := strings.TrimSpace(cfg.BackendURL); u != "" {
			if err := checkHTTPURL(u); err != nil {
				return nil, fmt.Errorf("failed to configure Clerk verification: backend URL: %w", err)
			}
			backendURL = u
			bc.URL = &backendURL
		}
		src = &backendSource{url: backendURL, client: jwks.NewClient(&clerk.ClientConfig{BackendConfig: bc})}
	}
	if src != nil {
		v.keys = &keyCache{
			issuer:          issuer,
			src:             src,
			now:             now,
			refetchInterval: orDefault(cfg.RefetchInterval, DefaultRefetchInterval),
			log:             v.log,
		}
	}
	return v, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid URL %q: want http(s)://host[/path]", s)
	}
	return nil
}

// parsePEMKey parses a PEM RSA public key of at least 2048 bits.
func parsePEMKey(s string) (*clerk.JSONWebKey, error) {
	if !strings.Contains(s, "\n") {
		s = strings.ReplaceAll(s, `\n`, "\n")
	}
	key, err := clerk.JSONWebKeyFromPEM(s)
	if err != nil {
		return nil, err
	}
	if _, ok := keyAlgorithm(key.Key, key.Algorithm); !ok {
		if _, isRSA := key.Key.(*rsa.PublicKey); !isRSA {
			return nil, fmt.Errorf("unsupported key type %T, want an RSA public key", key.Key)
		}
		return nil, errors.New("RSA key shorter than 2048 bits")
	}
	return key, nil
}

// Leeway returns the clock-skew tolerance applied to exp, nbf and iat.
func (v *Verifier) Leeway() time.Duration { return v.leeway }

// MaxTokenLifetime returns the longest exp-iat accepted. A revocation must
// be remembered MaxTokenLifetime + Leeway after it happened.
func (v *Verifier) MaxTokenLifetime() time.Duration { return v.maxLifetime }

// Ready reports whether verification keys are loaded (always true with a
// PEM key).
func (v *Verifier) Ready() bool { return v.keys.ready() }

// Refresh fetches the JWKS now (or joins the fetch in progress) and returns
// its error; with a PEM key it does nothing. Start-up may call it to fail
// fast when the key source is unreachable.
func (v *Verifier) Refresh(ctx context.Context) error { return v.keys.refresh(ctx) }

// Run fetches the keys at once and then every RefreshInterval until ctx is
// done, so that rotated keys are picked up and removed ones disappear. A
// failed fetch is retried with backoff (1s doubling, at most
// RefreshInterval); the cached keys stay in use meanwhile. With a PEM key
// Run only waits for ctx.
func (v *Verifier) Run(ctx context.Context) {
	if v.keys.src == nil {
		<-ctx.Done()
		return
	}
	minBackoff := min(time.Second, v.refreshInterval)
	backoff := minBackoff
	for {
		next := v.refreshInterval
		if err := v.keys.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			next = backoff
			backoff = min(2*backoff, v.refreshInterval)
		} else {
			backoff = minBackoff
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// jwsHeader is the part of the JOSE header Verify looks at before the SDK.
// It is decoded with go-jose's JSON package, as the SDK does.
type jwsHeader struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Crit []string `json:"crit"`
}

func authErr(reason string, err error) *AuthError { return &AuthError{Reason: reason, Err: err} }

// parseHeader checks that token is a compact JWS (three base64url segments,
// nothing else) and decodes its header.
func parseHeader(token string) (jwsHeader, error) {
	var h jwsHeader
	dots, firstDot := 0, -1
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			if dots == 0 {
				firstDot = i
			}
			dots++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return h, errors.New("not a compact JWS: character outside base64url")
		}
	}
	if dots != 2 {
		return h, errors.New("not a compact JWS: want 3 dot-separated segments")
	}
	if firstDot == 0 {
		return h, errors.New("not a compact JWS: empty header")
	}
	raw, err := base64.RawURLEncoding.DecodeString(token[:firstDot])
	if err != nil {
		return h, errors.New("not a compact JWS: header is not base64url")
	}
	if err := josejson.Unmarshal(raw, &h); err != nil {
		return h, errors.New("not a compact JWS: header is not a JSON object of the expected shape")
	}
	if h.Crit != nil {
		return h, errors.New("unsupported crit header")
	}
	return h, nil
}

// checkAlg accepts the asymmetric JWS algorithms only.
func checkAlg(alg string) error {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return nil
	case "":
		return errors.New("missing alg")
	}
	// The value is attacker-chosen: do not echo arbitrary lengths.
	if len(alg) > 16 {
		alg = alg[:16] + "…"
	}
	return fmt.Errorf("unsupported alg %q", alg)
}

// Verify verifies token and returns its Principal. Every error is an
// *AuthError whose Reason says why; no error or log names the token. It
// waits only when the token's kid is unknown and a JWKS fetch is allowed
// (see VerifierConfig.RefetchInterval), at most until ctx is done.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return nil, authErr(ReasonMissing, nil)
	}
	if len(token) > v.maxTokenBytes {
		return nil, authErr(ReasonMalformed, fmt.Errorf("token longer than %d bytes", v.maxTokenBytes))
	}
	h, err := parseHeader(token)
	if err != nil {
		return nil, authErr(ReasonMalformed, err)
	}
	if err := checkAlg(h.Alg); err != nil {
		return nil, authErr(ReasonBadAlg, err)
	}
	jwk, err := v.keys.get(ctx, h.Kid)
	if err != nil {
		return nil, authErr(ReasonUnknownKID, err)
	}
	if h.Alg != jwk.Algorithm {
		return nil, authErr(ReasonBadAlg, fmt.Errorf("alg %s does not match the key's %s", h.Alg, jwk.Algorithm))
	}

	var all map[string]any
	claims, err := clerkjwt.Verify(ctx, &clerkjwt.VerifyParams{
		Token:                   token,
		JWK:                     jwk,
		Clock:                   v.clock,
		CustomClaimsConstructor: func(context.Context) any { return &all },
		Leeway:                  v.leeway,
		ProxyURL:                v.proxyURL,
		AuthorizedPartyHandler:  v.azpHandler,
	})
	if err != nil {
		return nil, v.classify(err, all)
	}
	if claims.Expiry == nil {
		return nil, authErr(ReasonMalformed, errors.New("no exp claim"))
	}
	if claims.Subject == "" {
		return nil, authErr(ReasonMalformed, errors.New("no sub claim"))
	}
	if claims.IssuedAt == nil {
		// Revocations compare iat with their time: a token without one
		// could not be told apart from a later one.
		return nil, authErr(ReasonMalformed, errors.New("no iat claim"))
	}
	if life := *claims.Expiry - *claims.IssuedAt; life < 0 || life > int64(v.maxLifetime/time.Second) {
		return nil, authErr(ReasonMalformed, fmt.Errorf("token lifetime (exp-iat) outside [0, %v]", v.maxLifetime))
	}
	if claims.SessionID == "" && !v.acceptNoSID {
		return nil, authErr(ReasonMalformed, errors.New("no sid claim (a JWT-template token? see FIREGATE_ACCEPT_TEMPLATE_TOKENS)"))
	}
	p := &Principal{
		UserID:         claims.Subject,
		SessionID:      claims.SessionID,
		OrgID:          claims.ActiveOrganizationID,
		OrgSlug:        claims.ActiveOrganizationSlug,
		OrgRole:        claims.ActiveOrganizationRole,
		OrgPermissions: claims.ActiveOrganizationPermissions,
		Claims:         all,
		Azp:            claims.AuthorizedParty,
		IssuedAt:       time.Unix(*claims.IssuedAt, 0).UTC(),
		ExpiresAt:      time.Unix(*claims.Expiry, 0).UTC(),
	}
	return p, nil
}

// classify maps an error of clerkjwt.Verify to an AuthError. all is the
// claim map, decoded only once the signature verified; the SDK checks, in
// order: parse, signature, claim decoding, time, issuer, azp.
func (v *Verifier) classify(err error, all map[string]any) *AuthError {
	switch {
	case errors.Is(err, josejwt.ErrExpired):
		return authErr(ReasonExpired, err)
	case errors.Is(err, josejwt.ErrNotValidYet), errors.Is(err, josejwt.ErrIssuedInTheFuture):
		return authErr(ReasonNotYetValid, err)
	case errors.Is(err, jose.ErrCryptoFailure):
		return authErr(ReasonBadSignature, errors.New("signature does not verify"))
	case all == nil:
		return authErr(ReasonMalformed, err)
	}
	iss, _ := all["iss"].(string)
	if !v.issuerOK(iss) {
		return authErr(ReasonBadIssuer, err)
	}
	azp, _ := all["azp"].(string)
	if !v.azpOK(azp) {
		return authErr(ReasonBadAzp, err)
	}
	return authErr(ReasonMalformed, err)
}

// issuerOK mirrors the SDK's issuer rule.
func (v *Verifier) issuerOK(iss string) bool {
	if v.proxyURL != nil {
		return iss == v.issuer
	}
	return strings.HasPrefix(iss, "https://clerk.") || strings.Contains(iss, ".clerk.accounts")
}

func (v *Verifier) azpOK(azp string) bool {
	if azp == "" {
		return v.allowMissingAzp
	}
	return v.authorizedParty == nil || v.authorizedParty(azp)
}
