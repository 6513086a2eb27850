// Package emulator finds, starts and stops Google's Cloud Firestore emulator
// (the one the google-cloud-cli-firestore-emulator package ships) as a child
// process. It is used by `firegate dev` and by tests that need a real
// Firestore.
package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ScriptPath is where the emulator's launcher script lives below a gcloud
// SDK root.
const ScriptPath = "platform/cloud-firestore-emulator/cloud_firestore_emulator"

// jarName and mainClass mirror what the launcher script runs; Start runs
// the JVM directly when both are found so that the kill-on-parent-death
// signal reaches the JVM itself, not only the wrapper shell.
const (
	jarName   = "cloud-firestore-emulator.jar"
	mainClass = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
)

// readyLine is what the emulator prints once it serves requests.
const readyLine = "Dev App Server is now running."

// tailSize is how much recent output an Emulator keeps for error messages.
const tailSize = 64 << 10

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// ErrNotFound is wrapped by the error Find returns when no usable emulator
// is installed.
var ErrNotFound = errors.New("firestore emulator not found")

// searchRoots returns the candidate gcloud SDK roots in order of
// preference. It is a variable so tests can point Find elsewhere.
var searchRoots = defaultSearchRoots

// lookJava finds the java binary; a variable so tests can hide it.
var lookJava = func() (string, error) {
	if j := os.Getenv("JAVA"); j != "" {
		return exec.LookPath(j)
	}
	return exec.LookPath("java")
}

func defaultSearchRoots() []string {
	var roots []string
	if r := os.Getenv("CLOUDSDK_ROOT_DIR"); r != "" {
		roots = append(roots, r)
	}
	if g, err := exec.LookPath("gcloud"); err == nil {
		if real, err := filepath.EvalSymlinks(g); err == nil {
			g = real
		}
		roots = append(roots, filepath.Dir(filepath.Dir(g)))
	}
	return append(roots, "/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk")
}

// Find locates the emulator's launcher script through the gcloud SDK root:
// $CLOUDSDK_ROOT_DIR, the SDK that holds the `gcloud` found on PATH
// (symlinks resolved; bin/.. is the root), /usr/lib/google-cloud-sdk,
// /usr/share/google-cloud-sdk, /opt/google-cloud-sdk. The emulator is a Java
// program, so Find also requires java ($JAVA or on PATH). Its error wraps
// ErrNotFound and says how to install what is missing.
func Find() (string, error) {
	roots := searchRoots()
	script := ""
	for _, r := range roots {
		p := filepath.Join(r, ScriptPath)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			script = p
			break
		}
	}
	if script == "" {
		return "", fmt.Errorf("%w (looked for %s under %s): install it with "+
			"`apt-get install google-cloud-cli-firestore-emulator` (Debian/Ubuntu, from Google's Cloud SDK apt repository) "+
			"or `gcloud components install cloud-firestore-emulator`; it needs a Java runtime (e.g. `apt-get install default-jre-headless`). "+
			"Set CLOUDSDK_ROOT_DIR if the SDK lives elsewhere, or set FIRESTORE_EMULATOR_HOST to use an emulator that is already running",
			ErrNotFound, ScriptPath, strings.Join(roots, ", "))
	}
	if _, err := lookJava(); err != nil {
		return "", fmt.Errorf("%w: %s is installed but java is not on PATH (nor in $JAVA): "+
			"install a Java runtime, e.g. `apt-get install default-jre-headless`", ErrNotFound, script)
	}
	return script, nil
}

// Options configures Start. The zero value starts the emulator found by
// Find on 127.0.0.1 at a free port, discarding its output.
type Options struct {
	// Path is the launcher script; "" → Find().
	Path string
	// Host is the address to bind; "" → "127.0.0.1".
	Host string
	// Port to listen on; 0 → a free port picked at start.
	Port int
	// ProjectID, when set, is passed as --project_id (Reset still takes
	// the project explicitly).
	ProjectID string
	// Stdout and Stderr receive the emulator's output; nil discards it.
	// The last 64 KiB of both are always kept for start errors (Tail).
	// They may be called from two goroutines, never concurrently.
	Stdout, Stderr io.Writer
	// StartTimeout bounds the wait for readiness; 0 → 60 s.
	StartTimeout time.Duration
}

