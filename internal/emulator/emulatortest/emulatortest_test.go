package emulatortest

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestSharedStartsOnceAndStops(t *testing.T) {
	var s Shared
	s.Stop() // before any Get: a no-op
	e1 := s.Get(t)
	e2 := s.Get(t)
	if e1 != e2 {
		t.Fatal("Get started a second emulator")
	}
	c, err := net.DialTimeout("tcp", e1.Host, 2*time.Second)
	if err != nil {
		t.Fatalf("emulator not reachable: %v", err)
	}
	c.Close()
	pid := e1.Pid()
	s.Stop()
	s.Stop()
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("emulator group %d still there after Stop (kill: %v)", pid, err)
	}
}

func TestStartStopsAtCleanup(t *testing.T) {
	var pid int
	t.Run("inner", func(t *testing.T) {
		e := Start(t)
		pid = e.Pid()
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("emulator %d not running: %v", pid, err)
		}
	})
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("emulator group %d still there after the test's cleanup (kill: %v)", pid, err)
	}
}
