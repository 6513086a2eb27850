package deploy

import (
	"slices"
	"strings"
	"testing"
)

func TestMetricNames(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want []string
	}{
		{"plain", `firegate_ready == 0`, []string{"firegate_ready"}},
		{"histogram bucket", `histogram_quantile(0.99, sum by (le) (rate(firegate_fanout_latency_seconds_bucket[5m]))) > 1`,
			[]string{"firegate_fanout_latency_seconds"}},
		{"sum and count", `rate(firegate_handshake_latency_seconds_sum[5m]) / rate(firegate_handshake_latency_seconds_count[5m])`,
			[]string{"firegate_handshake_latency_seconds"}},
		{"dedup and sort", `firegate_b + firegate_a + firegate_b`, []string{"firegate_a", "firegate_b"}},
		{"label matchers and grafana vars", `sum by (reason) (rate(firegate_disconnects_total{instance=~"$instance", reason="slow_consumer"}[$__rate_interval]))`,
			[]string{"firegate_disconnects_total"}},
		{"go and process", `go_goroutines + process_resident_memory_bytes{job="x"} + up`, []string{"go_goroutines", "process_resident_memory_bytes"}},
		{"strings are not names", `label_replace(firegate_ready, "x", "firegate_fake", "", "") and 'go_fake' and ` + "`process_fake`",
			[]string{"firegate_ready"}},
		{"label names are not names", `sum by (go_version, process_x) (firegate_ready) * on (firegate_label) group_left (go_y) firegate_feeds_active`,
			[]string{"firegate_feeds_active", "firegate_ready"}},
		{"label name inside braces", `firegate_ready{firegate_shard="1"}`, []string{"firegate_ready"}},
		{"functions are not names", `go_fn(firegate_ready)`, []string{"firegate_ready"}},
		{"comments", "firegate_ready # firegate_commented\n+ firegate_feeds_active", []string{"firegate_feeds_active", "firegate_ready"}},
		{"grafana variable forms", `${firegate_x} + $firegate_y + [[firegate_z]] + ${go_a:csv} + firegate_ready`, []string{"firegate_ready"}},
		{"variable query", `label_values(firegate_ready, instance)`, []string{"firegate_ready"}},
		{"durations and numbers", `rate(firegate_bytes_sent_total[1h5m]) offset 5m > 1e-9`, []string{"firegate_bytes_sent_total"}},
		{"bare prefix is not a name", `firegate_ + go_ + process_`, nil},
		{"other prefixes ignored", `up + node_load1 + firegatex_y + xfiregate_y`, nil},
		{"only one suffix stripped", `firegate_x_count_count`, []string{"firegate_x_count"}},
		{"empty", ``, nil},
		{"unterminated string", `firegate_ready + "firegate_no`, []string{"firegate_ready"}},
		{"unterminated variable", `firegate_ready + ${oops`, []string{"firegate_ready"}},
		{"escaped quote", `firegate_a{x="a\"firegate_b"} + firegate_c`, []string{"firegate_a", "firegate_c"}},
		{"suffix alone is a name", `firegate_bucket + go_sum + process__count`, []string{"firegate_bucket", "go_sum", "process__count"}},
		{"digits in names", `firegate_p99_seconds`, []string{"firegate_p99_seconds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MetricNames(tt.expr)
			if !slices.Equal(got, tt.want) {
				t.Errorf("MetricNames(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

func FuzzMetricNames(f *testing.F) {
	f.Add(`histogram_quantile(0.99, sum by (le) (rate(firegate_fanout_latency_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`)
	f.Add(`firegate_a + "firegate_b" # firegate_c`)
	f.Add(`${x} [[y]] go_goroutines process_cpu_seconds_total_count`)
	f.Add(`sum without (go_x) (firegate_y{a="\"}`)
	f.Add("`unterminated firegate_x")
	f.Fuzz(func(t *testing.T, expr string) {
		got := MetricNames(expr)
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("MetricNames(%q) = %q: not sorted and unique", expr, got)
		}
		for _, name := range got {
			if !slices.ContainsFunc(metricPrefixes, func(p string) bool { return strings.HasPrefix(name, p) && len(name) > len(p) }) {
				t.Fatalf("MetricNames(%q) reports %q without a known prefix", expr, name)
			}
			found := strings.Contains(expr, name)
			for _, s := range seriesSuffixes {
				found = found || strings.Contains(expr, name+s)
			}
			if !found {
				t.Fatalf("MetricNames(%q) reports %q, which is not in the input", expr, name)
			}
			for i := 0; i < len(name); i++ {
				if !isIdentChar(name[i]) {
					t.Fatalf("MetricNames(%q) reports %q with byte %q", expr, name, name[i])
				}
			}
		}
	})
}
