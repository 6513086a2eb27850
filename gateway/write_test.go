package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/devmode"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/revocation"
	"github.com/firegate/firegate/wire"
)

// writePolicy: the seed article's rules for tasks (the scope does the org
// checks), a permission-gated create and a role-gated delete for
// invoices.
const writePolicy = `
collections:
  - path: "{c}"
    scope: org
    create: "true"
    update: "true"
    delete: "true"
  - path: "{c}/{d}/invoices"
    scope: org
    allow: "true"
    create: "'org:invoices:write' in auth.org_permissions"
    update: "true"
    delete: "auth.org_role == 'org:admin'"
`

// writeMsg sends a write on cl and returns the answer (written or error).
func (cl *client) writeMsg(id, body string) wire.ServerMessage {
	cl.t.Helper()
	cl.sendRaw([]byte(`{"type":"write","id":"` + id + `",` + strings.TrimPrefix(body, "{")))
	for {
		m := cl.next()
		if (m.Type == wire.TypeWritten || m.Type == wire.TypeError) && m.ID == id {
			return m
		}
		if m.Type != wire.TypeChanges && m.Type != wire.TypeSnapshot {
			cl.t.Fatalf("unexpected %s %+v while waiting for the answer to %s", m.Type, m, id)
		}
	}
}

func wantWriteError(t *testing.T, m wire.ServerMessage, code string, index int) {
	t.Helper()
	if m.Type != wire.TypeError || m.Code != code {
		t.Fatalf("got %s %s %q, want error %s", m.Type, m.Code, m.Message, code)
	}
	if index < 0 && m.Index != nil || index >= 0 && (m.Index == nil || *m.Index != index) {
		t.Fatalf("error %s: index %v, want %d", code, m.Index, index)
	}
}

func (e *env) stored(path string) map[string]any {
	e.t.Helper()
	snap, err := e.fs.Doc(path).Get(context.Background())
	if err != nil {
		if snap != nil && !snap.Exists() {
			return nil
		}
		e.t.Fatal(err)
	}
	return snap.Data()
}

// TestWriteSeedRules: the seed article's appendix rules through the
// socket; every refusal writes nothing.
func TestWriteSeedRules(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	cl := e.connect(e.token(authz.MintOptions{UserID: "user_w", OrgID: "org_a", OrgRole: "org:member"}))
	col := uniq("seed")
	e.put(col+"/theirs", map[string]any{"org_id": "org_b", "t": "x"})
	tests := []struct {
		name, body string
		code       string // "" → written
		path       string
		after      map[string]any
	}{
		{"own org create", `{"ops":[{"op":"create","path":"C/mine","data":{"org_id":"org_a","t":"x"}}]}`, "", "C/mine", map[string]any{"org_id": "org_a", "t": "x"}},
		{"own org update", `{"ops":[{"op":"update","path":"C/mine","data":{"t":"y"}}]}`, "", "C/mine", map[string]any{"org_id": "org_a", "t": "y"}},
		{"create into another org", `{"ops":[{"op":"create","path":"C/x","data":{"org_id":"org_b"}}]}`, wire.CodeForbidden, "C/x", nil},
		{"update moving to another org", `{"ops":[{"op":"update","path":"C/mine","data":{"org_id":"org_b"}}]}`, wire.CodeForbidden, "C/mine", map[string]any{"org_id": "org_a", "t": "y"}},
		{"delete of another org's document", `{"ops":[{"op":"delete","path":"C/theirs"}]}`, wire.CodeForbidden, "C/theirs", map[string]any{"org_id": "org_b", "t": "x"}},
		{"delete of a missing document", `{"ops":[{"op":"delete","path":"C/nothing"}]}`, wire.CodeForbidden, "C/nothing", nil},
		{"own org delete", `{"ops":[{"op":"delete","path":"C/mine"}]}`, "", "C/mine", nil},
		{"stamped create", `{"ops":[{"op":"create","path":"C/stamped","data":{"t":"s"}}]}`, "", "C/stamped", map[string]any{"org_id": "org_a", "t": "s"}},
		{"already exists", `{"ops":[{"op":"create","path":"C/stamped","data":{"t":"again"}}]}`, wire.CodeAlreadyExists, "C/stamped", map[string]any{"org_id": "org_a", "t": "s"}},
		{"atomic batch", `{"ops":[{"op":"create","path":"C/b1","data":{}},{"op":"delete","path":"C/theirs"}]}`, wire.CodeForbidden, "C/b1", nil},
	}
	for i, tt := range tests {
		m := cl.writeMsg(fmt.Sprint("w", i), strings.ReplaceAll(tt.body, "C/", col+"/"))
		if tt.code == "" {
			if m.Type != wire.TypeWritten || len(m.Results) != 1 || m.Results[0].Path != col+tt.path[1:] || m.CommitTime == "" {
				t.Fatalf("%s: %+v", tt.name, m)
			}
		} else {
			index := 0
			if tt.name == "atomic batch" {
				index = 1
			}
			wantWriteError(t, m, tt.code, index)
		}
		if got := e.stored(col + tt.path[1:]); !reflect.DeepEqual(got, tt.after) {
			t.Fatalf("%s: stored %v, want %v", tt.name, got, tt.after)
		}
	}
	if n := e.counter("firegate_writes_total", map[string]string{"op": "create", "result": "ok"}); n != 2 {
		t.Fatalf("writes_total{create,ok} = %v", n)
	}
	if n := e.counter("firegate_writes_total", map[string]string{"op": "create", "result": "not_applied"}); n != 1 {
		t.Fatalf("writes_total{create,not_applied} = %v", n)
	}
	if n := e.counter("firegate_client_messages_total", map[string]string{"type": "write"}); n != float64(len(tests)) {
		t.Fatalf("client_messages_total{write} = %v", n)
	}
}

