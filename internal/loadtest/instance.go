package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kinds of target.
const (
	KindFiregate        = "firegate"
	KindBaseline        = "baseline"         // coder/websocket broadcaster, one frame per write
	KindBaselineBatched = "baseline-batched" // several frames per write when queued
)

// Instance is one server under test: a `firegate dev` process (started by
// the tool, or already running and given by URL) or a baseline
// broadcaster process. Its methods are safe for concurrent use.
type Instance struct {
	Name     string // "gw0", "baseline0", ...
	Kind     string // KindFiregate, KindBaseline or KindBaselineBatched
	BaseURL  string // http://127.0.0.1:PORT
	AdminURL string // where /metrics and /debug/memory live; "" when none
	PID      int    // 0 when the tool did not start it

	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	http *http.Client

	tokMu  sync.Mutex // guards tokens
	tokens map[string]string
}

// WSURL is the WebSocket endpoint of the instance.
func (in *Instance) WSURL() string {
	u := "ws" + strings.TrimPrefix(in.BaseURL, "http")
	if in.Kind == KindFiregate {
		return u + "/v1/stream"
	}
	return u + "/ws"
}

// Exited reports whether a started process has ended.
func (in *Instance) Exited() bool {
	if in.done == nil {
		return false
	}
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

// Tail is the end of a started process's output (for error messages).
func (in *Instance) Tail() string {
	if in.out == nil {
		return ""
	}
	return in.out.String()
}

func (in *Instance) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := in.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s: %s", u, resp.Status, truncateStr(strings.TrimSpace(string(b)), 200))
	}
	return b, nil
}

// Metrics scrapes the instance's /metrics.
func (in *Instance) Metrics(ctx context.Context) (metricSamples, error) {
	if in.AdminURL == "" {
		return nil, errors.New("no admin address")
	}
	b, err := in.get(ctx, in.AdminURL+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("failed to scrape %s: %w", in.Name, err)
	}
	return parseExposition(b)
}

// memInfo is what /debug/memory answers (after a forced GC).
type memInfo struct {
	HeapAlloc   int64 `json:"heap_alloc"`
	HeapInuse   int64 `json:"heap_inuse"`
	StackInuse  int64 `json:"stack_inuse"`
	Sys         int64 `json:"sys"`
	Goroutines  int64 `json:"goroutines"`
	Connections int64 `json:"connections"`
	Feeds       int64 `json:"feeds"`
}