// Emulator is a running emulator process group. Its methods are safe for
// concurrent use.
type Emulator struct {
	// Host is "host:port", the value for FIRESTORE_EMULATOR_HOST.
	Host string

	cmd  *exec.Cmd
	out  *sink
	done chan struct{} // closed once the process has been waited for

	waitErr  error // set before done is closed
	stopOnce sync.Once
	stopErr  error
}

// Start launches the emulator and waits until it serves requests: it has
// printed its ready line and answers HTTP GET / with "Ok". The process runs
// in its own process group (Stop kills the whole group) and, on Linux, is
// killed when the calling process dies. ctx bounds only the start-up; use
// Stop to end the emulator.
func Start(ctx context.Context, o Options) (*Emulator, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.StartTimeout < 0 {
		return nil, errors.New("failed to start the firestore emulator: negative StartTimeout")
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("failed to start the firestore emulator: port %d out of range", o.Port)
	}
	if o.Path == "" {
		p, err := Find()
		if err != nil {
			return nil, err
		}
		o.Path = p
	}
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()

	// A port picked as free may be taken before the JVM binds it; retry a
	// couple of times in that case.
	attempts := 1
	if o.Port == 0 {
		attempts = 3
	}
	var lastErr error
	for i := 0; i < attempts; i++ {
		port := o.Port
		if port == 0 {
			p, err := freePort(o.Host)
			if err != nil {
				return nil, fmt.Errorf("failed to start the firestore emulator: %w", err)
			}
			port = p
		}
		e, exited, err := startOnce(ctx, o, port)
		if err == nil {
			return e, nil
		}
		lastErr = err
		if !exited || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func startOnce(ctx context.Context, o Options, port int) (e *Emulator, exited bool, err error) {
	host := net.JoinHostPort(o.Host, strconv.Itoa(port))
	args := []string{"start", "--host=" + o.Host, "--port=" + strconv.Itoa(port)}
	if o.ProjectID != "" {
		args = append(args, "--project_id="+o.ProjectID)
	}
	cmd := command(o.Path, args)
	s := newSink(o.Stdout, o.Stderr)
	cmd.Stdout = s.writer(0)
	cmd.Stderr = s.writer(1)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("failed to start the firestore emulator %s: %w", o.Path, err)
	}
	e = &Emulator{Host: host, cmd: cmd, out: s, done: make(chan struct{})}
	go func() {
		e.waitErr = cmd.Wait()
		close(e.done)
	}()

	fail := func(format string, a ...any) (*Emulator, bool, error) {
		exited := false
		select {
		case <-e.done:
			exited = true
		default:
		}
		_ = e.Stop()
		msg := fmt.Sprintf(format, a...)
		if tail := strings.TrimSpace(e.Tail()); tail != "" {
			msg += "; emulator output:\n" + tail
		}
		return nil, exited, errors.New(msg)
	}

	select {
	case <-s.ready:
	case <-e.done:
		return fail("failed to start the firestore emulator on %s: it exited early (%v)", host, e.waitErr)
	case <-ctx.Done():
		return fail("failed to start the firestore emulator on %s: not ready: %v", host, ctx.Err())
	}
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		if pingHTTP(ctx, client, host) {
			return e, false, nil
		}
		select {
		case <-e.done:
			return fail("failed to start the firestore emulator on %s: it exited early (%v)", host, e.waitErr)
		case <-ctx.Done():
			return fail("failed to start the firestore emulator on %s: printed its ready line but does not answer HTTP: %v", host, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// command runs the JVM directly when the launcher script is the one we
// know (so that Pdeathsig reaches the JVM), else the script itself.
func command(script string, args []string) *exec.Cmd {
	dir := filepath.Dir(script)
	jar := filepath.Join(dir, jarName)
	body, err := os.ReadFile(script)
	if err == nil && bytes.Contains(body, []byte(mainClass)) {
		if _, err := os.Stat(jar); err == nil {
			if java, err := lookJava(); err == nil {
				full := append([]string{"-Duser.language=en", "-cp", jar, mainClass}, args...)
				return exec.Command(java, full...)
			}
		}
	}
	return exec.Command(script, args...)
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("failed to pick a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func pingHTTP(ctx context.Context, c *http.Client, host string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/", nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "Ok"
}

// Pid is the process id of the emulator (the leader of its process group).
func (e *Emulator) Pid() int { return e.cmd.Process.Pid }

// Tail returns the last 64 KiB of the emulator's combined output.
func (e *Emulator) Tail() string { return e.out.tail() }

// Done is closed once the emulator process has exited.
func (e *Emulator) Done() <-chan struct{} { return e.done }

// Stop ends the emulator's whole process group: SIGTERM, then SIGKILL
// after 5 s, and waits for the process. It is idempotent; later calls
// return the first call's result. An exit caused by Stop's signals is not
// an error.
func (e *Emulator) Stop() error {
	e.stopOnce.Do(func() {
		pgid := e.cmd.Process.Pid
		select {
		case <-e.done:
			// Already gone (crashed or killed); still sweep the group.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			if e.waitErr != nil && !signalled(e.waitErr) {
				e.stopErr = fmt.Errorf("firestore emulator had exited: %w", e.waitErr)
			}
			return
		default:
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-e.done
		}
		// Members of the group that outlived the leader.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
	return e.stopErr
}

// signalled reports whether err is an exit by a signal or the conventional
// 128+SIGTERM/SIGKILL status a JVM uses after a shutdown hook.
func signalled(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return true
	}
	c := ee.ExitCode()
	return c == 128+int(syscall.SIGTERM) || c == 128+int(syscall.SIGKILL)
}

// Reset deletes every document of projectID's (default) database.
func (e *Emulator) Reset(ctx context.Context, projectID string) error {
	if projectID == "" {
		return errors.New("failed to reset the firestore emulator: empty project id")
	}
	u := "http://" + e.Host + "/emulator/v1/projects/" + url.PathEscape(projectID) + "/databases/(default)/documents"
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, nil)
	if err != nil {
		return fmt.Errorf("failed to reset the firestore emulator: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("failed to reset the firestore emulator: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("failed to reset the firestore emulator: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// sink collects the emulator's stdout and stderr: it forwards them to the
// caller's writers, keeps a tail of both and watches for the ready line.
// mu guards every field and serializes the forwarded writes.
type sink struct {
	mu       sync.Mutex
	dst      [2]io.Writer
	buf      []byte // tail, at most tailSize
	scan     [2][]byte
	ready    chan struct{}
	gotReady bool
}

func newSink(stdout, stderr io.Writer) *sink {
	return &sink{dst: [2]io.Writer{stdout, stderr}, ready: make(chan struct{})}
}

type sinkWriter struct {
	s *sink
	i int
}

func (s *sink) writer(i int) io.Writer { return sinkWriter{s, i} }

func (w sinkWriter) Write(p []byte) (int, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	if len(s.buf) > tailSize {
		s.buf = append(s.buf[:0], s.buf[len(s.buf)-tailSize:]...)
	}
	if !s.gotReady {
		// Keep only what could be the start of a split ready line.
		sc := append(s.scan[w.i], p...)
		if bytes.Contains(sc, []byte(readyLine)) {
			s.gotReady = true
			close(s.ready)
			sc = nil
		} else if len(sc) > len(readyLine) {
			sc = append(sc[:0], sc[len(sc)-len(readyLine):]...)
		}
		s.scan[w.i] = sc
	}
	if d := s.dst[w.i]; d != nil {
		_, _ = d.Write(p) // the caller's sink failing must not stop the emulator
	}
	return len(p), nil
}

func (s *sink) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.buf)
}