func TestWriteRoleAndPermissionGates(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	member := e.connect(e.token(authz.MintOptions{UserID: "user_m", OrgID: "org_a", OrgRole: "org:member"}))
	writer := e.connect(e.token(authz.MintOptions{UserID: "user_p", OrgID: "org_a", OrgRole: "org:member", OrgPermissions: []string{"org:invoices:write"}}))
	admin := e.connect(e.token(authz.MintOptions{UserID: "user_a", OrgID: "org_a", OrgRole: "org:admin", V2: true}))
	inv := uniq("p") + "/x/invoices/i1"
	wantWriteError(t, member.writeMsg("c1", `{"ops":[{"op":"create","path":"`+inv+`","data":{"n":1}}]}`), wire.CodeForbidden, 0)
	if m := writer.writeMsg("c2", `{"ops":[{"op":"create","path":"`+inv+`","data":{"n":1}}]}`); m.Type != wire.TypeWritten {
		t.Fatalf("permitted create: %+v", m)
	}
	wantWriteError(t, writer.writeMsg("d1", `{"ops":[{"op":"delete","path":"`+inv+`"}]}`), wire.CodeForbidden, 0)
	if e.stored(inv) == nil {
		t.Fatal("a member deleted")
	}
	if m := admin.writeMsg("d2", `{"ops":[{"op":"delete","path":"`+inv+`"}]}`); m.Type != wire.TypeWritten {
		t.Fatalf("admin delete: %+v", m)
	}
	if e.stored(inv) != nil {
		t.Fatal("not deleted")
	}
}

