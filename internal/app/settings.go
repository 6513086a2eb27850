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
	Addr, AdminAddr     string
	PolicyFile          string
	AllowedOrigins      []string
	TrustedProxies      []netip.Prefix
	ClerkSecretKey      string
	ClerkJWKSURL        string
	ClerkJWTKey         string
	ClerkIssuer         string
	AuthorizedParties   []string
	AllowMissingAzp     bool
	WebhookSecret       string
	ProjectID           string
	Database            string
	EmulatorHost        string
	MaxMessageBytes     int64
	DrainTimeout        time.Duration
	SlowConsumerTimeout time.Duration
	FeedLinger          time.Duration
	MaxFeeds            int
	MaxFeedsPerOrg      int
	SendQueueMessages   int
	SendQueueBytes      int
	HandshakesPerIP     float64
	AuthFailuresPerIP   float64
	ConnectionsPerUser  int
	MessagesPerConn     float64
	SubsPerConn         int
	ReplayCount         int
	ReplayAge           time.Duration
	Pprof               bool
	LogLevel            string
	LogFormat           string
}

type setting struct {
	env, flag, help string
	set             func(string) error
	get             func() string
}

func (s *Settings) table() []setting {
	str := func(p *string) (func(string) error, func() string) {
		return func(v string) error { *p = v; return nil }, func() string { return *p }
	}
	list := func(p *[]string) (func(string) error, func() string) {
		return func(v string) error { *p = splitList(v); return nil }, func() string { return strings.Join(*p, ",") }
	}
	dur := func(p *time.Duration) (func(string) error, func() string) {
		return func(v string) error {
				d, err := time.ParseDuration(v)
				if err != nil {
					return err
				}
				*p = d
				return nil
			}, func() string {
				if *p == 0 {
					return ""
				}
				return p.String()
			}
	}
	integer := func(p *int) (func(string) error, func() string) {
		return func(v string) error {
				n, err := strconv.Atoi(v)
				if err != nil {
					return err
				}
				*p = n
				return nil
			}, func() string {
				if *p == 0 {
					return ""
				}
				return strconv.Itoa(*p)
			}
	}
	i64 := func(p *int64) (func(string) error, func() string) {
		return func(v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return err
				}
				*p = n
				return nil
			}, func() string {
				if *p == 0 {
					return ""
				}
				return strconv.FormatInt(*p, 10)
			}
	}
	float := func(p *float64) (func(string) error, func() string) {
		return func(v string) error {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return err
				}
				*p = f
				return nil
			}, func() string {
				if *p == 0 {
					return ""
				}
				return strconv.FormatFloat(*p, 'g', -1, 64)
			}
	}
	boolean := func(p *bool) (func(string) error, func() string) {
		return func(v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return err
				}
				*p = b
				return nil
			}, func() string {
				if !*p {
					return ""
				}
				return "true"
			}
	}
	prefixes := func(p *[]netip.Prefix) (func(string) error, func() string) {
		return func(v string) error {
				out, err := parsePrefixes(v)
				if err != nil {
					return err
				}
				*p = out
				return nil
			}, func() string {
				var ss []string
				for _, x := range *p {
					ss = append(ss, x.String())
				}
				return strings.Join(ss, ",")
			}
	}
	mk := func(env, fl, help string, f func(string) error, g func() string) setting {
		return setting{env: env, flag: fl, help: help, set: f, get: g}
	}
	var t []setting
	add := func(env, fl, help string, fg func() (func(string) error, func() string)) {
		f, g := fg()
		t = append(t, mk(env, fl, help, f, g))
	}
	add("FIREGATE_ADDR", "addr", "WebSocket/HTTP listen address (default :8080; 127.0.0.1:8080 in dev)", func() (func(string) error, func() string) { return str(&s.Addr) })
	add("FIREGATE_ADMIN_ADDR", "admin-addr", "admin listen address for /metrics, /healthz, /readyz, pprof (default :9090; 127.0.0.1:9090 in dev; - disables)", func() (func(string) error, func() string) { return str(&s.AdminAddr) })
	add("FIREGATE_POLICY", "policy", "policy file (required in serve)", func() (func(string) error, func() string) { return str(&s.PolicyFile) })
	add("FIREGATE_ALLOWED_ORIGINS", "allowed-origins", "comma list of allowed browser origins; * stands for one DNS label", func() (func(string) error, func() string) { return list(&s.AllowedOrigins) })
	add("FIREGATE_TRUSTED_PROXIES", "trusted-proxies", "comma list of CIDRs whose X-Forwarded-For is trusted", func() (func(string) error, func() string) { return prefixes(&s.TrustedProxies) })
	add("CLERK_SECRET_KEY", "clerk-secret-key", "Clerk secret key: fetch JWKS from Clerk's Backend API", func() (func(string) error, func() string) { return str(&s.ClerkSecretKey) })
	add("CLERK_JWKS_URL", "clerk-jwks-url", "fetch JWKS from this URL (needs CLERK_ISSUER)", func() (func(string) error, func() string) { return str(&s.ClerkJWKSURL) })
	add("CLERK_JWT_KEY", "clerk-jwt-key", "PEM public key for networkless verification", func() (func(string) error, func() string) { return str(&s.ClerkJWTKey) })
	add("CLERK_ISSUER", "clerk-issuer", "expected iss of session tokens", func() (func(string) error, func() string) { return str(&s.ClerkIssuer) })
	add("CLERK_AUTHORIZED_PARTIES", "clerk-authorized-parties", "allowed azp values (default: the allowed origins)", func() (func(string) error, func() string) { return list(&s.AuthorizedParties) })
	add("FIREGATE_ALLOW_MISSING_AZP", "allow-missing-azp", "accept tokens without azp (native apps)", func() (func(string) error, func() string) { return boolean(&s.AllowMissingAzp) })
	add("CLERK_WEBHOOK_SECRET", "clerk-webhook-secret", "Svix signing secret (whsec_...) enabling /v1/webhooks/clerk", func() (func(string) error, func() string) { return str(&s.WebhookSecret) })
	add("FIRESTORE_PROJECT_ID", "project", "Firestore project id (required in serve)", func() (func(string) error, func() string) { return str(&s.ProjectID) })
	add("FIRESTORE_DATABASE", "database", "Firestore database id (default (default))", func() (func(string) error, func() string) { return str(&s.Database) })
	add("FIRESTORE_EMULATOR_HOST", "emulator-host", "use the Firestore emulator at host:port", func() (func(string) error, func() string) { return str(&s.EmulatorHost) })
	add("FIREGATE_MAX_MESSAGE_BYTES", "max-message-bytes", "largest inbound frame (default 65536); larger closes 1009", func() (func(string) error, func() string) { return i64(&s.MaxMessageBytes) })
	add("FIREGATE_DRAIN_TIMEOUT", "drain-timeout", "window over which connections close on shutdown (default 30s)", func() (func(string) error, func() string) { return dur(&s.DrainTimeout) })
	add("FIREGATE_SLOW_CONSUMER_TIMEOUT", "slow-consumer-timeout", "a client that accepts nothing this long is closed 4009 (default 30s)", func() (func(string) error, func() string) { return dur(&s.SlowConsumerTimeout) })
	add("FIREGATE_FEED_LINGER", "feed-linger", "how long a Feed outlives its last subscriber (default 30s)", func() (func(string) error, func() string) { return dur(&s.FeedLinger) })
	add("FIREGATE_MAX_FEEDS", "max-feeds", "Feeds (Firestore listeners) overall (default 1000)", func() (func(string) error, func() string) { return integer(&s.MaxFeeds) })
	add("FIREGATE_MAX_FEEDS_PER_ORG", "max-feeds-per-org", "Feeds per org or user (default 100)", func() (func(string) error, func() string) { return integer(&s.MaxFeedsPerOrg) })
	add("FIREGATE_SEND_QUEUE_MESSAGES", "send-queue-messages", "per-connection send queue, messages (default 512)", func() (func(string) error, func() string) { return integer(&s.SendQueueMessages) })
	add("FIREGATE_SEND_QUEUE_BYTES", "send-queue-bytes", "per-connection send queue, bytes (default 4194304)", func() (func(string) error, func() string) { return integer(&s.SendQueueBytes) })
	add("FIREGATE_HANDSHAKES_PER_IP", "handshakes-per-ip", "handshakes per second per client IP (default 20, burst 2x)", func() (func(string) error, func() string) { return float(&s.HandshakesPerIP) })
	add("FIREGATE_AUTH_FAILURES_PER_IP", "auth-failures-per-ip", "failed authentications per second per IP (default 1, burst 10)", func() (func(string) error, func() string) { return float(&s.AuthFailuresPerIP) })
	add("FIREGATE_CONNECTIONS_PER_USER", "connections-per-user", "concurrent connections per user (default 100)", func() (func(string) error, func() string) { return integer(&s.ConnectionsPerUser) })
	add("FIREGATE_MESSAGES_PER_CONN", "messages-per-conn", "client messages per second per connection (default 20, burst 50)", func() (func(string) error, func() string) { return float(&s.MessagesPerConn) })
	add("FIREGATE_SUBSCRIPTIONS_PER_CONN", "subscriptions-per-conn", "live subscriptions per connection (default 100)", func() (func(string) error, func() string) { return integer(&s.SubsPerConn) })
	add("FIREGATE_REPLAY_COUNT", "replay-count", "replay buffer entries per Feed for resume (default 1024)", func() (func(string) error, func() string) { return integer(&s.ReplayCount) })
	add("FIREGATE_REPLAY_AGE", "replay-age", "replay buffer age per Feed for resume (default 5m)", func() (func(string) error, func() string) { return dur(&s.ReplayAge) })
	add("FIREGATE_PPROF", "pprof", "serve /debug/pprof on the admin address", func() (func(string) error, func() string) { return boolean(&s.Pprof) })
	add("FIREGATE_LOG_LEVEL", "log-level", "debug, info, warn or error (default info)", func() (func(string) error, func() string) { return str(&s.LogLevel) })
	add("FIREGATE_LOG_FORMAT", "log-format", "json or text (default json)", func() (func(string) error, func() string) { return str(&s.LogFormat) })
	return t
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
			HandshakesPerIP:      rate.Limit(s.HandshakesPerIP),
			HandshakeBurst:       int(2 * s.HandshakesPerIP),
			AuthFailuresPerIP:    rate.Limit(s.AuthFailuresPerIP),
			ConnectionsPerUser:   s.ConnectionsPerUser,
			MessagesPerConn:      rate.Limit(s.MessagesPerConn),
			SubscriptionsPerConn: s.SubsPerConn,
		},
	}
}
