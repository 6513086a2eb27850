// Package app wires Firegate's collaborators for the commands: it turns
// settings (environment, mirrored by flags) into the gateway's Config and
// Deps, starts what dev mode needs, and runs until the context ends.
package app

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/firegate/firegate/gateway"
)

// Settings is every knob of `firegate serve` and `firegate dev`, read from
// the environment and overridden by flags of the same meaning.
type Settings struct {
	Addr, AdminAddr      string
	PolicyFile           string
	AllowedOrigins       []string
	TrustedProxies       []netip.Prefix
	ClerkSecretKey       string
	ClerkJWKSURL         string
	ClerkJWTKey          string
	ClerkIssuer          string
	AuthorizedParties    []string
	AllowMissingAzp      bool
	AcceptTemplateTokens bool
	MaxTokenLifetime     time.Duration
	MaxRevocations       int
	WebhookSecret        string
	ProjectID            string
	Database             string
	EmulatorHost         string
	MaxMessageBytes      int64
	DrainTimeout         time.Duration
	SlowConsumerTimeout  time.Duration
	FeedLinger           time.Duration
	MaxFeeds             int
	MaxFeedsPerOrg       int
	MaxFeedBytesPerOrg   int64
	MaxFeedSharePerUser  float64
	SendQueueMessages    int
	SendQueueBytes       int
	HandshakesPerIP      float64
	AuthFailuresPerIP    float64
	ConnectionsPerUser   int
	MessagesPerConn      float64
	SubsPerConn          int
	WritesPerConn        float64
	WritesPerUser        float64
	WriteWindow          time.Duration
	ReplayCount          int
	ReplayAge            time.Duration
	NATSURL              string
	NATSLeaseTTL         time.Duration
	// DevNATS (firegate dev --nats, no environment variable) starts an
	// embedded NATS server and runs in fleet mode against it.
	DevNATS   bool
	Pprof     bool
	LogLevel  string
	LogFormat string
}

type setting struct {
	env, flag, help string
	set             func(string) error
}

// parsed returns a setter that stores parse(v) in *p.
func parsed[T any](p *T, parse func(string) (T, error)) func(string) error {
	return func(v string) error {
		x, err := parse(v)
		if err != nil {
			return err
		}
		*p = x
		return nil
	}
}

func parseString(v string) (string, error) { return v, nil }
func parseList(v string) ([]string, error) { return splitList(v), nil }
func parseInt64(v string) (int64, error)   { return strconv.ParseInt(v, 10, 64) }
func parseFloat(v string) (float64, error) { return strconv.ParseFloat(v, 64) }

