package loadtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// poolRunner is a subscriber population running in this process (*Pool)
// or in worker processes.
type poolRunner interface {
	Status() poolStatus
	Delivered() int64
	Stop() poolStatus
}

// counterDeltas are the gateway counters whose growth a run reports per
// instance.
var counterDeltas = []string{
	`firegate_messages_sent_total{type="changes"}`,
	`firegate_messages_sent_total{type="snapshot"}`,
	`firegate_upstream_changes_total`,
	`firegate_duplicates_suppressed_total`,
	`firegate_send_queue_overflows_total{action="catchup"}`,
	`firegate_send_queue_overflows_total{action="disconnect"}`,
	`firegate_disconnects_total{reason="slow_consumer"}`,
	`firegate_disconnects_total{reason="client"}`,
	`firegate_disconnects_total{reason="error"}`,
	`firegate_connections_active`,
	`firegate_handshakes_total{result="ok"}`,
	`firegate_handshakes_total{result="rate_limited"}`,
	`firegate_handshakes_total{result="unauthorized"}`,
	`firegate_rate_limited_total{limit="handshake"}`,
	`firegate_rate_limited_total{limit="connections_per_user"}`,
}

// instSnap is one instance's state at a moment.
type instSnap struct {
	at      time.Time
	cpu     time.Duration
	rss     int64
	mem     memInfo
	memOK   bool
	metrics metricSamples
}

// snap reads an instance's CPU, RSS, metrics and (withMem: after a GC)
// memory statistics; what cannot be read stays zero.
func snap(ctx context.Context, in *Instance, withMem bool) instSnap {
	s := instSnap{at: time.Now()}
	if withMem && in.AdminURL != "" {
		if m, err := in.Memory(ctx); err == nil {
			s.mem, s.memOK = m, true
		}
	}
	s.cpu, _ = in.CPU(ctx)
	s.rss, _ = in.RSS(ctx)
	if in.Kind == KindFiregate && in.AdminURL != "" {
		s.metrics, _ = in.Metrics(ctx)
	}
	return s
}

func snapAll(ctx context.Context, insts []*Instance, withMem bool) []instSnap {
	out := make([]instSnap, len(insts))
	var wg sync.WaitGroup
	for i, in := range insts {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = snap(ctx, in, withMem) }()
	}
	wg.Wait()
	return out
}

// sampler prints progress once per second and records the run's series,
// the peak RSS and the largest Feed and listener counts per instance.
// mu guards every field below it.
type sampler struct {
	r      *runner
	label  string
	insts  []*Instance
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	pool       poolRunner
	extra      func() string
	series     []Sample
	listeners0 []float64
	feedsMax   []int64
	listMax    []int64
	rssPeak    []int64
	lastDeliv  int64
	lastT      time.Time
}

// newSampler starts sampling; listeners0 are the listener counters at
// the start of the run (nil: zero).
func (r *runner) newSampler(ctx context.Context, label string, insts []*Instance, before []instSnap) *sampler {
	s := &sampler{r: r, label: label, insts: insts, start: time.Now(), done: make(chan struct{}),
		listeners0: make([]float64, len(insts)), feedsMax: make([]int64, len(insts)), listMax: make([]int64, len(insts)), rssPeak: make([]int64, len(insts))}
	for i := range insts {
		if before != nil && before[i].metrics != nil {
			s.listeners0[i] = before[i].metrics.Value("firegate_listeners_started_total")
		}
	}
	ctx, s.cancel = context.WithCancel(ctx)
	go s.loop(ctx)
	return s
}

func (s *sampler) setPool(p poolRunner) {
	s.mu.Lock()
	s.pool = p
	s.mu.Unlock()
}

func (s *sampler) setExtra(f func() string) {
	s.mu.Lock()
	s.extra = f
	s.mu.Unlock()
}

func (s *sampler) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample(ctx)
		}
	}
}