// Memory asks the instance's /debug/memory (which runs a GC first).
func (in *Instance) Memory(ctx context.Context) (memInfo, error) {
	var m memInfo
	if in.AdminURL == "" {
		return m, errors.New("no admin address")
	}
	b, err := in.get(ctx, in.AdminURL+"/debug/memory")
	if err != nil {
		return m, fmt.Errorf("failed to read memory of %s: %w", in.Name, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("failed to decode /debug/memory of %s: %w", in.Name, err)
	}
	return m, nil
}

// CPU returns the CPU time the instance has used: from /proc when the
// tool knows its pid, else process_cpu_seconds_total of /metrics.
func (in *Instance) CPU(ctx context.Context) (time.Duration, error) {
	if in.PID > 0 {
		return procCPU(in.PID)
	}
	s, err := in.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	v, ok := s.Get("process_cpu_seconds_total")
	if !ok {
		return 0, fmt.Errorf("%s: no process_cpu_seconds_total", in.Name)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// RSS returns the resident memory of the instance: from /proc when the
// tool knows its pid, else process_resident_memory_bytes of /metrics.
func (in *Instance) RSS(ctx context.Context) (int64, error) {
	if in.PID > 0 {
		return procRSS(in.PID)
	}
	s, err := in.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	v, ok := s.Get("process_resident_memory_bytes")
	if !ok {
		return 0, fmt.Errorf("%s: no process_resident_memory_bytes", in.Name)
	}
	return int64(v), nil
}

// Token returns a dev token for (user, org) from the instance's
// /dev/token, minted once and cached.
func (in *Instance) Token(ctx context.Context, user, org string, ttl time.Duration) (string, error) {
	key := user + "\x00" + org
	in.tokMu.Lock()
	if t, ok := in.tokens[key]; ok {
		in.tokMu.Unlock()
		return t, nil
	}
	in.tokMu.Unlock()
	t, err := in.mintToken(ctx, user, org, ttl)
	if err != nil {
		return "", err
	}
	in.tokMu.Lock()
	if in.tokens == nil {
		in.tokens = map[string]string{}
	}
	in.tokens[key] = t
	in.tokMu.Unlock()
	return t, nil
}

// mintToken asks /dev/token for a fresh token (not cached).
func (in *Instance) mintToken(ctx context.Context, user, org string, ttl time.Duration) (string, error) {
	q := url.Values{"user": {user}, "ttl": {ttl.String()}}
	if org != "" {
		q.Set("org", org)
	}
	b, err := in.get(ctx, in.BaseURL+"/dev/token?"+q.Encode())
	if err != nil {
		return "", fmt.Errorf("failed to get a dev token from %s: %w", in.Name, err)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("unexpected /dev/token answer from %s", in.Name)
	}
	return out.Token, nil
}

// waitReady polls path on the admin (or base) address until it answers
// 200, the process exits, or ctx ends.
func (in *Instance) waitReady(ctx context.Context, u string) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := in.get(cctx, u)
		cancel()
		if err == nil {
			return nil
		}
		if in.Exited() {
			return fmt.Errorf("%s exited during start-up; output:\n%s", in.Name, in.Tail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %v (last error: %v); output:\n%s", in.Name, u, ctx.Err(), err, in.Tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends a started process: SIGTERM, then SIGKILL after grace.
func (in *Instance) stop(grace time.Duration) {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(grace):
		_ = in.cmd.Process.Kill()
		<-in.done
	}
}

// startProcess starts cmd as the instance's process, keeping a tail of
// its output.
func (in *Instance) startProcess(cmd *exec.Cmd, logTo io.Writer) error {
	in.out = &tailBuffer{max: 32 << 10}
	var w io.Writer = in.out
	if logTo != nil {
		w = io.MultiWriter(in.out, logTo)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start %s: %w", in.Name, err)
	}
	in.cmd = cmd
	in.PID = cmd.Process.Pid
	in.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(in.done)
	}()
	return nil
}

func newInstance(name, kind, base, admin string) *Instance {
	return &Instance{Name: name, Kind: kind, BaseURL: strings.TrimRight(base, "/"), AdminURL: strings.TrimRight(admin, "/"),
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}}}
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent
// use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}

// freePort picks a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("failed to pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// checkLoopbackURL accepts only http(s)/ws(s) URLs whose host is a
// 127.0.0.0/8 address or localhost.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http", "https", "ws", "wss":
	default:
		return fmt.Errorf("URL %q: scheme must be http or ws", raw)
	}
	return checkLoopbackHost(u.Host)
}

func checkLoopbackHost(hostport string) error {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(a) {
		return fmt.Errorf("%q is not a 127.0.0.0/8 address: the load tool drives loopback only", hostport)
	}
	return nil
}

// firegateArgs are the `firegate dev` arguments for a gateway started by
// the tool. Limits that would throttle a single load generator (per-IP
// handshakes and auth failures) are raised; drain is short so instances
// restart quickly between scenarios.
func firegateArgs(addr, admin string, pprof bool, extra []string) []string {
	a := []string{"dev", "--addr", addr, "--admin-addr", admin,
		"--handshakes-per-ip", "1000000", "--auth-failures-per-ip", "1000000",
		"--drain-timeout", "1s", "--log-level", "warn"}
	if pprof {
		a = append(a, "--pprof", "true")
	}
	return append(a, extra...)
}

// startFiregate starts one `firegate dev` process against emulatorHost.
func startFiregate(ctx context.Context, name, bin, emulatorHost, project string, pprof bool, extra []string, logTo io.Writer) (*Instance, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p1, err := freePort()
		if err != nil {
			return nil, err
		}
		p2, err := freePort()
		if err != nil {
			return nil, err
		}
		addr, admin := "127.0.0.1:"+strconv.Itoa(p1), "127.0.0.1:"+strconv.Itoa(p2)
		in := newInstance(name, KindFiregate, "http://"+addr, "http://"+admin)
		cmd := exec.Command(bin, firegateArgs(addr, admin, pprof, extra)...)
		cmd.Env = append(os.Environ(), "FIRESTORE_EMULATOR_HOST="+emulatorHost, "FIRESTORE_PROJECT_ID="+project)
		if err := in.startProcess(cmd, logTo); err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err = in.waitReady(rctx, in.AdminURL+"/readyz")
		cancel()
		if err == nil {
			return in, nil
		}
		in.stop(2 * time.Second)
		lastErr = err
		if !strings.Contains(in.Tail(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}
