package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of a load test run: the machine, every scenario
// run and the ratios of the gateway's figures to the baseline's.
type Report struct {
	Machine   Machine      `json:"machine"`
	StartedAt time.Time    `json:"started_at"`
	Command   string       `json:"command"`
	RunID     string       `json:"run_id"`
	Runs      []*RunResult `json:"runs"`
	Ratios    []Ratio      `json:"ratios,omitempty"`
}

// RunResult is one scenario against one kind of target.
type RunResult struct {
	Scenario  string           `json:"scenario"`
	Target    string           `json:"target"` // KindFiregate or a baseline kind
	Params    map[string]any   `json:"params"`
	DurationS float64          `json:"duration_s"`
	Instances []InstanceResult `json:"instances"`
	Total     InstanceResult   `json:"total"`
	// FleetFeeds is, in fleet mode (--nats), the number of distinct Feeds
	// over all instances; 0 otherwise.
	FleetFeeds int `json:"fleet_feeds,omitempty"`

	Conns      int64           `json:"conns,omitempty"`
	Ready      int64           `json:"ready,omitempty"`
	Failed     int64           `json:"failed,omitempty"`
	Dropped    int64           `json:"dropped,omitempty"`
	Slow       int64           `json:"slow,omitempty"`
	Latency    *LatencySummary `json:"latency,omitempty"` // commit → receipt (fanout, slow); handshake (churn, authstorm)
	Connect    *LatencySummary `json:"connect,omitempty"` // dial → subscribed with snapshot
	Deliveries int64           `json:"deliveries,omitempty"`
	Expected   int64           `json:"expected,omitempty"`
	Stale      int64           `json:"stale,omitempty"`
	Skipped    int64           `json:"skipped,omitempty"`
	Catchups   int64           `json:"catchups,omitempty"`
	// DeliveriesPerS is deliveries over the delivery window (first write
	// to last receipt).
	DeliveriesPerS float64         `json:"deliveries_per_s,omitempty"`
	Writes         int64           `json:"writes,omitempty"`
	WritesPerS     float64         `json:"writes_per_s,omitempty"`
	CommitLatency  *LatencySummary `json:"commit_latency,omitempty"`
	// CPU seconds per million deliveries: the servers' (all instances),
	// the emulator's and the load generator's own.
	ServerCPUPerM   float64 `json:"server_cpu_s_per_million,omitempty"`
	EmulatorCPUS    float64 `json:"emulator_cpu_s,omitempty"`
	EmulatorCPUPerM float64 `json:"emulator_cpu_s_per_million,omitempty"`
	ClientCPUS      float64 `json:"client_cpu_s,omitempty"`

	// Stages are the gateway's own latency histograms over the run
	// (upper bounds of their buckets, which grow ×1.78 from 100 µs, so
	// coarse): upstream lag (Firestore read_time → snapshot received)
	// and fan-out (snapshot received → frame written).
	Stages *Stages `json:"gateway_stages,omitempty"`

	Churn     *ChurnResult     `json:"churn,omitempty"`
	Authstorm *AuthstormResult `json:"authstorm,omitempty"`

	Series []Sample `json:"series,omitempty"`
	Checks []Check  `json:"checks"`
	Errors []string `json:"errors,omitempty"`
}

// Stages summarizes the gateway's stage histograms, in milliseconds.
type Stages struct {
	UpstreamLagP50MS float64 `json:"upstream_lag_p50_ms"`
	UpstreamLagP99MS float64 `json:"upstream_lag_p99_ms"`
	FanoutP50MS      float64 `json:"fanout_p50_ms"`
	FanoutP99MS      float64 `json:"fanout_p99_ms"`
}

// InstanceResult is one server's share of a run.
type InstanceResult struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid,omitempty"`
	Conns      int64   `json:"conns"`
	Deliveries int64   `json:"deliveries,omitempty"`
	RSSBefore  int64   `json:"rss_before,omitempty"`
	RSSAfter   int64   `json:"rss_after,omitempty"`
	RSSPeak    int64   `json:"rss_peak,omitempty"`
	HeapBefore int64   `json:"heap_before,omitempty"` // heap in use + stacks, after a GC
	HeapAfter  int64   `json:"heap_after,omitempty"`
	Goroutines int64   `json:"goroutines,omitempty"`
	RSSPerConn float64 `json:"rss_per_conn,omitempty"`
	// HeapPerConn counts Go heap in use plus goroutine stacks.
	HeapPerConn       float64 `json:"heap_per_conn,omitempty"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn,omitempty"`
	// StackPerConn is the goroutine stacks' share of HeapPerConn.
	StackPerConn float64 `json:"stack_per_conn,omitempty"`
	CPUS         float64 `json:"cpu_s,omitempty"`
	CPUPerM      float64 `json:"cpu_s_per_million,omitempty"`
	// ListenersStarted is the growth of firegate_listeners_started_total
	// over the run; ExpectedFeeds the distinct Feeds the instance serves;
	// FeedsActiveMax the largest firegate_feeds_active sampled.
	ListenersStarted int64              `json:"listeners_started"`
	ExpectedFeeds    int                `json:"expected_feeds"`
	FeedsActiveMax   int64              `json:"feeds_active_max"`
	Metrics          map[string]float64 `json:"metrics,omitempty"` // selected counter deltas
}

