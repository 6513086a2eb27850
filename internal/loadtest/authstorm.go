package loadtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// authstorm: authenticated handshakes (dial, RS256 verification, welcome,
// close) at a rising rate until refusals, failures or latency rise.
//
// Tokens: each instance mints AuthTokens distinct tokens (distinct users)
// before the ramp; the ramp reuses them round-robin. The gateway's
// verifier keeps no per-token result cache (every handshake verifies the
// RS256 signature against the cached key), so a reused token costs what
// a fresh one does; minting during the ramp would instead measure the dev
// issuer's RSA signing.
func (r *runner) authstorm(ctx context.Context) error {
	cfg := r.cfg
	res := &RunResult{Scenario: ScenarioAuthstorm, Target: KindFiregate, Params: map[string]any{"start": cfg.AuthStart, "step": cfg.AuthStep,
		"max": cfg.AuthMax, "step_duration": cfg.AuthStepDuration.String(), "tokens": cfg.AuthTokens}}
	r.report.Runs = append(r.report.Runs, res)
	insts, stop, err := r.instances(ctx, KindFiregate)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return err
	}
	defer stop()
	res.Params["instances"] = len(insts)
	tokens := make([][]string, len(insts))
	for t, in := range insts {
		tokens[t] = make([]string, cfg.AuthTokens)
		var wg sync.WaitGroup
		var firstErr error
		var mu sync.Mutex
		ch := make(chan int)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range ch {
					tok, err := in.mintToken(ctx, "user_lt"+r.run+"_auth_"+strconv.Itoa(i), feedOrg(r.run, 0), cfg.TokenTTL)
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					tokens[t][i] = tok
					mu.Unlock()
				}
			}()
		}
		for i := 0; i < cfg.AuthTokens; i++ {
			ch <- i
		}
		close(ch)
		wg.Wait()
		if firstErr != nil {
			res.Errors = append(res.Errors, firstErr.Error())
			return firstErr
		}
	}
	before := snapAll(ctx, insts, false)
	smp := r.newSampler(ctx, "authstorm", insts, before)
	var curRate atomic.Int64
	var inflight atomic.Int64
	smp.setExtra(func() string { return fmt.Sprintf("offered %d/s in flight %d", curRate.Load(), inflight.Load()) })
	ar := &AuthstormResult{Tokens: cfg.AuthTokens}
	res.Authstorm = ar
	var total Histogram
	maxSteps := int(maxDuration / cfg.AuthStepDuration)
	start := time.Now()
	var seq atomic.Int64
	var errs errorSamples
	steps := min(maxSteps, int((cfg.AuthMax-cfg.AuthStart)/max(cfg.AuthStep, 1))+1)
	waitProfile := r.profile(ctx, insts, "authstorm", min(30*time.Second, time.Duration(steps)*cfg.AuthStepDuration))
	for step, rate := 0, cfg.AuthStart; rate <= cfg.AuthMax && step < maxSteps && ctx.Err() == nil; step, rate = step+1, rate+cfg.AuthStep {
		curRate.Store(int64(rate))
		var h Histogram
		var refused, failed, shed, done atomic.Int64
		c0 := snapAll(ctx, insts, false)
		self0 := selfCPU()
		maxInflight := int64(max(2000, 2*int(rate)))
		var wg sync.WaitGroup
		t0 := time.Now()
		n := int64(rate * cfg.AuthStepDuration.Seconds())
		var lastDone atomic.Int64
		for k := int64(0); k < n && ctx.Err() == nil; k++ {
			sleepCtx(ctx, time.Until(paceAt(t0, k, rate)))
			if inflight.Load() >= maxInflight {
				shed.Add(1)
				continue
			}
			inflight.Add(1)
			wg.Add(1)
			i := seq.Add(1)
			go func() {
				defer wg.Done()
				defer inflight.Add(-1)
				t := int(i % int64(len(insts)))
				tok := tokens[t][int((i/int64(len(insts)))%int64(cfg.AuthTokens))]
				err := r.handshake(ctx, insts[t].WSURL(), tok, &h)
				switch {
				case err == nil:
					done.Add(1)
					lastDone.Store(int64(time.Since(t0)))
				case errors.Is(err, errRefused):
					refused.Add(1)
				default:
					failed.Add(1)
					errs.add(err)
				}
			}()
		}
		wg.Wait()
		c1 := snapAll(ctx, insts, false)
		elapsed := max(time.Duration(lastDone.Load()), cfg.AuthStepDuration)
		st := AuthStep{Offered: rate, Completed: round3(float64(done.Load()) / elapsed.Seconds()), Refused: refused.Load(), Failed: failed.Load(),
			Shed: shed.Load(), P50MS: ms(h.Quantile(0.5)), P99MS: ms(h.Quantile(0.99)), ClientCPUS: round3((selfCPU() - self0).Seconds())}
		for i := range insts {
			st.ServerCPUS += (c1[i].cpu - c0[i].cpu).Seconds()
		}
		st.ServerCPUS = round3(st.ServerCPUS)
		if d := done.Load(); d > 0 {
			st.CPUPerHS = round3(st.ServerCPUS / float64(d) * 1000)
		}
		total.Merge(&h)
		st.Sustainable = st.Refused == 0 && st.Failed == 0 && st.Shed == 0 && h.Quantile(0.99) <= cfg.AuthMaxP99 && st.Completed >= 0.95*rate
		ar.Steps = append(ar.Steps, st)
		if !st.Sustainable {
			switch {
			case st.Refused > 0:
				ar.StopReason = fmt.Sprintf("%d refusals at %.0f/s", st.Refused, rate)
			case st.Failed > 0:
				ar.StopReason = fmt.Sprintf("%d failures at %.0f/s", st.Failed, rate)
			case st.Shed > 0:
				ar.StopReason = fmt.Sprintf("the generator shed %d handshakes at %.0f/s (too many in flight)", st.Shed, rate)
			case h.Quantile(0.99) > cfg.AuthMaxP99:
				ar.StopReason = fmt.Sprintf("p99 %.0fms over %s at %.0f/s", st.P99MS, cfg.AuthMaxP99, rate)
			default:
				ar.StopReason = fmt.Sprintf("completed %.0f/s of %.0f/s offered", st.Completed, rate)
			}
			break
		}
		ar.SustainedRate = max(ar.SustainedRate, st.Completed)
		if cfg.AuthStep == 0 {
			break
		}
	}
	if ar.StopReason == "" {
		ar.StopReason = "reached the end of the ramp"
	}
	waitProfile()
	after := snapAll(ctx, insts, false)
	smp.stop(ctx)
	res.DurationS = round3(time.Since(start).Seconds())
	l := total.Summary()
	res.Latency = &l
	for i, in := range insts {
		ir := instanceResult(in, before[i], after[i])
		res.Instances = append(res.Instances, ir)
		res.Total.CPUS += ir.CPUS
	}
	res.Total.Name = "total"
	smp.fill(res)
	res.Errors = append(res.Errors, errs.list()...)
	var hsOK float64
	for _, in := range res.Instances {
		hsOK += in.Metrics[`firegate_handshakes_total{result="ok"}`]
	}
	res.check("handshakes counted by the gateway", int64(hsOK) == int64(total.Count()), "gateway handshakes_total{ok} %d, tool %d", int64(hsOK), total.Count())
	res.check("at least one sustainable step", ar.SustainedRate > 0, "sustained %.0f/s", ar.SustainedRate)
	return nil
}

// handshake dials with token, waits for welcome and closes; the latency
// (dial → welcome) goes into h.
func (r *runner) handshake(ctx context.Context, u, token string, h *Histogram) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := r.dialWelcome(cctx, u, token, h)
	if err != nil {
		return err
	}
	c.ws.CloseNow()
	return nil
}
