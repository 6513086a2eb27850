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
		"firegate_writes_total":               len(WriteOps) * len(WriteResults),
		"firegate_write_latency_seconds":      1,
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
		m.MessagesSent[SentChanges].Inc()
		m.BytesSent.Add(312)
		m.FanoutLatency.Observe(0.0042)
		m.UpstreamLag.Observe(0.011)
		m.UpstreamChanges.Add(3)
		m.DuplicatesSuppr.Inc()
		m.QueueOverflows[OverflowCatchup].Inc()
		m.FeedError(codes.Unavailable)
	})
	if allocs != 0 {
		t.Fatalf("recording allocates %v times per run", allocs)
	}
	if got := testutil.ToFloat64(m.MessagesSent[SentChanges]); got != 1001 {
		t.Fatalf("messages_sent{changes} = %v", got)
	}
}

func BenchmarkRecordDelivery(b *testing.B) {
	m := New(prometheus.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		m.MessagesSent[SentChanges].Inc()
		m.BytesSent.Add(312)
		m.FanoutLatency.Observe(0.0042)
	}
}

// TestLabelConstantsMatchExposition ties every typed label constant to the
// series /metrics exposes: each constant's value is a declared label value of
// its family (a constant added without its label, or a label without its
// constant, fails here), and checkLabels accepts the tables.
func TestLabelConstantsMatchExposition(t *testing.T) {
	if err := checkLabels(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	New(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string]map[string]bool{}
	for _, mf := range mfs {
		vals := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				vals[lp.GetValue()] = true
			}
		}
		exposed[strings.TrimPrefix(mf.GetName(), Namespace+"_")] = vals
	}
	type fam struct {
		name string
		n    int
		str  func(int) string
	}
	for _, f := range []fam{
		{"handshakes_total", int(numHandshakeResults), func(i int) string { return HandshakeResult(i).String() }},
		{"auth_failures_total", int(numAuthFailReasons), func(i int) string { return AuthFailReason(i).String() }},
		{"disconnects_total", int(numDisconnectReasons), func(i int) string { return DisconnectReason(i).String() }},
		{"messages_sent_total", int(numSentTypes), func(i int) string { return SentType(i).String() }},
		{"client_messages_total", int(numClientTypes), func(i int) string { return ClientType(i).String() }},
		{"send_queue_overflows_total", int(numOverflowActions), func(i int) string { return OverflowAction(i).String() }},
		{"rate_limited_total", int(numLimits), func(i int) string { return Limit(i).String() }},
	} {
		if len(exposed[f.name]) != f.n {
			t.Errorf("%s: %d label values exposed, %d constants", f.name, len(exposed[f.name]), f.n)
		}
		for i := 0; i < f.n; i++ {
			if v := f.str(i); !exposed[f.name][v] {
				t.Errorf("%s: constant %d has label %q, which /metrics does not declare", f.name, i, v)
			}
		}
	}
}

func TestCheckLabelsRefusesRepeatedOrEmptyValues(t *testing.T) {
	saved := labelFamilies["disconnects_total"]
	defer func() { labelFamilies["disconnects_total"] = saved }()
	for _, bad := range [][]string{{"client", "client"}, {"client", ""}} {
		labelFamilies["disconnects_total"] = bad
		if err := checkLabels(); err == nil {
			t.Errorf("checkLabels accepted %q", bad)
		}
	}
}
