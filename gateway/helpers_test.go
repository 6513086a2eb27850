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
