package loadtest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Scenario names.
const (
	ScenarioHold      = "hold"
	ScenarioFanout    = "fanout"
	ScenarioChurn     = "churn"
	ScenarioAuthstorm = "authstorm"
	ScenarioSlow      = "slow"
	ScenarioBaseline  = "baseline"
)

// Scenarios lists every scenario in its default order.
var Scenarios = []string{ScenarioHold, ScenarioFanout, ScenarioChurn, ScenarioAuthstorm, ScenarioSlow, ScenarioBaseline}

// Hard bounds: every scenario stops by itself within them.
const (
	maxDuration    = 2 * time.Minute
	maxConnections = 200_000
	maxFeeds       = 1000
)

// Config configures a load test. The zero value of every field is a
// documented safe default (small and short); Validate checks the rest.
type Config struct {
	// Scenarios to run, in order; nil → hold, fanout, churn.
	Scenarios []string
	// Targets are base URLs of already-running `firegate dev` gateways
	// (http://127.0.0.1:8080); with each, AdminTargets names its admin
	// address. Empty: the tool starts Instances gateways itself.
	Targets      []string
	AdminTargets []string
	// Instances is how many gateway processes to start; 0 → 1.
	Instances int
	// FiregateBin is the firegate binary; "" → built from ./cmd/firegate
	// into a temporary directory with `go build`.
	FiregateBin string
	// EmulatorHost is a running Firestore emulator ("127.0.0.1:8686");
	// "" → the tool starts one (internal/emulator) shared by every
	// gateway.
	EmulatorHost string
	// ProjectID is the Firestore project; "" → firegate-dev.
	ProjectID string
	// GatewayArgs are extra `firegate dev` arguments.
	GatewayArgs []string
	// NATS starts an embedded NATS server (loopback, JetStream) and runs
	// the gateways the tool starts in fleet mode against it: one Firestore
	// listener per distinct Feed across all instances.
	NATS bool
	// Pprof starts gateways with --pprof (and saves a CPU profile of
	// fanout and authstorm into ProfileDir when set).
	Pprof      bool
	ProfileDir string

	// Conns is the hold scenario's connection count; 0 → 1000.
	Conns int
	// Subscribers is the fanout and slow scenarios' subscriber count;
	// 0 → 1000.
	Subscribers int
	// Feeds is the number of distinct (org, query) Feeds; 0 → 10.
	Feeds int
	// Rate is the writer's commits per second in total (fanout, slow);
	// 0 → 50. Negative: as fast as the writers manage ("max").
	Rate float64
	// Duration bounds the measured phase of each scenario; 0 → 10 s.
	Duration time.Duration
	// WriterConcurrency is how many commits may be in flight; 0 → 8.
	WriterConcurrency int
	// MaxWindow is, at Rate max, how many writes may be committed but
	// not yet delivered to every subscriber (a closed loop, like the
	// baseline's bounded queues); 0 → 8.
	MaxWindow int
	// DocsPerFeed is each Feed's result-set size; 0 → 10.
	DocsPerFeed int
	// Payload is the approximate size of one `changes` frame; 0 → 300.
	Payload int

	// ChurnRate is connect-subscribe-disconnect-resume cycles per second;
	// 0 → 50. ChurnWriteRate is the background writes per second during
	// churn; 0 → 2.
	ChurnRate      float64
	ChurnWriteRate float64

	// AuthStart, AuthStep and AuthMax shape the authstorm ramp
	// (handshakes per second); 0 → 500, 500, 10000. AuthStepDuration is
	// each step's length; 0 → 2 s. AuthTokens is the pool of distinct
	// tokens per instance; 0 → 1000. AuthMaxP99 stops the ramp; 0 → 1 s.
	AuthStart, AuthStep, AuthMax float64
	AuthStepDuration             time.Duration
	AuthTokens                   int
	AuthMaxP99                   time.Duration

	// SlowFraction of the slow scenario's subscribers stop reading;
	// 0 → 0.1.
	SlowFraction float64

	// ConnsPerUser is how many connections share one user (and token);
	// 0 → 50 (the gateway allows 100 per user by default).
	ConnsPerUser int
	// SourceAddrs is how many loopback source addresses connections
	// spread over (127.0.0.2 ...); 0 → 32.
	SourceAddrs int
	// DialConcurrency bounds handshakes in flight; 0 → 200.
	DialConcurrency int
	// ConnsPerProcess is how many connections one load process holds;
	// more run in worker processes (this executable re-run). 0 → 15000
	// (a process may hold at most ~20,000 files here).
	ConnsPerProcess int
	// TokenTTL is the lifetime of the tokens; 0 → 30 m.
	TokenTTL time.Duration

	// Progress receives one line per second; nil → discard.
	Progress io.Writer
	// GatewayLog receives the gateways' output; nil → kept only as a tail
	// for error messages.
	GatewayLog io.Writer
	// Logger; nil → discard.
	Logger *slog.Logger
}

// Quick returns the tiny configuration used by tests and --quick: 20
// connections, 2 Feeds, 3 s per scenario.
func Quick() Config {
	return Config{
		Conns: 20, Subscribers: 20, Feeds: 2, Rate: 10, Duration: 3 * time.Second,
		ChurnRate: 5, AuthStart: 50, AuthStep: 50, AuthMax: 150, AuthStepDuration: time.Second, AuthTokens: 20,
		ConnsPerUser: 5, SourceAddrs: 4,
	}
}

