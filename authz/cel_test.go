package authz

import (
	"math"
	"strings"
	"testing"
)

func TestCollectRefs(t *testing.T) {
	e, err := envs()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		expr string
		want string // names joined by " "
	}{
		{"doc.a == 1", ""},
		{"auth.org_role == 'x'", "auth.org_role"},
		{"auth['org_role'] == 'x'", "auth.org_role"},
		{"auth.claims.a.b == 1", "auth.claims.a.b"},
		{"auth.claims['a.b'].c == 1", `auth.claims["a.b"].c`},
		{"has(auth.claims.a)", "auth.claims.a"},
		{"auth.claims[doc.k] == 1", "auth.claims"},
		{"auth.org_permissions[0] == 'x'", "auth.org_permissions"},
		{"size(auth) > 0", "auth"},
		{"auth.org_id == doc.org_id && auth.org_id != ''", "auth.org_id"},
		{"auth.claims.a == 1 && auth.claims.a.b == 2", "auth.claims.a"},
		{"path.p == doc.p", "path.p"},
		{"doc.xs.exists(auth, auth == 1)", ""},
		{"doc.xs.exists(x, x == auth.user_id)", "auth.user_id"},
		{"auth.org_permissions.exists(p, p.startsWith('org:a'))", "auth.org_permissions"},
		{"[auth.user_id, auth.org_id].size() == 2", "auth.org_id auth.user_id"},
		{"{'k': auth.org_slug}.k == 'x'", "auth.org_slug"},
		{"doc.m.map(k, k + auth.session_id).size() > 0", "auth.session_id"},
		{"auth.claims.a.exists(k, auth.claims.a[k] == 1)", "auth.claims.a"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			ast, iss := e.filter.Compile(tt.expr)
			if iss != nil && iss.Err() != nil {
				t.Fatal(iss.Err())
			}
			var names []string
			for _, r := range collectRefs(ast.NativeRep().Expr()) {
				names = append(names, r.name())
			}
			if got := strings.Join(names, " "); got != tt.want {
				t.Fatalf("refs = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAppendAttrValue(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{nil, "null"},
		{true, "true"},
		{"a\"b", `"a\"b"`},
		{float64(1), "d1"},
		{int64(1), "i1"},
		{int(2), "i2"},
		{uint64(3), "u3"},
		{math.NaN(), "dNaN"},
		{math.Copysign(0, -1), "d-0"},
		{[]string{"a", "b"}, `["a","b"]`},
		{[]any{"a", float64(2), nil}, `["a",d2,null]`},
		{map[string]any{"b": "x", "a": []any{}}, `{"a":[],"b":"x"}`},
		{struct{}{}, `"struct {}:{}"`},
	}
	for _, tt := range tests {
		if got := string(appendAttrValue(nil, tt.v)); got != tt.want {
			t.Errorf("appendAttrValue(%#v) = %s, want %s", tt.v, got, tt.want)
		}
	}
	// Equal-looking values of different types must not collide.
	if string(appendAttrValue(nil, float64(1))) == string(appendAttrValue(nil, int64(1))) ||
		string(appendAttrValue(nil, "1")) == string(appendAttrValue(nil, int64(1))) {
		t.Fatal("type tags collide")
	}
}

func benchDecision(b *testing.B) *Decision {
	b.Helper()
	p := polLoad(b)
	d, err := p.Decide(polV1("user_m", "org_1", "org:member"), "tasks", nil)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkFilterEval measures one evaluation of the example policy's tasks
// filter (`doc.visibility != 'private' || auth.org_role == 'org:admin'`)
// for a member, on a typical document.
func BenchmarkFilterEval(b *testing.B) {
	d := benchDecision(b)
	data := map[string]any{"title": "Write the report", "visibility": "team", "status": "open", "priority": int64(2)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !d.Filter("t1", "tasks/t1", data) {
			b.Fatal("want visible")
		}
	}
}

// BenchmarkFilterEvalHidden is the same filter taking its second branch
// (the private document is hidden from a member: both sides evaluated).
func BenchmarkFilterEvalHidden(b *testing.B) {
	d := benchDecision(b)
	data := map[string]any{"title": "Secret", "visibility": "private"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d.Filter("t1", "tasks/t1", data) {
			b.Fatal("want hidden")
		}
	}
}

func BenchmarkFilterEvalParallel(b *testing.B) {
	d := benchDecision(b)
	data := map[string]any{"visibility": "team"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Filter("t1", "tasks/t1", data)
		}
	})
}

// TestFilterEvalAllocs pins the allocation count of one filter evaluation
// so a regression (e.g. re-adapting the principal per document) shows.
func TestFilterEvalAllocs(t *testing.T) {
	p := polLoad(t)
	d, err := p.Decide(polV1("user_m", "org_1", "org:member"), "tasks", nil)
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"visibility": "team"}
	allocs := testing.AllocsPerRun(200, func() { d.Filter("t1", "tasks/t1", data) })
	if allocs > 12 {
		t.Fatalf("%.1f allocations per filter evaluation, want at most 12", allocs)
	}
	t.Logf("%.1f allocations per filter evaluation", allocs)
}
