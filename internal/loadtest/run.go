package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/firegate/firegate/internal/emulator"
	"github.com/firegate/firegate/internal/natsdev"
)

// runner holds what the scenarios of one Run share.
type runner struct {
	cfg     Config
	run     string // run id: keeps orgs, users and documents of runs apart
	report  *Report
	emu     *emulator.Emulator
	emuHost string
	emuPID  int
	nats    *natsdev.Server // with Config.NATS; nil otherwise
	bin     string
	tmp     string
	d       *dialer
	writer  *Writer
	pad     int
}

// Run runs the configured scenarios one after another and returns the
// report. Every scenario is bounded in connections and time. Gateways the
// tool starts are fresh for each scenario (so memory and counters start
// clean); the emulator is shared. A scenario that fails to run is recorded
// in the report and the next one still runs; the returned error joins
// such failures (failed checks are in the report, not in the error).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := raiseNoFile(); err != nil {
		cfg.Logger.Warn("could not raise the open-files limit", "err", err)
	}
	r := &runner{cfg: cfg, run: randomID(), report: &Report{Machine: describeMachine(), StartedAt: time.Now().UTC(), Command: strings.Join(os.Args, " ")}}
	r.report.RunID = r.run
	r.pad = padFor(r.run, cfg.Payload)
	defer r.close()
	if err := r.setup(ctx); err != nil {
		return r.report, err
	}
	var errs []error
	for _, s := range cfg.Scenarios {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		var err error
		switch s {
		case ScenarioHold:
			err = r.hold(ctx, KindFiregate)
		case ScenarioFanout:
			err = r.fanout(ctx, KindFiregate, ScenarioFanout)
		case ScenarioSlow:
			err = r.fanout(ctx, KindFiregate, ScenarioSlow)
		case ScenarioChurn:
			err = r.churn(ctx)
		case ScenarioAuthstorm:
			err = r.authstorm(ctx)
		case ScenarioBaseline:
			// The baseline mirrors the hold and fanout runs of this
			// report (both when neither is listed).
			both := !cfg.wants(ScenarioHold) && !cfg.wants(ScenarioFanout)
			if both || cfg.wants(ScenarioHold) {
				err = r.hold(ctx, KindBaseline)
			}
			if err == nil && (both || cfg.wants(ScenarioFanout)) {
				err = r.fanout(ctx, KindBaseline, ScenarioFanout)
				if err == nil {
					err = r.fanout(ctx, KindBaselineBatched, ScenarioFanout)
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			fmt.Fprintf(cfg.Progress, "%s failed: %v\n", s, err)
		}
	}
	r.report.computeRatios()
	return r.report, errors.Join(errs...)
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *runner) ownGateways() bool { return len(r.cfg.Targets) == 0 }

func (r *runner) needsFiregate() bool {
	for _, s := range r.cfg.Scenarios {
		if s != ScenarioBaseline {
			return true
		}
	}
	return false
}

// setup builds the binary, starts the emulator and the writer as needed.
func (r *runner) setup(ctx context.Context) error {
	var err error
	if r.d, err = newDialer(r.cfg.SourceAddrs); err != nil {
		return err
	}
	if r.ownGateways() && r.needsFiregate() {
		if r.bin = r.cfg.FiregateBin; r.bin == "" {
			if r.bin, err = r.build(ctx); err != nil {
				return err
			}
		}
	}
	if r.cfg.NATS && r.ownGateways() && r.needsFiregate() {
		if r.nats, err = natsdev.Start("firegate-loadtest"); err != nil {
			return err
		}
		r.cfg.GatewayArgs = append(r.cfg.GatewayArgs, "--nats-url", r.nats.URL())
		fmt.Fprintf(r.cfg.Progress, "fleet mode: embedded NATS at %s\n", r.nats.URL())
	}
	r.emuHost = r.cfg.EmulatorHost
	if r.emuHost == "" && r.ownGateways() && r.needsFiregate() {
		fmt.Fprintln(r.cfg.Progress, "starting Google's Firestore emulator…")
		r.emu, err = emulator.Start(ctx, emulator.Options{ProjectID: r.cfg.ProjectID})
		if err != nil {
			return fmt.Errorf("failed to start the Firestore emulator: %w", err)
		}
		r.emuHost, r.emuPID = r.emu.Host, r.emu.Pid()
	}
	if r.emuHost != "" && r.cfg.needsWriter() {
		r.writer, err = newWriter(ctx, r.emuHost, r.cfg.ProjectID, r.run, r.cfg.Feeds, r.cfg.DocsPerFeed, r.pad)
		if err != nil {
			return err
		}
	}
	return nil
}

// build compiles github.com/firegate/firegate/cmd/firegate into a
// temporary directory.
func (r *runner) build(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp("", "firegate-loadtest-")
	if err != nil {
		return "", fmt.Errorf("failed to create a temporary directory: %w", err)
	}
	r.tmp = dir
	bin := filepath.Join(dir, "firegate")
	fmt.Fprintln(r.cfg.Progress, "building ./cmd/firegate …")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/firegate/firegate/cmd/firegate")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("failed to build firegate (run from the module, or pass --firegate-bin): %w\n%s", err, out)
	}
	return bin, nil
}

func (r *runner) close() {
	if r.writer != nil {
		_ = r.writer.Close()
	}
	if r.nats != nil {
		r.nats.Stop()
	}
	if r.emu != nil {
		_ = r.emu.Stop()
	}
	if r.d != nil {
		r.d.close()
	}
	if r.tmp != "" {
		_ = os.RemoveAll(r.tmp)
	}
}

