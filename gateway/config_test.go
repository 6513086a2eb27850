package gateway

import (
	"testing"

	"golang.org/x/time/rate"
)

// TestHandshakeBurstDefault: an unset handshake burst is two seconds'
// worth of the configured rate, at least one — never the 40 of the
// default rate for a rate under 0.5/s.
func TestHandshakeBurstDefault(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rate      rate.Limit
		burst     int
		wantRate  rate.Limit
		wantBurst int
	}{
		{"defaults", 0, 0, 20, 40},
		{"rate under 0.5/s: one handshake", 0.3, 0, 0.3, 1},
		{"tiny rate", 0.001, 0, 0.001, 1},
		{"at 0.5/s", 0.5, 0, 0.5, 1},
		{"just over 0.5/s", 0.6, 0, 0.6, 2},
		{"fractional rate rounds up", 2.2, 0, 2.2, 5},
		{"explicit burst kept", 0.3, 7, 0.3, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Limits: Limits{HandshakesPerIP: tc.rate, HandshakeBurst: tc.burst}}
			if err := c.setDefaults(); err != nil {
				t.Fatal(err)
			}
			if c.Limits.HandshakesPerIP != tc.wantRate || c.Limits.HandshakeBurst != tc.wantBurst {
				t.Fatalf("rate %v burst %d, want rate %v burst %d", c.Limits.HandshakesPerIP, c.Limits.HandshakeBurst, tc.wantRate, tc.wantBurst)
			}
		})
	}
}
