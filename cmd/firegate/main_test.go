package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

// Link-time build stamps of the binaries the tests build, as the
// Dockerfile's VERSION and REVISION build arguments set them.
const (
	stampVersion  = "v0.0.0-e2e"
	stampRevision = "e2e0c0ffeee2e0c0ffeee2e0c0ffeee2e0c0ffee"
)

// TestDevEndToEnd starts `firegate dev` the way a newcomer does (the built
// binary, no configuration but loopback ports), then checks the demo page,
// /readyz, firegate_build_info (the binary is stamped with -ldflags -X, as
// the image is), a dev token, a live change over the WebSocket, and a clean
// exit on SIGTERM.
func TestDevEndToEnd(t *testing.T) {
	bin := buildFiregate(t, "-X github.com/firegate/firegate/metrics.Version="+stampVersion+
		" -X github.com/firegate/firegate/metrics.Revision="+stampRevision)
	proc, found := startDev(t, bin,
		[]string{"dev", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--drain-timeout", "1s"},
		[]string{"FIRESTORE_EMULATOR_HOST="},
		map[string]*regexp.Regexp{
			"page":  regexp.MustCompile(`demo page:\s+(http://\S+)/`),
			"admin": regexp.MustCompile(`admin:\s+(http://\S+)/metrics`),
		})
	base, admin := found["page"], found["admin"]
	if !strings.Contains(proc.banner, "DEV MODE") {
		t.Fatalf("banner does not say dev mode:\n%s", proc.banner)
	}

	get := func(url string) (int, string) { return httpGet(t, url) }
	if code, body := get(base + "/"); code != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("GET / = %d %.200s", code, body)
	}
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if code, body := get(base + "/readyz"); code != 200 {
			return fmt.Errorf("/readyz = %d %s", code, body)
		}
		return nil
	})
	if code, _ := get(admin + "/readyz"); code != 200 {
		t.Fatalf("admin /readyz = %d", code)
	}
	wantInfo := fmt.Sprintf("firegate_build_info{go_version=%q,revision=%q,version=%q} 1\n", runtime.Version(), stampRevision, stampVersion)
	if _, body := get(admin + "/metrics"); !strings.Contains(body, wantInfo) {
		t.Errorf("/metrics lacks %q; build_info lines: %q", wantInfo, regexp.MustCompile(`(?m)^firegate_build_info.*$`).FindAllString(body, -1))
	}
	code, body := get(base + "/dev/token?user=user_alice&org=org_acme")
	if code != 200 {
		t.Fatalf("/dev/token = %d %s", code, body)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.Token == "" {
		t.Fatalf("token body %s", body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/stream", &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol, wire.BearerPrefix + tok.Token},
		HTTPHeader:   http.Header{"Origin": {base}},
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(8 << 20)
	read := func() wire.ServerMessage {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m wire.ServerMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := read(); m.Type != "welcome" || m.OrgID != "org_acme" {
		t.Fatalf("got %+v", m)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","id":"s","collection":"tasks"}`)); err != nil {
		t.Fatal(err)
	}
	if m := read(); m.Type != "subscribed" {
		t.Fatalf("got %+v", m)
	}
	for {
		m := read()
		if m.Type != "snapshot" {
			t.Fatalf("got %+v", m)
		}
		for _, d := range m.Docs {
			if !strings.Contains(string(d.Data), `"org_id":"org_acme"`) {
				t.Fatalf("snapshot has another org's doc: %s", d.Data)
			}
		}
		if m.Final {
			if len(m.Docs) == 0 {
				t.Fatal("no seeded tasks")
			}
			break
		}
	}
	req, _ := http.NewRequest("POST", base+"/dev/docs/tasks", strings.NewReader(`{"org_id":"org_acme","title":"from the test","status":"open","visibility":"public"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST /dev/docs = %d", resp.StatusCode)
	}
	for {
		m := read()
		if m.Type != "changes" {
			continue
		}
		if len(m.Changes) > 0 && m.Changes[0].Kind == "added" && strings.Contains(string(m.Changes[0].Data), "from the test") {
			break
		}
	}

	// A write through the gateway under the dev policy: org_id is stamped,
	// the answer's update_time is the one the subscriber sees.
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"write","id":"w","ops":[{"op":"create","path":"tasks","data":{"title":"written","visibility":"public"}}]}`)); err != nil {
		t.Fatal(err)
	}
	var written wire.ServerMessage
	var seen *wire.Change
	for written.Type == "" || seen == nil {
		m := read()
		switch {
		case m.Type == wire.TypeWritten || m.Type == wire.TypeError:
			if m.Type != wire.TypeWritten || len(m.Results) != 1 {
				t.Fatalf("write answered %+v", m)
			}
			written = m
		case m.Type == "changes":
			for i := range m.Changes {
				if c := m.Changes[i]; c.Kind == "added" && strings.Contains(string(c.Data), `"written"`) {
					if !strings.Contains(string(c.Data), `"org_id":"org_acme"`) {
						t.Fatalf("not stamped: %s", c.Data)
					}
					seen = &c
				}
			}
		}
	}
	if seen.Path != written.Results[0].Path || seen.UpdateTime != written.Results[0].UpdateTime {
		t.Fatalf("change %+v, written %+v", seen, written.Results[0])
	}
	// POST /v1/write: a member may not delete (only org:admin deletes tasks).
	code, body = get(base + "/dev/token?user=user_bob&org=org_acme")
	var bob struct{ Token string }
	if err := json.Unmarshal([]byte(body), &bob); code != 200 || err != nil {
		t.Fatalf("/dev/token = %d %s", code, body)
	}
	wreq, _ := http.NewRequest("POST", base+"/v1/write", strings.NewReader(`{"ops":[{"op":"delete","path":"`+written.Results[0].Path+`"}]}`))
	wreq.Header.Set("Authorization", "Bearer "+bob.Token)
	wresp, err := http.DefaultClient.Do(wreq)
	if err != nil {
		t.Fatal(err)
	}
	wresp.Body.Close()
	if wresp.StatusCode != http.StatusForbidden {
		t.Fatalf("member delete = %d, want 403", wresp.StatusCode)
	}

	proc.terminate(t)
	// Drain closes our socket with 1012.
	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != wire.CloseServiceRestart {
		t.Fatalf("close after SIGTERM: %v", err)
	}
	proc.waitExit(t)
}

func TestServeRefusesIncompleteConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, k := range []string{"FIRESTORE_PROJECT_ID", "FIREGATE_POLICY", "CLERK_SECRET_KEY", "CLERK_JWKS_URL", "CLERK_JWT_KEY", "CLERK_ISSUER"} {
		t.Setenv(k, "")
	}
	code := run([]string{"serve"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"FIRESTORE_PROJECT_ID", "FIREGATE_POLICY", "CLERK_SECRET_KEY"} {
		if !strings.Contains(errOut.String(), want) {
			t.Fatalf("message does not name %s:\n%s", want, errOut.String())
		}
	}
	errOut.Reset()
	t.Setenv("CLERK_JWKS_URL", "https://example.test/jwks")
	run([]string{"serve", "--project", "p", "--policy", "x.yaml"}, &out, &errOut)
	if !strings.Contains(errOut.String(), "CLERK_ISSUER") {
		t.Fatalf("JWKS URL without issuer not named:\n%s", errOut.String())
	}
}

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("version: exit %d: %s", code, errOut.String())
	}
	version, revision := metrics.BuildVersion()
	want := fmt.Sprintf("firegate %s (revision %s, %s)\n", version, revision, runtime.Version())
	if out.String() != want {
		t.Errorf("version printed %q, want %q (the firegate_build_info labels)", out.String(), want)
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "unknown command") {
		t.Fatalf("code %d: %s", code, errOut.String())
	}
}

func TestPolicyCheckAndExplain(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "policy.yaml")
	os.WriteFile(good, []byte("collections:\n  - path: invoices\n    scope: org\n    allow: \"'org:invoices:read' in auth.org_permissions\"\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("collections:\n  - path: tasks\n    scope: org\n    filter: \"doc.visibility ==\"\n"), 0o600)
	claims := filepath.Join(dir, "claims.json")
	os.WriteFile(claims, []byte(`{"sub":"user_1","org_id":"org_1","org_role":"org:member","org_permissions":[]}`), 0o600)

	var out, errOut bytes.Buffer
	if code := run([]string{"policy", "check", good}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "invoices") {
		t.Fatalf("check good: %d %s %s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run([]string{"policy", "check", bad}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "line") {
		t.Fatalf("check bad: %d %s", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"policy", "explain", good, "--claims", claims, "--collection", "invoices"}, &out, &errOut); code != 0 {
		t.Fatalf("explain: %d %s", code, errOut.String())
	}
	var ex struct{ Decision, Rule, Reason string }
	if err := json.Unmarshal(out.Bytes(), &ex); err != nil || ex.Decision != "deny" || ex.Rule != "invoices" || ex.Reason == "" {
		t.Fatalf("explain said %s", out.String())
	}
}

func TestPolicyExplainWrite(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("collections:\n  - path: tasks\n    scope: org\n    update: \"true\"\n    delete: \"auth.org_role == 'org:admin'\"\n"), 0o600)
	claims := filepath.Join(dir, "claims.json")
	os.WriteFile(claims, []byte(`{"sub":"user_1","org_id":"org_1","org_role":"org:member"}`), 0o600)
	old := filepath.Join(dir, "old.json")
	os.WriteFile(old, []byte(`{"org_id":"org_1","title":"a"}`), 0o600)
	moved := filepath.Join(dir, "new.json")
	os.WriteFile(moved, []byte(`{"org_id":"org_2","title":"a"}`), 0o600)
	same := filepath.Join(dir, "same.json")
	os.WriteFile(same, []byte(`{"org_id":"org_1","title":"b"}`), 0o600)
	tests := []struct {
		args     []string
		decision string
		reason   string
	}{
		{[]string{"--op", "update", "--path", "tasks/t1", "--doc", old, "--new", same}, "allow", "update is true"},
		{[]string{"--op", "update", "--path", "tasks/t1", "--doc", old, "--new", moved}, "deny", "may not change org_id"},
		{[]string{"--op", "delete", "--path", "tasks/t1", "--doc", old}, "deny", "delete is false"},
		{[]string{"--op", "create", "--path", "tasks", "--new", same}, "deny", "no create expression"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		args := append([]string{"policy", "explain", pol, "--claims", claims}, tt.args...)
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("%v: %d %s", tt.args, code, errOut.String())
		}
		var ex struct{ Decision, Reason string }
		if err := json.Unmarshal(out.Bytes(), &ex); err != nil || ex.Decision != tt.decision || !strings.Contains(ex.Reason, tt.reason) {
			t.Fatalf("%v: %s", tt.args, out.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"policy", "explain", pol, "--claims", claims, "--op", "update"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--path") {
		t.Fatalf("missing --path: %d %s", code, errOut.String())
	}
}