func (s *Settings) table() []setting {
	return []setting{
		{"FIREGATE_ADDR", "addr", "WebSocket/HTTP listen address (default :8080; 127.0.0.1:8080 in dev)", parsed(&s.Addr, parseString)},
		{"FIREGATE_ADMIN_ADDR", "admin-addr", "admin listen address for /metrics, /healthz, /readyz, pprof (default :9090; 127.0.0.1:9090 in dev; - disables)", parsed(&s.AdminAddr, parseString)},
		{"FIREGATE_POLICY", "policy", "policy file (required in serve)", parsed(&s.PolicyFile, parseString)},
		{"FIREGATE_ALLOWED_ORIGINS", "allowed-origins", "comma list of allowed browser origins; * stands for one DNS label", parsed(&s.AllowedOrigins, parseList)},
		{"FIREGATE_TRUSTED_PROXIES", "trusted-proxies", "comma list of CIDRs whose X-Forwarded-For is trusted", parsed(&s.TrustedProxies, parsePrefixes)},
		{"CLERK_SECRET_KEY", "clerk-secret-key", "Clerk secret key: fetch JWKS from Clerk's Backend API", parsed(&s.ClerkSecretKey, parseString)},
		{"CLERK_JWKS_URL", "clerk-jwks-url", "fetch JWKS from this URL (needs CLERK_ISSUER)", parsed(&s.ClerkJWKSURL, parseString)},
		{"CLERK_JWT_KEY", "clerk-jwt-key", "PEM public key for networkless verification", parsed(&s.ClerkJWTKey, parseString)},
		{"CLERK_ISSUER", "clerk-issuer", "expected iss of session tokens", parsed(&s.ClerkIssuer, parseString)},
		{"CLERK_AUTHORIZED_PARTIES", "clerk-authorized-parties", "allowed azp values (default: the allowed origins)", parsed(&s.AuthorizedParties, parseList)},
		{"FIREGATE_ALLOW_MISSING_AZP", "allow-missing-azp", "accept tokens without azp (native apps)", parsed(&s.AllowMissingAzp, strconv.ParseBool)},
		{"FIREGATE_ACCEPT_TEMPLATE_TOKENS", "accept-template-tokens", "accept tokens without a session id (sid), e.g. Clerk JWT-template tokens; session revocations cannot reach them (default false)", parsed(&s.AcceptTemplateTokens, strconv.ParseBool)},
		{"FIREGATE_MAX_TOKEN_LIFETIME", "max-token-lifetime", "longest accepted token lifetime (exp-iat); revocations are remembered this long plus the leeway (default 24h)", parsed(&s.MaxTokenLifetime, time.ParseDuration)},
		{"FIREGATE_MAX_REVOCATIONS", "max-revocations", "revocations remembered per instance; past it the oldest is evicted and counted in rate_limited_total{limit=\"revocations\"} (default 100000)", parsed(&s.MaxRevocations, strconv.Atoi)},
		{"CLERK_WEBHOOK_SECRET", "clerk-webhook-secret", "Svix signing secret (whsec_...) enabling /v1/webhooks/clerk", parsed(&s.WebhookSecret, parseString)},
		{"FIRESTORE_PROJECT_ID", "project", "Firestore project id (required in serve)", parsed(&s.ProjectID, parseString)},
		{"FIRESTORE_DATABASE", "database", "Firestore database id (default (default))", parsed(&s.Database, parseString)},
		{"FIRESTORE_EMULATOR_HOST", "emulator-host", "use the Firestore emulator at host:port", parsed(&s.EmulatorHost, parseString)},
		{"FIREGATE_MAX_MESSAGE_BYTES", "max-message-bytes", "largest inbound frame (default 65536); larger closes 1009", parsed(&s.MaxMessageBytes, parseInt64)},
		{"FIREGATE_DRAIN_TIMEOUT", "drain-timeout", "window over which connections close on shutdown (default 30s)", parsed(&s.DrainTimeout, time.ParseDuration)},
		{"FIREGATE_SLOW_CONSUMER_TIMEOUT", "slow-consumer-timeout", "a client that accepts nothing this long is closed 4009 (default 30s)", parsed(&s.SlowConsumerTimeout, time.ParseDuration)},
		{"FIREGATE_FEED_LINGER", "feed-linger", "how long a Feed outlives its last subscriber (default 30s)", parsed(&s.FeedLinger, time.ParseDuration)},
		{"FIREGATE_MAX_FEEDS", "max-feeds", "Feeds (Firestore listeners) overall (default 1000)", parsed(&s.MaxFeeds, strconv.Atoi)},
		{"FIREGATE_MAX_FEEDS_PER_ORG", "max-feeds-per-org", "Feeds per org or user (default 100)", parsed(&s.MaxFeedsPerOrg, strconv.Atoi)},
		{"FIREGATE_MAX_FEED_BYTES_PER_ORG", "max-feed-bytes-per-org", "byte budget of an org's Feeds (sum of len(path)+encoded data of their visible documents); a new Feed is refused once reached (default 67108864)", parsed(&s.MaxFeedBytesPerOrg, parseInt64)},
		{"FIREGATE_MAX_FEED_SHARE_PER_USER", "max-feed-share-per-user", "share of FIREGATE_MAX_FEEDS_PER_ORG one user may open, in (0,1] (default 0.5)", parsed(&s.MaxFeedSharePerUser, parseFloat)},
		{"FIREGATE_SEND_QUEUE_MESSAGES", "send-queue-messages", "per-connection send queue, messages (default 512)", parsed(&s.SendQueueMessages, strconv.Atoi)},
		{"FIREGATE_SEND_QUEUE_BYTES", "send-queue-bytes", "per-connection send queue, bytes (default 4194304)", parsed(&s.SendQueueBytes, strconv.Atoi)},
		{"FIREGATE_HANDSHAKES_PER_IP", "handshakes-per-ip", "handshakes per second per client IP (default 20, burst 2x)", parsed(&s.HandshakesPerIP, parseFloat)},
		{"FIREGATE_AUTH_FAILURES_PER_IP", "auth-failures-per-ip", "failed authentications per second per IP (default 1, burst 10)", parsed(&s.AuthFailuresPerIP, parseFloat)},
		{"FIREGATE_CONNECTIONS_PER_USER", "connections-per-user", "concurrent connections per user (default 100)", parsed(&s.ConnectionsPerUser, strconv.Atoi)},
		{"FIREGATE_MESSAGES_PER_CONN", "messages-per-conn", "client messages per second per connection (default 20, burst 50)", parsed(&s.MessagesPerConn, parseFloat)},
		{"FIREGATE_SUBSCRIPTIONS_PER_CONN", "subscriptions-per-conn", "live subscriptions per connection (default 100)", parsed(&s.SubsPerConn, strconv.Atoi)},
		{"FIREGATE_WRITES_PER_CONN", "writes-per-conn", "write messages per second per connection (default 10, burst 2x)", parsed(&s.WritesPerConn, parseFloat)},
		{"FIREGATE_WRITES_PER_USER", "writes-per-user", "writes per second per user over its connections and POST /v1/write, per instance (default 20, burst 2x)", parsed(&s.WritesPerUser, parseFloat)},
		{"FIREGATE_WRITE_IDEMPOTENCY_WINDOW", "write-idempotency-window", "how long an idempotency_key is remembered (default 24h)", parsed(&s.WriteWindow, time.ParseDuration)},
		{"FIREGATE_REPLAY_COUNT", "replay-count", "replay buffer entries per Feed for resume (default 1024)", parsed(&s.ReplayCount, strconv.Atoi)},
		{"FIREGATE_REPLAY_AGE", "replay-age", "replay buffer age per Feed for resume (default 5m)", parsed(&s.ReplayAge, time.ParseDuration)},
		{"FIREGATE_NATS_URL", "nats-url", "fleet mode: NATS (JetStream) URL; one Firestore listener per Feed across all instances (unset: single instance)", parsed(&s.NATSURL, parseString)},
		{"FIREGATE_NATS_LEASE_TTL", "nats-lease-ttl", "fleet mode: how long a Feed's ownership outlives a dead owner (default 3s)", parsed(&s.NATSLeaseTTL, time.ParseDuration)},
		{"FIREGATE_PPROF", "pprof", "serve /debug/pprof on the admin address", parsed(&s.Pprof, strconv.ParseBool)},
		{"FIREGATE_LOG_LEVEL", "log-level", "debug, info, warn or error (default info)", parsed(&s.LogLevel, parseString)},
		{"FIREGATE_LOG_FORMAT", "log-format", "json or text (default json)", parsed(&s.LogFormat, parseString)},
	}
}

