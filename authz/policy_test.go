package authz

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/firegate/firegate/wire"
)

const polExamplePath = "testdata/policy/example.yaml"

func polLoad(t testing.TB) *Policy {
	t.Helper()
	p, err := LoadPolicyFile(polExamplePath)
	if err != nil {
		t.Fatalf("LoadPolicyFile: %v", err)
	}
	return p
}

func polMustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy([]byte(src))
	if err != nil {
		t.Fatalf("ParsePolicy: %v\n%s", err, src)
	}
	return p
}

// polMember and friends build principals through PrincipalFromClaims, in
// both token formats.
func polV1(user, org, role string, perms ...string) *Principal {
	c := map[string]any{"sub": user, "sid": "sess_" + user}
	if org != "" {
		c["org_id"] = org
		c["org_slug"] = org + "-slug"
		c["org_role"] = role
		ps := make([]any, len(perms))
		for i, p := range perms {
			ps[i] = p
		}
		c["org_permissions"] = ps
	}
	return PrincipalFromClaims(c)
}

func polV2(user, org, rol, fea, per, fpm string) *Principal {
	c := map[string]any{"sub": user, "sid": "sess_" + user, "v": float64(2), "fea": fea}
	if org != "" {
		c["o"] = map[string]any{"id": org, "slg": org + "-slug", "rol": rol, "per": per, "fpm": fpm}
	}
	return PrincipalFromClaims(c)
}

func polWithClaims(pr *Principal, extra map[string]any) *Principal {
	cp := *pr
	cp.Claims = map[string]any{}
	for k, v := range pr.Claims {
		cp.Claims[k] = v
	}
	for k, v := range extra {
		cp.Claims[k] = v
	}
	return &cp
}

func TestLoadPolicyFile(t *testing.T) {
	p := polLoad(t)
	want := []string{"tasks", "invoices", "notes", "projects/{project}/tasks", "reports", "announcements"}
	if got := p.Collections(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Collections() = %v, want %v", got, want)
	}
	_, err := LoadPolicyFile(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "failed to read policy") {
		t.Fatalf("missing file: err = %v", err)
	}
}