func (c *Config) setDefaults() {
	if c.Scenarios == nil {
		c.Scenarios = []string{ScenarioHold, ScenarioFanout, ScenarioChurn}
	}
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	deff := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.Instances, 1)
	if c.ProjectID == "" {
		c.ProjectID = "firegate-dev"
	}
	def(&c.Conns, 1000)
	def(&c.Subscribers, 1000)
	def(&c.Feeds, 10)
	deff(&c.Rate, 50)
	defd(&c.Duration, 10*time.Second)
	def(&c.WriterConcurrency, 8)
	def(&c.MaxWindow, 8)
	def(&c.DocsPerFeed, 10)
	def(&c.Payload, 300)
	deff(&c.ChurnRate, 50)
	deff(&c.ChurnWriteRate, 2)
	deff(&c.AuthStart, 500)
	deff(&c.AuthStep, 500)
	deff(&c.AuthMax, 10000)
	defd(&c.AuthStepDuration, 2*time.Second)
	def(&c.AuthTokens, 1000)
	defd(&c.AuthMaxP99, time.Second)
	deff(&c.SlowFraction, 0.1)
	def(&c.ConnsPerUser, 50)
	def(&c.SourceAddrs, 32)
	def(&c.DialConcurrency, 200)
	def(&c.ConnsPerProcess, 15000)
	defd(&c.TokenTTL, 30*time.Minute)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate applies the defaults and checks c.
func (c *Config) Validate() error {
	c.setDefaults()
	var errs []error
	for _, s := range c.Scenarios {
		if !slices.Contains(Scenarios, s) {
			errs = append(errs, fmt.Errorf("unknown scenario %q (want one of %s)", s, strings.Join(Scenarios, ", ")))
		}
	}
	for i, t := range c.Targets {
		if err := checkLoopbackURL(t); err != nil {
			errs = append(errs, fmt.Errorf("target %d: %w", i, err))
		}
	}
	if len(c.AdminTargets) > 0 && len(c.AdminTargets) != len(c.Targets) {
		errs = append(errs, errors.New("give one admin URL per target, or none"))
	}
	for i, t := range c.AdminTargets {
		if err := checkLoopbackURL(t); err != nil {
			errs = append(errs, fmt.Errorf("admin target %d: %w", i, err))
		}
	}
	if c.EmulatorHost != "" {
		if err := checkLoopbackHost(c.EmulatorHost); err != nil {
			errs = append(errs, fmt.Errorf("emulator host: %w", err))
		}
	}
	if len(c.Targets) > 0 && c.EmulatorHost == "" && c.needsWriter() {
		errs = append(errs, errors.New("with --target, give the emulator the gateways use (--emulator-host) so the writer can commit to it"))
	}
	checkRange := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s %d out of range [%d, %d]", name, v, lo, hi))
		}
	}
	checkRange("instances", c.Instances, 1, 64)
	checkRange("conns", c.Conns, 1, maxConnections)
	checkRange("subscribers", c.Subscribers, 1, maxConnections)
	checkRange("feeds", c.Feeds, 1, maxFeeds)
	checkRange("writer concurrency", c.WriterConcurrency, 1, 256)
	checkRange("docs per feed", c.DocsPerFeed, 1, 1000)
	checkRange("max window", c.MaxWindow, 1, 10_000)
	checkRange("payload", c.Payload, 1, 1<<20)
	checkRange("auth tokens", c.AuthTokens, 1, 100_000)
	checkRange("conns per user", c.ConnsPerUser, 1, 100_000)
	checkRange("source addresses", c.SourceAddrs, 1, maxSourceAddrs)
	checkRange("dial concurrency", c.DialConcurrency, 1, 10_000)
	checkRange("conns per process", c.ConnsPerProcess, 1, 19_000)
	if c.Duration < 0 || c.Duration > maxDuration {
		errs = append(errs, fmt.Errorf("duration %s out of range (0, %s]", c.Duration, maxDuration))
	}
	if c.AuthStepDuration < 0 || c.AuthStepDuration > 30*time.Second {
		errs = append(errs, fmt.Errorf("auth step duration %s out of range (0, 30s]", c.AuthStepDuration))
	}
	if c.ChurnRate < 0 || c.ChurnRate > 100_000 || c.ChurnWriteRate < 0 || c.Rate > 1_000_000 {
		errs = append(errs, errors.New("rates must be within [0, 100000] (writer rate: < 0 means max)"))
	}
	if c.AuthStart <= 0 || c.AuthStep < 0 || c.AuthMax < c.AuthStart {
		errs = append(errs, errors.New("authstorm ramp needs 0 < start <= max and step >= 0"))
	}
	if c.SlowFraction < 0 || c.SlowFraction > 1 {
		errs = append(errs, fmt.Errorf("slow fraction %v out of range [0, 1]", c.SlowFraction))
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("token TTL %s out of range [1m, 24h]", c.TokenTTL))
	}
	if c.Rate < 0 && c.DocsPerFeed*c.Feeds <= c.MaxWindow {
		errs = append(errs, errors.New("at --rate max, docs per feed × feeds must exceed the window, or writes would supersede undelivered ones"))
	}
	if c.DocsPerFeed <= (c.WriterConcurrency+c.Feeds-1)/c.Feeds {
		errs = append(errs, errors.New("docs per feed must exceed writer concurrency / feeds, or two writes of one document could be in flight at once"))
	}
	return errors.Join(errs...)
}

func (c *Config) needsWriter() bool {
	for _, s := range c.Scenarios {
		if s == ScenarioFanout || s == ScenarioSlow || s == ScenarioChurn {
			return true
		}
	}
	return false
}

func (c *Config) wants(s string) bool { return slices.Contains(c.Scenarios, s) }
