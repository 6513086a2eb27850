package loadtest

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	if c.Instances != 1 || c.Conns != 1000 || c.Feeds != 10 || c.Duration != 10*time.Second || c.ProjectID != "firegate-dev" ||
		c.ConnsPerProcess != 15000 || c.SourceAddrs != 32 || len(c.Scenarios) != 3 {
		t.Fatalf("defaults: %+v", c)
	}
	q := Quick()
	if err := q.Validate(); err != nil {
		t.Fatalf("quick config: %v", err)
	}
}

func TestConfigLimits(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" → valid
	}{
		{"duration at max", func(c *Config) { c.Duration = maxDuration }, ""},
		{"duration past max", func(c *Config) { c.Duration = maxDuration + time.Nanosecond }, "duration"},
		{"conns at max", func(c *Config) { c.Conns = maxConnections }, ""},
		{"conns past max", func(c *Config) { c.Conns = maxConnections + 1 }, "conns"},
		{"feeds at max", func(c *Config) { c.Feeds = maxFeeds }, ""},
		{"feeds past max", func(c *Config) { c.Feeds = maxFeeds + 1 }, "feeds"},
		{"source addrs at max", func(c *Config) { c.SourceAddrs = maxSourceAddrs }, ""},
		{"source addrs past max", func(c *Config) { c.SourceAddrs = maxSourceAddrs + 1 }, "source addresses"},
		{"conns per process at max", func(c *Config) { c.ConnsPerProcess = 19000 }, ""},
		{"conns per process past max", func(c *Config) { c.ConnsPerProcess = 19001 }, "conns per process"},
		{"negative conns", func(c *Config) { c.Conns = -1 }, "conns"},
		{"unknown scenario", func(c *Config) { c.Scenarios = []string{"nope"} }, "unknown scenario"},
		{"non-loopback target", func(c *Config) { c.Targets = []string{"http://10.0.0.1:8080"}; c.EmulatorHost = "127.0.0.1:1" }, "127.0.0.0/8"},
		{"loopback target", func(c *Config) { c.Targets = []string{"http://127.0.0.9:8080"}; c.EmulatorHost = "127.0.0.1:1" }, ""},
		{"target without emulator", func(c *Config) { c.Targets = []string{"http://127.0.0.1:8080"} }, "emulator-host"},
		{"admin count mismatch", func(c *Config) {
			c.Targets = []string{"http://127.0.0.1:8080"}
			c.AdminTargets = []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}
			c.EmulatorHost = "127.0.0.1:1"
		}, "admin URL per target"},
		{"non-loopback emulator", func(c *Config) { c.EmulatorHost = "example.com:8080" }, "emulator host"},
		{"slow fraction past 1", func(c *Config) { c.SlowFraction = 1.01 }, "slow fraction"},
		{"slow fraction at 1", func(c *Config) { c.SlowFraction = 1 }, ""},
		{"auth ramp inverted", func(c *Config) { c.AuthStart = 100; c.AuthMax = 50 }, "authstorm"},
		{"token ttl below 1m", func(c *Config) { c.TokenTTL = 59 * time.Second }, "token TTL"},
		{"token ttl at 24h", func(c *Config) { c.TokenTTL = 24 * time.Hour }, ""},
		{"docs not above writer concurrency", func(c *Config) { c.Feeds = 1; c.WriterConcurrency = 8; c.DocsPerFeed = 8 }, "docs per feed"},
		{"window not below documents at max", func(c *Config) { c.Rate = -1; c.Feeds = 1; c.DocsPerFeed = 9; c.MaxWindow = 9 }, "window"},
		{"window below documents at max", func(c *Config) { c.Rate = -1; c.Feeds = 1; c.DocsPerFeed = 10; c.MaxWindow = 9 }, ""},
		{"docs just above writer concurrency", func(c *Config) { c.Feeds = 1; c.WriterConcurrency = 8; c.DocsPerFeed = 9 }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCheckLoopbackURL(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"http://127.0.0.1:8080", true},
		{"ws://127.255.255.254:1/v1/stream", true},
		{"http://localhost:8080", true},
		{"http://128.0.0.1:8080", false},
		{"http://[::1]:8080", false},
		{"ftp://127.0.0.1", false},
		{"http://example.com", false},
		{"%zz", false},
	}
	for _, tc := range tests {
		if err := checkLoopbackURL(tc.in); (err == nil) != tc.ok {
			t.Errorf("CheckLoopbackURL(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
