// Command firegate is the Firegate gateway: `firegate dev` (the embedded
// default, no accounts), `firegate serve` (production), `firegate token`
// (mint a dev token), `firegate policy check|explain` and `firegate version`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/internal/app"
	"github.com/firegate/firegate/metrics"
)

const usage = `firegate — a realtime WebSocket gateway for Firestore with Clerk auth

Usage:
  firegate dev    [flags]   run locally: Firestore emulator, dev token issuer, demo page
                            (--nats: with an embedded NATS, in fleet mode)
  firegate serve  [flags]   run in production (Clerk + Firestore + policy required)
  firegate token  [flags]   mint a dev token from a running 'firegate dev'
  firegate policy check FILE
  firegate policy explain FILE --claims claims.json --collection C [--doc doc.json]
  firegate policy explain FILE --claims claims.json --op create|update|delete
                          --path P [--doc old.json] [--new new.json]
  firegate version          print the version, revision and Go version (as firegate_build_info)

Run 'firegate <command> -h' for the flags; every flag mirrors an environment
variable (see README.md).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "dev", "serve":
		err = runServer(args[0], args[1:], stdout, stderr)
	case "token":
		err = runToken(args[1:], stdout, stderr)
	case "policy":
		err = runPolicy(args[1:], stdout, stderr)
	case "version":
		version, revision := metrics.BuildVersion()
		fmt.Fprintf(stdout, "firegate %s (revision %s, %s)\n", version, revision, runtime.Version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "firegate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "firegate %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func runServer(cmd string, args []string, stdout, stderr io.Writer) error {
	var s app.Settings
	fs := flag.NewFlagSet("firegate "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if cmd == "dev" {
		fs.BoolVar(&s.DevNATS, "nats", false, "start an embedded NATS server (loopback, JetStream) and run in fleet mode against it")
	}
	if _, err := s.Load(fs, args, os.Getenv); err != nil {
		return err
	}
	log, err := app.NewLogger(&s, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd == "dev" {
		return app.Dev(ctx, &s, log, stdout, nil)
	}
	return app.Serve(ctx, &s, log)
}

func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("firegate token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", envOr("FIREGATE_DEV_URL", "http://127.0.0.1:8080"), "base URL of a running 'firegate dev' [$FIREGATE_DEV_URL]")
	user := fs.String("user", "user_alice", "user id")
	org := fs.String("org", "", "active organization id (empty: none)")
	role := fs.String("role", "", "organization role, e.g. org:admin (default: the demo user's role)")
	perms := fs.String("permissions", "", "comma list of organization permissions")
	ttl := fs.String("ttl", "", "token lifetime, e.g. 60s (default 60s)")
	v2 := fs.Bool("v2", false, "mint a v2 session token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := url.Values{"user": {*user}, "org": {*org}, "role": {*role}, "permissions": {*perms}, "ttl": {*ttl}}
	if *v2 {
		q.Set("v2", "1")
	}
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(*server + "/dev/token?" + q.Encode())
	if err != nil {
		return fmt.Errorf("failed to reach firegate dev at %s (is it running?): %w", *server, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("dev token endpoint answered %s: %s", resp.Status, body)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		return fmt.Errorf("unexpected answer from the dev token endpoint: %s", body)
	}
	fmt.Fprintln(stdout, out.Token)
	return nil
}

func runPolicy(args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return errors.New("usage: firegate policy check FILE | firegate policy explain FILE --claims claims.json (--collection C [--doc doc.json] | --op create|update|delete --path P [--doc old.json] [--new new.json])")
	}
	switch args[0] {
	case "check":
		p, err := authz.LoadPolicyFile(args[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok (%d collection rules, %d write expressions)\n", args[1], len(p.Collections()), p.WriteRuleCount())
		for _, c := range p.Collections() {
			fmt.Fprintf(stdout, "  %s\n", c)
		}
		return nil
	case "explain":
		file := args[1]
		fs := flag.NewFlagSet("firegate policy explain", flag.ContinueOnError)
		fs.SetOutput(stderr)
		claimsFile := fs.String("claims", "", "JSON file with the session token's claims (required)")
		collection := fs.String("collection", "", "collection path to subscribe to (required)")
		docFile := fs.String("doc", "", "JSON file with a document's fields (optional); with --op, the stored document before the write (omit: it does not exist)")
		op := fs.String("op", "", "explain a write instead of a subscription: create, update or delete")
		path := fs.String("path", "", "with --op: the document path (for create also a collection path: generated id)")
		newFile := fs.String("new", "", "with --op: JSON file with the document after the write (request.doc)")
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		if *op != "" {
			return explainWrite(file, *claimsFile, *op, *path, *docFile, *newFile, stdout)
		}
		if *claimsFile == "" || *collection == "" {
			return errors.New("--claims and --collection are required")
		}
		p, err := authz.LoadPolicyFile(file)
		if err != nil {
			return err
		}
		var claims map[string]any
		if err := readJSON(*claimsFile, &claims); err != nil {
			return err
		}
		var doc map[string]any
		if *docFile != "" {
			if err := readJSON(*docFile, &doc); err != nil {
				return err
			}
		}
		ex := p.Explain(claims, *collection, doc)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ex)
	}
	return fmt.Errorf("unknown policy command %q (check or explain)", args[0])
}

// explainWrite prints what the policy decides for one write.
func explainWrite(file, claimsFile, op, path, oldFile, newFile string, stdout io.Writer) error {
	if claimsFile == "" || path == "" {
		return errors.New("--claims and --path are required with --op")
	}
	p, err := authz.LoadPolicyFile(file)
	if err != nil {
		return err
	}
	var claims, old, next map[string]any
	if err := readJSON(claimsFile, &claims); err != nil {
		return err
	}
	if oldFile != "" {
		if err := readJSON(oldFile, &old); err != nil {
			return err
		}
	}
	if newFile != "" {
		if err := readJSON(newFile, &next); err != nil {
			return err
		}
	}
	ex := p.ExplainWrite(claims, op, path, old, next)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(ex)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("failed to parse %s: %w", path, err)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
