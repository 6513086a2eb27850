package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/testkit"
)

// TestDevWithNATS starts `firegate dev --nats`: it announces its embedded
// NATS, runs in fleet mode (/readyz says so, the fleet metrics are there),
// and exits 0 on SIGTERM.
func TestDevWithNATS(t *testing.T) {
	bin := buildFiregate(t, "")
	proc, found := startDev(t, bin,
		[]string{"dev", "--nats", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--drain-timeout", "1s"},
		[]string{"FIRESTORE_EMULATOR_HOST=", "FIREGATE_NATS_URL="},
		map[string]*regexp.Regexp{
			"nats":  regexp.MustCompile(`embedded NATS with JetStream at (nats://127\.0\.0\.1:\d+)`),
			"admin": regexp.MustCompile(`admin:\s+(http://\S+)/metrics`),
		})
	admin := found["admin"]
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if code, body := httpGet(t, admin+"/readyz"); code != 200 || !strings.Contains(body, "fleet: connected") {
			return fmt.Errorf("/readyz = %d %q, want 200 with fleet: connected", code, body)
		}
		return nil
	})
	if _, body := httpGet(t, admin+"/metrics"); !strings.Contains(body, `firegate_fleet_degraded 0`) {
		t.Errorf("/metrics lacks firegate_fleet_degraded 0")
	}
	proc.terminate(t)
	proc.waitExit(t)
}
