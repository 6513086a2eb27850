// Package testkit is what the project's tests share: waiting on a
// condition with a deadline, so that no test depends on timing to pass and
// a timeout says why; and a buffer for a child process's output.
package testkit

import (
	"errors"
	"fmt"
	"time"
)

// TB is the part of testing.TB that CheckFor needs.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Poll calls cond every interval until it returns nil or total has
// passed, and returns nil or, after the deadline, cond's last error. A
// condition that can no longer come true returns Stop(err): Poll then
// returns err at once. It may be called from any goroutine. cond runs at
// least once.
func Poll(total, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(total)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var s stopError
		if errors.As(err, &s) {
			return s.err
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("not within %v: %w", total, err)
		}
		time.Sleep(interval)
	}
}

// CheckFor calls cond every interval until it returns nil; if total passes
// first, it fails t with cond's last error (the reason the condition does
// not hold). Like t.Fatal, it must be called from the test's goroutine.
func CheckFor(t TB, total, interval time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(total, interval, cond); err != nil {
		t.Fatalf("%v", err)
	}
}

// Stop marks err as final: the condition can no longer come true (the
// connection it waits on has closed), so waiting on is pointless.
func Stop(err error) error { return stopError{err} }

type stopError struct{ err error }

func (s stopError) Error() string { return s.err.Error() }
func (s stopError) Unwrap() error { return s.err }
