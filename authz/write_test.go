package authz

import (
	"errors"
	"strings"
	"testing"
)

// seedPolicy is the seed article's "better Firestore rules" as a Firegate
// policy: read and delete when the stored org matches, update when the
// stored and the new org match, create when the new org matches. The
// gateway's scope checks enforce all of it; the expressions say "yes".
const seedPolicy = `
collections:
  - path: tasks
    scope: org
    create: "true"
    update: "true"
    delete: "true"
  - path: invoices
    scope: org
    create: "'org:invoices:write' in auth.org_permissions"
    update: "request.doc.amount >= 0 && !('number' in request.fields)"
    delete: "auth.org_role == 'org:admin'"
  - path: notes
    scope: user
    scope_field: owner_id
    create: "request.doc.title != '' && doc_id.startsWith('n')"
    update: "doc.locked != true"
  - path: projects/{project}/items
    scope: org
    scope_field: meta.org
    create: "path.project == 'p1'"
`

func mustPolicy(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWritePolicyErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"create reads doc", "collections:\n  - path: tasks\n    scope: org\n    create: \"doc.a == 1\"\n", []string{"collections[0]", "create (line 4)", "create may not read doc"}},
		{"request unknown key", "collections:\n  - path: tasks\n    scope: org\n    update: \"request.resource.a == 1\"\n", []string{"update (line 4)", `request has no key "resource"`}},
		{"request unknown key index", "collections:\n  - path: tasks\n    scope: org\n    update: \"request['data'].a == 1\"\n", []string{"update (line 4)", `"data"`}},
		{"delete not bool", "collections:\n  - path: tasks\n    scope: org\n    delete: \"1\"\n", []string{"delete (line 4)", "must be a bool"}},
		{"update unknown auth", "collections:\n  - path: tasks\n    scope: org\n    update: \"auth.role == 'x'\"\n", []string{"update (line 4)", `auth has no attribute "role"`}},
		{"update syntax", "collections:\n  - path: tasks\n    scope: org\n\n    update: \"doc.a ==\"\n", []string{"update (line 5)", "Syntax error"}},
		{"create bad path var", "collections:\n  - path: tasks\n    scope: org\n    create: \"path.p == 'x'\"\n", []string{"create (line 4)", "no template variables"}},
		{"null delete", "collections:\n  - path: tasks\n    scope: org\n    delete:\n", []string{"line 4", "delete must be a scalar"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tt.src))
			if err == nil {
				t.Fatalf("accepted, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
	if n := mustPolicy(t, seedPolicy).WriteRuleCount(); n != 9 {
		t.Fatalf("WriteRuleCount = %d, want 9", n)
	}
}

func TestWriteDecide(t *testing.T) {
	p := mustPolicy(t, seedPolicy)
	member := &Principal{UserID: "u1", OrgID: "org_a", OrgRole: "org:member"}
	writer := &Principal{UserID: "u1", OrgID: "org_a", OrgRole: "org:member", OrgPermissions: []string{"org:invoices:write"}}
	admin := &Principal{UserID: "u2", OrgID: "org_a", OrgRole: "org:admin"}
	noOrg := &Principal{UserID: "u3"}
	own := map[string]any{"org_id": "org_a", "title": "x"}
	other := map[string]any{"org_id": "org_b", "title": "x"}
	tests := []struct {
		name   string
		pr     *Principal
		path   string
		in     WriteInput
		want   string // "" allow, else the deny code
		msgHas string
	}{
		{"create own org", member, "tasks/t1", WriteInput{Op: WriteCreate, New: own}, "", ""},
		{"create other org", member, "tasks/t1", WriteInput{Op: WriteCreate, New: other}, DenyForbidden, "org_id must be your own"},
		{"create over another org's doc", member, "tasks/t1", WriteInput{Op: WriteCreate, Stored: other, New: own}, DenyForbidden, "not allowed"},
		{"update own", member, "tasks/t1", WriteInput{Op: WriteUpdate, Stored: own, New: own}, "", ""},
		{"update moves to other org", member, "tasks/t1", WriteInput{Op: WriteUpdate, Stored: own, New: other}, DenyForbidden, "may not change org_id"},
		{"update other org's doc", member, "tasks/t1", WriteInput{Op: WriteUpdate, Stored: other, New: own}, DenyForbidden, "not allowed"},
		{"update missing doc", member, "tasks/t1", WriteInput{Op: WriteUpdate, New: own}, DenyForbidden, "not allowed"},
		{"delete own", member, "tasks/t1", WriteInput{Op: WriteDelete, Stored: own}, "", ""},
		{"delete other org's doc", member, "tasks/t1", WriteInput{Op: WriteDelete, Stored: other}, DenyForbidden, "not allowed"},
		{"delete missing doc", member, "tasks/t1", WriteInput{Op: WriteDelete}, DenyForbidden, "not allowed"},
		{"no rule", member, "secrets/s1", WriteInput{Op: WriteCreate, New: own}, DenyForbidden, "not allowed"},
		{"no org", noOrg, "tasks/t1", WriteInput{Op: WriteCreate, New: own}, DenyForbidden, "no active organization"},
		{"bad path", member, "tasks", WriteInput{Op: WriteCreate, New: own}, DenyBadRequest, "document path"},
		{"permission gate denies", member, "invoices/i1", WriteInput{Op: WriteCreate, New: own}, DenyForbidden, "not allowed"},
		{"permission gate allows", writer, "invoices/i1", WriteInput{Op: WriteCreate, New: own}, "", ""},
		{"role gate denies member delete", member, "invoices/i1", WriteInput{Op: WriteDelete, Stored: own}, DenyForbidden, "not allowed"},
		{"role gate allows admin delete", admin, "invoices/i1", WriteInput{Op: WriteDelete, Stored: own}, "", ""},
		{"request.fields", admin, "invoices/i1", WriteInput{Op: WriteUpdate, Stored: own, New: map[string]any{"org_id": "org_a", "amount": int64(1), "number": "x"}, Fields: []string{"number"}}, DenyForbidden, "not allowed"},
		{"request.doc", admin, "invoices/i1", WriteInput{Op: WriteUpdate, Stored: own, New: map[string]any{"org_id": "org_a", "amount": int64(5)}, Fields: []string{"amount"}}, "", ""},
		{"request.doc negative", admin, "invoices/i1", WriteInput{Op: WriteUpdate, Stored: own, New: map[string]any{"org_id": "org_a", "amount": int64(-5)}, Fields: []string{"amount"}}, DenyForbidden, ""},
		{"update expression error denies", admin, "invoices/i1", WriteInput{Op: WriteUpdate, Stored: own, New: own}, DenyForbidden, ""},
		{"absent delete denies", member, "notes/n1", WriteInput{Op: WriteDelete, Stored: map[string]any{"owner_id": "u1"}}, DenyForbidden, ""},
		{"user scope create with doc_id", member, "notes/n1", WriteInput{Op: WriteCreate, New: map[string]any{"owner_id": "u1", "title": "t"}}, "", ""},
		{"user scope create bad doc_id", member, "notes/x1", WriteInput{Op: WriteCreate, New: map[string]any{"owner_id": "u1", "title": "t"}}, DenyForbidden, ""},
		{"user scope create other user", member, "notes/n1", WriteInput{Op: WriteCreate, New: map[string]any{"owner_id": "u2", "title": "t"}}, DenyForbidden, "owner_id must be your own user id"},
		{"update reads stored doc", member, "notes/n1", WriteInput{Op: WriteUpdate, Stored: map[string]any{"owner_id": "u1", "locked": true}, New: map[string]any{"owner_id": "u1"}}, DenyForbidden, ""},
		{"dotted scope field and path var", member, "projects/p1/items/i1", WriteInput{Op: WriteCreate, New: map[string]any{"meta": map[string]any{"org": "org_a"}}}, "", ""},
		{"path var denies", member, "projects/p2/items/i1", WriteInput{Op: WriteCreate, New: map[string]any{"meta": map[string]any{"org": "org_a"}}}, DenyForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			tg, err := p.WriteTarget(tt.pr, tt.path)
			if err == nil {
				err = tg.Decide(tt.in)
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("denied: %v", err)
				}
				return
			}
			var de *DenyError
			if !errors.As(err, &de) || de.Code != tt.want || !strings.Contains(de.Msg, tt.msgHas) {
				t.Fatalf("got %v, want %s containing %q", err, tt.want, tt.msgHas)
			}
		})
	}
}

