package gateway_test

import (
	"net/netip"
	"time"

	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/internal/clock"
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

// fakeClock is the injected gateway.Clock (internal/clock's Fake): time
// moves only by Advance or CatchUp.
type fakeClock = clock.Fake

func newFakeClock() *fakeClock { return clock.NewFake(time.Now()) }

// eagerClock is a fakeClock whose AfterFunc runs a callback already due
// (d <= 0) before it returns, on the caller's goroutine: the most adverse
// order a real time.AfterFunc(0) can produce on a busy machine, made
// certain.
type eagerClock struct{ *fakeClock }

func newEagerClock() eagerClock { return eagerClock{newFakeClock()} }

func (c eagerClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	if d <= 0 {
		f()
		return firedTimer{}
	}
	return c.fakeClock.AfterFunc(d, f)
}

// firedTimer is a timer whose callback has run: Stop reports false.
type firedTimer struct{}

func (firedTimer) Stop() bool { return false }
