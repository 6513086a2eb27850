package app

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/devmode"
	"github.com/firegate/firegate/fleet"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/internal/emulator"
	"github.com/firegate/firegate/internal/natsdev"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/revocation"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/webhooks"
	"github.com/firegate/firegate/writes"
)

// DefaultFeedSharePerUser is FIREGATE_MAX_FEED_SHARE_PER_USER's default:
// one user may open at most half of its org's Feeds.
const DefaultFeedSharePerUser = 0.5

// NewLogger builds the JSON (or text) slog logger the settings ask for.
func NewLogger(s *Settings, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if s.LogLevel != "" {
		if err := lvl.UnmarshalText([]byte(s.LogLevel)); err != nil {
			return nil, fmt.Errorf("invalid log level %q", s.LogLevel)
		}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch s.LogFormat {
	case "", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid log format %q (json or text)", s.LogFormat)
}

// CheckServe names everything `firegate serve` needs and lacks.
func CheckServe(s *Settings) error {
	var missing []string
	if s.ProjectID == "" {
		missing = append(missing, "FIRESTORE_PROJECT_ID (the Firestore project; required even with FIRESTORE_EMULATOR_HOST)")
	}
	if s.PolicyFile == "" {
		missing = append(missing, "FIREGATE_POLICY (path of the policy file; see docs/policy.md)")
	}
	n := 0
	for _, v := range []string{s.ClerkSecretKey, s.ClerkJWKSURL, s.ClerkJWTKey} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		missing = append(missing, "one Clerk key source: CLERK_SECRET_KEY, CLERK_JWKS_URL (with CLERK_ISSUER) or CLERK_JWT_KEY")
	case n > 1:
		missing = append(missing, "exactly one Clerk key source (CLERK_SECRET_KEY, CLERK_JWKS_URL, CLERK_JWT_KEY), not several")
	}
	if s.ClerkJWKSURL != "" && s.ClerkIssuer == "" {
		missing = append(missing, "CLERK_ISSUER (required with CLERK_JWKS_URL)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("firegate serve cannot start; missing configuration:\n  - %s", strings.Join(missing, "\n  - "))
	}
	return nil
}

// authorizedParty returns the azp check: the explicit list, else the
// allowed origins.
func authorizedParty(s *Settings, origins func(string) bool) func(string) bool {
	if len(s.AuthorizedParties) > 0 {
		set := map[string]bool{}
		for _, p := range s.AuthorizedParties {
			set[strings.TrimRight(p, "/")] = true
		}
		return func(azp string) bool { return set[strings.TrimRight(azp, "/")] }
	}
	return origins
}

// parts are the collaborators shared by serve and dev.
type parts struct {
	reg      *prometheus.Registry
	m        *metrics.Metrics
	source   *subscriptions.FirestoreSource
	fleet    *fleet.Source // nil without FIREGATE_NATS_URL
	hub      *subscriptions.Hub
	verifier *authz.Verifier
	revs     *revocation.Store
	sync     *revocation.Sync
	srv      *gateway.Server
}

// readyDetails is the /readyz detail line of fleet mode ("" without it).
func (p *parts) readyDetails() string {
	if p.fleet == nil {
		return ""
	}
	return p.fleet.Status()
}

func (p *parts) close() {
	if p.fleet != nil {
		p.fleet.Close()
	}
	if p.source != nil {
		_ = p.source.Close()
	}
}

func build(ctx context.Context, s *Settings, pol *authz.Policy, vcfg authz.VerifierConfig, extra http.Handler, log *slog.Logger) (*parts, error) {
	p := &parts{reg: prometheus.NewRegistry()}
	p.m = metrics.New(p.reg)
	var err error
	p.source, err = subscriptions.NewFirestoreSource(ctx, subscriptions.FirestoreConfig{
		ProjectID: s.ProjectID, DatabaseID: s.Database, MaxFeeds: s.MaxFeeds, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create Firestore client: %w", err)
	}
	var src subscriptions.Source = p.source
	if s.NATSURL != "" {
		p.fleet, err = fleet.New(fleet.Config{
			URL: s.NATSURL, Inner: p.source, Instance: instanceID(), LeaseTTL: s.NATSLeaseTTL,
			ReplayCount: s.ReplayCount, ReplayAge: s.ReplayAge, Metrics: p.m, Logger: log,
		})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("failed to start fleet mode (FIREGATE_NATS_URL): %w", err)
		}
		src = p.fleet
		log.Info("fleet mode: Feeds are shared through NATS", "instance", p.fleet.Instance(), "status", p.fleet.Status())
	}
	p.hub, err = subscriptions.NewHub(src, subscriptions.HubConfig{
		Linger: s.FeedLinger, MaxFeeds: s.MaxFeeds, MaxFeedsPerTenant: s.MaxFeedsPerOrg,
		MaxFeedBytesPerTenant: s.MaxFeedBytesPerOrg, MaxFeedSharePerUser: cmp.Or(s.MaxFeedSharePerUser, DefaultFeedSharePerUser),
		ReplayCount: s.ReplayCount, ReplayAge: s.ReplayAge, Metrics: p.m, Logger: log,
	})
	if err != nil {
		p.close()
		return nil, err
	}
	gcfg := s.GatewayConfig()
	origins, err := gateway.OriginMatcher(gcfg.AllowedOrigins)
	if err != nil {
		p.close()
		return nil, err
	}
	vcfg.AuthorizedParty = authorizedParty(s, origins)
	vcfg.AllowMissingAzp = s.AllowMissingAzp
	vcfg.AcceptTemplateTokens = s.AcceptTemplateTokens
	vcfg.MaxTokenLifetime = s.MaxTokenLifetime
	vcfg.Logger = log
	p.verifier, err = authz.NewVerifier(vcfg)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("failed to set up token verification: %w", err)
	}
	// A revocation must outlive every token it covers: the longest
	// accepted lifetime plus the leeway past exp.
	p.revs, err = revocation.NewStore(revocation.Config{
		TTL: p.verifier.MaxTokenLifetime() + p.verifier.Leeway(), MaxEntries: s.MaxRevocations,
		OnEvict: p.m.RateLimited[metrics.LimitRevocations].Inc,
	})
	if err != nil {
		p.close()
		return nil, err
	}
	p.sync, err = revocation.NewSync(p.source.Client(), p.revs, revocation.SyncConfig{Logger: log})
	if err != nil {
		p.close()
		return nil, err
	}
	mux := http.NewServeMux()
	if extra != nil {
		mux.Handle("/", extra)
	}
	wr, err := writes.New(writes.Config{Client: p.source.Client(), IdempotencyWindow: s.WriteWindow, Logger: log})
	if err != nil {
		p.close()
		return nil, err
	}
	p.srv, err = gateway.New(gcfg, gateway.Deps{
		Verifier: p.verifier, Policy: pol, Hub: p.hub, Metrics: p.m, Gatherer: p.reg, Logger: log,
		Upstream: func(context.Context) error { return p.source.Health() }, ReadyDetails: p.readyDetails, Extra: mux, Revocations: p.revs, Publisher: p.sync, Writer: wr,
	})
	if err != nil {
		p.close()
		return nil, err
	}
	if s.WebhookSecret != "" {
		wh, err := webhooks.NewHandler(webhooks.Config{Secret: s.WebhookSecret, Logger: log}, p.srv)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("invalid CLERK_WEBHOOK_SECRET: %w", err)
		}
		mux.Handle("POST /v1/webhooks/clerk", wh)
	}
	return p, nil
}

