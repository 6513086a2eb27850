// Package devmode is the demo side of `firegate dev`: the embedded dev
// policy, idempotent demo data for two organizations, the demo users, and
// an HTTP handler that serves the demo page (package web) plus the /dev/*
// endpoints the page uses to mint tokens, edit documents and simulate
// activity.
//
// Everything under /dev/ answers loopback peers only, and only requests
// whose Host is a loopback name (so a DNS-rebinding page cannot reach it),
// whose Origin, when present, is the server's own, and that carry no proxy
// header (Forwarded, X-Forwarded-*, X-Real-IP): a reverse proxy on the same
// machine makes every remote client look like a loopback peer. It exists for local
// development; production (`firegate serve`) never mounts it.
package devmode

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/web"
)

// Config configures Handler. Issuer and Client are required; the other
// fields have safe zero values.
type Config struct {
	// Issuer mints the dev tokens (/dev/token). Required.
	Issuer *authz.DevIssuer
	// Client is the Firestore client /dev/docs and the activity simulation
	// write with (the emulator in dev). Required.
	Client *firestore.Client
	// Azp is minted into tokens as azp: the page's origin, e.g.
	// http://127.0.0.1:8080. Empty: tokens carry no azp claim.
	Azp string
	// Logger receives request failures and simulation events; nil
	// discards. Tokens are never logged.
	Logger *slog.Logger
}

// DevHandler serves the demo page and the /dev/* endpoints. It is safe for
// concurrent use. Close stops the activity simulations it started.
type DevHandler struct {
	cfg         Config
	log         *slog.Logger
	mux         *http.ServeMux
	collections []CollectionInfo
	now         func() time.Time // clock for minted tokens; tests replace it
	sessionSalt string           // random; makes session ids differ per run

	ctx    context.Context // cancelled by Close; parent of every simulation
	cancel context.CancelFunc
	wg     sync.WaitGroup // running simulation goroutines

	mu     sync.Mutex             // guards sims and closed
	sims   map[string]*simulation // by org id
	closed bool
}

// Limits of the /dev endpoints.
const (
	// MaxDocBodyBytes bounds a /dev/docs request body.
	MaxDocBodyBytes = 64 << 10
	// DefaultTokenTTL is the lifetime of a /dev/token token without ttl.
	DefaultTokenTTL = 60 * time.Second
	// MinTokenTTL and MaxTokenTTL bound ttl.
	MinTokenTTL = time.Second
	MaxTokenTTL = 24 * time.Hour
	// MinSimulationRate and MaxSimulationRate bound the changes per second
	// of one simulation.
	MinSimulationRate = 0.01
	MaxSimulationRate = 50.0
	// MaxSimulations bounds the organizations simulated at once.
	MaxSimulations = 4
	// writeTimeout bounds one Firestore write of a /dev request.
	writeTimeout = 10 * time.Second
)