// A write is delivered to subscribers with the update_time of its
// `written` answer.
func TestWriteSeenBySubscriber(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	col := uniq("seen")
	sub := e.connect(e.token(authz.MintOptions{UserID: "user_s", OrgID: "org_a"}))
	sub.subscribe(map[string]any{"id": "s1", "collection": col})
	w := e.connect(e.token(authz.MintOptions{UserID: "user_w", OrgID: "org_a"}))

	expectChange := func(kind, path, updateTime string) {
		t.Helper()
		for {
			m := sub.expect(wire.TypeChanges)
			for _, c := range m.Changes {
				if c.Path != path {
					continue
				}
				if c.Kind != kind || c.UpdateTime != updateTime {
					t.Fatalf("change %+v, want %s with update_time %q", c, kind, updateTime)
				}
				return
			}
		}
	}
	m := w.writeMsg("w1", `{"ops":[{"op":"create","path":"`+col+`","data":{"t":"x","n":{"$transform":"increment","by":1}}}]}`)
	if m.Type != wire.TypeWritten {
		t.Fatalf("%+v", m)
	}
	path := m.Results[0].Path
	expectChange(wire.KindAdded, path, m.Results[0].UpdateTime)
	m = w.writeMsg("w2", `{"ops":[{"op":"update","path":"`+path+`","data":{"t":"y"},"precondition":{"update_time":"`+m.Results[0].UpdateTime+`"}}]}`)
	if m.Type != wire.TypeWritten {
		t.Fatalf("%+v", m)
	}
	expectChange(wire.KindModified, path, m.Results[0].UpdateTime)
	m = w.writeMsg("w3", `{"ops":[{"op":"delete","path":"`+path+`"}]}`)
	if m.Type != wire.TypeWritten {
		t.Fatalf("%+v", m)
	}
	expectChange(wire.KindRemoved, path, "")
	// Another org's subscriber sees none of it.
}

