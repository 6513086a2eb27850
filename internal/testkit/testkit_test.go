package testkit_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/testkit"
)

// recorder is a testkit.TB that records a failure instead of ending the
// test.
type recorder struct{ failed string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestCheckFor(t *testing.T) {
	for _, tc := range []struct {
		name     string
		okAfter  int32 // cond succeeds from this call on; 0: never
		wantFail string
	}{
		{name: "holds at once", okAfter: 1},
		{name: "holds after a few polls", okAfter: 4},
		{name: "never holds: the failure says why", wantFail: "still 7 items"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			r := &recorder{}
			testkit.CheckFor(r, 200*time.Millisecond, time.Millisecond, func() error {
				n := calls.Add(1)
				if tc.okAfter != 0 && n >= tc.okAfter {
					return nil
				}
				return errors.New("still 7 items")
			})
			if tc.wantFail == "" {
				if r.failed != "" {
					t.Fatalf("failed: %s", r.failed)
				}
				if got := calls.Load(); got != tc.okAfter {
					t.Fatalf("cond called %d times, want %d", got, tc.okAfter)
				}
				return
			}
			if !strings.Contains(r.failed, tc.wantFail) || !strings.Contains(r.failed, "200ms") {
				t.Fatalf("failure %q does not say why (%q) and how long", r.failed, tc.wantFail)
			}
			if calls.Load() < 2 {
				t.Fatalf("cond polled %d times before giving up", calls.Load())
			}
		})
	}
}

func TestPollWrapsTheLastError(t *testing.T) {
	sentinel := errors.New("not yet")
	err := testkit.Poll(0, time.Millisecond, func() error { return sentinel })
	if !errors.Is(err, sentinel) {
		t.Fatalf("Poll = %v, want it to wrap the condition's error", err)
	}
}

func TestPollStopsAtAFinalError(t *testing.T) {
	closed := errors.New("connection closed")
	calls := 0
	err := testkit.Poll(time.Minute, time.Millisecond, func() error {
		calls++
		return testkit.Stop(closed)
	})
	if !errors.Is(err, closed) || calls != 1 {
		t.Fatalf("Poll = %v after %d calls, want the final error after one", err, calls)
	}
}
