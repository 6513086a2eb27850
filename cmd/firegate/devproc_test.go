package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/testkit"
)

// buildFiregate builds this command into a temporary directory with
// ldflags (may be empty) and returns the binary's path.
func buildFiregate(t *testing.T, ldflags string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "firegate")
	args := []string{"build"}
	if ldflags != "" {
		args = append(args, "-buildvcs=false", "-ldflags", ldflags)
	}
	args = append(args, "-o", bin, ".")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// devProcess is a firegate process started by startDev.
type devProcess struct {
	cmd    *exec.Cmd
	name   string                // the command line, for messages
	banner string                // stdout up to the last line startDev waited for
	stderr *testkit.LockedBuffer // everything the process wrote to stderr
	exited chan error            // receives cmd.Wait's result once stdout closes
}

// startDev starts bin with args and env added to this process's
// environment, killed if the test process dies. It reads stdout until
// every pattern of want has matched a line (90 s at most; an early exit
// fails the test) and returns the process and, by name, each pattern's
// first submatch. Stdout is drained afterwards; the process is killed at
// the end of the test if it is still running.
func startDev(t *testing.T, bin string, args, env []string, want map[string]*regexp.Regexp) (*devProcess, map[string]string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &devProcess{cmd: cmd, name: "firegate " + strings.Join(args, " "), stderr: &testkit.LockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.exited <- cmd.Wait()
	}()
	found := make(map[string]string, len(want))
	var banner strings.Builder
	deadline := time.After(90 * time.Second)
	for len(found) < len(want) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s exited early:\n%s\n%s", p.name, banner.String(), p.stderr.String())
			}
			banner.WriteString(l + "\n")
			for name, re := range want {
				if _, done := found[name]; done {
					continue
				}
				if m := re.FindStringSubmatch(l); m != nil {
					found[name] = m[1]
				}
			}
		case <-deadline:
			t.Fatalf("%s: not every expected line within 90s:\n%s\n%s", p.name, banner.String(), p.stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	p.banner = banner.String()
	return p, found
}

// terminate sends SIGTERM.
func (p *devProcess) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// waitExit fails the test unless the process exits 0 within 60 s.
func (p *devProcess) waitExit(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("%s exit: %v\n%s", p.name, err, p.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit within 60s of SIGTERM", p.name)
	}
}

// httpGet returns the status and body of GET url; a transport error fails
// the test.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