func TestWriteDecodeErrorOnSocket(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	cl := e.connect(e.token(authz.MintOptions{UserID: "user_d", OrgID: "org_a"}))
	m := cl.writeMsg("bad", `{"ops":[{"op":"delete","path":"a/b"},{"op":"set","path":"a/c","data":{"$where":1}}]}`)
	wantWriteError(t, m, wire.CodeBadRequest, 1)
	// Unauthenticated writes are refused.
	raw, _, err := e.dial(dialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	raw.sendRaw([]byte(`{"type":"write","id":"u","ops":[{"op":"delete","path":"a/b"}]}`))
	if m := raw.expect(wire.TypeError); m.Code != wire.CodeUnauthorized {
		t.Fatalf("%+v", m)
	}
}

// httpWrite posts body to /v1/write and decodes the answer.
func (e *env) httpWrite(token, origin, body string) (int, http.Header, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/write", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("status %d, body %q: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, resp.Header, out
}

func httpErr(t *testing.T, body map[string]any, code string, index int) {
	t.Helper()
	eb, ok := body["error"].(map[string]any)
	if !ok || eb["code"] != code || eb["message"] == "" {
		t.Fatalf("body %v, want error code %s", body, code)
	}
	idx, has := eb["index"]
	if index < 0 && has || index >= 0 && idx != float64(index) {
		t.Fatalf("body %v, want index %d", body, index)
	}
}

func TestWriteHTTP(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	col := uniq("http")
	tok := e.token(authz.MintOptions{UserID: "user_h", OrgID: "org_a"})
	e.put(col+"/theirs", map[string]any{"org_id": "org_b"})

	// Each token check the socket makes.
	st, hdr, body := e.httpWrite("", "", `{"ops":[{"op":"create","path":"`+col+`/a","data":{}}]}`)
	if st != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
		t.Fatalf("missing token: %d %v", st, body)
	}
	httpErr(t, body, wire.CodeUnauthorized, -1)
	st, _, body = e.httpWrite("not.a.jwt", "", `{"ops":[{"op":"create","path":"`+col+`/a","data":{}}]}`)
	if st != http.StatusUnauthorized {
		t.Fatalf("bad token: %d %v", st, body)
	}
	expired := e.token(authz.MintOptions{UserID: "user_h", OrgID: "org_a", TTL: -time.Hour})
	if st, _, body = e.httpWrite(expired, "", `{"ops":[{"op":"create","path":"`+col+`/a","data":{}}]}`); st != http.StatusUnauthorized {
		t.Fatalf("expired token: %d %v", st, body)
	}
	badAzp := e.token(authz.MintOptions{UserID: "user_h", OrgID: "org_a", Azp: "https://evil.example.org"})
	if st, _, body = e.httpWrite(badAzp, "", `{"ops":[{"op":"create","path":"`+col+`/a","data":{}}]}`); st != http.StatusUnauthorized {
		t.Fatalf("bad azp: %d %v", st, body)
	}
	st, _, body = e.httpWrite(tok, "https://evil.example.org", `{"ops":[{"op":"create","path":"`+col+`/a","data":{}}]}`)
	if st != http.StatusForbidden {
		t.Fatalf("bad origin: %d %v", st, body)
	}
	httpErr(t, body, wire.CodeForbidden, -1)
	if e.stored(col+"/a") != nil {
		t.Fatal("written despite a refused token or origin")
	}

	// Accepted, from an allowed origin (CORS headers set).
	st, hdr, body = e.httpWrite(tok, testOrigin, `{"idempotency_key":"h1","ops":[{"op":"create","path":"`+col+`/a","data":{"t":"x"}}]}`)
	if st != http.StatusOK || body["type"] != wire.TypeWritten || hdr.Get("Access-Control-Allow-Origin") != testOrigin {
		t.Fatalf("write: %d %v %v", st, body, hdr)
	}
	results := body["results"].([]any)
	first := results[0].(map[string]any)
	if first["path"] != col+"/a" || first["update_time"] == "" {
		t.Fatalf("results %v", results)
	}
	// Replay: same answer, nothing written.
	st, _, again := e.httpWrite(tok, "", `{"idempotency_key":"h1","ops":[{"op":"create","path":"`+col+`/a","data":{"t":"x"}}]}`)
	if st != http.StatusOK || !reflect.DeepEqual(again, body) {
		t.Fatalf("replay: %d %v, first %v", st, again, body)
	}

	// Each refusal's status.
	for _, c := range []struct {
		body   string
		status int
		code   string
		index  int
	}{
		{`{"ops":[{"op":"delete","path":"` + col + `/a"},{"op":"delete","path":"` + col + `/theirs"}]}`, http.StatusForbidden, wire.CodeForbidden, 1},
		{`{"ops":[{"op":"create","path":"` + col + `/a","data":{}}]}`, http.StatusConflict, wire.CodeAlreadyExists, 0},
		{`{"ops":[{"op":"update","path":"` + col + `/a","data":{"t":1},"precondition":{"update_time":"2001-01-01T00:00:00Z"}}]}`, http.StatusPreconditionFailed, wire.CodeFailedPrecondition, 0},
		{`{"ops":[{"op":"update","path":"` + col + `/a","data":{"$t":1}}]}`, http.StatusBadRequest, wire.CodeBadRequest, 0},
		{`{"ops":"nope"}`, http.StatusBadRequest, wire.CodeBadRequest, -1},
	} {
		st, _, body := e.httpWrite(tok, "", c.body)
		if st != c.status {
			t.Fatalf("%s: status %d %v, want %d", c.body, st, body, c.status)
		}
		httpErr(t, body, c.code, c.index)
	}
	if got := e.stored(col + "/a"); got["t"] != "x" {
		t.Fatalf("a refused write changed the document: %v", got)
	}

	// CORS preflight from an allowed origin only.
	req, _ := http.NewRequest(http.MethodOptions, e.ts.URL+"/v1/write", nil)
	req.Header.Set("Origin", testOrigin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	// Draining: 503.
	e.srv.Drain(context.Background())
	st, hdr, body = e.httpWrite(tok, "", `{"ops":[{"op":"create","path":"`+col+`/z","data":{}}]}`)
	if st != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("draining: %d %v", st, body)
	}
	httpErr(t, body, wire.CodeUnavailable, -1)
}

func TestWriteBodyLimit(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	tok := e.token(authz.MintOptions{UserID: "user_b", OrgID: "org_a"})
	big := bytes.Repeat([]byte("x"), gateway.MaxWriteBodyBytes)
	st, _, body := e.httpWrite(tok, "", `{"ops":[{"op":"create","path":"c/d","data":{"s":"`+string(big)+`"}}]}`)
	if st != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d %v", st, body)
	}
}

