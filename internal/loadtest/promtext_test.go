package loadtest

import (
	"math"
	"testing"
)

const sampleExposition = `# HELP firegate_feeds_active Feeds.
# TYPE firegate_feeds_active gauge
firegate_feeds_active 3
firegate_listeners_started_total 7
firegate_messages_sent_total{type="changes"} 1.5e+06
firegate_disconnects_total{reason="slow_consumer"} 0
process_resident_memory_bytes 3.2768e+07
weird{b="2",a="x \"q\" \\ \n"} 1 1700000000000
firegate_fanout_latency_seconds_bucket{le="+Inf"} 12
nan_metric NaN
inf_metric -Inf

`

func TestParseExposition(t *testing.T) {
	s, err := parseExposition([]byte(sampleExposition))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"firegate_feeds_active", nil, 3},
		{"firegate_listeners_started_total", nil, 7},
		{"firegate_messages_sent_total", []string{"type", "changes"}, 1.5e6},
		{"firegate_disconnects_total", []string{"reason", "slow_consumer"}, 0},
		{"process_resident_memory_bytes", nil, 32768000},
		{"weird", []string{"a", "x \"q\" \\ \n", "b", "2"}, 1},
		{"weird", []string{"b", "2", "a", "x \"q\" \\ \n"}, 1}, // label order does not matter
		{"firegate_fanout_latency_seconds_bucket", []string{"le", "+Inf"}, 12},
		{"inf_metric", nil, math.Inf(-1)},
	}
	for _, tc := range tests {
		got, ok := s.Get(tc.name, tc.labels...)
		if !ok || got != tc.want {
			t.Errorf("Get(%s %v) = %v, %v; want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if v, ok := s.Get("nan_metric"); !ok || !math.IsNaN(v) {
		t.Errorf("nan_metric = %v %v", v, ok)
	}
	if _, ok := s.Get("absent"); ok {
		t.Error("absent metric found")
	}
	if s.Value("absent") != 0 {
		t.Error("Value of an absent metric must be 0")
	}
}

// TestParseExpositionHistogram: a typed histogram is flattened as the text
// format shows it (buckets cumulative, with their le label).
func TestParseExpositionHistogram(t *testing.T) {
	const in = `# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{op="a",le="0.005"} 3
lat_seconds_bucket{op="a",le="0.1"} 7
lat_seconds_bucket{op="a",le="+Inf"} 8
lat_seconds_sum{op="a"} 0.42
lat_seconds_count{op="a"} 8
`
	s, err := parseExposition([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"lat_seconds_bucket", []string{"op", "a", "le", "0.005"}, 3},
		{"lat_seconds_bucket", []string{"le", "0.1", "op", "a"}, 7},
		{"lat_seconds_bucket", []string{"op", "a", "le", "+Inf"}, 8},
		{"lat_seconds_sum", []string{"op", "a"}, 0.42},
		{"lat_seconds_count", []string{"op", "a"}, 8},
	} {
		if got, ok := s.Get(tc.name, tc.labels...); !ok || got != tc.want {
			t.Errorf("Get(%s %v) = %v, %v; want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
}

func TestParseExpositionErrors(t *testing.T) {
	tests := []string{
		"{a=\"b\"} 1",     // no name
		"m{a=b} 1",        // unquoted
		"m{a=\"b} 1",      // unterminated
		"m{a=\"b\\x\"} 1", // unknown escape
		"m{a=\"b\\",       // dangling escape
		"m{=\"b\"} 1",     // no label name
		"m",               // no value
		"m 1 2 3",         // too many fields
		"m abc",           // bad value
		"m{a=\"b\"}",      // no value after labels
		"9m 1",            // name starts with a digit
		"# TYPE m counter\nm 1\n# TYPE m gauge\nm 2", // two types for one name
	}
	for _, in := range tests {
		if _, err := parseExposition([]byte(in)); err == nil {
			t.Errorf("parseExposition(%.40q) accepted", in)
		}
	}
}

func FuzzParseExposition(f *testing.F) {
	f.Add([]byte(sampleExposition))
	f.Add([]byte(`m{a="\\"} 1`))
	f.Add([]byte("a 1\nb{c=\"d\"} 2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseExposition(b)
		if err != nil {
			return
		}
		// Every key re-parses to itself: keys are canonical.
		for k, v := range s {
			s2, err := parseExposition([]byte(k + " 1"))
			if err != nil {
				t.Fatalf("key %q does not re-parse: %v", k, err)
			}
			if _, ok := s2[k]; !ok {
				t.Fatalf("key %q re-parses as %v", k, s2)
			}
			_ = v
		}
	})
}

func TestBucketQuantile(t *testing.T) {
	const h = "lat_seconds"
	mk := func(c1, c2, c3, inf float64) metricSamples {
		return metricSamples{
			h + `_bucket{le="0.001"}`: c1, h + `_bucket{le="0.01"}`: c2, h + `_bucket{le="0.1"}`: c3, h + `_bucket{le="+Inf"}`: inf,
			h + "_count": inf,
		}
	}
	before := mk(10, 10, 10, 10)
	after := mk(60, 109, 110, 120) // gained 50, 99, 100, 110 cumulatively
	tests := []struct {
		q    float64
		want float64
	}{
		{0.1, 0.001}, {0.45, 0.001}, {0.46, 0.01}, {0.9, 0.01}, {0.909, 0.1}, {0.99, math.Inf(1)}, {1, math.Inf(1)},
	}
	for _, tc := range tests {
		got, ok := bucketQuantile(before, after, h, tc.q)
		if !ok || got != tc.want {
			t.Errorf("q %v = %v %v, want %v", tc.q, got, ok, tc.want)
		}
	}
	if _, ok := bucketQuantile(before, before, h, 0.5); ok {
		t.Error("no observations must give ok=false")
	}
	if _, ok := bucketQuantile(before, after, "absent", 0.5); ok {
		t.Error("absent histogram must give ok=false")
	}
}
