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

// Metrics holds every collector. The labelled arrays are filled for every
// label value at construction and never written afterwards, so reading them
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

	// Labelled families, indexed by their typed label constants
	// (labels.go).
	Handshakes     [numHandshakeResults]prometheus.Counter
	AuthFailures   [numAuthFailReasons]prometheus.Counter
	Disconnects    [numDisconnectReasons]prometheus.Counter
	MessagesSent   [numSentTypes]prometheus.Counter
	ClientMessages [numClientTypes]prometheus.Counter
	QueueOverflows [numOverflowActions]prometheus.Counter
	RateLimited    [numLimits]prometheus.Counter
	// PolicyFilters counts subscriptions planned with a policy filter by
	// where it runs: pushed down into the Firestore query (Firestore bills
	// only the documents it returns) or in the gateway only.
	PolicyFilters    [numFilterWheres]prometheus.Counter
	FeedErrorsByCode map[codes.Code]prometheus.Counter

	// Writes counts write operations by op and result.
	Writes [numWriteOps][numWriteResults]prometheus.Counter
	// WriteLatency is one write request's time from decoded to answered.
	WriteLatency prometheus.Histogram

	// Ready is 1 while /readyz would answer 200.
	Ready prometheus.Gauge

	// Fleet holds the fleet-mode collectors (FIREGATE_NATS_URL).
	Fleet FleetMetrics
}

// LatencyBuckets spans 100 µs to 10 s.
var LatencyBuckets = prometheus.ExponentialBucketsRange(0.0001, 10, 21)

// New creates the collectors and registers them (and the Go and process
// collectors) on reg; reg may be nil.
func New(reg prometheus.Registerer) *Metrics {
	if err := checkLabels(); err != nil {
		panic(err)
	}
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
	vec := func(name, help, label string, values []string, out []prometheus.Counter) {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, []string{label})
		cs = append(cs, v)
		for i, val := range values {
			out[i] = v.WithLabelValues(val)
		}
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
	m.WriteLatency = hist("write_latency_seconds", "From a write decoded to its answer (written or error).")
	m.PolicyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "policy_reloads_total", Help: "Policy reload attempts by result."}, []string{"result"})
	m.PolicyReloads.WithLabelValues("ok")
	m.PolicyReloads.WithLabelValues("error")
	cs = append(cs, m.PolicyReloads)

	vec("handshakes_total", "WebSocket and SSE handshakes by result.", "result", HandshakeResults, m.Handshakes[:])
	vec("auth_failures_total", "Token verification failures by reason.", "reason", AuthFailReasons, m.AuthFailures[:])
	vec("disconnects_total", "Closed connections by reason.", "reason", DisconnectReasons, m.Disconnects[:])
	vec("messages_sent_total", "Messages written to clients by type.", "type", SentTypes, m.MessagesSent[:])
	vec("client_messages_total", "Messages received from clients by type.", "type", ClientTypes, m.ClientMessages[:])
	vec("send_queue_overflows_total", "Send queue overflows by the action taken.", "action", OverflowActions, m.QueueOverflows[:])
	vec("rate_limited_total", "Refusals by the limit that refused.", "limit", Limits, m.RateLimited[:])
	vec("policy_filters_total", "Subscriptions planned with a policy filter, by where the filter runs.", "where", FilterWheres, m.PolicyFilters[:])

	m.Fleet = newFleet(&cs)
	cs = append(cs, buildInfo())
	wv := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "writes_total", Help: "Write operations by op and result."}, []string{"op", "result"})
	cs = append(cs, wv)
	for op := range numWriteOps {
		for res := range numWriteResults {
			m.Writes[op][res] = wv.WithLabelValues(op.String(), res.String())
		}
	}

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
