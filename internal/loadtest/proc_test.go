package loadtest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/testkit"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{"plain", "123 (firegate) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0", 3 * time.Second, true},
		{"spaces and parens in comm", "123 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0", 30 * time.Millisecond, true},
		{"no comm", "123 firegate S 1", 0, false},
		{"too few fields", "123 (x) S 1 2 3", 0, false},
		{"bad number", "123 (x) S 1 2 3 4 5 6 7 8 9 10 zz 50 0", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.in))
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("parseProcStat = %v, %v; want %v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestProcOfSelf(t *testing.T) {
	// Burn CPU until the kernel's accounting (10 ms ticks) shows some.
	testkit.CheckFor(t, time.Minute, time.Millisecond, func() error {
		for x, start := 0, time.Now(); time.Since(start) < 5*time.Millisecond; x++ {
		}
		cpu, err := procCPU(os.Getpid())
		if err != nil {
			return testkit.Stop(err)
		}
		if cpu <= 0 {
			return fmt.Errorf("ProcCPU(self) = %v after burning CPU", cpu)
		}
		return nil
	})
	rss, err := procRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("ProcRSS(self) = %v, %v", rss, err)
	}
	if _, err := procCPU(-1); err == nil {
		t.Fatal("ProcCPU(-1) succeeded")
	}
	if _, err := procRSS(-1); err == nil {
		t.Fatal("ProcRSS(-1) succeeded")
	}
	if selfCPU() <= 0 {
		t.Fatal("SelfCPU is zero")
	}
}

func TestRaiseNoFileAndMachine(t *testing.T) {
	n, err := raiseNoFile()
	if err != nil || n == 0 {
		t.Fatalf("RaiseNoFile = %d, %v", n, err)
	}
	m := describeMachine()
	if m.NumCPU < 1 || m.MemTotal <= 0 || m.GoVersion == "" || m.NoFile != n {
		t.Fatalf("machine = %+v (nofile want %d)", m, n)
	}
}