// Load fills s from getenv, then from flags parsed from args on fs (fs
// gets one flag per setting). It returns the remaining arguments.
func (s *Settings) Load(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	t := s.table()
	for _, st := range t {
		if v := getenv(st.env); v != "" {
			if err := st.set(v); err != nil {
				return nil, fmt.Errorf("invalid %s=%q: %w", st.env, v, err)
			}
		}
	}
	for _, st := range t {
		st := st
		fs.Func(st.flag, st.help+" [$"+st.env+"]", st.set)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// EnvNames lists every environment variable the commands read, with help.
func EnvNames() [][2]string {
	var s Settings
	var out [][2]string
	for _, st := range s.table() {
		out = append(out, [2]string{st.env, st.help})
	}
	return out
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range splitList(v) {
		if !strings.Contains(p, "/") {
			a, err := netip.ParseAddr(p)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pr, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	return out, nil
}

// GatewayConfig maps settings to the gateway's Config.
func (s *Settings) GatewayConfig() gateway.Config {
	return gateway.Config{
		Addr: s.Addr, AdminAddr: s.AdminAddr, AllowedOrigins: s.AllowedOrigins, TrustedProxies: s.TrustedProxies,
		MaxMessageBytes: s.MaxMessageBytes, DrainTimeout: s.DrainTimeout, SlowConsumerTimeout: s.SlowConsumerTimeout,
		SendQueueMessages: s.SendQueueMessages, SendQueueBytes: s.SendQueueBytes, EnablePprof: s.Pprof,
		Limits: gateway.Limits{
			HandshakesPerIP:      rate.Limit(s.HandshakesPerIP), // burst: the gateway's default for the rate
			AuthFailuresPerIP:    rate.Limit(s.AuthFailuresPerIP),
			ConnectionsPerUser:   s.ConnectionsPerUser,
			MessagesPerConn:      rate.Limit(s.MessagesPerConn),
			SubscriptionsPerConn: s.SubsPerConn,
			WritesPerConn:        rate.Limit(s.WritesPerConn),
			WriteBurstPerConn:    int(2 * s.WritesPerConn),
			WritesPerUser:        rate.Limit(s.WritesPerUser),
			WriteBurstPerUser:    int(2 * s.WritesPerUser),
		},
	}
}
