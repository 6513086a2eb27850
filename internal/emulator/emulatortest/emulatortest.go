// Package emulatortest starts Google's Firestore emulator for tests.
//
// An emulator cannot be shared across test binaries (each package's tests
// are a separate process), so a package should start one emulator for all
// its tests: declare a package-level Shared, call its Get from tests that
// need Firestore, and Stop it from TestMain after m.Run:
//
//	var emu emulatortest.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		emu.Stop()
//		os.Exit(code)
//	}
//
//	func TestX(t *testing.T) { host := emu.Get(t).Host; ... }
//
// The emulator starts lazily, so tests that do not need it pay nothing. It
// runs with a parent-death signal on Linux: a test binary that is killed
// takes its emulator with it.
package emulatortest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/emulator"
)

// Start starts an emulator for one test (or benchmark) and stops it in
// tb.Cleanup. It fails the test when the emulator cannot start. Prefer
// Shared when several tests need one.
func Start(tb testing.TB) *emulator.Emulator {
	tb.Helper()
	e, err := emulator.Start(context.Background(), options())
	if err != nil {
		tb.Fatalf("emulatortest: %v", err)
	}
	tb.Cleanup(func() { _ = e.Stop() })
	return e
}

// Shared is one emulator started on first use and stopped by Stop. The
// zero value is ready; it is safe for concurrent use.
type Shared struct {
	once sync.Once
	mu   sync.Mutex
	emu  *emulator.Emulator
	err  error
}

// Get returns the shared emulator, starting it on the first call. A start
// failure fails every test that calls Get.
func (s *Shared) Get(tb testing.TB) *emulator.Emulator {
	tb.Helper()
	s.once.Do(func() {
		e, err := emulator.Start(context.Background(), options())
		s.mu.Lock()
		s.emu, s.err = e, err
		s.mu.Unlock()
	})
	s.mu.Lock()
	e, err := s.emu, s.err
	s.mu.Unlock()
	if err != nil {
		tb.Fatalf("emulatortest: %v", err)
	}
	return e
}

// Stop stops the emulator if one was started. Safe to call when Get was
// never called, and more than once.
func (s *Shared) Stop() {
	s.mu.Lock()
	e := s.emu
	s.mu.Unlock()
	if e != nil {
		_ = e.Stop()
	}
}

// options forwards the emulator's output to stderr when
// FIREGATE_EMULATOR_LOG is set (debugging), else keeps only the tail. The
// start timeout is generous: a loaded CI machine can take tens of seconds
// to boot a JVM.
func options() emulator.Options {
	o := emulator.Options{StartTimeout: 2 * time.Minute}
	if os.Getenv("FIREGATE_EMULATOR_LOG") != "" {
		o.Stdout, o.Stderr = os.Stderr, os.Stderr
	}
	return o
}