// Sample is one second of a run.
type Sample struct {
	T              float64 `json:"t"`
	Ready          int64   `json:"ready"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	P99MS          float64 `json:"p99_ms"`
	RSS            int64   `json:"rss"`
	FeedsActive    int64   `json:"feeds_active"`
	Listeners      int64   `json:"listeners"`
}

// Check is a pass/fail statement about a run.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// ChurnResult details the churn scenario.
type ChurnResult struct {
	Cycles      int64          `json:"cycles"`
	Completed   int64          `json:"completed"`
	Failures    int64          `json:"failures"`
	Resumed     int64          `json:"resumed"`    // resubscribes answered resumed:true
	Fresh       int64          `json:"fresh"`      // resubscribes answered with a fresh snapshot
	Handshake   LatencySummary `json:"handshake"`  // dial → welcome
	Subscribe   LatencySummary `json:"subscribe"`  // subscribe → snapshot complete
	Resume      LatencySummary `json:"resume"`     // resubscribe → subscribed
	RatePerS    float64        `json:"rate_per_s"` // cycles completed per second
	DistinctFds int            `json:"distinct_feeds"`
}

// AuthstormResult details the authstorm scenario.
type AuthstormResult struct {
	Steps []AuthStep `json:"steps"`
	// SustainedRate is the highest completed handshakes per second of a
	// step with no refusals, p99 under the limit and at least 95% of the
	// offered rate completed.
	SustainedRate float64 `json:"sustained_rate"`
	StopReason    string  `json:"stop_reason"`
	Tokens        int     `json:"tokens_per_instance"`
}

// AuthStep is one step of the authstorm ramp.
type AuthStep struct {
	Offered     float64 `json:"offered_per_s"`
	Completed   float64 `json:"completed_per_s"`
	Refused     int64   `json:"refused"`
	Failed      int64   `json:"failed"`
	Shed        int64   `json:"shed"` // not started: too many in flight in the generator
	P50MS       float64 `json:"p50_ms"`
	P99MS       float64 `json:"p99_ms"`
	ServerCPUS  float64 `json:"server_cpu_s"`
	CPUPerHS    float64 `json:"server_cpu_ms_per_handshake"`
	ClientCPUS  float64 `json:"client_cpu_s"`
	Sustainable bool    `json:"sustainable"`
}

// Ratio is a gateway figure over the baseline's from the same report.
type Ratio struct {
	Name     string  `json:"name"`
	Firegate float64 `json:"firegate"`
	Baseline float64 `json:"baseline"`
	Ratio    float64 `json:"ratio"`
	Target   string  `json:"target"` // the target, e.g. "<= 1.0"
	Met      *bool   `json:"met,omitempty"`
	Unit     string  `json:"unit"`
}

// Find returns the first run of scenario against target kind, or nil.
func (r *Report) Find(scenario, target string) *RunResult {
	for _, x := range r.Runs {
		if x.Scenario == scenario && x.Target == target {
			return x
		}
	}
	return nil
}

// Failed lists the checks that did not pass, as "scenario/target: name: detail".
func (r *Report) Failed() []string {
	var out []string
	for _, x := range r.Runs {
		for _, c := range x.Checks {
			if !c.OK {
				out = append(out, fmt.Sprintf("%s/%s: %s: %s", x.Scenario, x.Target, c.Name, c.Detail))
			}
		}
	}
	return out
}

func (x *RunResult) check(name string, ok bool, format string, a ...any) {
	x.Checks = append(x.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, a...)})
}

// computeRatios fills r.Ratios from the runs present.
func (r *Report) computeRatios() {
	r.Ratios = nil
	add := func(name string, fg, bl float64, unit, target string, limit float64, atMost bool) {
		if fg == 0 || bl == 0 {
			return
		}
		q := fg / bl
		ra := Ratio{Name: name, Firegate: round3(fg), Baseline: round3(bl), Ratio: round3(q), Target: target, Unit: unit}
		if target != "" {
			met := q <= limit
			if !atMost {
				met = q >= limit
			}
			ra.Met = &met
		}
		r.Ratios = append(r.Ratios, ra)
	}
	if g, b := r.Find(ScenarioHold, KindFiregate), r.Find(ScenarioHold, KindBaseline); g != nil && b != nil {
		add("hold: resident memory per idle connection", g.Total.RSSPerConn, b.Total.RSSPerConn, "bytes", "<= 1.0", 1.0, true)
		add("hold: Go heap + stacks per idle connection", g.Total.HeapPerConn, b.Total.HeapPerConn, "bytes", "", 0, true)
		add("hold: goroutines per idle connection", g.Total.GoroutinesPerConn, b.Total.GoroutinesPerConn, "", "", 0, true)
	}
	g := r.Find(ScenarioFanout, KindFiregate)
	if g == nil {
		return
	}
	// Deliveries per second compare capacities only when both sides
	// ran flat out (--rate max); at a fixed offered rate both deliver
	// what is offered. Latency compares at equal, unsaturated load.
	saturated := func(x *RunResult) bool { return x.Params["rate"] == "max" }
	for _, bk := range []string{KindBaselineBatched, KindBaseline} {
		b := r.Find(ScenarioFanout, bk)
		if b == nil {
			continue
		}
		vs := " vs " + bk
		if saturated(g) && saturated(b) {
			if bk == KindBaselineBatched {
				add("fanout: deliveries per second at saturation"+vs, g.DeliveriesPerS, b.DeliveriesPerS, "1/s", ">= 0.8", 0.8, false)
			} else {
				add("fanout: deliveries per second at saturation"+vs, g.DeliveriesPerS, b.DeliveriesPerS, "1/s", "", 0, false)
			}
		} else {
			add("fanout: deliveries per second at the offered rate"+vs, g.DeliveriesPerS, b.DeliveriesPerS, "1/s", "", 0, false)
		}
		if g.Latency != nil && b.Latency != nil {
			// The target is for one change to every subscriber: one Feed,
			// unsaturated.
			oneFeed := fmt.Sprint(g.Params["feeds"]) == "1" && fmt.Sprint(b.Params["feeds"]) == "1"
			if bk == KindBaseline && oneFeed && !saturated(g) && !saturated(b) {
				add("fanout: p99 commit (publish) → receipt"+vs, g.Latency.P99MS, b.Latency.P99MS, "ms", "<= 1.2", 1.2, true)
			} else {
				add("fanout: p99 commit (publish) → receipt"+vs, g.Latency.P99MS, b.Latency.P99MS, "ms", "", 0, true)
			}
		}
		add("fanout: server CPU-seconds per million deliveries"+vs, g.ServerCPUPerM, b.ServerCPUPerM, "s", "", 0, true)
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteJSONFile writes the report to path.
func (r *Report) WriteJSONFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return f.Close()
}

func human(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func kib(v float64) string { return fmt.Sprintf("%.1f KiB", v/1024) }

func mib(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }

// WriteTable prints the final tables.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\nmachine: %d CPUs (%s), %s RAM, %s, kernel %s, nofile %d\n",
		r.Machine.NumCPU, r.Machine.CPUModel, mib(r.Machine.MemTotal), r.Machine.GoVersion, r.Machine.Kernel, r.Machine.NoFile)
	for _, x := range r.Runs {
		fmt.Fprintf(w, "\n== %s / %s (%.1fs) %s\n", x.Scenario, x.Target, x.DurationS, paramsString(x.Params))
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		switch x.Scenario {
		case ScenarioHold:
			fmt.Fprintln(tw, "instance\tconns\tRSS before\tRSS after\tRSS/conn\theap+stack/conn\tof which stack\tgoroutines/conn\tlisteners\tfeeds")
			for _, in := range append(x.Instances, x.Total) {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%.2f\t%d\t%d\n", in.Name, in.Conns, mib(in.RSSBefore), mib(in.RSSAfter),
					kib(in.RSSPerConn), kib(in.HeapPerConn), kib(in.StackPerConn), in.GoroutinesPerConn, in.ListenersStarted, in.ExpectedFeeds)
			}
		case ScenarioFanout, ScenarioSlow:
			fmt.Fprintln(tw, "instance\tconns\tdeliveries\tCPU s\tCPU s/M deliv\tRSS peak\tlisteners\tfeeds")
			for _, in := range append(x.Instances, x.Total) {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.2f\t%s\t%d\t%d\n", in.Name, in.Conns, in.Deliveries, in.CPUS, in.CPUPerM, mib(in.RSSPeak), in.ListenersStarted, in.ExpectedFeeds)
			}
		default:
			fmt.Fprintln(tw, "instance\tCPU s\tlisteners\tfeeds\tfeeds max")
			for _, in := range append(x.Instances, x.Total) {
				fmt.Fprintf(tw, "%s\t%.2f\t%d\t%d\t%d\n", in.Name, in.CPUS, in.ListenersStarted, in.ExpectedFeeds, in.FeedsActiveMax)
			}
		}
		tw.Flush()
		if x.Latency != nil && x.Latency.Count > 0 {
			l := x.Latency
			what := "latency commit→receipt"
			if x.Scenario == ScenarioChurn || x.Scenario == ScenarioAuthstorm {
				what = "handshake latency"
			}
			fmt.Fprintf(w, "%s: n=%d p50 %.2fms p90 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms\n", what, l.Count, l.P50MS, l.P90MS, l.P99MS, l.P999MS, l.MaxMS)
		}
		if x.Deliveries > 0 || x.Expected > 0 {
			fmt.Fprintf(w, "deliveries %d (expected %d, stale %d, superseded %d, catch-ups %d) = %s/s; writes %d (%.1f/s)\n",
				x.Deliveries, x.Expected, x.Stale, x.Skipped, x.Catchups, human(x.DeliveriesPerS), x.Writes, x.WritesPerS)
			fmt.Fprintf(w, "CPU s per million deliveries: server %.2f, emulator %.2f (%.1fs), load generator %.1fs total\n",
				x.ServerCPUPerM, x.EmulatorCPUPerM, x.EmulatorCPUS, x.ClientCPUS)
		}
		if x.CommitLatency != nil && x.CommitLatency.Count > 0 {
			fmt.Fprintf(w, "commit RPC latency: p50 %.2fms p99 %.2fms\n", x.CommitLatency.P50MS, x.CommitLatency.P99MS)
		}
		if st := x.Stages; st != nil {
			fmt.Fprintf(w, "gateway stages (bucket bounds): upstream lag p50 ≤%.1fms p99 ≤%.1fms; fan-out (received → written) p50 ≤%.1fms p99 ≤%.1fms\n",
				st.UpstreamLagP50MS, st.UpstreamLagP99MS, st.FanoutP50MS, st.FanoutP99MS)
		}
		if x.Scenario == ScenarioSlow || x.Scenario == ScenarioFanout {
			var parts []string
			keys := make([]string, 0, len(x.Total.Metrics))
			for k := range x.Total.Metrics {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if v := x.Total.Metrics[k]; v != 0 && (strings.Contains(k, "overflow") || strings.Contains(k, "disconnect") || strings.Contains(k, "duplicates")) {
					parts = append(parts, fmt.Sprintf("%s %v", strings.TrimPrefix(k, "firegate_"), v))
				}
			}
			if len(parts) > 0 {
				fmt.Fprintf(w, "gateway counters: %s\n", strings.Join(parts, ", "))
			}
		}
		if c := x.Churn; c != nil {
			fmt.Fprintf(w, "churn: %d cycles, %d completed (%.1f/s), %d failures, resumed %d, fresh %d; handshake p99 %.2fms, subscribe p99 %.2fms, resume p99 %.2fms\n",
				c.Cycles, c.Completed, c.RatePerS, c.Failures, c.Resumed, c.Fresh, c.Handshake.P99MS, c.Subscribe.P99MS, c.Resume.P99MS)
		}
		if a := x.Authstorm; a != nil {
			tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "offered/s\tcompleted/s\trefused\tfailed\tshed\tp50 ms\tp99 ms\tserver CPU ms/handshake\tok")
			for _, s := range a.Steps {
				fmt.Fprintf(tw, "%.0f\t%.0f\t%d\t%d\t%d\t%.2f\t%.2f\t%.3f\t%v\n", s.Offered, s.Completed, s.Refused, s.Failed, s.Shed, s.P50MS, s.P99MS, s.CPUPerHS, s.Sustainable)
			}
			tw.Flush()
			fmt.Fprintf(w, "sustained: %.0f handshakes/s (stopped: %s)\n", a.SustainedRate, a.StopReason)
		}
		for _, c := range x.Checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  [%s] %s: %s\n", mark, c.Name, c.Detail)
		}
		for _, e := range x.Errors {
			fmt.Fprintf(w, "  error: %s\n", e)
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\n== ratios to the coder/websocket baseline (same run)")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "figure\tfiregate\tbaseline\tratio\ttarget\tmet")
		for _, q := range r.Ratios {
			met := "-"
			if q.Met != nil {
				met = map[bool]string{true: "yes", false: "NO"}[*q.Met]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%s\t%s\n", q.Name, human(q.Firegate), human(q.Baseline), q.Ratio, q.Target, met)
		}
		tw.Flush()
	}
}

func paramsString(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%v ", k, p[k])
	}
	return strings.TrimSpace(sb.String())
}