// instances starts (or names) the servers of one scenario run and
// returns them with a function that stops those the tool started.
func (r *runner) instances(ctx context.Context, kind string) ([]*Instance, func(), error) {
	if kind == KindFiregate && !r.ownGateways() {
		var out []*Instance
		for i, t := range r.cfg.Targets {
			admin := ""
			if len(r.cfg.AdminTargets) > i {
				admin = r.cfg.AdminTargets[i]
			}
			base := "http" + strings.TrimPrefix(strings.TrimPrefix(t, "ws"), "http")
			base = strings.TrimSuffix(strings.TrimRight(base, "/"), "/v1/stream")
			out = append(out, newInstance(fmt.Sprintf("gw%d", i), KindFiregate, base, admin))
		}
		return out, func() {}, nil
	}
	n := r.cfg.Instances
	if !r.ownGateways() {
		n = len(r.cfg.Targets)
	}
	out := make([]*Instance, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if kind == KindFiregate {
				out[i], errs[i] = startFiregate(ctx, fmt.Sprintf("gw%d", i), r.bin, r.emuHost, r.cfg.ProjectID, r.cfg.Pprof, r.cfg.GatewayArgs, r.cfg.GatewayLog)
			} else {
				out[i], errs[i] = startBaseline(ctx, fmt.Sprintf("%s%d", kind, i), kind, r.cfg.GatewayLog)
			}
		}()
	}
	wg.Wait()
	stop := func() {
		var wg sync.WaitGroup
		for _, in := range out {
			if in != nil {
				wg.Add(1)
				go func() { defer wg.Done(); in.stop(10 * time.Second) }()
			}
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		stop()
		return nil, nil, err
	}
	return out, stop, nil
}

// poolTargets mints the tokens a population of total connections over
// feeds needs (Firegate), or names the broadcasters (baseline).
func (r *runner) poolTargets(ctx context.Context, insts []*Instance, total, feeds int) ([]poolTarget, error) {
	out := make([]poolTarget, len(insts))
	for i, in := range insts {
		out[i].WSURL = in.WSURL()
	}
	if insts[0].Kind != KindFiregate {
		return out, nil
	}
	need := slotsNeeded(total, len(insts), feeds, r.cfg.ConnsPerUser)
	type job struct{ t, f, s int }
	var jobs []job
	for t := range insts {
		out[t].Tokens = make([][]string, feeds)
		for f := 0; f < feeds; f++ {
			out[t].Tokens[f] = make([]string, need[t][f])
			for s := 0; s < need[t][f]; s++ {
				jobs = append(jobs, job{t, f, s})
			}
		}
	}
	ch := make(chan job)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				tok, err := insts[j.t].Token(ctx, feedUser(r.run, j.f, j.s), feedOrg(r.run, j.f), r.cfg.TokenTTL)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out[j.t].Tokens[j.f][j.s] = tok
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	return out, firstErr
}

// startPools runs spec's population, in this process or, beyond
// ConnsPerProcess, in worker processes.
func (r *runner) startPools(ctx context.Context, spec poolSpec) (poolRunner, error) {
	if spec.Count <= r.cfg.ConnsPerProcess {
		return startPool(ctx, spec, r.d)
	}
	return startWorkers(ctx, spec, r.cfg.ConnsPerProcess, r.cfg.GatewayLog)
}

// expectedFeeds is how many distinct Feeds the connections of a
// population put on each target.
func expectedFeeds(total, targets, feeds int) []int {
	out := make([]int, targets)
	for t := range out {
		count := (total - t + targets - 1) / targets
		out[t] = min(count, feeds)
	}
	return out
}

// waitReady polls the pool until every connection is ready or failed, or
// timeout passes (the sampler prints progress meanwhile).
func (r *runner) waitReady(ctx context.Context, p poolRunner, timeout time.Duration) poolStatus {
	deadline := time.Now().Add(timeout)
	for {
		st := p.Status()
		if st.Ready+st.Failed >= st.Conns || time.Now().After(deadline) || ctx.Err() != nil {
			return st
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readyTimeout allows for the handshakes of n connections.
func readyTimeout(n int) time.Duration {
	return 60*time.Second + time.Duration(n)*2*time.Millisecond
}

// profile fetches a CPU profile of every started gateway over d into
// ProfileDir (when Pprof and ProfileDir are set); it runs in the
// background and the returned function waits for it.
func (r *runner) profile(ctx context.Context, insts []*Instance, label string, d time.Duration) func() {
	if !r.cfg.Pprof || r.cfg.ProfileDir == "" || d < time.Second {
		return func() {}
	}
	var wg sync.WaitGroup
	for _, in := range insts {
		if in.Kind != KindFiregate || in.AdminURL == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", in.AdminURL, int(d/time.Second))
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return
			}
			cl := &http.Client{Timeout: d + 30*time.Second}
			resp, err := cl.Do(req)
			if err != nil {
				r.cfg.Logger.Warn("profile failed", "instance", in.Name, "err", err)
				return
			}
			defer resp.Body.Close()
			path := filepath.Join(r.cfg.ProfileDir, fmt.Sprintf("%s-%s-%s.pprof", r.run, label, in.Name))
			f, err := os.Create(path)
			if err != nil {
				return
			}
			_, _ = io.Copy(f, resp.Body)
			_ = f.Close()
			fmt.Fprintf(r.cfg.Progress, "CPU profile of %s: %s\n", in.Name, path)
		}()
	}
	return wg.Wait
}

// markFleet records, in fleet mode, how many distinct Feeds conns
// connections (or cycles) open over all instances.
func (r *runner) markFleet(res *RunResult, conns int) {
	if r.nats != nil && res.Target == KindFiregate {
		res.FleetFeeds = min(max(conns, 0), r.cfg.Feeds)
	}
}
