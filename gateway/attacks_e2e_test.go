package gateway_test

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/wire"
)

// TestWriteScopeFieldAttacks: a member of org_a tries to move its own
// document to another org (or out of every org) through each way a write
// can reach the scope field, and to write through malformed paths. Each
// attempt is refused (or, for a field a merge does not name, ignored) and
// the stored document keeps org_id == org_a.
func TestWriteScopeFieldAttacks(t *testing.T) {
	e := newEnv(t, envOpts{policy: writePolicy})
	cl := e.connect(e.token(authz.MintOptions{UserID: "user_w", OrgID: "org_a"}))
	col := uniq("scope")
	e.put(col+"/theirs", map[string]any{"org_id": "org_b", "t": int64(1)})
	tests := []struct {
		name, body string
		code       string // "" → written
	}{
		{"update org_id", `{"ops":[{"op":"update","path":"D","data":{"org_id":"org_b"}}]}`, wire.CodeForbidden},
		{"update backquoted org_id", `{"ops":[{"op":"update","path":"D","data":{"` + "`org_id`" + `":"org_b"}}]}`, wire.CodeForbidden},
		{"update below org_id", `{"ops":[{"op":"update","path":"D","data":{"org_id.x":"org_b"}}]}`, wire.CodeForbidden},
		{"increment org_id", `{"ops":[{"op":"update","path":"D","data":{"org_id":{"$transform":"increment","by":1}}}]}`, wire.CodeForbidden},
		{"array_union org_id", `{"ops":[{"op":"update","path":"D","data":{"org_id":{"$transform":"array_union","values":["org_b"]}}}]}`, wire.CodeForbidden},
		{"array_remove org_id", `{"ops":[{"op":"update","path":"D","data":{"org_id":{"$transform":"array_remove","values":["org_a"]}}}]}`, wire.CodeForbidden},
		{"server_timestamp org_id", `{"ops":[{"op":"update","path":"D","data":{"org_id":{"$transform":"server_timestamp"}}}]}`, wire.CodeForbidden},
		{"set replacing org_id", `{"ops":[{"op":"set","path":"D","data":{"org_id":"org_b","t":2}}]}`, wire.CodeForbidden},
		{"set dropping org_id", `{"ops":[{"op":"set","path":"D","data":{"t":2,"org_id":null}}]}`, wire.CodeForbidden},
		{"merge naming org_id", `{"ops":[{"op":"set","path":"D","data":{"org_id":"org_b"},"merge":["org_id"]}]}`, wire.CodeForbidden},
		{"merge naming backquoted org_id", `{"ops":[{"op":"set","path":"D","data":{"org_id":"org_b"},"merge":["` + "`org_id`" + `"]}]}`, wire.CodeForbidden},
		{"merge not naming org_id, org_id in data", `{"ops":[{"op":"set","path":"D","data":{"t":2,"org_id":"org_b"},"merge":["t"]}]}`, ""},
		{"merge not naming org_id, transform in data", `{"ops":[{"op":"set","path":"D","data":{"t":3,"org_id":{"$transform":"server_timestamp"}},"merge":["t"]}]}`, ""},
		{"batch: own then another org's", `{"ops":[{"op":"update","path":"D","data":{"t":9}},{"op":"update","path":"` + col + `/theirs","data":{"t":9}}]}`, wire.CodeForbidden},
		{"dot-dot segment", `{"ops":[{"op":"update","path":"` + col + `/../` + col + `/theirs","data":{"t":9}}]}`, wire.CodeBadRequest},
		{"empty segment", `{"ops":[{"op":"create","path":"` + col + `//x/y","data":{}}]}`, wire.CodeBadRequest},
		{"reserved id", `{"ops":[{"op":"create","path":"` + col + `/__name__","data":{}}]}`, wire.CodeBadRequest},
		{"reserved collection", `{"ops":[{"op":"create","path":"__x__/d","data":{}}]}`, wire.CodeBadRequest},
		{"trailing slash", `{"ops":[{"op":"create","path":"` + col + `/","data":{}}]}`, wire.CodeBadRequest},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := fmt.Sprintf("%s/d%d", col, i)
			e.put(doc, map[string]any{"org_id": "org_a", "t": int64(1)})
			m := cl.writeMsg(fmt.Sprint("w", i), strings.ReplaceAll(tt.body, `"D"`, `"`+doc+`"`))
			if tt.code == "" {
				if m.Type != wire.TypeWritten {
					t.Fatalf("%+v, want written", m)
				}
			} else if m.Type != wire.TypeError || m.Code != tt.code {
				t.Fatalf("%s %s %q, want %s", m.Type, m.Code, m.Message, tt.code)
			}
			got := e.stored(doc)
			if got["org_id"] != "org_a" {
				t.Fatalf("stored %v: the scope field moved", got)
			}
			if tt.code != "" && !reflect.DeepEqual(got, map[string]any{"org_id": "org_a", "t": int64(1)}) {
				t.Fatalf("a refused write changed the document: %v", got)
			}
			if theirs := e.stored(col + "/theirs"); theirs["t"] != int64(1) || theirs["org_id"] != "org_b" {
				t.Fatalf("another org's document changed: %v", theirs)
			}
		})
	}
}

// TestLimitOracleNonStringValues: the limit/order oracle through a
// pushed-down `!=` with a string constant that a value of another kind is
// shown to the filter as (NaN as "NaN", a timestamp as its RFC 3339 text, a
// reference as its path). CEL finds them equal and hides the document;
// Firestore's != compares kinds and would return it, so `limit 1` would
// answer an empty snapshot when the hidden document sorts first. Such a
// filter stays in the gateway: `limit` is refused and the visible
// documents are exactly the filter's.
func TestLimitOracleNonStringValues(t *testing.T) {
	nan, ts, ref := uniq("nan"), uniq("ts"), uniq("ref")
	policy := fmt.Sprintf(`
collections:
  - path: %s
    scope: org
    filter: "doc.v != 'NaN'"
  - path: %s
    scope: org
    filter: "doc.v != '2020-01-01T00:00:00Z'"
  - path: %s
    scope: org
    filter: "!(doc.v in ['things/t1'])"
`, nan, ts, ref)
	e := newEnv(t, envOpts{policy: policy})
	org := uniq("org")
	for _, c := range []struct {
		col    string
		hidden any
	}{
		{nan, math.NaN()},
		{ts, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ref, e.fs.Doc("things/t1")},
	} {
		t.Run(c.col, func(t *testing.T) {
			e.put(c.col+"/a_hidden", map[string]any{"org_id": org, "v": c.hidden, "n": 1})
			e.put(c.col+"/b_visible", map[string]any{"org_id": org, "v": "ok", "n": 2})
			cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
			cl.send(map[string]any{"type": "subscribe", "id": "lim", "collection": c.col, "order_by": []any{map[string]any{"field": "n"}}, "limit": 1})
			switch m := cl.next(); m.Type {
			case wire.TypeError:
				if m.Code != wire.CodeBadRequest || !strings.Contains(m.Message, "limit") {
					t.Fatalf("limit refused with %+v", m)
				}
			default:
				t.Fatalf("limit 1 answered %s (the hidden document may take the place): %+v", m.Type, m)
			}
			_, docs, _ := cl.subscribe(map[string]any{"id": "all", "collection": c.col})
			if got := docIDs(docs); !reflect.DeepEqual(got, map[string]bool{"b_visible": true}) {
				t.Fatalf("visible %v", got)
			}
		})
	}
}
