package gateway_test

import (
	"io"
	"net/url"
	"testing"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/wire"
)

// TestReservedCollectionsUnreachable is the attack of a member on
// Firegate's own records under a policy with wildcard rules (writePolicy:
// `{c}` and `{c}/{d}/invoices`, create/update/delete all "true"): reading
// _firegate_writes or _firegate_revocations (other users' ids), by
// collection or by document, over the socket and SSE, and forging a
// revocation entry (revoking another member) over the socket and POST
// /v1/write. Every attempt is refused exactly like a collection the policy
// does not list, and nothing is written.
func TestReservedCollectionsUnreachable(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	org := uniq("org")
	tok := e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org})
	planted := uniq("rec")
	// A record the attacker's scope would match if the namespace were open.
	e.put("_firegate_writes/"+planted, map[string]any{"org_id": org, "user_id": "user_victim"})
	cl := e.connect(tok)

	// The refusal of a collection no rule matches (5 segments).
	cl.send(map[string]any{"type": "subscribe", "id": "ref", "collection": "nope/x/y/z/w"})
	want := cl.expect("error")
	if want.Code != wire.CodeForbidden {
		t.Fatalf("unlisted collection: %+v", want)
	}
	for i, req := range []map[string]any{
		{"collection": "_firegate_writes"},
		{"collection": "_firegate_revocations"},
		{"collection": "_firegate_writes", "where": []any{map[string]any{"field": "org_id", "op": "==", "value": org}}},
		{"collection": "_firegate_writes/" + planted + "/invoices"},
		{"doc": "_firegate_writes/" + planted},
		{"doc": "_firegate/ping"},
	} {
		id := "r" + string(rune('0'+i))
		req["type"], req["id"] = "subscribe", id
		cl.send(req)
		m := cl.expect("error")
		if m.ID != id || m.Code != want.Code || m.Message != want.Message {
			t.Fatalf("subscribe %v: %+v, want the refusal of an unlisted collection %+v", req, m, want)
		}
	}

	// Forging a revocation entry: over the socket (alone and in a batch
	// with an allowed write) and over HTTP.
	forged := uniq("forged")
	entry := `{"kind":"membership","id":"user_victim","at":{"$transform":"server_timestamp"},"expires":{"$transform":"server_timestamp"}}`
	refNoRule := cl.writeMsg("w0", `{"ops":[{"op":"create","path":"nope/x/y/z/w/d","data":{}}]}`)
	wantWriteError(t, refNoRule, wire.CodeForbidden, 0)
	for i, body := range []string{
		`{"ops":[{"op":"create","path":"_firegate_revocations/` + forged + `","data":` + entry + `}]}`,
		`{"ops":[{"op":"create","path":"_firegate_revocations","data":` + entry + `}]}`,
		`{"ops":[{"op":"set","path":"_firegate_revocations/` + forged + `","data":` + entry + `}]}`,
		`{"ops":[{"op":"update","path":"_firegate_writes/` + planted + `","data":{"user_id":"x"}}]}`,
		`{"ops":[{"op":"delete","path":"_firegate_writes/` + planted + `"}]}`,
		`{"ops":[{"op":"create","path":"tasks/` + forged + `","data":{}},{"op":"create","path":"_firegate_revocations/` + forged + `","data":` + entry + `}]}`,
	} {
		m := cl.writeMsg("w"+string(rune('1'+i)), body)
		index := 0
		if i == 5 {
			index = 1
		}
		wantWriteError(t, m, wire.CodeForbidden, index)
		if m.Message != refNoRule.Message {
			t.Fatalf("write %s: message %q, want the unlisted collection's %q", body, m.Message, refNoRule.Message)
		}
		st, _, hb := e.httpWrite(tok, "", body)
		if st != 403 {
			t.Fatalf("POST %s: %d %v", body, st, hb)
		}
		httpErr(t, hb, wire.CodeForbidden, index)
		if eb := hb["error"].(map[string]any); eb["message"] != refNoRule.Message {
			t.Fatalf("POST %s: message %v", body, eb["message"])
		}
	}
	if e.stored("_firegate_revocations/"+forged) != nil || e.stored("tasks/"+forged) != nil {
		t.Fatal("a refused write was stored")
	}
	if got := e.stored("_firegate_writes/" + planted); got["user_id"] != "user_victim" {
		t.Fatalf("the planted record changed: %v", got)
	}

	// SSE: the same refusal as an error event on the stream.
	for _, q := range []url.Values{{"collection": {"_firegate_writes"}}, {"doc": {"_firegate_revocations/" + planted}}} {
		c, resp := e.sse(tok, q.Encode(), "")
		if c == nil {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%v: stream refused %d %s", q, resp.StatusCode, b)
		}
		c.next("welcome")
		if m := c.next("error"); m.msg.Code != want.Code || m.msg.Message != want.Message {
			t.Fatalf("%v: %s", q, m.data)
		}
		c.cancel()
	}
}
