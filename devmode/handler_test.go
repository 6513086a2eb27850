package devmode

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

func TestHandlerConfigValidation(t *testing.T) {
	c := testClient(t)
	iss := testDevIssuer(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no issuer", Config{Client: c}, "Issuer is required"},
		{"no client", Config{Issuer: iss}, "Client is required"},
		{"bad azp", Config{Issuer: iss, Client: c, Azp: "127.0.0.1:8080"}, "Azp must be an origin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Handler(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Handler = %v, %v; want error with %q", h, err, tt.want)
			}
		})
	}
	h, err := Handler(Config{Issuer: iss, Client: c})
	if err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	h.Close()
	h.Close() // idempotent
}

func TestDevGuard(t *testing.T) {
	h, _ := testHandler(t)
	tests := []struct {
		name, remote, host, origin string
		want                       int
	}{
		{"ipv4 loopback", "127.0.0.1:5000", "127.0.0.1:8080", "", http.StatusOK},
		{"other 127/8 address", "127.3.4.5:5000", "localhost:8080", "", http.StatusOK},
		{"ipv6 loopback", "[::1]:5000", "[::1]:8080", "", http.StatusOK},
		{"ipv4-mapped loopback", "[::ffff:127.0.0.1]:5000", "localhost", "", http.StatusOK},
		{"same origin", "127.0.0.1:5000", "127.0.0.1:8080", "http://127.0.0.1:8080", http.StatusOK},
		{"sub.localhost host", "127.0.0.1:5000", "app.localhost:8080", "", http.StatusOK},
		{"no Host header", "127.0.0.1:5000", "", "", http.StatusOK},
		{"private peer", "192.168.1.20:5000", "127.0.0.1:8080", "", http.StatusForbidden},
		{"public peer", "203.0.113.9:5000", "127.0.0.1:8080", "", http.StatusForbidden},
		{"ipv6 peer", "[2001:db8::1]:5000", "127.0.0.1:8080", "", http.StatusForbidden},
		{"unspecified peer", "0.0.0.0:5000", "127.0.0.1:8080", "", http.StatusForbidden},
		{"garbage peer", "not-an-address", "127.0.0.1:8080", "", http.StatusForbidden},
		{"rebinding host", "127.0.0.1:5000", "evil.example:8080", "", http.StatusForbidden},
		{"lan host", "127.0.0.1:5000", "192.168.1.20:8080", "", http.StatusForbidden},
		{"cross origin", "127.0.0.1:5000", "127.0.0.1:8080", "http://evil.example", http.StatusForbidden},
		{"other port origin", "127.0.0.1:5000", "127.0.0.1:8080", "http://127.0.0.1:3000", http.StatusForbidden},
		{"null origin", "127.0.0.1:5000", "127.0.0.1:8080", "null", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/dev/users", nil)
			r.RemoteAddr = tt.remote
			r.Host = tt.host
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body.String())
			}
			if tt.want == http.StatusForbidden {
				errorOf(t, w)
			}
		})
	}
	// Every /dev endpoint is guarded, including unknown ones and writes.
	for _, target := range []string{"/dev/token?user=u", "/dev/docs/tasks", "/dev/simulate?on=1&org=o", "/dev/nope"} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			r := httptest.NewRequest(method, target, strings.NewReader("{}"))
			r.RemoteAddr = "10.0.0.1:1234"
			r.Host = "127.0.0.1:8080"
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusForbidden {
				t.Errorf("%s %s from 10.0.0.1: status %d, want 403", method, target, w.Code)
			}
		}
	}
	// The page itself is not under /dev/: it is served to anyone.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.1:1234"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("GET / from 10.0.0.1: %d", w.Code)
	}
}

func TestUsersEndpoint(t *testing.T) {
	h, _ := testHandler(t)
	w := do(t, h, http.MethodGet, "/dev/users", "")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	var res struct {
		Users       []DemoUser       `json:"users"`
		Collections []CollectionInfo `json:"collections"`
	}
	decode(t, w, &res)
	if len(res.Users) != len(Users()) || res.Users[0].ID != "user_alice" {
		t.Errorf("users = %+v", res.Users)
	}
	want := []CollectionInfo{
		{Path: "tasks", Example: "tasks", Scope: "org", ScopeField: "org_id"},
		{Path: "invoices", Example: "invoices", Scope: "org", ScopeField: "org_id"},
		{Path: "notes", Example: "notes", Scope: "user", ScopeField: "owner_id"},
		{Path: "projects/{project}/tasks", Example: "projects/p1/tasks", Scope: "org", ScopeField: "org_id"},
	}
	if len(res.Collections) != len(want) {
		t.Fatalf("collections = %+v", res.Collections)
	}
	for i := range want {
		if res.Collections[i] != want[i] {
			t.Errorf("collection %d = %+v, want %+v", i, res.Collections[i], want[i])
		}
	}
}

