package gateway

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// Config is the gateway's configuration. The zero value of every field is a
// documented safe default; New validates the rest.
type Config struct {
	// Addr is the WebSocket/HTTP listen address; "" → ":8080".
	Addr string
	// AdminAddr serves /metrics, /healthz, /readyz, /debug/memory and, with
	// EnablePprof, /debug/pprof; "" → ":9090". "-" disables the admin server.
	AdminAddr string
	// AllowedOrigins lists browser origins ("https://app.example.com",
	// "https://*.example.com": a `*` stands for exactly one DNS label). A
	// request with an Origin header not listed is refused with 403. Empty:
	// no browser origin is allowed (native and server clients only).
	AllowedOrigins []string
	// TrustedProxies are peers whose X-Forwarded-For names the client IP
	// for per-IP limits. Empty: the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// MaxMessageBytes bounds inbound frames; a larger frame closes 1009.
	// 0 → 64 KiB.
	MaxMessageBytes int64
	// AuthTimeout is how long an unauthenticated connection may wait for
	// its first `auth` message; 0 → 10 s.
	AuthTimeout time.Duration
	// ExpiryWarning is how long before a token's expiry `auth_expiring` is
	// sent; 0 → 10 s.
	ExpiryWarning time.Duration
	// Leeway is how long past its expiry a token keeps a connection open;
	// 0 → 5 s.
	Leeway time.Duration
	// SendQueueMessages and SendQueueBytes bound each connection's send
	// queue; 0 → 512 messages and 4 MiB. Overflow drops the queued data and
	// catches the subscriber up once drained (docs/protocol.md, "Slow consumers").
	SendQueueMessages int
	SendQueueBytes    int
	// SlowConsumerTimeout bounds one write to a client; a client that
	// accepts nothing for this long is closed 4009. 0 → 30 s.
	SlowConsumerTimeout time.Duration
	// DrainTimeout is the window over which connections are closed with
	// 1012 on shutdown; 0 → 30 s.
	DrainTimeout time.Duration
	// EnablePprof mounts net/http/pprof on the admin address.
	EnablePprof bool
	// Limits are the rate and count limits; zero fields take defaults.
	Limits Limits
}

// Limits configures the per-IP, per-user and per-connection limits.
// Feeds per org and overall are the Hub's (subscriptions.HubConfig).
type Limits struct {
	// HandshakesPerIP is the sustained handshake rate per client IP;
	// 0 → 20/s. HandshakeBurst 0 → two seconds' worth of the rate, at
	// least 1 (40 at 20/s; 1 at 0.3/s).
	HandshakesPerIP rate.Limit
	HandshakeBurst  int
	// AuthFailuresPerIP is the sustained rate of failed authentications
	// per IP before handshakes from it are refused; 0 → 1/s, burst 10.
	AuthFailuresPerIP rate.Limit
	AuthFailureBurst  int
	// ConnectionsPerUser caps concurrent connections of one user; 0 → 100.
	ConnectionsPerUser int
	// MessagesPerConn is the sustained client message rate per
	// connection; 0 → 20/s, burst MessageBurst (0 → 50).
	MessagesPerConn rate.Limit
	MessageBurst    int
	// AbuseThreshold is how many consecutive rate-limited messages close
	// the connection 4008; 0 → 50.
	AbuseThreshold int
	// WritesPerConn is the sustained write rate (write messages) per
	// connection; 0 → 10/s with burst WriteBurstPerConn (0 → 20).
	WritesPerConn     rate.Limit
	WriteBurstPerConn int
	// WritesPerUser is the sustained write rate per user over all its
	// connections and POST /v1/write, on this instance; 0 → 20/s with
	// burst WriteBurstPerUser (0 → 40).
	WritesPerUser     rate.Limit
	WriteBurstPerUser int
	// SubscriptionsPerConn caps live subscriptions on one connection;
	// 0 → 100.
	SubscriptionsPerConn int
	// MaxTrackedIPs bounds the per-IP limiter table; idle entries are
	// evicted first. 0 → 100,000.
	MaxTrackedIPs int
}

// def sets *p to v when *p is the zero value.
func def[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// handshakeBurstFor is the default handshake burst for a rate: two
// seconds' worth, rounded up, at least one handshake (a burst of 0 would
// refuse every handshake).
func handshakeBurstFor(r rate.Limit) int {
	return max(1, int(math.Ceil(2*float64(r))))
}

func (c *Config) setDefaults() error {
	def(&c.Addr, ":8080")
	def(&c.AdminAddr, ":9090")
	def(&c.MaxMessageBytes, 64<<10)
	def(&c.AuthTimeout, 10*time.Second)
	def(&c.ExpiryWarning, 10*time.Second)
	def(&c.Leeway, 5*time.Second)
	def(&c.SendQueueMessages, 512)
	def(&c.SendQueueBytes, 4<<20)
	def(&c.SlowConsumerTimeout, 30*time.Second)
	def(&c.DrainTimeout, 30*time.Second)
	def(&c.Limits.HandshakesPerIP, 20)
	def(&c.Limits.HandshakeBurst, handshakeBurstFor(c.Limits.HandshakesPerIP))
	def(&c.Limits.AuthFailuresPerIP, 1)
	def(&c.Limits.AuthFailureBurst, 10)
	def(&c.Limits.ConnectionsPerUser, 100)
	def(&c.Limits.MessagesPerConn, 20)
	def(&c.Limits.MessageBurst, 50)
	def(&c.Limits.AbuseThreshold, 50)
	def(&c.Limits.SubscriptionsPerConn, 100)
	def(&c.Limits.WritesPerConn, 10)
	def(&c.Limits.WriteBurstPerConn, 20)
	def(&c.Limits.WritesPerUser, 20)
	def(&c.Limits.WriteBurstPerUser, 40)
	def(&c.Limits.MaxTrackedIPs, 100_000)
	l := &c.Limits
	var errs []error
	if c.MaxMessageBytes < 256 {
		errs = append(errs, fmt.Errorf("max message bytes %d is below 256", c.MaxMessageBytes))
	}
	if c.SendQueueMessages < 1 || c.SendQueueBytes < 1024 {
		errs = append(errs, errors.New("send queue must hold at least 1 message and 1 KiB"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"auth timeout", c.AuthTimeout}, {"expiry warning", c.ExpiryWarning}, {"leeway", c.Leeway}, {"slow consumer timeout", c.SlowConsumerTimeout}, {"drain timeout", c.DrainTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", d.name))
		}
	}
	if l.HandshakesPerIP < 0 || l.AuthFailuresPerIP < 0 || l.MessagesPerConn < 0 || l.WritesPerConn < 0 || l.WritesPerUser < 0 {
		errs = append(errs, errors.New("rates must not be negative"))
	}
	if l.ConnectionsPerUser < 0 || l.SubscriptionsPerConn < 0 || l.HandshakeBurst < 0 || l.MessageBurst < 0 || l.AuthFailureBurst < 0 || l.WriteBurstPerConn < 0 || l.WriteBurstPerUser < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	for _, o := range c.AllowedOrigins {
		if _, err := parseOriginPattern(o); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