// Serve runs `firegate serve` until ctx ends (then drains).
func Serve(ctx context.Context, s *Settings, log *slog.Logger) error {
	if err := CheckServe(s); err != nil {
		return err
	}
	if s.EmulatorHost != "" {
		os.Setenv("FIRESTORE_EMULATOR_HOST", s.EmulatorHost)
	}
	pol, err := authz.LoadPolicyFile(s.PolicyFile)
	if err != nil {
		return err
	}
	p, err := build(ctx, s, pol, authz.VerifierConfig{
		SecretKey: s.ClerkSecretKey, JWKSURL: s.ClerkJWKSURL, PEMKey: s.ClerkJWTKey, Issuer: s.ClerkIssuer,
	}, nil, log)
	if err != nil {
		return err
	}
	defer p.close()
	go p.verifier.Run(ctx)
	go func() { _ = p.sync.Run(ctx) }()
	go watchPolicy(ctx, s.PolicyFile, p.srv, p.m, log)
	return p.srv.Run(ctx)
}

// watchPolicy reloads the policy on SIGHUP and when the file's size or
// modification time changes; a policy that fails to compile leaves the
// old one in force.
func watchPolicy(ctx context.Context, path string, srv *gateway.Server, m *metrics.Metrics, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	watchPolicyWith(ctx, path, srv, m, log, hup, 2*time.Second)
}

// watchPolicyWith reloads on every value from hup and whenever the file's
// size or modification time changes (checked every interval).
func watchPolicyWith(ctx context.Context, path string, srv *gateway.Server, m *metrics.Metrics, log *slog.Logger, hup <-chan os.Signal, interval time.Duration) {
	stamp := func() string {
		fi, err := os.Stat(path)
		if err != nil {
			return ""
		}
		return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	}
	last := stamp()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick.C:
			if st := stamp(); st == last {
				continue
			}
		}
		last = stamp()
		ReloadPolicy(path, srv, m, log)
	}
}

// ReloadPolicy compiles path and swaps it in, or keeps the old policy.
func ReloadPolicy(path string, srv *gateway.Server, m *metrics.Metrics, log *slog.Logger) bool {
	pol, err := authz.LoadPolicyFile(path)
	if err != nil {
		m.PolicyReloads.WithLabelValues("error").Inc()
		log.Error("policy reload failed; keeping the previous policy", "file", path, "err", err)
		return false
	}
	srv.SetPolicy(pol)
	m.PolicyReloads.WithLabelValues("ok").Inc()
	log.Info("policy reloaded", "file", path)
	return true
}