func TestLoadPolicyFileError(t *testing.T) {
	_, err := LoadPolicyFile("testdata/policy/bad_filter.yaml")
	if err == nil {
		t.Fatal("bad_filter.yaml loaded")
	}
	for _, want := range []string{"testdata/policy/bad_filter.yaml", "collections[1]", `"projects/{project}/tasks"`, "filter (line 9)", `auth has no attribute "orgrole"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestParsePolicyErrors(t *testing.T) {
	long := strings.Repeat("a", MaxPathBytes+1)
	tests := []struct {
		name string
		src  string
		want []string // substrings of the error
	}{
		{"empty", "", []string{"empty"}},
		{"comment only", "# nothing\n", []string{"empty"}},
		{"not a mapping", "- a\n- b\n", []string{"line 1", "mapping"}},
		{"unknown top key", "collections: []\nextra: 1\n", []string{"line 2", `unknown key "extra"`}},
		{"missing collections", "foo: 1\n", []string{`unknown key "foo"`}},
		{"collections null", "collections:\n", []string{"line 1", "empty"}},
		{"collections not list", "collections: {a: 1}\n", []string{"line 1", "must be a list"}},
		{"yaml syntax", "collections: [\n", []string{"yaml"}},
		{"entry not mapping", "collections:\n  - tasks\n", []string{"collections[0]", "line 2", "mapping"}},
		{"unknown rule key", "collections:\n  - path: tasks\n    scope: org\n    filtre: 'true'\n", []string{"collections[0]", "line 4", `unknown key "filtre"`}},
		{"duplicate rule key", "collections:\n  - path: tasks\n    scope: org\n    scope: user\n", []string{"collections[0]", "line 4", `duplicate key "scope"`}},
		{"missing path", "collections:\n  - scope: org\n", []string{"collections[0]", "line 2", "missing path"}},
		{"missing scope", "collections:\n  - path: tasks\n", []string{"collections[0]", `"tasks"`, "missing scope"}},
		{"bad scope", "collections:\n  - path: tasks\n    scope: team\n", []string{"collections[0]", `"tasks"`, "line 3", `scope must be org or user, not "team"`}},
		{"null allow", "collections:\n  - path: tasks\n    scope: org\n    allow:\n", []string{"collections[0]", "line 4", "allow must be a scalar"}},
		{"list filter", "collections:\n  - path: tasks\n    scope: org\n    filter: [a]\n", []string{"line 4", "filter must be a scalar"}},
		{"bad scope_field", "collections:\n  - path: tasks\n    scope: org\n    scope_field: 'org id'\n", []string{"line 4", "scope_field"}},
		{"reserved scope_field", "collections:\n  - path: tasks\n    scope: org\n    scope_field: __name__\n", []string{"line 4", "scope_field"}},
		{"negative max_limit", "collections:\n  - path: tasks\n    scope: org\n    max_limit: -1\n", []string{"line 4", "max_limit"}},
		{"string max_limit", "collections:\n  - path: tasks\n    scope: org\n    max_limit: lots\n", []string{"line 4", "max_limit"}},
		{"quoted max_limit", "collections:\n  - path: tasks\n    scope: org\n    max_limit: '5'\n", []string{"line 4", "max_limit"}},
		{"even path", "collections:\n  - path: tasks/t1\n    scope: org\n", []string{"collections[0]", `"tasks/t1"`, "odd number"}},
		{"empty segment", "collections:\n  - path: a//b\n    scope: org\n", []string{"empty segment"}},
		{"leading slash", "collections:\n  - path: /tasks\n    scope: org\n", []string{"odd number"}},
		{"dot segment", "collections:\n  - path: a/../b\n    scope: org\n", []string{". or .."}},
		{"reserved id", "collections:\n  - path: __tasks__\n    scope: org\n", []string{"reserved"}},
		{"wildcard", "collections:\n  - path: '*'\n    scope: org\n", []string{"*"}},
		{"bad var", "collections:\n  - path: p/{1x}/t\n    scope: org\n", []string{"template variable"}},
		{"partial var", "collections:\n  - path: p/x{a}/t\n    scope: org\n", []string{"segment 2"}},
		{"duplicate var", "collections:\n  - path: p/{a}/t/{a}/u\n    scope: org\n", []string{"appears twice"}},
		{"too long", "collections:\n  - path: " + long + "\n    scope: org\n", []string{"longer than 1500"}},
		{"duplicate path", "collections:\n  - path: tasks\n    scope: org\n  - path: tasks\n    scope: user\n", []string{"collections[1]", "line 4", "duplicate of collections[0]"}},
		{"ambiguous path", "collections:\n  - path: projects/{p}/tasks\n    scope: org\n  - path: projects/p1/tasks\n    scope: org\n", []string{"collections[1]", `"projects/p1/tasks"`, "ambiguous", "collections[0]"}},
		{"ambiguous vars", "collections:\n  - path: '{c}'\n    scope: org\n  - path: tasks\n    scope: org\n", []string{"collections[1]", "ambiguous"}},
		{"cel syntax", "collections:\n  - path: tasks\n    scope: org\n  - path: notes\n    scope: user\n    filter: \"doc.a ==\"\n", []string{"collections[1]", `"notes"`, "filter (line 6)", "Syntax error"}},
		{"cel undeclared", "collections:\n  - path: tasks\n    scope: org\n    allow: \"user.id == 'x'\"\n", []string{"collections[0]", "allow (line 4)", "undeclared reference to 'user'"}},
		{"allow reads doc", "collections:\n  - path: tasks\n    scope: org\n    allow: \"doc.public == true\"\n", []string{"allow (line 4)", "allow may read only auth and path"}},
		{"allow reads doc_id", "collections:\n  - path: tasks\n    scope: org\n    allow: \"doc_id == 'x'\"\n", []string{"allow (line 4)", "doc_id", "allow may read only auth and path"}},
		{"allow reads doc_path", "collections:\n  - path: tasks\n    scope: org\n    allow: \"doc_path != ''\"\n", []string{"allow (line 4)", "doc_path", "allow may read only auth and path"}},
		{"allow not bool", "collections:\n  - path: tasks\n    scope: org\n    allow: \"'yes'\"\n", []string{"allow (line 4)", "must be a bool, not string"}},
		{"filter not bool", "collections:\n  - path: tasks\n    scope: org\n    filter: \"size(doc_id)\"\n", []string{"filter (line 4)", "must be a bool, not int"}},
		{"filter empty", "collections:\n  - path: tasks\n    scope: org\n    filter: ''\n", []string{"filter (line 4)", "empty expression"}},
		{"unknown auth attr", "collections:\n  - path: tasks\n    scope: org\n    filter: \"auth.org_rol == 'org:admin'\"\n", []string{"filter (line 4)", `auth has no attribute "org_rol"`}},
		{"unknown auth attr index", "collections:\n  - path: tasks\n    scope: org\n    allow: \"auth['orgid'] == 'x'\"\n", []string{"allow (line 4)", `"orgid"`}},
		{"path var without template", "collections:\n  - path: tasks\n    scope: org\n    filter: \"path.project == 'x'\"\n", []string{"filter (line 4)", "no template variables"}},
		{"unknown path var", "collections:\n  - path: projects/{project}/tasks\n    scope: org\n    allow: \"path.proj == 'x'\"\n", []string{"allow (line 4)", `path has no variable "proj"`}},
		{"block scalar line", "collections:\n  - path: tasks\n    scope: org\n    filter: >\n      doc.a == 1 &&\n      nope\n", []string{"filter (line 4)", "undeclared reference to 'nope'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tt.src))
			if err == nil {
				t.Fatalf("ParsePolicy succeeded (%v), want error containing %q", p.Collections(), tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestDocumentHintOnlyForDocumentReads checks that the "documents are
// for filter" and "create may not read doc" hints name the cause only when
// the expression really reads the variable, not when the error is about
// another name that merely starts with doc, or doc is a comprehension's
// own variable.
func TestDocumentHintOnlyForDocumentReads(t *testing.T) {
	const allowHint, createHint = "allow may read only auth and path", "create may not read doc"
	tests := []struct {
		name, key, expr string
		want            string // in the error
		hint            string // allowHint or createHint
		wantHint        bool
	}{
		{"allow reads doc", "allow", "doc.public == true", "undeclared reference to 'doc'", allowHint, true},
		{"allow reads doc in a macro", "allow", "has(doc.public)", "undeclared reference to 'doc'", allowHint, true},
		{"allow reads documents", "allow", "documents == 1", "undeclared reference to 'documents'", allowHint, false},
		{"allow binds doc", "allow", "[1].exists(doc, doc == 1) && nope", "undeclared reference to 'nope'", allowHint, false},
		{"create reads doc", "create", "doc.a == 1", "undeclared reference to 'doc'", createHint, true},
		{"create reads doc beside a binding", "create", "[1].exists(doc, doc == 1) && doc.a == 1", "undeclared reference to 'doc'", createHint, true},
		{"create binds doc", "create", "[1].exists(doc, doc == 1) && nope", "undeclared reference to 'nope'", createHint, false},
		{"create reads docs", "create", "docs.a == 1", "undeclared reference to 'docs'", createHint, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fmt.Sprintf("collections:\n  - path: tasks\n    scope: org\n    %s: %q\n", tt.key, tt.expr)
			_, err := ParsePolicy([]byte(src))
			if err == nil {
				t.Fatalf("accepted %s: %s", tt.key, tt.expr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if got := strings.Contains(err.Error(), tt.hint); got != tt.wantHint {
				t.Errorf("error %q: hint %q present = %v, want %v", err, tt.hint, got, tt.wantHint)
			}
		})
	}
}

func TestReadsVar(t *testing.T) {
	e, err := envs()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{varDoc, varDocID, varDocPath}
	tests := []struct {
		expr string
		want bool
	}{
		{"doc.public == true", true},
		{"doc_id == 'x'", true},
		{"doc_path.startsWith('x')", true},
		{"has(doc.a)", true},
		{"[doc][0] == 1", true},
		{"{'k': doc}.k == 1", true},
		{"{doc_id: 1}.size() == 1", true},
		{"[1].exists(doc, doc > 1) && doc.a", true},
		{"[1].map(x, x).exists(y, y == doc_path)", true},
		{"[doc].exists(doc, doc == 1)", true}, // the range is outside the binding
		{"[1, 2].exists(doc, doc > 1)", false},
		{"[1].all(x, [x].exists(doc, doc == x))", false},
		{"documents == 1", false},
		{"auth.org_id == 'x' && path.p == 'y'", false},
		{"{'doc': 1}.doc == 1", false},
		{"doc.a ==", false}, // does not parse
	}
	for _, tt := range tests {
		if got := readsVar(e.allow, tt.expr, names...); got != tt.want {
			t.Errorf("readsVar(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}

func TestParsePolicyAccepts(t *testing.T) {
	tests := []struct {
		name string
		src  string
	}{
		{"empty list", "collections: []\n"},
		{"bool allow", "collections:\n  - path: tasks\n    scope: org\n    allow: true\n"},
		{"dyn filter", "collections:\n  - path: tasks\n    scope: org\n    filter: doc.published\n"},
		{"same shape different literal", "collections:\n  - path: a/{x}/b\n    scope: org\n  - path: a/{x}/c\n    scope: org\n"},
		{"var at collection position", "collections:\n  - path: orgs/{org}/{kind}\n    scope: org\n    filter: path.kind != 'secret'\n"},
		{"max path", "collections:\n  - path: " + strings.Repeat("a", MaxPathBytes) + "\n    scope: org\n"},
		{"anchors", "collections:\n  - path: a\n    scope: &s org\n  - path: b\n    scope: *s\n"},
		{"escaped idents in index", "collections:\n  - path: tasks\n    scope: org\n    filter: \"auth['claims']['a.b'] == 1\"\n"},
		{"comprehension shadows auth", "collections:\n  - path: tasks\n    scope: org\n    filter: \"doc.tags.exists(auth, auth == 'x')\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			polMustParse(t, tt.src)
		})
	}
}

func TestDecide(t *testing.T) {
	p := polLoad(t)
	member := polV1("user_m", "org_1", "org:member")
	admin := polV1("user_a", "org_1", "org:admin")
	noOrg := polV1("user_n", "", "")
	// v2: features "o:invoices" with per "read,write" and fpm 1 -> org:invoices:read.
	v2reader := polV2("user_r", "org_2", "member", "o:invoices", "read,write", "1")
	v2writer := polV2("user_w", "org_2", "member", "o:invoices", "read,write", "2")
	pro := polWithClaims(member, map[string]any{"public_metadata": map[string]any{"plan": "pro"}})
	free := polWithClaims(member, map[string]any{"public_metadata": map[string]any{"plan": "free"}})

	type want struct {
		code       string // "" = allowed
		msg        string // substring of the DenyError message
		rule       string
		scopeField string
		scopeValue string
		maxLimit   int
		filter     bool // Filter non-nil
	}
	tests := []struct {
		name  string
		pr    *Principal
		coll  string
		where []wire.Filter
		want  want
	}{
		{"member tasks", member, "tasks", nil, want{rule: "tasks", scopeField: "org_id", scopeValue: "org_1", maxLimit: 500, filter: true}},
		{"v2 member tasks", v2reader, "tasks", nil, want{rule: "tasks", scopeField: "org_id", scopeValue: "org_2", maxLimit: 500, filter: true}},
		{"no org tasks", noOrg, "tasks", nil, want{code: DenyForbidden, msg: "no active organization"}},
		{"no org unknown", noOrg, "secrets", nil, want{code: DenyForbidden, msg: "no active organization"}},
		{"no org user scope", noOrg, "notes", nil, want{rule: "notes", scopeField: "owner_id", scopeValue: "user_n", maxLimit: DefaultMaxLimit}},
		{"unknown collection", member, "secrets", nil, want{code: DenyForbidden, msg: msgNotAllowed}},
		{"unknown nested", member, "projects/p1/secrets", nil, want{code: DenyForbidden, msg: msgNotAllowed}},
		{"allow false v1", member, "invoices", nil, want{code: DenyForbidden, msg: msgNotAllowed}},
		{"allow true v1 permission", polV1("u", "org_1", "org:member", "org:invoices:read"), "invoices", nil, want{rule: "invoices", scopeField: "org_id", scopeValue: "org_1", maxLimit: DefaultMaxLimit}},
		{"allow true v2 permission", v2reader, "invoices", nil, want{rule: "invoices", scopeField: "org_id", scopeValue: "org_2", maxLimit: DefaultMaxLimit}},
		{"allow false v2 other bit", v2writer, "invoices", nil, want{code: DenyForbidden, msg: msgNotAllowed}},
		{"custom claim pro", pro, "reports", nil, want{rule: "reports", scopeField: "org_id", scopeValue: "org_1", maxLimit: DefaultMaxLimit, filter: false}},
		{"custom claim free", free, "reports", nil, want{code: DenyForbidden, msg: msgNotAllowed}},
		{"custom claim missing errors", member, "reports", nil, want{code: DenyForbidden, msg: msgNotAllowed}},
		{"templated", member, "projects/p1/tasks", nil, want{rule: "projects/{project}/tasks", scopeField: "org_id", scopeValue: "org_1", maxLimit: DefaultMaxLimit, filter: true}},
		{"scope filter own", member, "tasks", []wire.Filter{{Field: "org_id", Op: "==", Value: "org_1"}}, want{rule: "tasks", scopeField: "org_id", scopeValue: "org_1", maxLimit: 500, filter: true}},
		{"scope filter own backquoted", member, "tasks", []wire.Filter{{Field: "`org_id`", Op: "==", Value: "org_1"}}, want{rule: "tasks", scopeField: "org_id", scopeValue: "org_1", maxLimit: 500, filter: true}},
		{"scope filter other org", member, "tasks", []wire.Filter{{Field: "org_id", Op: "==", Value: "org_2"}}, want{code: DenyForbidden, msg: "org_id"}},
		{"scope filter other org backquoted", member, "tasks", []wire.Filter{{Field: "`org_id`", Op: "==", Value: "org_2"}}, want{code: DenyForbidden, msg: "org_id"}},
		{"scope filter in", member, "tasks", []wire.Filter{{Field: "org_id", Op: "in", Value: []any{"org_1"}}}, want{code: DenyForbidden, msg: "may only be =="}},
		{"scope filter !=", member, "tasks", []wire.Filter{{Field: "org_id", Op: "!=", Value: "org_2"}}, want{code: DenyForbidden, msg: "may only be =="}},
		{"scope filter >=", member, "tasks", []wire.Filter{{Field: "org_id", Op: ">=", Value: ""}}, want{code: DenyForbidden}},
		{"scope filter non-string", member, "tasks", []wire.Filter{{Field: "org_id", Op: "==", Value: int64(1)}}, want{code: DenyForbidden}},
		{"scope filter null", member, "tasks", []wire.Filter{{Field: "org_id", Op: "==", Value: nil}}, want{code: DenyForbidden}},
		{"other filters fine", member, "tasks", []wire.Filter{{Field: "status", Op: "in", Value: []any{"a"}}, {Field: "org_id.x", Op: "!=", Value: "y"}}, want{rule: "tasks", scopeField: "org_id", scopeValue: "org_1", maxLimit: 500, filter: true}},
		{"user scope custom field own", member, "notes", []wire.Filter{{Field: "owner_id", Op: "==", Value: "user_m"}}, want{rule: "notes", scopeField: "owner_id", scopeValue: "user_m", maxLimit: DefaultMaxLimit}},
		{"user scope custom field other", member, "notes", []wire.Filter{{Field: "owner_id", Op: "==", Value: "user_a"}}, want{code: DenyForbidden, msg: "user id"}},
		{"user scope org_id filter is fine", member, "notes", []wire.Filter{{Field: "org_id", Op: "==", Value: "org_9"}}, want{rule: "notes", scopeField: "owner_id", scopeValue: "user_m", maxLimit: DefaultMaxLimit}},
		{"bad field path", member, "tasks", []wire.Filter{{Field: "a..b", Op: "==", Value: "x"}}, want{code: DenyBadRequest, msg: "where[0]"}},
		{"admin tasks", admin, "tasks", nil, want{rule: "tasks", scopeField: "org_id", scopeValue: "org_1", maxLimit: 500, filter: false}},
		{"nil principal", nil, "tasks", nil, want{code: DenyForbidden}},
		{"empty path", member, "", nil, want{code: DenyBadRequest}},
		{"leading slash", member, "/tasks", nil, want{code: DenyBadRequest, msg: "start or end"}},
		{"trailing slash", member, "tasks/", nil, want{code: DenyBadRequest, msg: "start or end"}},
		{"document path", member, "tasks/t1", nil, want{code: DenyBadRequest, msg: "odd number"}},
		{"empty segment", member, "projects//tasks", nil, want{code: DenyBadRequest, msg: "segment 2"}},
		{"empty segment even", member, "projects//x/tasks", nil, want{code: DenyBadRequest, msg: "odd number"}},
		{"empty segment odd", member, "projects//x/y/tasks", nil, want{code: DenyBadRequest, msg: "segment 2"}},
		{"dot", member, "projects/./tasks", nil, want{code: DenyBadRequest, msg: ". or .."}},
		{"dotdot", member, "projects/../tasks", nil, want{code: DenyBadRequest, msg: ". or .."}},
		{"reserved id", member, "projects/__p__/tasks", nil, want{code: DenyBadRequest, msg: "reserved"}},
		{"reserved short is fine", member, "projects/__/tasks", nil, want{rule: "projects/{project}/tasks", scopeField: "org_id", scopeValue: "org_1", maxLimit: DefaultMaxLimit, filter: true}},
		{"collection group star", member, "**/tasks", nil, want{code: DenyBadRequest}},
		{"collection group braces", member, "projects/{project}/tasks", nil, want{code: DenyBadRequest}},
		{"control char", member, "projects/p\x01/tasks", nil, want{code: DenyBadRequest}},
		{"invalid utf8", member, "projects/p\xff/tasks", nil, want{code: DenyBadRequest, msg: "UTF-8"}},
		{"too long", member, "projects/" + strings.Repeat("p", MaxPathBytes) + "/tasks", nil, want{code: DenyBadRequest, msg: "1500"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := p.Decide(tt.pr, tt.coll, tt.where)
			if tt.want.code != "" {
				var de *DenyError
				if !errors.As(err, &de) {
					t.Fatalf("Decide = %+v, %v; want *DenyError %s", d, err, tt.want.code)
				}
				if de.Code != tt.want.code || !strings.Contains(de.Msg, tt.want.msg) {
					t.Fatalf("DenyError = %s: %q; want %s containing %q", de.Code, de.Msg, tt.want.code, tt.want.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.Collection != tt.coll || d.Rule != tt.want.rule || d.ScopeField != tt.want.scopeField ||
				d.ScopeValue != tt.want.scopeValue || d.MaxLimit != tt.want.maxLimit || (d.Filter != nil) != tt.want.filter {
				t.Fatalf("Decision = %+v (filter %v), want %+v", d, d.Filter != nil, tt.want)
			}
		})
	}
}

// TestDecideNoDisclosure checks that an unknown collection and one the
// caller may not read are refused identically.
func TestDecideNoDisclosure(t *testing.T) {
	p := polLoad(t)
	member := polV1("user_m", "org_1", "org:member")
	_, errUnknown := p.Decide(member, "payroll", nil)
	_, errDenied := p.Decide(member, "invoices", nil)
	if errUnknown == nil || errDenied == nil || errUnknown.Error() != errDenied.Error() {
		t.Fatalf("unknown: %v; denied: %v; want the same refusal", errUnknown, errDenied)
	}
	noOrg := polV1("user_n", "", "")
	_, errUnknown = p.Decide(noOrg, "payroll", nil)
	_, errOrg := p.Decide(noOrg, "tasks", nil)
	if errUnknown == nil || errOrg == nil || errUnknown.Error() != errOrg.Error() {
		t.Fatalf("org-less unknown: %v; org-scoped: %v; want the same refusal", errUnknown, errOrg)
	}
}

func TestDecideMaxPath(t *testing.T) {
	p := polMustParse(t, "collections:\n  - path: scratch/{d}/items\n    scope: user\n")
	pr := polV1("user_1", "", "")
	id := strings.Repeat("x", MaxPathBytes-len("scratch//items"))
	if _, err := p.Decide(pr, "scratch/"+id+"/items", nil); err != nil {
		t.Fatalf("path of exactly %d bytes: %v", MaxPathBytes, err)
	}
	_, err := p.Decide(pr, "scratch/"+id+"x/items", nil)
	var de *DenyError
	if !errors.As(err, &de) || de.Code != DenyBadRequest {
		t.Fatalf("path of %d bytes: %v, want bad_request", MaxPathBytes+1, err)
	}
}

func TestDecideUserScopeNeedsUser(t *testing.T) {
	p := polMustParse(t, "collections:\n  - path: notes\n    scope: user\n")
	_, err := p.Decide(&Principal{OrgID: "org_1"}, "notes", nil)
	var de *DenyError
	if !errors.As(err, &de) || de.Code != DenyForbidden {
		t.Fatalf("user scope without user id: %v, want forbidden", err)
	}
}

func TestDecideAllowReadsPath(t *testing.T) {
	p := polMustParse(t, `collections:
  - path: projects/{project}/tasks
    scope: org
    allow: "path.project in auth.claims.projects"
`)
	pr := polWithClaims(polV1("u", "org_1", "org:member"), map[string]any{"projects": []any{"p1", "p2"}})
	for coll, ok := range map[string]bool{"projects/p1/tasks": true, "projects/p2/tasks": true, "projects/p3/tasks": false} {
		_, err := p.Decide(pr, coll, nil)
		if (err == nil) != ok {
			t.Errorf("%s: err = %v, want allowed=%v", coll, err, ok)
		}
	}
}

// TestFilterTransitions checks the per-document filter for members and
// admins as a document changes, including missing fields (an error denies,
// unless the other side of || already decides).
func TestFilterTransitions(t *testing.T) {
	p := polLoad(t)
	member := polV1("user_m", "org_1", "org:member")
	admin := polV1("user_a", "org_1", "org:admin")
	dm, err := p.Decide(member, "tasks", nil)
	if err != nil {
		t.Fatal(err)
	}
	da, err := p.Decide(admin, "tasks", nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		data          map[string]any
		member, admin bool
	}{
		{map[string]any{"visibility": "public"}, true, true},
		{map[string]any{"visibility": "private"}, false, true},
		{map[string]any{"visibility": "team"}, true, true},
		{map[string]any{"title": "no visibility"}, false, true},
		{nil, false, true},
		{map[string]any{"visibility": int64(3)}, true, true},
		{map[string]any{"visibility": nil}, true, true},
		{map[string]any{"visibility": "private", "x": []any{1.5, "a"}}, false, true},
	}
	for i, s := range steps {
		if got := dm.Filter("t1", "tasks/t1", s.data); got != s.member {
			t.Errorf("step %d member: Filter(%v) = %v, want %v", i, s.data, got, s.member)
		}
		if got := da.Filter == nil || da.Filter("t1", "tasks/t1", s.data); got != s.admin {
			t.Errorf("step %d admin: Filter(%v) = %v, want %v", i, s.data, got, s.admin)
		}
	}

	// doc_id and path variables.
	dp, err := p.Decide(member, "projects/p1/tasks", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   string
		data map[string]any
		want bool
	}{
		{"pub-1", map[string]any{"project": "p1"}, true},
		{"priv-1", map[string]any{"project": "p1"}, false},
		{"pub-2", map[string]any{"project": "p2"}, false},
		{"pub-3", map[string]any{}, false},
	} {
		if got := dp.Filter(c.id, "projects/p1/tasks/"+c.id, c.data); got != c.want {
			t.Errorf("projects filter(%s, %v) = %v, want %v", c.id, c.data, got, c.want)
		}
	}

	// doc_path and dyn results.
	q := polMustParse(t, `collections:
  - path: items
    scope: org
    filter: "doc_path == 'items/' + doc_id && doc.flag"
`)
	dq, err := q.Decide(member, "items", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		data map[string]any
		want bool
	}{
		{"items/a", map[string]any{"flag": true}, true},
		{"items/a", map[string]any{"flag": false}, false},
		{"items/a", map[string]any{"flag": "yes"}, false}, // not a bool: denies
		{"other/a", map[string]any{"flag": true}, false},
	} {
		if got := dq.Filter("a", c.path, c.data); got != c.want {
			t.Errorf("items filter(%s, %v) = %v, want %v", c.path, c.data, got, c.want)
		}
	}
}

// TestFilterNumbers checks that int64 document values (Firestore integers)
// and float64 claims (JSON) compare as numbers.
func TestFilterNumbers(t *testing.T) {
	p := polMustParse(t, `collections:
  - path: items
    scope: org
    filter: "doc.level <= auth.claims.level && doc.score > 1"
`)
	pr := polWithClaims(polV1("u", "org_1", "org:member"), map[string]any{"level": float64(3)})
	d, err := p.Decide(pr, "items", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		data map[string]any
		want bool
	}{
		{map[string]any{"level": int64(3), "score": 1.5}, true},
		{map[string]any{"level": int64(4), "score": int64(2)}, false},
		{map[string]any{"level": 2.5, "score": int64(2)}, true},
		{map[string]any{"level": "3", "score": int64(2)}, false},
	} {
		if got := d.Filter("a", "items/a", c.data); got != c.want {
			t.Errorf("Filter(%v) = %v, want %v", c.data, got, c.want)
		}
	}
}

// TestFilterCostLimit checks that an expensive filter is cut off (and
// denies) instead of running unbounded.
func TestFilterCostLimit(t *testing.T) {
	p := polMustParse(t, `collections:
  - path: items
    scope: org
    filter: "doc.xs.all(a, doc.xs.all(b, doc.xs.all(c, a + b + c >= 0)))"
`)
	d, err := p.Decide(polV1("u", "org_1", "org:member"), "items", nil)
	if err != nil {
		t.Fatal(err)
	}
	small := make([]any, 5)
	for i := range small {
		small[i] = int64(i)
	}
	if !d.Filter("a", "items/a", map[string]any{"xs": small}) {
		t.Fatal("small document: want true under the cost limit")
	}
	big := make([]any, 1000) // 10^9 iterations without a limit
	for i := range big {
		big[i] = int64(i)
	}
	if d.Filter("a", "items/a", map[string]any{"xs": big}) {
		t.Fatal("huge evaluation: want false (cost limit exceeded)")
	}
	ok, err := d.eval("a", "items/a", map[string]any{"xs": big})
	if ok || err == nil || !strings.Contains(err.Error(), "cost") {
		t.Fatalf("eval = %v, %v; want a cost limit error", ok, err)
	}
}

func TestFilterConcurrent(t *testing.T) {
	p := polLoad(t)
	d, err := p.Decide(polV1("user_m", "org_1", "org:member"), "tasks", nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := map[string]any{"visibility": "public"}
	priv := map[string]any{"visibility": "private"}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if !d.Filter("a", "tasks/a", pub) || d.Filter("b", "tasks/b", priv) {
					errs <- "wrong result under concurrency"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestKeyAttrsSharing: N members and M admins of one org under a filter that
// reads auth.org_role give exactly two distinct KeyAttrs; a filter reading
// only auth.org_id gives one; no filter gives "".
func TestKeyAttrsSharing(t *testing.T) {
	p := polLoad(t)
	const n, m = 7, 4
	var prs []*Principal
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			prs = append(prs, polV1(fmt.Sprintf("user_m%d", i), "org_1", "org:member"))
		} else {
			prs = append(prs, polV2(fmt.Sprintf("user_m%d", i), "org_1", "member", "", "", ""))
		}
	}
	for i := 0; i < m; i++ {
		if i%2 == 0 {
			prs = append(prs, polV1(fmt.Sprintf("user_a%d", i), "org_1", "org:admin"))
		} else {
			prs = append(prs, polV2(fmt.Sprintf("user_a%d", i), "org_1", "admin", "", "", ""))
		}
	}
	distinct := func(coll string) map[string]int {
		t.Helper()
		out := map[string]int{}
		for _, pr := range prs {
			d, err := p.Decide(pr, coll, nil)
			if err != nil {
				t.Fatalf("%s: %v", coll, err)
			}
			out[d.KeyAttrs]++
		}
		return out
	}
	tasks := distinct("tasks")
	if len(tasks) != 2 || tasks[`auth.org_role="org:member"`] != n || tasks[`auth.org_role="org:admin"`] != m {
		t.Fatalf("tasks KeyAttrs = %v, want two: %d members and %d admins", tasks, n, m)
	}
	ann := distinct("announcements")
	if len(ann) != 1 || ann[`auth.org_id="org_1"`] != n+m {
		t.Fatalf("announcements KeyAttrs = %v, want one", ann)
	}
	notes := distinct("notes")
	if len(notes) != 1 || notes[""] != n+m {
		t.Fatalf("notes KeyAttrs = %v, want only \"\"", notes)
	}
	proj := distinct("projects/p1/tasks")
	if len(proj) != 2 || proj[`auth.org_role="org:member";path.project="p1"`] != n {
		t.Fatalf("projects KeyAttrs = %v", proj)
	}
}

func TestKeyAttrsReads(t *testing.T) {
	member := polV1("user_m", "org_1", "org:member")
	member2 := polV1("user_x", "org_1", "org:member")
	rich := polWithClaims(member, map[string]any{
		"public_metadata": map[string]any{"plan": "pro", "seats": float64(3)},
		"tags":            []any{"a", "b"},
	})
	tests := []struct {
		name   string
		filter string
		pr     *Principal
		want   string
	}{
		{"doc only", "doc.a == 1", member, ""},
		{"doc id only", "doc_id != ''", member, ""},
		{"role", "auth.org_role == 'org:admin' || doc.a == 1", member, `auth.org_role="org:member"`},
		{"role twice", "auth.org_role == 'x' || auth.org_role == 'y' || doc.z == 1", member, `auth.org_role="org:member"`},
		{"role via index", "auth['org_role'] == 'x' || doc.z == 1", member, `auth.org_role="org:member"`},
		{"claim path", "auth.claims.public_metadata.plan == doc.plan", rich, `auth.claims.public_metadata.plan="pro"`},
		{"claim number", "auth.claims.public_metadata.seats > 1", rich, `auth.claims.public_metadata.seats=d3`},
		{"claim missing", "auth.claims.public_metadata.plan == doc.plan || doc.z == 1", member, `auth.claims.public_metadata.plan!1`},
		{"has at depth", "has(auth.claims.public_metadata.plan)", rich, `auth.claims.public_metadata.plan="pro"`},
		{"claim list", "doc.tag in auth.claims.tags", rich, `auth.claims.tags=["a","b"]`},
		{"variable index uses prefix", "auth.claims[doc.k] == 1", rich, ""}, // checked below: all of auth.claims
		{"macro over claims", "auth.claims.tags.exists(t, t == doc.tag)", rich, `auth.claims.tags=["a","b"]`},
		{"shadowed auth", "doc.xs.exists(auth, auth == 1)", member, ""},
		{"odd key", "auth.claims['a.b'] == 1 || doc.z == 1", member, `auth.claims["a.b"]!1`},
		{"two attrs sorted", "auth.user_id == doc.owner || auth.org_role == 'org:admin'", member, `auth.org_role="org:member";auth.user_id="user_m"`},
		{"prefix covers", "auth.claims.tags.size() > 0 && size(auth.claims) > 0", rich, ""}, // checked below: whole claims only
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := polMustParse(t, fmt.Sprintf("collections:\n  - path: items\n    scope: org\n    filter: %q\n", tt.filter))
			d, err := p.Decide(tt.pr, "items", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "prefix covers" {
				if !strings.HasPrefix(d.KeyAttrs, "auth.claims={") || strings.Contains(d.KeyAttrs, ";") {
					t.Fatalf("KeyAttrs = %q, want the whole of auth.claims only", d.KeyAttrs)
				}
				return
			}
			if tt.name == "variable index uses prefix" {
				// The canonical encoding sorts map keys.
				if !strings.HasPrefix(d.KeyAttrs, "auth.claims={") {
					t.Fatalf("KeyAttrs = %q, want all of auth.claims", d.KeyAttrs)
				}
				d2, err := p.Decide(polWithClaims(member2, rich.Claims), "items", nil)
				if err != nil {
					t.Fatal(err)
				}
				if d2.KeyAttrs != d.KeyAttrs {
					t.Fatalf("equal claims gave %q and %q", d.KeyAttrs, d2.KeyAttrs)
				}
				return
			}
			if d.KeyAttrs != tt.want {
				t.Fatalf("KeyAttrs = %q, want %q", d.KeyAttrs, tt.want)
			}
		})
	}
}

// TestKeyAttrsWholePrincipal: a filter that reads auth as a whole keys on
// every attribute, so two sessions of one user differ.
func TestKeyAttrsWholePrincipal(t *testing.T) {
	p := polMustParse(t, "collections:\n  - path: items\n    scope: org\n    filter: \"size(auth) > 0 && doc.a == 1\"\n")
	a := polV1("user_m", "org_1", "org:member")
	b := polV1("user_m", "org_1", "org:member")
	b.SessionID = "sess_other"
	da, err := p.Decide(a, "items", nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := p.Decide(b, "items", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(da.KeyAttrs, "auth={") || da.KeyAttrs == db.KeyAttrs {
		t.Fatalf("KeyAttrs %q and %q: want whole-principal keys that differ by session", da.KeyAttrs, db.KeyAttrs)
	}
}

// TestKeyAttrsHasDepth: has() of a missing leaf is false, has() under a
// missing map is an error; the two must not share a key.
func TestKeyAttrsHasDepth(t *testing.T) {
	p := polMustParse(t, "collections:\n  - path: items\n    scope: org\n    filter: \"!has(auth.claims.m.k) || doc.z == 1\"\n")
	base := polV1("u", "org_1", "org:member")
	leafMissing := polWithClaims(base, map[string]any{"m": map[string]any{}})
	mapMissing := base
	d1, err := p.Decide(leafMissing, "items", nil)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := p.Decide(mapMissing, "items", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d1.KeyAttrs == d2.KeyAttrs {
		t.Fatalf("KeyAttrs equal (%q) but results differ", d1.KeyAttrs)
	}
	if got1, got2 := decisionVisible(d1, "a", "items/a", nil), decisionVisible(d2, "a", "items/a", nil); got1 == got2 {
		t.Fatalf("Filter results %v, %v: the test premise (has() differs by depth) failed", got1, got2)
	}
}

// TestKeyAttrsSound: principals with equal KeyAttrs get equal filter
// results on every document (the property that makes Feed sharing safe).
func TestKeyAttrsSound(t *testing.T) {
	filters := []string{
		"doc.visibility != 'private' || auth.org_role == 'org:admin'",
		"auth.claims.public_metadata.plan == 'pro' || doc.free == true",
		"has(auth.claims.public_metadata) && doc.level <= auth.claims.public_metadata.level",
		"'org:docs:read' in auth.org_permissions || doc.owner == auth.user_id",
		"auth.claims[doc.key] == doc.val",
	}
	var prs []*Principal
	for i, role := range []string{"org:member", "org:admin"} {
		for j, claims := range []map[string]any{
			{},
			{"public_metadata": map[string]any{"plan": "pro", "level": float64(2)}},
			{"public_metadata": map[string]any{"plan": "free", "level": float64(1)}},
			{"public_metadata": "broken"},
			{"x": "1"},
		} {
			for k, perms := range [][]string{nil, {"org:docs:read"}} {
				pr := polWithClaims(polV1(fmt.Sprintf("user_%d", (i+j+k)%2), "org_1", role, perms...), claims)
				prs = append(prs, pr)
			}
		}
	}
	docs := []map[string]any{
		{"visibility": "private"}, {"visibility": "public"}, {"free": true}, {"level": int64(1)},
		{"level": int64(2)}, {"owner": "user_0"}, {"owner": "user_1"}, {"key": "x", "val": "1"}, {},
	}
	for _, f := range filters {
		p := polMustParse(t, fmt.Sprintf("collections:\n  - path: items\n    scope: org\n    filter: %q\n", f))
		byKey := map[string][]bool{}
		byResidual := map[string][]bool{}
		for _, pr := range prs {
			d, err := p.Decide(pr, "items", nil)
			var res []bool
			for _, doc := range docs {
				// A refused subscription (the filter is false for every
				// document) sees nothing.
				res = append(res, err == nil && decisionVisible(d, "a", "items/a", doc))
			}
			if err != nil {
				continue
			}
			if prev, ok := byKey[d.KeyAttrs]; ok && !reflect.DeepEqual(prev, res) {
				t.Fatalf("filter %q: KeyAttrs %q shared by principals with different results %v vs %v", f, d.KeyAttrs, prev, res)
			}
			byKey[d.KeyAttrs] = res
			if prev, ok := byResidual[d.ResidualKey]; ok && !reflect.DeepEqual(prev, res) {
				t.Fatalf("filter %q: ResidualKey %q shared by principals with different results %v vs %v", f, d.ResidualKey, prev, res)
			}
			byResidual[d.ResidualKey] = res
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	seeds := []string{
		"collections:\n  - path: tasks\n    scope: org\n",
		"collections:\n  - path: projects/{project}/tasks\n    scope: org\n    filter: \"doc.a == path.project || auth.org_role == 'org:admin'\"\n    max_limit: 10\n",
		"collections:\n  - path: notes\n    scope: user\n    scope_field: owner_id\n    allow: \"auth.claims.x.y == 1\"\n",
		"collections: []\n",
		"collections:\n  - path: a\n    scope: org\n  - path: '{x}'\n    scope: user\n",
		"collections:\n  - path: a\n    scope: org\n    filter: \"auth.claims[doc.k] == doc.v\"\n",
		"",
		"collections: {}",
		"- x",
		"collections:\n  - &a {path: a, scope: org}\n  - *a\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	pr := polWithClaims(polV1("user_1", "org_1", "org:admin", "org:x:read"), map[string]any{"x": map[string]any{"y": float64(1)}})
	f.Fuzz(func(t *testing.T, src string) {
		p, err := ParsePolicy([]byte(src))
		if err != nil {
			if p != nil {
				t.Fatal("non-nil policy with an error")
			}
			return
		}
		for _, c := range p.Collections() {
			concrete := strings.NewReplacer("{", "v", "}", "v").Replace(c)
			d, err := p.Decide(pr, concrete, nil)
			if err != nil {
				var de *DenyError
				if !errors.As(err, &de) {
					t.Fatalf("Decide(%q): %v is not a *DenyError", concrete, err)
				}
				continue
			}
			if d.Filter != nil {
				d.Filter("a", concrete+"/a", map[string]any{"a": "v", "k": "x", "v": int64(1)})
			}
		}
	})
}

// decisionVisible is whether d lets its subscriber see the document: a nil
// Filter admits every document.
func decisionVisible(d *Decision, id, path string, data map[string]any) bool {
	return d.Filter == nil || d.Filter(id, path, data)
}
