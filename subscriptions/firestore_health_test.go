package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/emulator/emulatortest"
	"github.com/firegate/firegate/internal/testkit"

	"google.golang.org/grpc/codes"

	"github.com/firegate/firegate/wire"
)

// TestRebuildAllEndsListenersWithUnavailable is what the health monitor
// does after an outage: running listeners end with a transient
// UpstreamError (so their Feeds rebuild and diff), the source stays usable.
func TestRebuildAllEndsListenersWithUnavailable(t *testing.T) {
	s := fsNewSource(t, FirestoreConfig{HealthInterval: -1})
	q := Query{Collection: "tasks", Filters: []wire.Filter{{Field: "org_id", Op: "==", Value: "o"}}}
	l := fsListen(t, s, q)
	select {
	case <-l.snaps:
	case <-time.After(fsWait):
		t.Fatal("no first snapshot")
	}
	if n := s.rebuildAll(); n != 1 {
		t.Fatalf("rebuilt %d listeners, want 1", n)
	}
	select {
	case err := <-l.done:
		l.done <- err // for the cleanup
		var ue *UpstreamError
		if !errors.As(err, &ue) || ue.Code != codes.Unavailable || ue.Permanent() {
			t.Fatalf("listener ended with %v", err)
		}
	case <-time.After(fsWait):
		t.Fatal("listener not ended")
	}
	// A new listener works, and none is left registered.
	l2 := fsListen(t, s, q)
	select {
	case <-l2.snaps:
	case <-time.After(fsWait):
		t.Fatal("no snapshot after rebuild")
	}
	l2.cancel()
	err := <-l2.done
	l2.done <- err
	s.mu.Lock()
	left := len(s.listeners)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d listeners still registered", left)
	}
}

// TestHealthHysteresis: Health turns unhealthy only after at least
// UnhealthyAfter consecutive failed checks spanning at least
// UnhealthyWindow, and one success makes it healthy again.
func TestHealthHysteresis(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	fail := errors.New("unavailable")
	type check struct {
		at  time.Duration // since t0
		err error
	}
	cases := []struct {
		name      string
		checks    []check
		unhealthy bool
	}{
		{"no check yet", nil, false},
		{"one failure", []check{{0, fail}}, false},
		{"count reached, window not", []check{{0, fail}, {time.Second, fail}, {9 * time.Second, fail}}, false},
		{"window reached, count not", []check{{0, fail}, {10 * time.Second, fail}}, false},
		{"both at their edges", []check{{0, fail}, {time.Second, fail}, {10 * time.Second, fail}}, true},
		{"past both", []check{{0, fail}, {5 * time.Second, fail}, {10 * time.Second, fail}, {15 * time.Second, fail}}, true},
		{"a success resets the run", []check{{0, fail}, {5 * time.Second, fail}, {6 * time.Second, nil}, {7 * time.Second, fail}, {17*time.Second - time.Nanosecond, fail}, {17*time.Second - time.Nanosecond, fail}}, false},
		{"recovered", []check{{0, fail}, {5 * time.Second, fail}, {10 * time.Second, fail}, {11 * time.Second, nil}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := healthState{after: 3, window: 10 * time.Second}
			for _, c := range tc.checks {
				h.observe(c.err, t0.Add(c.at))
			}
			err := h.verdict()
			if (err != nil) != tc.unhealthy {
				t.Fatalf("verdict = %v, want unhealthy=%v", err, tc.unhealthy)
			}
			if err != nil && !errors.Is(err, fail) {
				t.Fatalf("verdict %v does not wrap the last failure", err)
			}
		})
	}
}

// TestHealthReportsAnOutageAfterHysteresis kills a dedicated emulator
// under a source: its health monitor's checks fail, and Health reports
// the outage once the hysteresis is met (no read of its own).
func TestHealthReportsAnOutageAfterHysteresis(t *testing.T) {
	testEmulator(t) // the shared one: restored as FIRESTORE_EMULATOR_HOST after
	e := emulatortest.Start(t)
	t.Setenv("FIRESTORE_EMULATOR_HOST", e.Host)
	s, err := NewFirestoreSource(context.Background(), FirestoreConfig{
		ProjectID: fsTestProject(), HealthInterval: 50 * time.Millisecond, UnhealthyAfter: 3, UnhealthyWindow: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	testkit.CheckFor(t, fsWait, 10*time.Millisecond, func() error {
		if s.Pings() < 2 {
			return fmt.Errorf("%d health checks so far", s.Pings())
		}
		return s.Health()
	})
	if err := e.Stop(); err != nil {
		t.Logf("emulator stop: %v", err)
	}
	testkit.CheckFor(t, fsWait, 10*time.Millisecond, func() error {
		if err := s.Health(); err == nil {
			return errors.New("still healthy")
		} else if !strings.Contains(err.Error(), "consecutive health checks failed") {
			return testkit.Stop(fmt.Errorf("unexpected verdict %v", err))
		}
		return nil
	})
}
