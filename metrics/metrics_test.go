package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
)

func TestEveryLabelValueExistsAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	for name, want := range map[string]int{
		"firegate_handshakes_total":           len(HandshakeResults),
		"firegate_auth_failures_total":        len(AuthFailReasons),
		"firegate_disconnects_total":          len(DisconnectReasons),
		"firegate_messages_sent_total":        len(SentTypes),
		"firegate_client_messages_total":      len(ClientTypes),
		"firegate_send_queue_overflows_total": len(OverflowActions),
		"firegate_rate_limited_total":         len(Limits),
		"firegate_feed_errors_total":          17,
		"firegate_connections_active":         1,
		"firegate_fanout_latency_seconds":     1,
		"firegate_upstream_lag_seconds":       1,
		"go_goroutines":                       1,
		"process_resident_memory_bytes":       1,
	} {
		if series[name] != want {
			t.Errorf("%s: %d series, want %d", name, series[name], want)
		}
	}
	for name := range series {
		if strings.Contains(name, "org") || strings.Contains(name, "user") {
			t.Errorf("metric %s looks per-tenant", name)
		}
	}
}

func TestLatencyBucketsSpan100usTo10s(t *testing.T) {
	if LatencyBuckets[0] != 0.0001 || LatencyBuckets[len(LatencyBuckets)-1] < 9.999 || LatencyBuckets[len(LatencyBuckets)-1] > 10.001 {
		t.Fatalf("buckets %v", LatencyBuckets)
	}
}

// TestHotPathRecordingDoesNotAllocate covers what the fan-out path records
// per delivered frame and per upstream snapshot.
func TestHotPathRecordingDoesNotAllocate(t *testing.T) {
	m := New(prometheus.NewRegistry())
	allocs := testing.AllocsPerRun(1000, func() {
		m.MessagesSent["changes"].Inc()
		m.BytesSent.Add(312)
		m.FanoutLatency.Observe(0.0042)
		m.UpstreamLag.Observe(0.011)
		m.UpstreamChanges.Add(3)
		m.DuplicatesSuppr.Inc()
		m.QueueOverflows["catchup"].Inc()
		m.FeedError(codes.Unavailable)
	})
	if allocs != 0 {
		t.Fatalf("recording allocates %v times per run", allocs)
	}
	if got := testutil.ToFloat64(m.MessagesSent["changes"]); got != 1001 {
		t.Fatalf("messages_sent{changes} = %v", got)
	}
}

func BenchmarkRecordDelivery(b *testing.B) {
	m := New(prometheus.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		m.MessagesSent["changes"].Inc()
		m.BytesSent.Add(312)
		m.FanoutLatency.Observe(0.0042)
	}
}
