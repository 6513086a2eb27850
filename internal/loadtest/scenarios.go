package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/firegate/firegate/internal/loadtest/baseline"
)

func poolKind(kind string) string {
	if kind == KindFiregate {
		return KindFiregate
	}
	return KindBaseline
}

func (r *runner) spec(kind string, targets []poolTarget, total int, slow float64) poolSpec {
	return poolSpec{
		Kind: poolKind(kind), Targets: targets, Total: total, Count: total, Feeds: r.cfg.Feeds, Collection: loadCollection,
		ConnsPerUser: r.cfg.ConnsPerUser, SourceAddrs: r.cfg.SourceAddrs, DialConcurrency: r.cfg.DialConcurrency,
		SlowFraction: slow, DocsPerFeed: r.cfg.DocsPerFeed,
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// hold: N authenticated, subscribed connections held idle; memory per
// connection from the difference before and after (both after a GC).
func (r *runner) hold(ctx context.Context, kind string) error {
	cfg := r.cfg
	res := &RunResult{Scenario: ScenarioHold, Target: kind, Params: map[string]any{"conns": cfg.Conns, "feeds": cfg.Feeds, "duration": cfg.Duration.String()}}
	r.report.Runs = append(r.report.Runs, res)
	insts, stop, err := r.instances(ctx, kind)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	defer stop()
	res.Params["instances"] = len(insts)
	sleepCtx(ctx, 500*time.Millisecond) // let start-up garbage settle
	before := snapAll(ctx, insts, true)
	targets, err := r.poolTargets(ctx, insts, cfg.Conns, cfg.Feeds)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	smp := r.newSampler(ctx, ScenarioHold+"/"+kind, insts, before)
	start := time.Now()
	p, err := r.startPools(ctx, r.spec(kind, targets, cfg.Conns, 0))
	if err != nil {
		smp.stop(ctx)
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	smp.setPool(p)
	st := r.waitReady(ctx, p, readyTimeout(cfg.Conns))
	sleepCtx(ctx, cfg.Duration)
	after := snapAll(ctx, insts, true)
	st = p.Status()
	smp.stop(ctx)
	final := p.Stop()
	res.DurationS = round3(time.Since(start).Seconds())
	res.Conns, res.Ready, res.Failed, res.Dropped = final.Conns, st.Ready, final.Failed, final.Dropped
	cs := fromSparse(final.Connect).Summary()
	res.Connect = &cs
	exp := expectedFeeds(cfg.Conns, len(insts), cfg.Feeds)
	for i, in := range insts {
		ir := InstanceResult{Name: in.Name, PID: in.PID, ExpectedFeeds: exp[i]}
		if i < len(st.PerTarget) {
			ir.Conns = st.PerTarget[i].Ready
		}
		ir.RSSBefore, ir.RSSAfter = before[i].rss, after[i].rss
		ir.HeapBefore = before[i].mem.HeapInuse + before[i].mem.StackInuse
		ir.HeapAfter = after[i].mem.HeapInuse + after[i].mem.StackInuse
		ir.Goroutines = after[i].mem.Goroutines - before[i].mem.Goroutines
		if ir.Conns > 0 {
			ir.RSSPerConn = float64(ir.RSSAfter-ir.RSSBefore) / float64(ir.Conns)
			ir.HeapPerConn = float64(ir.HeapAfter-ir.HeapBefore) / float64(ir.Conns)
			ir.GoroutinesPerConn = float64(ir.Goroutines) / float64(ir.Conns)
			ir.StackPerConn = float64(after[i].mem.StackInuse-before[i].mem.StackInuse) / float64(ir.Conns)
		}
		ir.ListenersStarted = listenerDelta(before[i], after[i])
		ir.Metrics = counterDeltasOf(before[i], after[i])
		res.Instances = append(res.Instances, ir)
		res.Total.Conns += ir.Conns
		res.Total.RSSBefore += ir.RSSBefore
		res.Total.RSSAfter += ir.RSSAfter
		res.Total.HeapBefore += ir.HeapBefore
		res.Total.HeapAfter += ir.HeapAfter
		res.Total.Goroutines += ir.Goroutines
		res.Total.StackPerConn += ir.StackPerConn * float64(ir.Conns)
		res.Total.ListenersStarted += ir.ListenersStarted
		res.Total.ExpectedFeeds += ir.ExpectedFeeds
	}
	res.Total.Name = "total"
	if res.Total.Conns > 0 {
		res.Total.RSSPerConn = float64(res.Total.RSSAfter-res.Total.RSSBefore) / float64(res.Total.Conns)
		res.Total.HeapPerConn = float64(res.Total.HeapAfter-res.Total.HeapBefore) / float64(res.Total.Conns)
		res.Total.GoroutinesPerConn = float64(res.Total.Goroutines) / float64(res.Total.Conns)
		res.Total.StackPerConn /= float64(res.Total.Conns)
	}
	smp.fill(res)
	res.Errors = append(res.Errors, final.ErrorSamples...)
	res.check("all connections subscribed", st.Ready == int64(cfg.Conns), "%d of %d ready, %d failed", st.Ready, cfg.Conns, final.Failed)
	res.check("no connection dropped while held", final.Dropped == 0, "%d dropped (close codes %v)", final.Dropped, final.CloseCodes)
	res.check("no server errors", final.ServerErrs == 0, "%d error/unsubscribed frames", final.ServerErrs)
	memOK := true
	for i := range insts {
		memOK = memOK && before[i].memOK && after[i].memOK
	}
	res.check("memory measured", memOK, "/debug/memory before and after on every instance")
	r.markFleet(res, cfg.Conns)
	checkListeners(res, exp)
	return nil
}

// fanout (and slow): S subscribers on F Feeds; a writer commits at rate R
// for Duration; end-to-end latency from commit (publish, for the
// baseline) to receipt.
func (r *runner) fanout(ctx context.Context, kind, scenario string) error {
	cfg := r.cfg
	slow := 0.0
	if scenario == ScenarioSlow {
		slow = cfg.SlowFraction
	}
	rate := cfg.Rate
	rateStr := strconv.FormatFloat(rate, 'g', -1, 64)
	if rate < 0 {
		rate, rateStr = 0, "max"
	}
	res := &RunResult{Scenario: scenario, Target: kind, Params: map[string]any{"subscribers": cfg.Subscribers, "feeds": cfg.Feeds,
		"rate": rateStr, "duration": cfg.Duration.String(), "payload": cfg.Payload, "docs_per_feed": cfg.DocsPerFeed}}
	if slow > 0 {
		res.Params["slow_fraction"] = slow
	}
	r.report.Runs = append(r.report.Runs, res)
	if kind == KindFiregate && r.writer == nil {
		err := fmt.Errorf("no Firestore emulator to write to")
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	insts, stop, err := r.instances(ctx, kind)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	defer stop()
	res.Params["instances"] = len(insts)
	before := snapAll(ctx, insts, false)
	targets, err := r.poolTargets(ctx, insts, cfg.Subscribers, cfg.Feeds)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	label := scenario + "/" + kind
	smp := r.newSampler(ctx, label, insts, before)
	spec := r.spec(kind, targets, cfg.Subscribers, slow)
	p, err := r.startPools(ctx, spec)
	if err != nil {
		smp.stop(ctx)
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	smp.setPool(p)
	st := r.waitReady(ctx, p, readyTimeout(cfg.Subscribers))
	sleepCtx(ctx, 500*time.Millisecond)

	counts := populationCounts(spec)
	var reading int64
	for t := range counts {
		for _, n := range counts[t] {
			reading += n
		}
	}
	c0 := snapAll(ctx, insts, false)
	emu0, _ := r.emuCPU()
	self0 := loadCPU(p)
	t0 := time.Now()
	waitProfile := r.profile(ctx, insts, scenario+"-"+kind, cfg.Duration)
	// published[t][f]: broadcasts (or commits) that reach Feed f's
	// subscribers on target t.
	published := make([][]int64, len(insts))
	var ws WriteStats
	if kind == KindFiregate {
		wr := WriteRun{Rate: rate, Duration: cfg.Duration, Concurrency: cfg.WriterConcurrency}
		if rate == 0 {
			// Closed loop: write k waits until the writes up to
			// k-MaxWindow are delivered (or superseded) everywhere, so
			// the run measures what the gateway sustains instead of
			// piling up an unbounded backlog upstream.
			perWrite := float64(reading) / float64(cfg.Feeds)
			wr.Admit = func(k int64) bool {
				need := int64(float64(k-int64(cfg.MaxWindow)) * perWrite)
				return need <= 0 || p.Delivered() >= need
			}
		}
		ws = r.writer.Run(ctx, wr)
		for t := range insts {
			published[t] = ws.PerFeed
		}
		res.Writes = ws.Total()
		res.WritesPerS = round3(float64(res.Writes) / ws.ElapsedS)
		cl := fromSparse(ws.Commit).Summary()
		cl.Curve = nil
		res.CommitLatency = &cl
		for _, e := range ws.ErrorSamples {
			res.Errors = append(res.Errors, "writer: "+e)
		}
	} else {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for t, in := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rr, err := runBroadcast(ctx, in, baseline.RunConfig{Rate: rate, Groups: cfg.Feeds, Duration: cfg.Duration, Docs: cfg.DocsPerFeed, Run: r.run, Pad: r.pad, Window: cfg.MaxWindow})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.Errors = append(res.Errors, err.Error())
					published[t] = make([]int64, cfg.Feeds)
					return
				}
				published[t] = rr.Published
				if t == 0 {
					for _, v := range rr.Published {
						res.Writes += v
					}
					res.WritesPerS = round3(float64(res.Writes) / rr.ElapsedS)
				}
			}()
		}
		wg.Wait()
	}
	var expected int64
	for t := range published {
		for f, n := range published[t] {
			expected += n * counts[t][f]
		}
	}
	res.Expected = expected
	// Settle: wait for the last deliveries (no progress for 3 s ends it).
	last, lastAt := p.Status().Deliveries, time.Now()
	settleEnd := time.Now().Add(20 * time.Second)
	for time.Now().Before(settleEnd) && ctx.Err() == nil {
		st := p.Status()
		if st.Deliveries != last {
			last, lastAt = st.Deliveries, time.Now()
		}
		if st.Deliveries+st.Skipped >= expected || time.Since(lastAt) > 3*time.Second {
			break
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	c1 := snapAll(ctx, insts, false)
	emu1, emuOK := r.emuCPU()
	self1 := loadCPU(p)
	waitProfile()
	smp.stop(ctx)
	final := p.Stop()
	window := lastAt.Sub(t0).Seconds()
	res.DurationS = round3(time.Since(t0).Seconds())
	res.Conns, res.Ready, res.Failed, res.Dropped, res.Slow = final.Conns, st.Ready, final.Failed, final.Dropped, final.Slow
	res.Deliveries, res.Stale, res.Skipped, res.Catchups = final.Deliveries, final.Stale, final.Skipped, final.Catchups
	if window > 0 {
		res.DeliveriesPerS = round3(float64(res.Deliveries) / window)
	}
	lat := fromSparse(final.Latency).Summary()
	res.Latency = &lat
	cs := fromSparse(final.Connect).Summary()
	cs.Curve = nil
	res.Connect = &cs
	exp := expectedFeeds(cfg.Subscribers, len(insts), cfg.Feeds)
	var serverCPU float64
	for i, in := range insts {
		ir := InstanceResult{Name: in.Name, PID: in.PID, ExpectedFeeds: exp[i]}
		if i < len(st.PerTarget) {
			ir.Conns = st.PerTarget[i].Ready
		}
		if i < len(final.PerTarget) {
			ir.Deliveries = final.PerTarget[i].Deliveries
		}
		ir.CPUS = round3((c1[i].cpu - c0[i].cpu).Seconds())
		if ir.Deliveries > 0 {
			ir.CPUPerM = round3(ir.CPUS / float64(ir.Deliveries) * 1e6)
		}
		ir.ListenersStarted = listenerDelta(before[i], c1[i])
		ir.Metrics = counterDeltasOf(before[i], c1[i])
		serverCPU += ir.CPUS
		for k, v := range ir.Metrics {
			if res.Total.Metrics == nil {
				res.Total.Metrics = map[string]float64{}
			}
			res.Total.Metrics[k] += v
		}
		res.Instances = append(res.Instances, ir)
		res.Total.Conns += ir.Conns
		res.Total.Deliveries += ir.Deliveries
		res.Total.ListenersStarted += ir.ListenersStarted
		res.Total.ExpectedFeeds += ir.ExpectedFeeds
	}
	res.Total.Name = "total"
	res.Total.CPUS = round3(serverCPU)
	if res.Deliveries > 0 {
		res.ServerCPUPerM = round3(serverCPU / float64(res.Deliveries) * 1e6)
		res.Total.CPUPerM = res.ServerCPUPerM
	}
	if kind == KindFiregate && emuOK {
		res.EmulatorCPUS = round3((emu1 - emu0).Seconds())
		if res.Deliveries > 0 {
			res.EmulatorCPUPerM = round3(res.EmulatorCPUS / float64(res.Deliveries) * 1e6)
		}
	}
	res.ClientCPUS = round3((self1 - self0).Seconds())
	if kind == KindFiregate {
		res.Stages = stagesOf(before, c1)
	}
	smp.fill(res)
	res.Errors = append(res.Errors, final.ErrorSamples...)

	res.check("all subscribers ready", st.Ready == int64(cfg.Subscribers), "%d of %d ready, %d failed", st.Ready, cfg.Subscribers, final.Failed)
	res.check("deliveries equal expected", res.Deliveries == expected, "%d delivered, %d expected (%d writes × subscribers of their Feed), %d superseded before delivery",
		res.Deliveries, expected, res.Writes, res.Skipped)
	res.check("no stale or duplicate versions", res.Stale == 0, "%d stale", res.Stale)
	if scenario == ScenarioFanout {
		res.check("no connection dropped", final.Dropped == 0, "%d dropped (close codes %v)", final.Dropped, final.CloseCodes)
	}
	res.check("no server errors", final.ServerErrs == 0, "%d error/unsubscribed frames", final.ServerErrs)
	if kind == KindFiregate {
		res.check("writer had no errors", ws.Errors == 0, "%d commit errors", ws.Errors)
	}
	r.markFleet(res, cfg.Subscribers)
	checkListeners(res, exp)
	return nil
}

// loadCPU is the load generator's CPU time: this process and its
// worker processes.
func loadCPU(p poolRunner) time.Duration {
	d := selfCPU()
	if ws, ok := p.(*workerSet); ok {
		d += ws.CPU()
	}
	return d
}

// populationCounts counts, per target and Feed, the reading (not slow)
// connections of spec's whole population.
func populationCounts(spec poolSpec) [][]int64 {
	out := make([][]int64, len(spec.Targets))
	for t := range out {
		out[t] = make([]int64, spec.Feeds)
	}
	for i := 0; i < spec.Total; i++ {
		if spec.slow(i) {
			continue
		}
		t, f, _ := spec.assign(i)
		out[t][f]++
	}
	return out
}

// emuCPU is the CPU time of the emulator the tool started.
func (r *runner) emuCPU() (time.Duration, bool) {
	if r.emuPID == 0 {
		return 0, false
	}
	d, err := procCPU(r.emuPID)
	return d, err == nil
}

// runBroadcast asks a baseline instance to publish.
func runBroadcast(ctx context.Context, in *Instance, o baseline.RunConfig) (baseline.Result, error) {
	var rr baseline.Result
	q := url.Values{"rate": {strconv.FormatFloat(o.Rate, 'g', -1, 64)}, "groups": {strconv.Itoa(o.Groups)}, "duration": {o.Duration.String()},
		"docs": {strconv.Itoa(o.Docs)}, "run": {o.Run}, "pad": {strconv.Itoa(o.Pad)}, "window": {strconv.Itoa(max(o.Window, 1))}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.BaseURL+"/run?"+q.Encode(), nil)
	if err != nil {
		return rr, err
	}
	cl := &http.Client{Timeout: o.Duration + time.Minute}
	resp, err := cl.Do(req)
	if err != nil {
		return rr, fmt.Errorf("failed to run the broadcaster %s: %w", in.Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return rr, fmt.Errorf("broadcaster %s: %s: %s", in.Name, resp.Status, b)
	}
	if err := json.Unmarshal(b, &rr); err != nil {
		return rr, fmt.Errorf("broadcaster %s: bad answer: %w", in.Name, err)
	}
	return rr, nil
}

// stagesOf reads the gateway's stage histograms over a run, all
// instances together; nil when they are absent.
func stagesOf(a, b []instSnap) *Stages {
	sum := func(ss []instSnap) metricSamples {
		out := metricSamples{}
		for _, s := range ss {
			for k, v := range s.metrics {
				out[k] += v
			}
		}
		return out
	}
	sa, sb := sum(a), sum(b)
	q := func(name string, p float64) (float64, bool) {
		v, ok := bucketQuantile(sa, sb, name, p)
		if math.IsInf(v, 1) {
			v = 10 // above the top finite bucket (10 s); JSON has no +Inf
		}
		return round3(v * 1000), ok
	}
	var st Stages
	var ok1, ok2 bool
	st.UpstreamLagP50MS, ok1 = q("firegate_upstream_lag_seconds", 0.5)
	st.UpstreamLagP99MS, _ = q("firegate_upstream_lag_seconds", 0.99)
	st.FanoutP50MS, ok2 = q("firegate_fanout_latency_seconds", 0.5)
	st.FanoutP99MS, _ = q("firegate_fanout_latency_seconds", 0.99)
	if !ok1 && !ok2 {
		return nil
	}
	return &st
}