// Rate limits at and past their edge, with the clock frozen (no refill).
func TestWriteRateLimits(t *testing.T) {
	clock := newFakeClock()
	e := newEnv(t, envOpts{policy: writePolicy, clock: clock, cfg: gateway.Config{Limits: gateway.Limits{
		WritesPerConn: 1, WriteBurstPerConn: 3, WritesPerUser: 1, WriteBurstPerUser: 5}}})
	col := uniq("rate")
	tok := e.token(authz.MintOptions{UserID: "user_r", OrgID: "org_a"})
	c1 := e.connect(tok)
	body := func(i int) string { return fmt.Sprintf(`{"ops":[{"op":"create","path":"%s/d%d","data":{}}]}`, col, i) }
	for i := 0; i < 3; i++ {
		if m := c1.writeMsg(fmt.Sprint("a", i), body(i)); m.Type != wire.TypeWritten {
			t.Fatalf("write %d within the per-connection burst: %+v", i, m)
		}
	}
	m := c1.writeMsg("a3", body(3))
	wantWriteError(t, m, wire.CodeRateLimited, -1)
	if m.RetryAfterMS <= 0 || !strings.Contains(m.Message, "writes_per_conn") {
		t.Fatalf("%+v", m)
	}
	if e.stored(fmt.Sprintf("%s/d3", col)) != nil {
		t.Fatal("a rate-limited write was applied")
	}
	// The same user on another connection: the per-user burst (5) has 2 left.
	c2 := e.connect(tok)
	for i := 4; i < 6; i++ {
		if m := c2.writeMsg(fmt.Sprint("b", i), body(i)); m.Type != wire.TypeWritten {
			t.Fatalf("write %d within the per-user burst: %+v", i, m)
		}
	}
	m = c2.writeMsg("b6", body(6))
	wantWriteError(t, m, wire.CodeRateLimited, -1)
	if !strings.Contains(m.Message, "writes_per_user") {
		t.Fatalf("%+v", m)
	}
	// HTTP shares the per-user limit.
	st, hdr, resp := e.httpWrite(tok, "", body(7))
	if st != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("http past the per-user limit: %d %v", st, resp)
	}
	// Another user is not limited.
	other := e.connect(e.token(authz.MintOptions{UserID: "user_o", OrgID: "org_a"}))
	if m := other.writeMsg("o", body(8)); m.Type != wire.TypeWritten {
		t.Fatalf("%+v", m)
	}
	// After a second, one more token each.
	clock.Advance(time.Second)
	if m := c1.writeMsg("a9", body(9)); m.Type != wire.TypeWritten {
		t.Fatalf("after refill: %+v", m)
	}
	if n := e.counter("firegate_rate_limited_total", map[string]string{"limit": "writes_per_conn"}); n != 1 {
		t.Fatalf("rate_limited_total{writes_per_conn} = %v", n)
	}
	if n := e.counter("firegate_rate_limited_total", map[string]string{"limit": "writes_per_user"}); n != 2 {
		t.Fatalf("rate_limited_total{writes_per_user} = %v", n)
	}
	if n := e.counter("firegate_writes_total", map[string]string{"op": "create", "result": "rate_limited"}); n != 3 {
		t.Fatalf("writes_total{create,rate_limited} = %v", n)
	}
}

// Two gateway instances on one Firestore: the idempotency key holds
// across them.
func TestWriteIdempotentAcrossInstances(t *testing.T) {
	e1 := newEnv(t, envOpts{policy: writePolicy})
	e2 := newEnv(t, envOpts{policy: writePolicy})
	col := uniq("idem")
	e1.put(col+"/c", map[string]any{"org_id": "org_a", "n": int64(0)})
	o := authz.MintOptions{UserID: "user_i", OrgID: "org_a"}
	body := `{"idempotency_key":"k-123","ops":[{"op":"update","path":"` + col + `/c","data":{"n":{"$transform":"increment","by":1}}},{"op":"create","path":"` + col + `","data":{}}]}`
	first := e1.connect(e1.token(o)).writeMsg("w1", body)
	if first.Type != wire.TypeWritten {
		t.Fatalf("%+v", first)
	}
	second := e2.connect(e2.token(o)).writeMsg("w2", body)
	if second.Type != wire.TypeWritten || second.CommitTime != first.CommitTime || !reflect.DeepEqual(second.Results, first.Results) || second.ID != "w2" {
		t.Fatalf("replay on another instance: %+v\nfirst %+v", second, first)
	}
	if got := e1.stored(col + "/c"); got["n"] != int64(1) {
		t.Fatalf("n = %v: written twice", got["n"])
	}
}

