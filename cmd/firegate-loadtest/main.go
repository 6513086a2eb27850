// Command firegate-loadtest measures Firegate on loopback: how many
// sockets it holds and at what memory cost, how fast one change reaches
// every subscriber, what the auth path sustains — each side by side with a
// minimal broadcaster written directly on coder/websocket, measured in
// the same run.
//
//	firegate-loadtest --scenarios hold,fanout,baseline --conns 5000 --subscribers 5000 --feeds 10 --rate 100 --json out.json --html out.html
//
// By default it builds ./cmd/firegate, starts Google's Firestore emulator
// and one `firegate dev` per --instances (fresh for each scenario), and
// stops everything when done. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/firegate/firegate/internal/loadtest"
)

func main() {
	loadtest.MaybeRunChild()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("firegate-loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadtest.Config
	var scenarios, targets, admins, gwArgs listFlag
	fs.Var(&scenarios, "scenarios", "comma list of scenarios: "+strings.Join(loadtest.Scenarios, ", ")+" (default hold,fanout,churn)")
	quick := fs.Bool("quick", false, "tiny sizes: 20 connections, 2 Feeds, 3 s per scenario (flags given explicitly still win)")
	fs.Var(&targets, "target", "base URL of a running 'firegate dev' (repeatable; default: start --instances gateways)")
	fs.Var(&admins, "admin", "admin URL of each --target, in the same order (for /metrics and /debug/memory)")
	fs.IntVar(&cfg.Instances, "instances", 0, "gateway processes to start (default 1); connections spread over them")
	fs.BoolVar(&cfg.NATS, "nats", false, "start an embedded NATS and run the gateways in fleet mode (one Firestore listener per Feed across instances)")
	fs.StringVar(&cfg.FiregateBin, "firegate-bin", "", "firegate binary (default: go build ./cmd/firegate into a temp dir)")
	fs.StringVar(&cfg.EmulatorHost, "emulator-host", "", "a running Firestore emulator host:port (default: start one)")
	fs.StringVar(&cfg.ProjectID, "project", "", "Firestore project id (default firegate-dev)")
	fs.Var(&gwArgs, "gateway-arg", "extra argument for started gateways (repeatable, e.g. --gateway-arg=--slow-consumer-timeout=10s)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "start gateways with --pprof")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "with --pprof: save gateway CPU profiles of fanout and authstorm here")
	fs.IntVar(&cfg.Conns, "conns", 0, "hold: connections (default 1000)")
	fs.IntVar(&cfg.Subscribers, "subscribers", 0, "fanout, slow: subscribers (default 1000)")
	fs.IntVar(&cfg.Feeds, "feeds", 0, "distinct Feeds (org, query) (default 10)")
	rate := fs.String("rate", "", "fanout, slow: commits per second in total, or max (default 50)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "measured phase of each scenario (default 10s, at most 2m)")
	fs.IntVar(&cfg.WriterConcurrency, "writer-concurrency", 0, "commits in flight (default 8)")
	fs.IntVar(&cfg.MaxWindow, "max-window", 0, "with --rate max: writes (broadcasts) not yet delivered that may be outstanding (default 8)")
	fs.IntVar(&cfg.DocsPerFeed, "docs-per-feed", 0, "documents per Feed, i.e. result-set size (default 10)")
	fs.IntVar(&cfg.Payload, "payload", 0, "approximate bytes of one changes frame (default 300)")
	fs.Float64Var(&cfg.ChurnRate, "churn-rate", 0, "churn: cycles per second (default 50)")
	fs.Float64Var(&cfg.ChurnWriteRate, "churn-write-rate", 0, "churn: background commits per second (default 2)")
	fs.Float64Var(&cfg.AuthStart, "auth-start", 0, "authstorm: first rate, handshakes/s (default 500)")
	fs.Float64Var(&cfg.AuthStep, "auth-step", 0, "authstorm: rate increase per step (default 500)")
	fs.Float64Var(&cfg.AuthMax, "auth-max", 0, "authstorm: highest rate (default 10000)")
	fs.DurationVar(&cfg.AuthStepDuration, "auth-step-duration", 0, "authstorm: step length (default 2s)")
	fs.IntVar(&cfg.AuthTokens, "auth-tokens", 0, "authstorm: distinct tokens per instance (default 1000)")
	fs.DurationVar(&cfg.AuthMaxP99, "auth-max-p99", 0, "authstorm: stop when p99 exceeds this (default 1s)")
	fs.Float64Var(&cfg.SlowFraction, "slow-fraction", 0, "slow: fraction of subscribers that stop reading (default 0.1)")
	fs.IntVar(&cfg.ConnsPerUser, "conns-per-user", 0, "connections sharing one user and token (default 50)")
	fs.IntVar(&cfg.SourceAddrs, "source-addrs", 0, "loopback source addresses 127.0.0.2... (default 32)")
	fs.IntVar(&cfg.DialConcurrency, "dial-concurrency", 0, "handshakes in flight while connecting (default 200)")
	fs.IntVar(&cfg.ConnsPerProcess, "conns-per-process", 0, "connections per load process; more run in worker processes (default 15000)")
	jsonOut := fs.String("json", "", "write machine-readable results here")
	htmlOut := fs.String("html", "", "write a self-contained HTML report with latency charts here")
	gwLog := fs.String("gateway-log", "", "append the gateways' and workers' output to this file")
	verbose := fs.Bool("v", false, "log the tool's own diagnostics to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %v\n", fs.Args())
		return 2
	}
	if *quick {
		q := loadtest.Quick()
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["conns"] {
			cfg.Conns = q.Conns
		}
		if !set["subscribers"] {
			cfg.Subscribers = q.Subscribers
		}
		if !set["feeds"] {
			cfg.Feeds = q.Feeds
		}
		if !set["duration"] {
			cfg.Duration = q.Duration
		}
		if !set["rate"] {
			cfg.Rate = q.Rate
		}
		if !set["churn-rate"] {
			cfg.ChurnRate = q.ChurnRate
		}
		if !set["auth-start"] {
			cfg.AuthStart, cfg.AuthStep, cfg.AuthMax, cfg.AuthStepDuration, cfg.AuthTokens = q.AuthStart, q.AuthStep, q.AuthMax, q.AuthStepDuration, q.AuthTokens
		}
		if !set["conns-per-user"] {
			cfg.ConnsPerUser = q.ConnsPerUser
		}
		if !set["source-addrs"] {
			cfg.SourceAddrs = q.SourceAddrs
		}
	}
	switch *rate {
	case "":
	case "max":
		cfg.Rate = -1
	default:
		var v float64
		if _, err := fmt.Sscanf(*rate, "%g", &v); err != nil || v <= 0 {
			fmt.Fprintf(stderr, "--rate must be a positive number or max, got %q\n", *rate)
			return 2
		}
		cfg.Rate = v
	}
	cfg.Scenarios = scenarios
	cfg.Targets, cfg.AdminTargets, cfg.GatewayArgs = targets, admins, gwArgs
	cfg.Progress = stderr
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if *gwLog != "" {
		f, err := os.OpenFile(*gwLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		cfg.GatewayLog = f
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadtest.Run(ctx, cfg)
	if rep != nil {
		rep.WriteTable(stdout)
		if *jsonOut != "" {
			if werr := rep.WriteJSONFile(*jsonOut); werr != nil {
				fmt.Fprintln(stderr, werr)
				return 1
			}
		}
		if *htmlOut != "" {
			if werr := rep.WriteHTMLFile(*htmlOut); werr != nil {
				fmt.Fprintln(stderr, werr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "firegate-loadtest: %v\n", err)
		return 1
	}
	if failed := rep.Failed(); len(failed) > 0 {
		fmt.Fprintf(stderr, "firegate-loadtest: %d checks failed:\n  %s\n", len(failed), strings.Join(failed, "\n  "))
		return 3
	}
	return 0
}