// DevReady is called once `firegate dev` serves, with its base URL.
type DevReady func(baseURL string)

// Dev runs `firegate dev`: the Firestore emulator (or FIRESTORE_EMULATOR_HOST),
// a dev token issuer verified through the production verifier, demo data,
// and the demo page, all on loopback unless told otherwise.
func Dev(ctx context.Context, s *Settings, log *slog.Logger, out io.Writer, ready DevReady) error {
	if s.Addr == "" {
		s.Addr = "127.0.0.1:8080"
	}
	if s.AdminAddr == "" {
		s.AdminAddr = "127.0.0.1:9090"
	}
	if s.ProjectID == "" {
		s.ProjectID = "firegate-dev"
	}
	var emu *emulator.Emulator
	if s.EmulatorHost == "" {
		if _, err := emulator.Find(); err != nil {
			return fmt.Errorf("firegate dev needs Google's Firestore emulator: %w\n(or point FIRESTORE_EMULATOR_HOST at a running one)", err)
		}
		fmt.Fprintln(out, "firegate dev: starting Google's Firestore emulator…")
		var err error
		emu, err = emulator.Start(ctx, emulator.Options{ProjectID: s.ProjectID})
		if err != nil {
			return fmt.Errorf("failed to start the Firestore emulator: %w", err)
		}
		defer emu.Stop()
		s.EmulatorHost = emu.Host
	}
	os.Setenv("FIRESTORE_EMULATOR_HOST", s.EmulatorHost)
	if s.DevNATS && s.NATSURL == "" {
		ns, err := natsdev.Start("firegate-dev")
		if err != nil {
			return err
		}
		defer ns.Stop()
		s.NATSURL = ns.URL()
		fmt.Fprintf(out, "firegate dev: embedded NATS with JetStream at %s (fleet mode)\n", s.NATSURL)
	}

	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", s.Addr, err)
	}
	var adminLn net.Listener
	if s.AdminAddr != "-" {
		if adminLn, err = net.Listen("tcp", s.AdminAddr); err != nil {
			ln.Close()
			return fmt.Errorf("failed to listen on admin address %s: %w", s.AdminAddr, err)
		}
	}
	port := ln.Addr().(*net.TCPAddr).Port
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	issuer, err := authz.NewDevIssuer(base)
	if err != nil {
		return err
	}
	s.AllowedOrigins = append(s.AllowedOrigins, base, fmt.Sprintf("http://localhost:%d", port))
	var pol *authz.Policy
	if s.PolicyFile != "" {
		pol, err = authz.LoadPolicyFile(s.PolicyFile)
	} else {
		pol, err = authz.ParsePolicy(devmode.DefaultPolicy())
	}
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	var devHandler *devmode.DevHandler
	mux.Handle("GET /.well-known/jwks.json", issuer.JWKSHandler())
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { devHandler.ServeHTTP(w, r) }))
	p, err := build(ctx, s, pol, authz.VerifierConfig{JWKSURL: base + "/.well-known/jwks.json", Issuer: base}, mux, log)
	if err != nil {
		return err
	}
	defer p.close()
	devHandler, err = devmode.Handler(devmode.Config{Issuer: issuer, Client: p.source.Client(), Azp: base, Logger: log})
	if err != nil {
		return err
	}
	defer devHandler.Close()
	seedCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = devmode.Seed(seedCtx, p.source.Client())
	cancel()
	if err != nil {
		return fmt.Errorf("failed to seed demo data: %w", err)
	}
	go p.verifier.Run(ctx)
	go func() { _ = p.sync.Run(ctx) }()
	if s.PolicyFile != "" {
		go watchPolicy(ctx, s.PolicyFile, p.srv, p.m, log)
	}
	admin := "disabled"
	if adminLn != nil {
		admin = "http://" + adminLn.Addr().String()
	}
	fmt.Fprintf(out, `
################################################################
#  FIREGATE DEV MODE — not for production                      #
#  tokens are minted by an ephemeral local issuer; data lives  #
#  in Google's Firestore emulator (%s)
################################################################
  demo page:  %s/
  stream:     ws://127.0.0.1:%d/v1/stream (writes: the write message, or POST /v1/write)
  token:      firegate token --user user_alice --org org_acme
  admin:      %s/metrics  /readyz
`, s.EmulatorHost, base, port, admin)
	if ready != nil {
		ready(base)
	}
	err = p.srv.Serve(ctx, ln, adminLn)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// instanceID names this process in fleet leases and interest keys:
// host-pid-random. The random part makes it unique per start: a restarted
// container keeps its host name and often pid 1, and must not take its
// predecessor's unexpired leases for its own.
func instanceID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = crand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}