func TestNoRoute(t *testing.T) {
	h, _ := testHandler(t)
	tests := []struct {
		method, target string
		want           int
		allow          string
	}{
		{http.MethodGet, "/dev/nope", http.StatusNotFound, ""},
		{http.MethodGet, "/dev/", http.StatusNotFound, ""},
		{http.MethodPost, "/dev/users", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodDelete, "/dev/simulate", http.StatusMethodNotAllowed, "GET, HEAD, POST"},
		{http.MethodGet, "/dev/docs/tasks/t1", http.StatusMethodNotAllowed, "POST, PUT, PATCH, DELETE"},
	}
	for _, tt := range tests {
		w := do(t, h, tt.method, tt.target, "")
		if w.Code != tt.want || w.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", tt.method, tt.target, w.Code, w.Header().Get("Allow"), tt.want, tt.allow)
		}
		errorOf(t, w)
	}
}

// TestServedOverLoopback drives the handler through a real listener: the
// page, the client library, the JWKS and a dev endpoint, with their
// content types.
func TestServedOverLoopback(t *testing.T) {
	h, _ := testHandler(t)
	srv := httptest.NewServer(h)
	defer srv.Close()
	tests := []struct {
		path, wantType, wantBody string
	}{
		{"/", "text/html; charset=utf-8", "DEV MODE — tokens are minted by an ephemeral local issuer"},
		{"/index.html", "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"/app.js", "text/javascript; charset=utf-8", "import { collection, createClient"},
		{"/firegate.js", "text/javascript; charset=utf-8", "function createClient("},
		{"/react/", "text/html; charset=utf-8", `<div id="root">`},
		{"/style.css", "text/css; charset=utf-8", ".banner"},
		{"/.well-known/jwks.json", "application/json", `"kid":"` + testDevIssuer(t).KeyID() + `"`},
		{"/dev/users", "application/json; charset=utf-8", `"user_dave"`},
	}
	for _, tt := range tests {
		resp, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", tt.path, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != tt.wantType {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, ct, tt.wantType)
		}
		if !strings.Contains(string(body), tt.wantBody) {
			t.Errorf("GET %s: body lacks %q", tt.path, tt.wantBody)
		}
	}
	// A token minted over the wire.
	resp, err := http.Get(srv.URL + "/dev/token?user=user_alice&org=org_acme")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.Token == "" {
		t.Fatalf("token over the wire: %d %+v %v", resp.StatusCode, tok, err)
	}
}

// TestDevEndpointsRefuseProxiedRequests is the attack of a reverse proxy on
// the developer's machine (nginx, a tunnel) relaying remote clients: the
// dev server sees a loopback peer, so the proxy's headers must be enough to
// refuse, whatever their value, while the page itself stays reachable.
func TestDevEndpointsRefuseProxiedRequests(t *testing.T) {
	h, _ := testHandler(t)
	srv := httptest.NewServer(h)
	defer srv.Close()
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// A real reverse proxy, also on loopback: it adds X-Forwarded-For.
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	defer proxy.Close()
	get := func(base, path string, hdr http.Header) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(proxy.URL, "/dev/token?user=user_alice", nil); code != http.StatusForbidden {
		t.Fatalf("token through a reverse proxy: %d, want 403", code)
	}
	if code := get(proxy.URL, "/", nil); code != http.StatusOK {
		t.Fatalf("the page through a reverse proxy: %d, want 200", code)
	}
	tests := []struct {
		name string
		hdr  http.Header
		want int
	}{
		{"direct", nil, http.StatusOK},
		{"Forwarded", http.Header{"Forwarded": {"for=203.0.113.9"}}, http.StatusForbidden},
		{"X-Forwarded-For loopback value", http.Header{"X-Forwarded-For": {"127.0.0.1"}}, http.StatusForbidden},
		{"X-Forwarded-Host", http.Header{"X-Forwarded-Host": {"localhost"}}, http.StatusForbidden},
		{"X-Forwarded-Proto", http.Header{"X-Forwarded-Proto": {"https"}}, http.StatusForbidden},
		{"X-Real-IP", http.Header{"X-Real-Ip": {"203.0.113.9"}}, http.StatusForbidden},
		{"empty X-Forwarded-For", http.Header{"X-Forwarded-For": {""}}, http.StatusForbidden},
		{"lowercase header name", http.Header{"x-forwarded-for": {"1.2.3.4"}}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := get(srv.URL, "/dev/users", tt.hdr); code != tt.want {
				t.Fatalf("status %d, want %d", code, tt.want)
			}
		})
	}
}
