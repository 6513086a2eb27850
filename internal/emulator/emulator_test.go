package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/testkit"
)

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// groupAlive reports whether any process of the group still exists.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func setRoots(t *testing.T, f func() []string) {
	t.Helper()
	old := searchRoots
	searchRoots = f
	t.Cleanup(func() { searchRoots = old })
}

func writeExec(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultSearchRoots(t *testing.T) {
	tmp := t.TempDir()
	envRoot := filepath.Join(tmp, "envroot")
	sdk := filepath.Join(tmp, "sdk")
	writeExec(t, filepath.Join(sdk, "bin", "gcloud"), "#!/bin/sh\n")
	pathBin := filepath.Join(tmp, "pathbin")
	if err := os.MkdirAll(pathBin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(sdk, "bin", "gcloud"), filepath.Join(pathBin, "gcloud")); err != nil {
		t.Fatal(err)
	}
	fixed := []string{"/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk"}

	tests := []struct {
		name    string
		envRoot string
		path    string
		want    []string
	}{
		{"env and symlinked gcloud", envRoot, pathBin, append([]string{envRoot, sdk}, fixed...)},
		{"symlinked gcloud only", "", pathBin, append([]string{sdk}, fixed...)},
		{"nothing", "", filepath.Join(tmp, "empty"), fixed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CLOUDSDK_ROOT_DIR", tc.envRoot)
			t.Setenv("PATH", tc.path)
			got := defaultSearchRoots()
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("roots = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFind(t *testing.T) {
	tmp := t.TempDir()
	empty := filepath.Join(tmp, "empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	sdk := filepath.Join(tmp, "sdk")
	script := filepath.Join(sdk, ScriptPath)
	writeExec(t, script, "#!/bin/sh\n")
	notExec := filepath.Join(tmp, "noexec")
	writeExec(t, filepath.Join(notExec, ScriptPath), "#!/bin/sh\n")
	if err := os.Chmod(filepath.Join(notExec, ScriptPath), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("not found names the package and java", func(t *testing.T) {
		// The environment a user without the SDK has: an empty
		// CLOUDSDK_ROOT_DIR and no gcloud on PATH (the fixed system
		// locations are left out since this machine has them).
		t.Setenv("CLOUDSDK_ROOT_DIR", empty)
		t.Setenv("PATH", empty)
		setRoots(t, func() []string { return defaultSearchRoots()[:1] })
		_, err := Find()
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		for _, want := range []string{"google-cloud-cli-firestore-emulator", "java", empty, "FIRESTORE_EMULATOR_HOST"} {
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	})
	t.Run("non-executable script is skipped", func(t *testing.T) {
		setRoots(t, func() []string { return []string{notExec, sdk} })
		got, err := Find()
		if err != nil || got != script {
			t.Fatalf("Find = %q, %v; want %q", got, err, script)
		}
	})
	t.Run("first root wins", func(t *testing.T) {
		setRoots(t, func() []string { return []string{empty, sdk} })
		got, err := Find()
		if err != nil || got != script {
			t.Fatalf("Find = %q, %v; want %q", got, err, script)
		}
	})
	t.Run("CLOUDSDK_ROOT_DIR is honoured", func(t *testing.T) {
		t.Setenv("CLOUDSDK_ROOT_DIR", sdk)
		got, err := Find()
		if err != nil || got != script {
			t.Fatalf("Find = %q, %v; want %q", got, err, script)
		}
	})
	t.Run("java missing", func(t *testing.T) {
		setRoots(t, func() []string { return []string{sdk} })
		old := lookJava
		lookJava = func() (string, error) { return "", exec.ErrNotFound }
		t.Cleanup(func() { lookJava = old })
		_, err := Find()
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "java") || !strings.Contains(err.Error(), script) {
			t.Fatalf("err = %v, want ErrNotFound naming java and %s", err, script)
		}
	})
	t.Run("installed here", func(t *testing.T) {
		got, err := Find()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(got); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSinkReadyLineAndTail(t *testing.T) {
	tests := []struct {
		name   string
		writes []string // "1:" prefix writes to stderr
		ready  bool
	}{
		{"one write", []string{"x\n" + readyLine + "\n"}, true},
		{"split across writes", []string{"abc Dev App Ser", "ver is now running.\n"}, true},
		{"split byte by byte", strings.Split(readyLine, ""), true},
		{"on stderr", []string{"1:" + readyLine}, true},
		{"interleaved halves do not join", []string{"Dev App Server ", "1:is now running."}, false},
		{"absent", []string{"Dev App Server is now", " starting"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			s := newSink(&out, &errOut)
			var want [2]string
			for _, w := range tc.writes {
				i := 0
				if strings.HasPrefix(w, "1:") {
					i, w = 1, w[2:]
				}
				want[i] += w
				if n, err := s.writer(i).Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			select {
			case <-s.ready:
				if !tc.ready {
					t.Fatal("ready signalled, want not")
				}
			default:
				if tc.ready {
					t.Fatal("ready not signalled")
				}
			}
			if out.String() != want[0] || errOut.String() != want[1] {
				t.Fatalf("forwarded %q/%q, want %q/%q", out.String(), errOut.String(), want[0], want[1])
			}
		})
	}

	t.Run("tail keeps the last 64 KiB", func(t *testing.T) {
		for _, n := range []int{tailSize - 1, tailSize, tailSize + 1, 3 * tailSize} {
			s := newSink(nil, nil)
			data := make([]byte, n)
			for i := range data {
				data[i] = byte('a' + i%26)
			}
			// Uneven chunks over both streams.
			for off := 0; off < n; off += 1000 {
				end := min(off+1000, n)
				_, _ = s.writer(off / 1000 % 2).Write(data[off:end])
			}
			got := s.tail()
			wantLen := min(n, tailSize)
			if len(got) != wantLen || got != string(data[n-wantLen:]) {
				t.Fatalf("n=%d: tail len %d, want the last %d bytes", n, len(got), wantLen)
			}
		}
	})
}

func TestStartFailures(t *testing.T) {
	tmp := t.TempDir()
	crash := filepath.Join(tmp, "crash.sh")
	writeExec(t, crash, "#!/bin/sh\necho starting up\necho 'boom: bad flag' >&2\nexit 3\n")
	silent := filepath.Join(tmp, "silent.sh")
	writeExec(t, silent, "#!/bin/sh\necho waiting\nexec sleep 30\n")

	tests := []struct {
		name    string
		o       Options
		wantErr []string
	}{
		{"exits early", Options{Path: crash, StartTimeout: 10 * time.Second}, []string{"exited early", "boom: bad flag", "starting up"}},
		{"never ready", Options{Path: silent, StartTimeout: 300 * time.Millisecond}, []string{"not ready", "deadline exceeded", "waiting"}},
		{"bad port", Options{Path: crash, Port: 70000}, []string{"out of range"}},
		{"negative timeout", Options{Path: crash, StartTimeout: -1}, []string{"negative"}},
		{"missing binary", Options{Path: filepath.Join(tmp, "nope")}, []string{"failed to start", "nope"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Start(context.Background(), tc.o)
			if err == nil {
				_ = e.Stop()
				t.Fatal("Start succeeded")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestStartStopReset runs the real emulator.
func TestStartStopReset(t *testing.T) {
	var out bytes.Buffer
	var outMu sync.Mutex
	start := time.Now()
	e, err := Start(context.Background(), Options{ProjectID: "emu-test", Stdout: lockedWriter{&outMu, &out}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("emulator ready after %v", time.Since(start))
	t.Cleanup(func() { _ = e.Stop() })

	host, port, err := net.SplitHostPort(e.Host)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Host = %q (%v), want 127.0.0.1:port", e.Host, err)
	}
	if p, _ := strconv.Atoi(port); p <= 0 {
		t.Fatalf("port %q", port)
	}
	outMu.Lock()
	printed := out.String()
	outMu.Unlock()
	if !strings.Contains(printed, e.Host) {
		t.Errorf("Stdout did not receive the emulator's output naming %s: %q", e.Host, printed)
	}
	if !strings.Contains(e.Tail(), readyLine) {
		t.Errorf("Tail lacks the ready line: %q", e.Tail())
	}

	// Reset clears documents, through the emulator's REST API.
	ctx := context.Background()
	docURL := "http://" + e.Host + "/v1/projects/emu-test/databases/(default)/documents/tasks/t1"
	httpDo(t, http.MethodPatch, docURL, `{"fields":{"title":{"stringValue":"a"}}}`, http.StatusOK)
	httpDo(t, http.MethodGet, docURL, "", http.StatusOK)
	if err := e.Reset(ctx, "emu-test"); err != nil {
		t.Fatal(err)
	}
	httpDo(t, http.MethodGet, docURL, "", http.StatusNotFound)
	if err := e.Reset(ctx, ""); err == nil {
		t.Error("Reset with an empty project succeeded")
	}

	pid := e.Pid()
	if !alive(pid) || !groupAlive(pid) {
		t.Fatalf("emulator pid %d not alive before Stop", pid)
	}
	select {
	case <-e.Done():
		t.Fatal("Done closed while running")
	default:
	}
	if err := e.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if alive(pid) || groupAlive(pid) {
		t.Fatalf("process group %d still alive after Stop", pid)
	}
	<-e.Done()
	if err := e.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := e.Reset(ctx, "emu-test"); err == nil {
		t.Error("Reset after Stop succeeded")
	}
}

// TestFixedPortInUse: a taken port makes the emulator exit, and Start says so
// with the emulator's own words.
func TestFixedPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	e, err := Start(context.Background(), Options{Port: port, StartTimeout: 2 * time.Minute})
	if err == nil {
		_ = e.Stop()
		t.Fatal("Start on a taken port succeeded")
	}
	if !strings.Contains(err.Error(), "exited early") || !strings.Contains(err.Error(), "emulator output") {
		t.Fatalf("error %q does not report the early exit with output", err)
	}
}

// TestChildDiesWithParent re-runs this test binary as a parent that starts
// an emulator, reports its pid and then is SIGKILLed; the emulator must die
// with it.
func TestChildDiesWithParent(t *testing.T) {
	if os.Getenv("EMULATOR_TEST_PARENT") == "1" {
		e, err := Start(context.Background(), Options{})
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println("PID", e.Pid())
		time.Sleep(time.Minute) // killed by the test
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithParent$")
	cmd.Env = append(os.Environ(), "EMULATOR_TEST_PARENT=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := readLine(stdout, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscanf(line, "PID %d", &pid); err != nil {
		t.Fatalf("parent said %q", line)
	}
	if !alive(pid) {
		t.Fatalf("emulator %d not running", pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testkit.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if groupAlive(pid) {
			return fmt.Errorf("the orphaned emulator (process group %d) is still alive", pid)
		}
		return nil
	})
}

func readLine(r io.Reader, d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		var b []byte
		one := make([]byte, 1)
		for {
			n, err := r.Read(one)
			if n == 1 {
				if one[0] == '\n' {
					ch <- res{string(b), nil}
					return
				}
				b = append(b, one[0])
			}
			if err != nil {
				ch <- res{string(b), err}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(d):
		return "", fmt.Errorf("no line after %v", d)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func httpDo(t *testing.T, method, url, body string, want int) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer owner")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d %s, want %d", method, url, resp.StatusCode, b, want)
	}
}
