package loadtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func testReport() *Report {
	var h Histogram
	for i := 1; i <= 100; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	lat := h.Summary()
	r := &Report{Machine: describeMachine(), StartedAt: time.Now(), Command: "firegate-loadtest <script>", RunID: "x"}
	r.Runs = []*RunResult{
		{Scenario: ScenarioHold, Target: KindFiregate, Total: InstanceResult{Name: "total", RSSPerConn: 20000, HeapPerConn: 9000, GoroutinesPerConn: 1}},
		{Scenario: ScenarioHold, Target: KindBaseline, Total: InstanceResult{Name: "total", RSSPerConn: 25000, HeapPerConn: 10000, GoroutinesPerConn: 2}},
		{Scenario: ScenarioFanout, Target: KindFiregate, DeliveriesPerS: 100000, Latency: &lat, ServerCPUPerM: 5, Deliveries: 10,
			Series: []Sample{{T: 1, DeliveriesPerS: 5, RSS: 1 << 20}, {T: 2, DeliveriesPerS: 7, RSS: 2 << 20}}},
		{Scenario: ScenarioFanout, Target: KindBaseline, DeliveriesPerS: 150000, Latency: &lat, ServerCPUPerM: 4},
		{Scenario: ScenarioFanout, Target: KindBaselineBatched, DeliveriesPerS: 500000, Latency: &lat, ServerCPUPerM: 2},
	}
	for _, x := range r.Runs[2:] {
		x.Params = map[string]any{"feeds": 1, "rate": "1"}
	}
	r.Runs[0].check("passes", true, "fine")
	r.Runs[2].check("fails", false, "%d missing", 3)
	return r
}

func TestRatios(t *testing.T) {
	r := testReport()
	r.computeRatios()
	byName := map[string]Ratio{}
	for _, q := range r.Ratios {
		byName[q.Name] = q
	}
	tests := []struct {
		name  string
		ratio float64
		met   *bool
	}{
		{"hold: resident memory per idle connection", 0.8, ptr(true)},
		{"fanout: deliveries per second at the offered rate vs baseline-batched", 0.2, nil},
		{"fanout: p99 commit (publish) → receipt vs baseline", 1, ptr(true)},
		{"fanout: p99 commit (publish) → receipt vs baseline-batched", 1, nil},
		{"fanout: server CPU-seconds per million deliveries vs baseline", 1.25, nil},
	}
	for _, tc := range tests {
		q, ok := byName[tc.name]
		if !ok {
			t.Fatalf("ratio %q missing; have %v", tc.name, r.Ratios)
		}
		if q.Ratio != tc.ratio || (q.Met == nil) != (tc.met == nil) || (q.Met != nil && *q.Met != *tc.met) {
			t.Errorf("%s: ratio %v met %v, want %v %v", tc.name, q.Ratio, q.Met, tc.ratio, tc.met)
		}
	}
	// At saturation the throughput target applies and latency has none.
	for _, x := range r.Runs {
		if x.Scenario == ScenarioFanout {
			x.Params = map[string]any{"rate": "max", "feeds": 1}
		}
	}
	r.computeRatios()
	byName = map[string]Ratio{}
	for _, q := range r.Ratios {
		byName[q.Name] = q
	}
	if q := byName["fanout: deliveries per second at saturation vs baseline-batched"]; q.Met == nil || *q.Met || q.Ratio != 0.2 {
		t.Errorf("saturated throughput ratio: %+v", q)
	}
	if q := byName["fanout: p99 commit (publish) → receipt vs baseline"]; q.Met != nil {
		t.Errorf("saturated latency ratio has a target: %+v", q)
	}
	if got := r.Failed(); len(got) != 1 || !strings.Contains(got[0], "fanout/firegate: fails: 3 missing") {
		t.Errorf("Failed() = %v", got)
	}
}

func ptr(b bool) *bool { return &b }

func TestReportOutputs(t *testing.T) {
	r := testReport()
	r.computeRatios()
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not decode: %v", err)
	}
	if len(back.Runs) != len(r.Runs) || back.Runs[2].Latency.P99MS != r.Runs[2].Latency.P99MS {
		t.Fatal("JSON round trip lost data")
	}
	var h bytes.Buffer
	if err := r.WriteHTML(&h); err != nil {
		t.Fatal(err)
	}
	page := h.String()
	for _, want := range []string{"<svg", "latency by percentile", "p99.9", "Ratios", "&lt;script&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	for _, banned := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, banned) {
			t.Errorf("HTML is not self-contained: it has %q", banned)
		}
	}
	var tb bytes.Buffer
	r.WriteTable(&tb)
	if !strings.Contains(tb.String(), "[FAIL] fails: 3 missing") || !strings.Contains(tb.String(), "ratios to the coder/websocket baseline") {
		t.Errorf("table:\n%s", tb.String())
	}
}
