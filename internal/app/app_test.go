package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions"
)

// idleSource is a Source seam that never emits (these tests open no
// subscription).
type idleSource struct{}

func (idleSource) Listen(ctx context.Context, _ subscriptions.Query, _ func(*subscriptions.Snapshot)) error {
	<-ctx.Done()
	return ctx.Err()
}

type noVerifier struct{}

func (noVerifier) Verify(context.Context, string) (*authz.Principal, error) {
	return nil, &authz.AuthError{Reason: authz.ReasonMalformed}
}
func (noVerifier) Ready() bool { return true }

const policyA = "collections:\n  - path: tasks\n    scope: org\n"
const policyB = "collections:\n  - path: tasks\n    scope: org\n  - path: notes\n    scope: user\n    scope_field: owner_id\n"

func newServer(t *testing.T, pol string) (*gateway.Server, *metrics.Metrics) {
	t.Helper()
	p, err := authz.ParsePolicy([]byte(pol))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	hub, err := subscriptions.NewHub(idleSource{}, subscriptions.HubConfig{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	srv, err := gateway.New(gateway.Config{}, gateway.Deps{Verifier: noVerifier{}, Policy: p, Hub: hub, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return srv, m
}

func TestPolicyReloadGoodAndBrokenFiles(t *testing.T) {
	srv, m := newServer(t, policyA)
	log := slog.New(slog.DiscardHandler)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(path, []byte("collections:\n  - path: tasks\n    scope: galaxy\n"), 0o600)
	before := srv.Policy()
	if ReloadPolicy(path, srv, m, log) {
		t.Fatal("broken policy accepted")
	}
	if srv.Policy() != before || testutil.ToFloat64(m.PolicyReloads.WithLabelValues("error")) != 1 {
		t.Fatal("broken policy replaced the old one or was not counted")
	}
	os.WriteFile(path, []byte(policyB), 0o600)
	if !ReloadPolicy(path, srv, m, log) || len(srv.Policy().Collections()) != 2 {
		t.Fatal("good policy not loaded")
	}
	if testutil.ToFloat64(m.PolicyReloads.WithLabelValues("ok")) != 1 {
		t.Fatal("reload not counted")
	}
}

func TestWatchPolicyOnSignalAndFileChange(t *testing.T) {
	srv, m := newServer(t, policyA)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(path, []byte(policyA), 0o600)
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		watchPolicyWith(ctx, path, srv, m, slog.New(slog.DiscardHandler), hup, 20*time.Millisecond)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	hup <- os.Interrupt // any value: a SIGHUP
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := testutil.ToFloat64(m.PolicyReloads.WithLabelValues("ok")); n != 1 {
			return fmt.Errorf("%v successful policy reloads after a signal, want 1", n)
		}
		return nil
	})
	os.WriteFile(path, []byte(policyB), 0o600)
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := len(srv.Policy().Collections()); n != 2 {
			return fmt.Errorf("the policy in force has %d collections after the file changed, want 2", n)
		}
		return nil
	})
}

func TestSettingsEnvThenFlags(t *testing.T) {
	env := map[string]string{"FIREGATE_ADDR": ":1", "FIREGATE_ALLOWED_ORIGINS": "https://a.test, https://*.b.test", "FIREGATE_DRAIN_TIMEOUT": "7s", "FIREGATE_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1"}
	var s Settings
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := s.Load(fs, []string{"--addr", ":2"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if s.Addr != ":2" || len(s.AllowedOrigins) != 2 || s.DrainTimeout != 7*time.Second || len(s.TrustedProxies) != 2 {
		t.Fatalf("%+v", s)
	}
	var bad Settings
	_, err := bad.Load(flag.NewFlagSet("t", flag.ContinueOnError), nil, func(k string) string {
		if k == "FIREGATE_DRAIN_TIMEOUT" {
			return "soon"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "FIREGATE_DRAIN_TIMEOUT") {
		t.Fatalf("bad duration: %v", err)
	}
}

// TestREADMEListsEverySetting keeps the README's configuration table and
// the settings in step.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range EnvNames() {
		if !strings.Contains(string(readme), "`"+e[0]+"`") {
			t.Errorf("README.md does not document %s", e[0])
		}
	}
}

// TestInstanceIDUniquePerStart: two starts of the same process (same host,
// same pid, as a restarted container's pid 1) get different fleet
// instance ids, both naming the host and pid.
func TestInstanceIDUniquePerStart(t *testing.T) {
	host, _ := os.Hostname()
	prefix := fmt.Sprintf("%s-%d-", host, os.Getpid())
	a, b := instanceID(), instanceID()
	for _, id := range []string{a, b} {
		if !strings.HasPrefix(id, prefix) || len(id) != len(prefix)+8 {
			t.Fatalf("instanceID() = %q, want %q plus 8 hex digits", id, prefix)
		}
	}
	if a == b {
		t.Fatalf("two starts got the same instance id %q", a)
	}
}