// Handler validates cfg and returns the dev handler. Routes:
//
//	GET  /, /index.html, /app.js, /firegate.js, /style.css   the demo page
//	GET  /react/, /react/app.js, /react/style.css          the React example
//	GET  /.well-known/jwks.json                 the dev issuer's public keys
//	GET  /dev/token?user=&org=&role=&permissions=&ttl=&v2=   mint a token
//	GET  /dev/users                             demo users and policy collections
//	POST /dev/docs/{collection path}            create a document (auto id)
//	PUT  /dev/docs/{document path}              set (replace) a document
//	PATCH /dev/docs/{document path}             merge into a document
//	DELETE /dev/docs/{document path}            delete a document
//	POST /dev/simulate?on=1|0&org=&rate=        start/stop simulated activity
//	GET  /dev/simulate                          running simulations
//
// Every /dev/ response is JSON; errors read {"error":"..."}.
//
// /dev/docs writes with the gateway's service account and no policy at all:
// it is for seeding and scripts (loopback only). The demo page edits,
// creates and deletes through the real write path (the `write` message, or
// POST /v1/write) as the chosen user, under the dev policy's write rules.
//
// /dev/docs bodies are one JSON object (application/json, at most
// MaxDocBodyBytes). Integral numbers are stored as integers (int64), other
// numbers as doubles; strings stay strings (an RFC 3339 string is NOT
// turned into a timestamp). A timestamp is written as an object with the
// single key "$time": {"$time":"now"} is the server's commit time
// (firestore.ServerTimestamp; the page sets created_at this way, and it
// cannot sit inside an array), {"$time":"2026-01-02T03:04:05Z"} that instant.
// Paths are database-relative ("tasks", "projects/p1/tasks/t9"); segments
// must be non-empty, not "." or "..", not __reserved__, at most 1500 bytes.
//
// /dev/simulate runs, per organization (at most MaxSimulations), a loop
// that every 1/rate s adds a task (ids "sim-..."; at most 8 outstanding),
// modifies a task of the org (status, visibility or title) or deletes one
// it added. It stops on on=0, on Close, or after 20 failed writes in a row.
func Handler(cfg Config) (*DevHandler, error) {
	if cfg.Issuer == nil {
		return nil, errors.New("failed to create dev handler: Config.Issuer is required")
	}
	if cfg.Client == nil {
		return nil, errors.New("failed to create dev handler: Config.Client is required")
	}
	if cfg.Azp != "" {
		if u, err := url.Parse(cfg.Azp); err != nil || u.Scheme == "" || u.Host == "" {
			return nil, errors.New("failed to create dev handler: Config.Azp must be an origin like http://127.0.0.1:8080")
		}
	}
	cols, err := policyCollections(defaultPolicy)
	if err != nil {
		return nil, errors.Join(errors.New("failed to create dev handler"), err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &DevHandler{
		cfg:         cfg,
		log:         log,
		collections: cols,
		now:         time.Now,
		sessionSalt: randomHex(16),
		ctx:         ctx,
		cancel:      cancel,
		sims:        make(map[string]*simulation),
	}

	dev := http.NewServeMux()
	dev.HandleFunc("GET /dev/token", h.serveToken)
	dev.HandleFunc("GET /dev/users", h.serveUsers)
	dev.HandleFunc("POST /dev/docs/{path...}", h.serveDocs)
	dev.HandleFunc("PUT /dev/docs/{path...}", h.serveDocs)
	dev.HandleFunc("PATCH /dev/docs/{path...}", h.serveDocs)
	dev.HandleFunc("DELETE /dev/docs/{path...}", h.serveDocs)
	dev.HandleFunc("POST /dev/simulate", h.serveSimulate)
	dev.HandleFunc("GET /dev/simulate", h.serveSimulations)
	dev.HandleFunc("/dev/", serveNoRoute)

	mux := http.NewServeMux()
	mux.Handle("/dev/", h.guard(dev))
	mux.Handle("/.well-known/jwks.json", cfg.Issuer.JWKSHandler())
	mux.Handle("/", web.Handler())
	h.mux = mux
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *DevHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// Close stops every activity simulation and waits for their goroutines;
// later simulate requests get 503. It is safe to call more than once. It
// does not close Config.Client.
func (h *DevHandler) Close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
}

// guard admits a request to /dev/ only from a loopback peer, with a
// loopback Host, no proxy header and, when an Origin header is present, a
// same-origin one. Host and Origin checks stop DNS rebinding and cross-site
// requests from a browser on the same machine; the proxy check stops a
// local reverse proxy from relaying remote clients.
func (h *DevHandler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !loopbackPeer(r.RemoteAddr):
			writeError(w, http.StatusForbidden, "the dev endpoints answer loopback clients only")
		case proxied(r.Header):
			writeError(w, http.StatusForbidden, "the dev endpoints refuse requests relayed by a proxy (Forwarded, X-Forwarded-* or X-Real-IP present)")
		case !loopbackHost(r.Host):
			writeError(w, http.StatusForbidden, "the dev endpoints need a loopback Host (localhost, 127.0.0.1, [::1])")
		case r.Header.Get("Origin") != "" && !sameOrigin(r.Header.Get("Origin"), r.Host):
			writeError(w, http.StatusForbidden, "cross-origin requests to the dev endpoints are refused")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// proxied reports whether h carries a header a proxy adds: Forwarded,
// any X-Forwarded-* or X-Real-IP (present at all, even empty).
func proxied(h http.Header) bool {
	for k := range h {
		k = http.CanonicalHeaderKey(k)
		if k == "Forwarded" || k == "X-Real-Ip" || strings.HasPrefix(k, "X-Forwarded-") {
			return true
		}
	}
	return false
}

// loopbackPeer reports whether remoteAddr ("ip:port", as in
// http.Request.RemoteAddr) is a loopback address (IPv4-mapped IPv6
// included).
func loopbackPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

// loopbackHost reports whether a Host header names the local machine:
// empty (HTTP/1.0, no browser), localhost or *.localhost, or a loopback
// IP literal, with any port.
func loopbackHost(hostport string) bool {
	if hostport == "" {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// sameOrigin reports whether origin (an Origin header) is http(s)://host.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.User != nil {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

// serveNoRoute answers what no /dev route matched: 405 with Allow for a
// known endpoint asked with another method, else 404.
func serveNoRoute(w http.ResponseWriter, r *http.Request) {
	var allow string
	switch p := r.URL.Path; {
	case p == "/dev/token", p == "/dev/users":
		allow = "GET, HEAD"
	case p == "/dev/simulate":
		allow = "GET, HEAD, POST"
	case strings.HasPrefix(p, "/dev/docs/"):
		allow = "POST, PUT, PATCH, DELETE"
	default:
		writeError(w, http.StatusNotFound, "no such dev endpoint")
		return
	}
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed; allowed: "+allow)
}

// serveUsers answers GET /dev/users.
func (h *DevHandler) serveUsers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Users       []DemoUser       `json:"users"`
		Collections []CollectionInfo `json:"collections"`
	}{Users(), h.collections})
}

// errorBody is the JSON of every /dev error.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"error":"failed to encode the response"}`)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
