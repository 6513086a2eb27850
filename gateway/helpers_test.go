package gateway_test

import (
	"net/netip"
	"sync"
	"time"

	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/subscriptions"
)

func gatewayCfgShortAuth() gateway.Config {
	return gateway.Config{AuthTimeout: time.Second}
}

func gatewayCfgMaxBytes(n int64) gateway.Config {
	return gateway.Config{MaxMessageBytes: n}
}

func hubCfgLinger(d time.Duration) subscriptions.HubConfig {
	return subscriptions.HubConfig{Linger: d}
}

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// fakeClock is an injected gateway.Clock: time moves only by Advance,
// which runs the AfterFunc callbacks that come due (each on its own
// goroutine, as time.AfterFunc does).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) gateway.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock by d and fires the timers due by then.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.advanceLocked(c.now.Add(d))
}

// CatchUp moves the clock forward to real time (never back), so tokens
// minted now and the gateway agree on "now".
func (c *fakeClock) CatchUp() {
	c.mu.Lock()
	c.advanceLocked(time.Now())
}

// advanceLocked moves the clock to t if later, unlocks and fires what is
// due.
func (c *fakeClock) advanceLocked(t time.Time) {
	if t.After(c.now) {
		c.now = t
	}
	var due []func()
	kept := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.stopped = true
			due = append(due, t.f)
		default:
			kept = append(kept, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, f := range due {
		go f()
	}
}
