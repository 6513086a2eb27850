package clock

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestFakeFiresOnlyWhatIsDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewFake(t0)
	fired := make(chan string, 4)
	c.AfterFunc(time.Second, func() { fired <- "1s" })
	stopped := c.AfterFunc(2*time.Second, func() { fired <- "2s-stopped" })
	c.AfterFunc(3*time.Second, func() { fired <- "3s" })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop must report true once, then false")
	}
	if c.Pending() != 2 {
		t.Fatalf("Pending = %d, want 2", c.Pending())
	}
	c.Advance(2 * time.Second)
	if got := <-fired; got != "1s" {
		t.Fatalf("fired %q, want 1s", got)
	}
	if c.Pending() != 1 || !c.Now().Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after Advance: pending %d, now %v", c.Pending(), c.Now())
	}
	c.Set(t0.Add(3 * time.Second))
	if got := <-fired; got != "3s" {
		t.Fatalf("fired %q, want 3s", got)
	}
	select {
	case got := <-fired:
		t.Fatalf("unexpected %q", got)
	default:
	}
}

func TestOrAndNowFunc(t *testing.T) {
	if Or(nil) != Real {
		t.Fatal("Or(nil) must be the wall clock")
	}
	f := NewFake(time.Unix(5, 0))
	if Or(f) != f {
		t.Fatal("Or(c) must be c")
	}
	at := time.Unix(42, 0)
	if got := NowFunc(func() time.Time { return at }).Now(); !got.Equal(at) {
		t.Fatalf("NowFunc.Now = %v", got)
	}
	var n atomic.Int32
	done := make(chan struct{})
	Real.AfterFunc(0, func() { n.Add(1); close(done) })
	<-done
	if n.Load() != 1 {
		t.Fatal("Real.AfterFunc did not run")
	}
}