// A missing document and another org's document get the very same answer.
func TestWriteDecideNoDisclosure(t *testing.T) {
	p := mustPolicy(t, seedPolicy)
	pr := &Principal{UserID: "u1", OrgID: "org_a"}
	tg, err := p.WriteTarget(pr, "tasks/t1")
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{WriteUpdate, WriteDelete} {
		missing := tg.Decide(WriteInput{Op: op, New: map[string]any{"org_id": "org_a"}})
		foreign := tg.Decide(WriteInput{Op: op, Stored: map[string]any{"org_id": "org_b"}, New: map[string]any{"org_id": "org_a"}})
		if missing == nil || foreign == nil || missing.Error() != foreign.Error() {
			t.Fatalf("%s: missing %v, foreign %v", op, missing, foreign)
		}
	}
}

func TestStamp(t *testing.T) {
	p := mustPolicy(t, seedPolicy)
	pr := &Principal{UserID: "u1", OrgID: "org_a"}
	tg, _ := p.WriteTarget(pr, "projects/p1/items/i1")
	d := map[string]any{"x": int64(1)}
	if !tg.Stamp(d) || d["meta"].(map[string]any)["org"] != "org_a" {
		t.Fatalf("dotted stamp: %v", d)
	}
	d = map[string]any{"meta": map[string]any{"org": "org_b"}}
	if tg.Stamp(d) || d["meta"].(map[string]any)["org"] != "org_b" {
		t.Fatal("a present scope value must be left for Decide")
	}
	tg, _ = p.WriteTarget(pr, "tasks/t1")
	d = map[string]any{}
	if !tg.Stamp(d) || d["org_id"] != "org_a" {
		t.Fatal(d)
	}
}