// Concurrent writers on one document: every acknowledged increment is
// there, and nothing else.
func TestWriteConcurrentWriters(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	col := uniq("race")
	e.put(col+"/c", map[string]any{"org_id": "org_a", "n": int64(0)})
	const writers = 6
	clients := make([]*client, writers)
	for i := range clients {
		clients[i] = e.connect(e.token(authz.MintOptions{UserID: fmt.Sprint("user_c", i), OrgID: "org_a"}))
	}
	var wg sync.WaitGroup
	answers := make([]wire.ServerMessage, writers)
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.sendRaw([]byte(`{"type":"write","id":"x","ops":[{"op":"update","path":"` + col + `/c","data":{"n":{"$transform":"increment","by":1}}}]}`))
		}()
	}
	wg.Wait()
	ok := 0
	for i, cl := range clients {
		answers[i] = cl.next()
		switch {
		case answers[i].Type == wire.TypeWritten:
			ok++
		case answers[i].Code == wire.CodeUnavailable:
		default:
			t.Fatalf("answer %+v", answers[i])
		}
	}
	if ok == 0 {
		t.Fatal("no write succeeded")
	}
	if got := e.stored(col + "/c"); got["n"] != int64(ok) {
		t.Fatalf("n = %v, %d acknowledged", got["n"], ok)
	}
}

// The dev policy's write rules: scope stamping, a permission gate
// (org:invoices:write creates invoices) and a role gate (only org:admin
// deletes tasks).
func TestWriteDevPolicy(t *testing.T) {
	e := newEnv(t, envOpts{policy: string(devmode.DefaultPolicy())})
	org := uniq("org")
	admin := e.connect(e.token(authz.MintOptions{UserID: "user_alice", OrgID: org, OrgRole: "org:admin",
		OrgPermissions: []string{"org:invoices:read", "org:invoices:write"}}))
	member := e.connect(e.token(authz.MintOptions{UserID: "user_bob", OrgID: org, OrgRole: "org:member"}))
	task := "tasks/" + uniq("t")
	// A member creates a task without org_id: it is stamped.
	if m := member.writeMsg("c", `{"ops":[{"op":"create","path":"`+task+`","data":{"title":"x","visibility":"team"}}]}`); m.Type != wire.TypeWritten {
		t.Fatalf("%+v", m)
	}
	if got := e.stored(task); got["org_id"] != org {
		t.Fatalf("not stamped: %v", got)
	}
	// A member may not create a private task, nor delete one.
	wantWriteError(t, member.writeMsg("p", `{"ops":[{"op":"create","path":"tasks/`+uniq("t")+`","data":{"visibility":"private"}}]}`), wire.CodeForbidden, 0)
	wantWriteError(t, member.writeMsg("d", `{"ops":[{"op":"delete","path":"`+task+`"}]}`), wire.CodeForbidden, 0)
	// Invoices need org:invoices:write.
	inv := "invoices/" + uniq("i")
	wantWriteError(t, member.writeMsg("i", `{"ops":[{"op":"create","path":"`+inv+`","data":{"amount_cents":1}}]}`), wire.CodeForbidden, 0)
	if m := admin.writeMsg("i", `{"ops":[{"op":"create","path":"`+inv+`","data":{"amount_cents":1}}]}`); m.Type != wire.TypeWritten {
		t.Fatalf("%+v", m)
	}
	// The admin deletes.
	if m := admin.writeMsg("d", `{"ops":[{"op":"delete","path":"`+task+`"},{"op":"delete","path":"`+inv+`"}]}`); m.Type != wire.TypeWritten {
		t.Fatalf("%+v", m)
	}
	if e.stored(task) != nil || e.stored(inv) != nil {
		t.Fatal("not deleted")
	}
	// Notes: the owner id is stamped.
	note := "notes/" + uniq("n")
	if m := member.writeMsg("n", `{"ops":[{"op":"create","path":"`+note+`","data":{"text":"hi"}}]}`); m.Type != wire.TypeWritten {
		t.Fatalf("%+v", m)
	}
	if got := e.stored(note); got["owner_id"] != "user_bob" {
		t.Fatalf("notes: %v", got)
	}
}