// sample takes one sample and prints one progress line.
func (s *sampler) sample(ctx context.Context) {
	snaps := snapAll(ctx, s.insts, false)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	smp := Sample{T: round3(now.Sub(s.start).Seconds())}
	var feeds, listeners []string
	for i, sn := range snaps {
		smp.RSS += sn.rss
		s.rssPeak[i] = max(s.rssPeak[i], sn.rss)
		if sn.metrics != nil {
			fa := int64(sn.metrics.Value("firegate_feeds_active"))
			ls := int64(sn.metrics.Value("firegate_listeners_started_total") - s.listeners0[i])
			s.feedsMax[i] = max(s.feedsMax[i], fa)
			s.listMax[i] = max(s.listMax[i], ls)
			smp.FeedsActive += fa
			smp.Listeners += ls
			feeds = append(feeds, fmt.Sprint(fa))
			listeners = append(listeners, fmt.Sprint(ls))
		}
	}
	line := fmt.Sprintf("[%s %5.0fs]", s.label, now.Sub(s.start).Seconds())
	if s.pool != nil {
		st := s.pool.Status()
		smp.Ready = st.Ready
		if !s.lastT.IsZero() {
			smp.DeliveriesPerS = float64(st.Deliveries-s.lastDeliv) / now.Sub(s.lastT).Seconds()
		}
		s.lastDeliv, s.lastT = st.Deliveries, now
		smp.P99MS = ms(fromSparse(st.Latency).Quantile(0.99))
		line += fmt.Sprintf(" conns %d/%d (failed %d, dropped %d)  deliveries/s %s  p99 %.1fms", st.Ready, st.Conns, st.Failed, st.Dropped, human(smp.DeliveriesPerS), smp.P99MS)
	}
	if len(feeds) > 0 {
		line += fmt.Sprintf("  feeds %s listeners %s", strings.Join(feeds, "/"), strings.Join(listeners, "/"))
	}
	line += "  rss " + mib(smp.RSS)
	if s.extra != nil {
		line += "  " + s.extra()
	}
	s.series = append(s.series, smp)
	fmt.Fprintln(s.r.cfg.Progress, line)
}

// stop ends sampling (taking one last sample) and returns the series.
func (s *sampler) stop(ctx context.Context) {
	s.cancel()
	<-s.done
	s.sample(ctx)
}

// fill copies the per-instance peaks into res.
func (s *sampler) fill(res *RunResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res.Series = s.series
	for i := range res.Instances {
		res.Instances[i].RSSPeak = s.rssPeak[i]
		res.Instances[i].FeedsActiveMax = s.feedsMax[i]
		res.Total.RSSPeak += s.rssPeak[i]
		res.Total.FeedsActiveMax += s.feedsMax[i]
	}
}

// listenerDelta is the growth of listeners_started_total between two
// snapshots of instance i.
func listenerDelta(a, b instSnap) int64 {
	if a.metrics == nil || b.metrics == nil {
		return 0
	}
	return int64(b.metrics.Value("firegate_listeners_started_total") - a.metrics.Value("firegate_listeners_started_total"))
}

func counterDeltasOf(a, b instSnap) map[string]float64 {
	if a.metrics == nil || b.metrics == nil {
		return nil
	}
	out := map[string]float64{}
	for _, k := range counterDeltas {
		if v, ok := b.metrics[k]; ok {
			out[k] = v - a.metrics[k]
		}
	}
	return out
}

// checkListeners adds the "one listener per distinct Feed" checks of a
// Firegate run: at the end (listeners started == expected) and at every
// sample (never more Feeds or listeners than expected).
func checkListeners(res *RunResult, exp []int) {
	if res.Target != KindFiregate {
		return
	}
	if res.FleetFeeds > 0 {
		checkFleetListeners(res)
		return
	}
	ok, maxOK := true, true
	var parts, maxParts []string
	for i, in := range res.Instances {
		if in.ListenersStarted != int64(exp[i]) {
			ok = false
		}
		if in.FeedsActiveMax > int64(exp[i]) {
			maxOK = false
		}
		parts = append(parts, fmt.Sprintf("%s: %d started for %d distinct Feeds", in.Name, in.ListenersStarted, exp[i]))
		maxParts = append(maxParts, fmt.Sprintf("%s: max %d", in.Name, in.FeedsActiveMax))
	}
	res.check("one listener per distinct Feed", ok, "%s", strings.Join(parts, "; "))
	res.check("never more Feeds than distinct queries", maxOK, "%s", strings.Join(maxParts, "; "))
}

// checkFleetListeners checks fleet mode: one Firestore listener per
// distinct Feed across all instances (the sum of their listener counters).
func checkFleetListeners(res *RunResult) {
	var parts []string
	for _, in := range res.Instances {
		parts = append(parts, fmt.Sprintf("%s: %d", in.Name, in.ListenersStarted))
	}
	res.check("one listener per distinct Feed fleet-wide", res.Total.ListenersStarted == int64(res.FleetFeeds),
		"%d started over %d instances (%s) for %d distinct Feeds", res.Total.ListenersStarted, len(res.Instances), strings.Join(parts, ", "), res.FleetFeeds)
}
