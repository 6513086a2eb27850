package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaybeRunChild runs this process as one of the load tool's children when
// the environment asks for it (FIREGATE_LOADTEST_ROLE): "baseline" serves
// a Broadcaster, "pool" runs a share of a subscriber population (a spec
// on stdin, statuses on stdout). It does not return in that case. Call it
// first in main (and in TestMain of tests that run the tool), since the
// tool re-runs its own executable for its children.
func MaybeRunChild() {
	role := os.Getenv(envRole)
	if role == "" {
		return
	}
	var err error
	switch role {
	case "baseline":
		err = runBaselineChild()
	case "pool":
		err = runPoolChild(context.Background(), os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("unknown %s %q", envRole, role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "firegate-loadtest child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// statusInterval is how often a worker reports.
const statusInterval = 500 * time.Millisecond

// runPoolChild reads a poolSpec (one JSON line) from in, runs it, writes
// a PoolStatus JSON line to out every statusInterval, and on "stop" or
// the end of in stops the pool and writes the final status.
func runPoolChild(ctx context.Context, in io.Reader, out io.Writer) error {
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	br := bufio.NewReaderSize(in, 1<<20)
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fmt.Errorf("failed to read the pool spec: %w", err)
	}
	var spec poolSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("failed to decode the pool spec: %w", err)
	}
	p, err := startPool(ctx, spec, nil)
	if err != nil {
		return err
	}
	var mu sync.Mutex // serializes writes to out
	enc := json.NewEncoder(out)
	write := func(s poolStatus) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(s)
	}
	stopTicker := make(chan struct{})
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		t := time.NewTicker(statusInterval)
		defer t.Stop()
		for {
			select {
			case <-stopTicker:
				return
			case <-t.C:
				if write(p.Status()) != nil {
					return
				}
			}
		}
	}()
	for {
		l, err := br.ReadString('\n')
		if strings.TrimSpace(l) == "stop" || err != nil {
			break
		}
	}
	close(stopTicker)
	<-tickDone
	return write(p.Stop())
}

// remotePool is a worker process running part of a population.
type remotePool struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *tailBuffer
	done  chan struct{}

	mu    sync.Mutex // guards last and final
	last  poolStatus
	final *poolStatus
}

// workerSet runs a population in worker processes.
type workerSet struct {
	pools []*remotePool
}

// startWorkers splits spec into shares of at most per connections, each
// run by a worker process (this executable in the "pool" role).
func startWorkers(ctx context.Context, spec poolSpec, per int, logTo io.Writer) (*workerSet, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("invalid pool: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("failed to find this executable for worker processes: %w", err)
	}
	ws := &workerSet{}
	for first := spec.First; first < spec.First+spec.Count; first += per {
		share := spec
		share.First, share.Count = first, min(per, spec.First+spec.Count-first)
		rp, err := startRemote(exe, share, logTo)
		if err != nil {
			ws.Stop()
			return nil, err
		}
		ws.pools = append(ws.pools, rp)
	}
	return ws, nil
}

func startRemote(exe string, spec poolSpec, logTo io.Writer) (*remotePool, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envRole+"=pool")
	rp := &remotePool{cmd: cmd, out: &tailBuffer{max: 16 << 10}, done: make(chan struct{}), last: poolStatus{Conns: int64(spec.Count)}}
	var errw io.Writer = rp.out
	if logTo != nil {
		errw = io.MultiWriter(rp.out, logTo)
	}
	cmd.Stderr = errw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	rp.stdin, err = cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start a worker process: %w", err)
	}
	b, _ := json.Marshal(spec)
	if _, err := rp.stdin.Write(append(b, '\n')); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("failed to send the worker its spec: %w", err)
	}
	go func() {
		defer close(rp.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			var s poolStatus
			if json.Unmarshal(sc.Bytes(), &s) != nil {
				continue
			}
			rp.mu.Lock()
			rp.last = s
			if s.Final {
				rp.final = &s
			}
			rp.mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	return rp, nil
}

func (rp *remotePool) status() poolStatus {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.last
}

// stop asks the worker to stop and waits for its final status.
func (rp *remotePool) stop() (poolStatus, error) {
	_, _ = io.WriteString(rp.stdin, "stop\n")
	_ = rp.stdin.Close()
	select {
	case <-rp.done:
	case <-time.After(60 * time.Second):
		_ = rp.cmd.Process.Kill()
		<-rp.done
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.final == nil {
		return rp.last, errors.New("worker ended without a final status: " + rp.out.String())
	}
	return *rp.final, nil
}

// Status merges the workers' latest statuses.
func (w *workerSet) Status() poolStatus {
	var s poolStatus
	for _, rp := range w.pools {
		s.merge(rp.status())
	}
	return s
}

// Delivered sums the workers' latest reports (up to statusInterval old).
func (w *workerSet) Delivered() int64 {
	var n int64
	for _, rp := range w.pools {
		st := rp.status()
		n += st.Deliveries + st.Skipped
	}
	return n
}

// CPU is the CPU time the worker processes have used so far.
func (w *workerSet) CPU() time.Duration {
	var d time.Duration
	for _, rp := range w.pools {
		if c, err := procCPU(rp.cmd.Process.Pid); err == nil {
			d += c
		}
	}
	return d
}

// Stop stops every worker and merges their final statuses.
func (w *workerSet) Stop() poolStatus {
	var s poolStatus
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, rp := range w.pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := rp.stop()
			mu.Lock()
			defer mu.Unlock()
			if err != nil && len(s.ErrorSamples) < maxErrorSamples {
				s.ErrorSamples = append(s.ErrorSamples, err.Error())
			}
			s.merge(st)
		}()
	}
	wg.Wait()
	s.Final = true
	return s
}