// POST /v1/write honours webhook revocations as the socket does.
func TestWriteHTTPRevoked(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	user, org := uniq("u"), uniq("org")
	issued := time.Now().Add(-time.Second)
	tok := e.token(authz.MintOptions{UserID: user, SessionID: "sess_" + user, OrgID: org, IssuedAt: issued, TTL: time.Hour})
	col := uniq("rev")
	if st, _, body := e.httpWrite(tok, "", `{"ops":[{"op":"create","path":"`+col+`/a","data":{}}]}`); st != http.StatusOK {
		t.Fatalf("before: %d %v", st, body)
	}
	if err := e.srv.Revoke(context.Background(), revocation.Revocation{Kind: revocation.KindMembership, ID: user, OrgID: org, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st, _, body := e.httpWrite(tok, "", `{"ops":[{"op":"create","path":"`+col+`/b","data":{}}]}`)
	if st != http.StatusForbidden {
		t.Fatalf("revoked membership: %d %v", st, body)
	}
	if err := e.srv.Revoke(context.Background(), revocation.Revocation{Kind: revocation.KindSession, ID: "sess_" + user, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st, _, body = e.httpWrite(tok, "", `{"ops":[{"op":"create","path":"`+col+`/c","data":{}}]}`)
	if st != http.StatusUnauthorized {
		t.Fatalf("revoked session: %d %v", st, body)
	}
	httpErr(t, body, wire.CodeUnauthorized, -1)
	if e.stored(col+"/b") != nil || e.stored(col+"/c") != nil {
		t.Fatal("a revoked token wrote")
	}
}

// syncBuffer is a log sink safe for the gateway's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) lines() []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(w.b.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// One audit line per operation: who, where, what, the result; never the
// document's data.
func TestWriteAuditLog(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, envOpts{policy: writePolicy, logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	col := uniq("audit")
	cl := e.connect(e.token(authz.MintOptions{UserID: "user_audit", SessionID: "sess_audit", OrgID: "org_a"}))
	m := cl.writeMsg("w1", `{"ops":[{"op":"create","path":"`+col+`/a","data":{"secret":"s3cr3t-value"}},{"op":"delete","path":"`+col+`/missing"}]}`)
	wantWriteError(t, m, wire.CodeForbidden, 1)
	m = cl.writeMsg("w2", `{"ops":[{"op":"create","path":"`+col+`/a","data":{"secret":"s3cr3t-value"}}]}`)
	if m.Type != wire.TypeWritten {
		t.Fatalf("%+v", m)
	}
	var audit []map[string]any
	for _, l := range logs.lines() {
		if l["msg"] == "write" {
			audit = append(audit, l)
		}
	}
	want := []struct{ id, path, op, result string }{
		{"w1", col + "/a", "create", "not_applied"},
		{"w1", col + "/missing", "delete", "forbidden"},
		{"w2", col + "/a", "create", "ok"},
	}
	if len(audit) != len(want) {
		t.Fatalf("audit lines %v", audit)
	}
	for i, w := range want {
		a := audit[i]
		if a["user"] != "user_audit" || a["org"] != "org_a" || a["session"] != "sess_audit" || a["write_id"] != w.id ||
			a["path"] != w.path || a["op"] != w.op || a["result"] != w.result {
			t.Errorf("audit line %d = %v, want %+v", i, a, w)
		}
	}
	logs.mu.Lock()
	leaked := bytes.Contains(logs.b.Bytes(), []byte("s3cr3t-value"))
	logs.mu.Unlock()
	if leaked {
		t.Fatal("document data in the logs")
	}
}
