// Package clock is Firegate's one source of time. Every component that
// reads the time or schedules work (the gateway's expiry timers, writer
// linger and drain; the Hub's linger and replay ages; the token verifier)
// takes a Clock, so tests drive time with a Fake instead of sleeping.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time and schedules callbacks. Implementations are safe
// for concurrent use.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f on its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a stoppable AfterFunc timer. Stop reports whether it stopped
// the timer before it fired.
type Timer interface{ Stop() bool }

// Real is the wall clock (package time).
var Real Clock = real{}

type real struct{}

func (real) Now() time.Time                            { return time.Now() }
func (real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// NowFunc adapts a bare time function: Now calls now, AfterFunc uses the
// wall clock.
func NowFunc(now func() time.Time) Clock { return nowFunc(now) }

type nowFunc func() time.Time

func (f nowFunc) Now() time.Time                          { return f() }
func (nowFunc) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Or returns c, or Real when c is nil (the zero value of a Clock field
// means the wall clock).
func Or(c Clock) Clock {
	if c == nil {
		return Real
	}
	return c
}

// Fake is a Clock whose time moves only by Advance, Add or Set; callbacks
// that come due run each on its own goroutine, as time.AfterFunc does. Its
// zero value is not usable: call NewFake.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *Fake
	at      time.Time
	f       func()
	stopped bool
}

// NewFake returns a Fake set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f for d after the fake time.
func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// Pending reports how many timers are scheduled and not yet fired or
// stopped (so a test can wait until the code under test armed one).
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock by d and fires the timers due by then.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	c.setLocked(c.now.Add(d))
}

// Add is Advance (the name the verifier's tests use).
func (c *Fake) Add(d time.Duration) { c.Advance(d) }

// Set moves the clock to t (back, too) and fires what is due.
func (c *Fake) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.setLocked(t)
}

// CatchUp moves the clock forward to real time (never back), so tokens
// minted now and the code under test agree on "now".
func (c *Fake) CatchUp() {
	c.mu.Lock()
	c.setLocked(time.Now())
}

// setLocked moves the clock to t if later, unlocks and fires what is due.
func (c *Fake) setLocked(t time.Time) {
	if t.After(c.now) {
		c.now = t
	}
	var due []func()
	kept := c.timers[:0]
	for _, tm := range c.timers {
		switch {
		case tm.stopped:
		case !tm.at.After(c.now):
			tm.stopped = true
			due = append(due, tm.f)
		default:
			kept = append(kept, tm)
		}
	}
	clear(c.timers[len(kept):])
	c.timers = kept
	c.mu.Unlock()
	for _, f := range due {
		go f()
	}
}
