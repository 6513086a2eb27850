package main

import (
	"bufio"
	"bytes"
	"fmt"
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

// TestDevWithNATS starts `firegate dev --nats`: it announces its embedded
// NATS, runs in fleet mode (/readyz says so, the fleet metrics are there),
// and exits 0 on SIGTERM.
func TestDevWithNATS(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "firegate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "dev", "--nats", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--drain-timeout", "1s")
	cmd.Env = append(os.Environ(), "FIRESTORE_EMULATOR_HOST=", "FIREGATE_NATS_URL=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	lines := make(chan string, 100)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	natsRe := regexp.MustCompile(`embedded NATS with JetStream at (nats://127\.0\.0\.1:\d+)`)
	adminRe := regexp.MustCompile(`admin:\s+(http://\S+)/metrics`)
	var natsURL, admin string
	var banner strings.Builder
	deadline := time.After(90 * time.Second)
	for natsURL == "" || admin == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("firegate dev --nats exited early:\n%s\n%s", banner.String(), stderr.String())
			}
			banner.WriteString(l + "\n")
			if m := natsRe.FindStringSubmatch(l); m != nil {
				natsURL = m[1]
			}
			if m := adminRe.FindStringSubmatch(l); m != nil {
				admin = m[1]
			}
		case <-deadline:
			t.Fatalf("no NATS line or banner within 90s:\n%s\n%s", banner.String(), stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if code, body := get(admin + "/readyz"); code != 200 || !strings.Contains(body, "fleet: connected") {
			return fmt.Errorf("/readyz = %d %q, want 200 with fleet: connected", code, body)
		}
		return nil
	})
	if _, body := get(admin + "/metrics"); !strings.Contains(body, `firegate_fleet_degraded 0`) {
		t.Errorf("/metrics lacks firegate_fleet_degraded 0")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no exit within 60s of SIGTERM")
	}
}
