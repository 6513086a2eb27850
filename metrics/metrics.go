// Package metrics owns Firegate's Prometheus collectors. Every labelled
// family is created with all its label values at zero, and the children are
// resolved once into fields, so recording on the hot path is a single atomic
// operation and never allocates. No metric carries an org or user label.
//
// A *Metrics is safe for concurrent use. New(nil) returns working,
// unregistered collectors (for tests and tools).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"
)

// Namespace prefixes every metric.
const Namespace = "firegate"

// Label values, exactly as DESIGN.md lists them.
var (
	HandshakeResults  = []string{"ok", "unauthorized", "forbidden_origin", "rate_limited", "error"}
	AuthFailReasons   = []string{"missing", "malformed", "expired", "not_yet_valid", "bad_signature", "unknown_kid", "bad_issuer", "bad_azp", "bad_alg"}
	DisconnectReasons = []string{"client", "auth_expired", "auth_invalid", "user_changed", "rate_limited", "slow_consumer", "too_big", "drain", "error"}
	SentTypes         = []string{"welcome", "subscribed", "snapshot", "changes", "unsubscribed", "error", "auth_expiring", "pong"}
	ClientTypes       = []string{"auth", "subscribe", "unsubscribe", "ping", "invalid"}
	OverflowActions   = []string{"catchup", "disconnect"}
	Limits            = []string{"handshake", "auth_failures", "connections_per_user", "messages", "subscriptions", "feeds_per_org", "feeds"}
)

// Metrics holds every collector. Map fields are filled for every label value
// at construction and never written afterwards, so reading them
// concurrently is safe.
type Metrics struct {
	ConnectionsActive   prometheus.Gauge
	SubscriptionsActive prometheus.Gauge
	FeedsActive         prometheus.Gauge
	TokenRefreshes      prometheus.Counter
	UpstreamChanges     prometheus.Counter
	DuplicatesSuppr     prometheus.Counter
	BytesSent           prometheus.Counter
	ListenersStarted    prometheus.Counter
	PolicyReloads       *prometheus.CounterVec // result=ok|error
	FanoutLatency       prometheus.Histogram
	UpstreamLag         prometheus.Histogram
	HandshakeLatency    prometheus.Histogram

	Handshakes       map[string]prometheus.Counter
	AuthFailures     map[string]prometheus.Counter
	Disconnects      map[string]prometheus.Counter
	MessagesSent     map[string]prometheus.Counter
	ClientMessages   map[string]prometheus.Counter
	QueueOverflows   map[string]prometheus.Counter
	RateLimited      map[string]prometheus.Counter
	FeedErrorsByCode map[codes.Code]prometheus.Counter

	// Ready is 1 while /readyz would answer 200.
	Ready prometheus.Gauge
}

// LatencyBuckets spans 100 µs to 10 s.
var LatencyBuckets = prometheus.ExponentialBucketsRange(0.0001, 10, 21)

// New creates the collectors and registers them (and the Go and process
// collectors) on reg; reg may be nil.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{}
	var cs []prometheus.Collector
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
		cs = append(cs, g)
		return g
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
		cs = append(cs, c)
		return c
	}
	hist := func(name, help string) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: LatencyBuckets})
		cs = append(cs, h)
		return h
	}
	vec := func(name, help, label string, values []string) map[string]prometheus.Counter {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, []string{label})
		cs = append(cs, v)
		out := make(map[string]prometheus.Counter, len(values))
		for _, val := range values {
			out[val] = v.WithLabelValues(val)
		}
		return out
	}
	m.ConnectionsActive = gauge("connections_active", "Open client connections (WebSocket and SSE).")
	m.SubscriptionsActive = gauge("subscriptions_active", "Live subscriptions across all connections.")
	m.FeedsActive = gauge("feeds_active", "Feeds (one upstream Firestore listener each), lingering ones included.")
	m.Ready = gauge("ready", "1 while the gateway reports ready.")
	m.TokenRefreshes = counter("token_refreshes_total", "Successful in-band token refreshes.")
	m.UpstreamChanges = counter("upstream_changes_total", "Document changes received from Firestore listeners.")
	m.DuplicatesSuppr = counter("duplicates_suppressed_total", "Upstream changes dropped because the document version was already delivered.")
	m.BytesSent = counter("bytes_sent_total", "Payload bytes written to clients.")
	m.ListenersStarted = counter("listeners_started_total", "Firestore listeners started (each is a full read billed by Firestore).")
	m.FanoutLatency = hist("fanout_latency_seconds", "From upstream snapshot received to frame written to the client.")
	m.UpstreamLag = hist("upstream_lag_seconds", "From Firestore read_time to snapshot received by the gateway.")
	m.HandshakeLatency = hist("handshake_latency_seconds", "From upgrade request to welcome sent.")
	m.PolicyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "policy_reloads_total", Help: "Policy reload attempts by result."}, []string{"result"})
	m.PolicyReloads.WithLabelValues("ok")
	m.PolicyReloads.WithLabelValues("error")
	cs = append(cs, m.PolicyReloads)

	m.Handshakes = vec("handshakes_total", "WebSocket and SSE handshakes by result.", "result", HandshakeResults)
	m.AuthFailures = vec("auth_failures_total", "Token verification failures by reason.", "reason", AuthFailReasons)
	m.Disconnects = vec("disconnects_total", "Closed connections by reason.", "reason", DisconnectReasons)
	m.MessagesSent = vec("messages_sent_total", "Messages written to clients by type.", "type", SentTypes)
	m.ClientMessages = vec("client_messages_total", "Messages received from clients by type.", "type", ClientTypes)
	m.QueueOverflows = vec("send_queue_overflows_total", "Send queue overflows by the action taken.", "action", OverflowActions)
	m.RateLimited = vec("rate_limited_total", "Refusals by the limit that refused.", "limit", Limits)

	fe := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "feed_errors_total", Help: "Upstream listener errors by gRPC code."}, []string{"code"})
	cs = append(cs, fe)
	m.FeedErrorsByCode = make(map[codes.Code]prometheus.Counter, 17)
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m.FeedErrorsByCode[c] = fe.WithLabelValues(c.String())
	}

	if reg != nil {
		reg.MustRegister(cs...)
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// FeedError counts one upstream error; unknown codes count as Unknown.
func (m *Metrics) FeedError(c codes.Code) {
	if ctr, ok := m.FeedErrorsByCode[c]; ok {
		ctr.Inc()
		return
	}
	m.FeedErrorsByCode[codes.Unknown].Inc()
}