func TestChangedFields(t *testing.T) {
	got := ChangedFields(map[string]any{"a": int64(1), "b": "x", "gone": true}, map[string]any{"a": int64(1), "b": "y", "new field": 1})
	want := []string{"`new field`", "b", "gone"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := ChangedFields(nil, nil); got == nil || len(got) != 0 {
		t.Fatalf("empty: %#v", got)
	}
}

func TestExplainWrite(t *testing.T) {
	p := mustPolicy(t, seedPolicy)
	member := map[string]any{"sub": "u1", "org_id": "org_a", "org_role": "org:member"}
	admin := map[string]any{"sub": "u2", "org_id": "org_a", "org_role": "org:admin"}
	own := map[string]any{"org_id": "org_a", "amount": 3}
	tests := []struct {
		name     string
		claims   map[string]any
		op, path string
		old, new map[string]any
		decision string
		reason   string
		stamped  bool
	}{
		{"create stamped", member, WriteCreate, "tasks", nil, map[string]any{"title": "x"}, "allow", "stamps org_id", true},
		{"create other org", member, WriteCreate, "tasks/t1", nil, map[string]any{"org_id": "org_b"}, "deny", `not the caller's "org_a"`, false},
		{"update moving org", member, WriteUpdate, "tasks/t1", own, map[string]any{"org_id": "org_b"}, "deny", "may not change org_id", false},
		{"delete other org", member, WriteDelete, "tasks/t1", map[string]any{"org_id": "org_b"}, nil, "deny", `stored document's org_id is "org_b"`, false},
		{"member delete invoice", member, WriteDelete, "invoices/i1", own, nil, "deny", "delete is false", false},
		{"admin delete invoice", admin, WriteDelete, "invoices/i1", own, nil, "allow", "delete is true", false},
		{"no rule", member, WriteCreate, "secrets/s1", nil, map[string]any{}, "deny", "no rule matches", false},
		{"absent rule", member, WriteDelete, "notes/n1", map[string]any{"owner_id": "u1"}, nil, "deny", "no delete expression", false},
		{"bad op", member, "upsert", "tasks/t1", nil, nil, "deny", "unknown op", false},
		{"create over existing", member, WriteCreate, "tasks/t1", own, map[string]any{"org_id": "org_a"}, "allow", "already_exists", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := p.ExplainWrite(tt.claims, tt.op, tt.path, tt.old, tt.new)
			if ex.Decision != tt.decision || !strings.Contains(ex.Reason, tt.reason) || ex.Stamped != tt.stamped {
				t.Fatalf("%+v", ex)
			}
		})
	}
}
