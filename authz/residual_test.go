package authz

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/firegate/firegate/wire"
)

// fsMatch is a model of Firestore's filter semantics on plain JSON-like
// documents (string, int64, float64, bool, nil, []any, map[string]any): a
// field that is missing matches no filter; == and range filters compare
// values of one kind only (numbers together); != and not-in match any
// present value (null and other kinds included) that is not equal;
// array-contains needs an array holding an equal element. The end-to-end
// property test checks the real thing against the emulator.
func fsMatch(doc map[string]any, dnf [][]wire.Filter) bool {
	for _, conj := range dnf {
		ok := true
		for _, f := range conj {
			if !fsMatchFilter(doc, f) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func fsLookup(doc map[string]any, field string) (any, bool) {
	segs, err := wire.ParseFieldPath(field)
	if err != nil {
		panic(err)
	}
	var cur any = doc
	for _, s := range segs {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[s]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// fsKind is Firestore's type order class.
func fsKind(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case int64, float64:
		return 2
	case string:
		return 3
	case []any:
		return 4
	case map[string]any:
		return 5
	}
	panic(fmt.Sprintf("unexpected %T", v))
}

func fsNum(v any) float64 {
	if i, ok := v.(int64); ok {
		return float64(i)
	}
	return v.(float64)
}

// fsCompare orders two values of one kind (scalars only).
func fsCompare(a, b any) int {
	switch x := a.(type) {
	case nil:
		return 0
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case int64, float64:
		p, q := fsNum(a), fsNum(b)
		switch {
		case p < q:
			return -1
		case p > q:
			return 1
		}
		return 0
	case string:
		return strings.Compare(x, b.(string))
	}
	return 2 // arrays and maps never equal a scalar constant here
}

func fsEqual(a, b any) bool {
	return fsKind(a) == fsKind(b) && fsCompare(a, b) == 0
}

func fsMatchFilter(doc map[string]any, f wire.Filter) bool {
	v, ok := fsLookup(doc, f.Field)
	if !ok {
		return false
	}
	switch f.Op {
	case "==":
		return fsEqual(v, f.Value)
	case "!=":
		// As Decision.Pushdown means it: CEL's != (the planner adds the
		// `== null` alternative Firestore needs for a non-null value).
		return !fsEqual(v, f.Value)
	case "<", "<=", ">", ">=":
		if fsKind(v) != fsKind(f.Value) || fsKind(v) > 3 {
			return false
		}
		c := fsCompare(v, f.Value)
		switch f.Op {
		case "<":
			return c < 0
		case "<=":
			return c <= 0
		case ">":
			return c > 0
		}
		return c >= 0
	case "in", "not-in":
		in := false
		for _, x := range f.Value.([]any) {
			if fsEqual(v, x) {
				in = true
			}
		}
		return in == (f.Op == "in")
	case "array-contains":
		arr, ok := v.([]any)
		if !ok {
			return false
		}
		for _, x := range arr {
			if fsEqual(x, f.Value) {
				return true
			}
		}
		return false
	}
	panic("unknown op " + f.Op)
}

// residualSampleDocs covers each field missing, null, of every kind and at
// the boundaries of the constants the tests use.
func residualSampleDocs() []map[string]any {
	vals := []any{nil, true, false, int64(0), int64(1), int64(2), 1.0, 1.5, -1.0, "", "a", "b", "private", "public", "u1",
		[]any{}, []any{"a"}, []any{"b", int64(1)}, []any{1.0}, map[string]any{}, map[string]any{"c": "a"}}
	var docs []map[string]any
	docs = append(docs, map[string]any{})
	for _, v := range vals {
		docs = append(docs, map[string]any{"a": v}, map[string]any{"b": v}, map[string]any{"a": v, "b": "a"}, map[string]any{"a": "a", "b": v},
			map[string]any{"m": map[string]any{"c": v}})
	}
	return docs
}

func pushdownString(dnf [][]wire.Filter) string {
	var parts []string
	for _, conj := range dnf {
		var fs []string
		for _, f := range conj {
			fs = append(fs, fmt.Sprintf("%s %s %v", f.Field, f.Op, f.Value))
		}
		sort.Strings(fs)
		parts = append(parts, strings.Join(fs, " && "))
	}
	return strings.Join(parts, " || ")
}

func TestResidualPlacement(t *testing.T) {
	member := polV1("u1", "org_1", "org:member")
	admin := polV1("u1", "org_1", "org:admin")
	tests := []struct {
		name, filter string
		pr           *Principal
		placement    FilterPlacement
		pushdown     string // pushdownString, for FilterPushedDown
		reason       string // part of GatewayReason, for FilterGateway
		forbidden    bool
	}{
		{"role grants all", "doc.visibility != 'private' || auth.org_role == 'org:admin'", admin, FilterNone, "", "", false},
		{"member not equal", "doc.visibility != 'private' || auth.org_role == 'org:admin'", member, FilterPushedDown, "visibility != private", "", false},
		{"false refuses", "auth.org_role == 'org:admin' && doc.a == 1", member, 0, "", "", true},
		{"error refuses", "auth.claims.nope == 1", member, 0, "", "", true},
		{"owner or team", "doc.owner == auth.user_id || doc.team in ['t1', 't2']", member, FilterPushedDown, "owner == u1 || team in [t1 t2]", "", false},
		{"single in is equality", "doc.team in ['t1']", member, FilterPushedDown, "team == t1", "", false},
		{"empty in refuses", "doc.team in []", member, 0, "", "", true},
		{"not in one", "!(doc.team in ['t1'])", member, FilterPushedDown, "team != t1", "", false},
		{"not in", "!(doc.team in ['t1', 't2'])", member, FilterGateway, "", "not-in", false},
		{"array contains", "'x' in doc.tags && doc.n >= 1.5", member, FilterPushedDown, "n >= 1.5 && tags array-contains x", "", false},
		{"flipped constant", "3 < doc.n", member, FilterPushedDown, "n > 3", "", false},
		{"bool field", "doc.done", member, FilterPushedDown, "done == true", "", false},
		{"negated bool field", "!doc.done", member, FilterPushedDown, "done == false", "", false},
		{"null", "doc.x != null", member, FilterPushedDown, "x != <nil>", "", false},
		{"has with comparison", "has(doc.a) && doc.a == 'x'", member, FilterPushedDown, "a == x", "", false},
		{"has of parent", "has(doc.m) && doc.m.c == 1", member, FilterPushedDown, "m.c == 1", "", false},
		{"de morgan", "!(doc.a == 1 || doc.b == 2)", member, FilterPushedDown, "a != 1 && b != 2", "", false},
		{"distributes", "(doc.a == 1 || doc.a == 2) && (doc.b == 1 || doc.b == 2)", member, FilterPushedDown, "a == 1 && b == 1 || a == 1 && b == 2 || a == 2 && b == 1 || a == 2 && b == 2", "", false},
		{"quoted field", "doc['a.b'] == 1", member, FilterPushedDown, "`a.b` == 1", "", false},
		{"has alone", "!has(doc.visibility) || doc.visibility != 'private'", member, FilterGateway, "", "!has", false},
		{"has without comparison", "has(doc.a)", member, FilterGateway, "", "exists", false},
		{"negated range", "!(doc.a < 3)", member, FilterGateway, "", "negated range", false},
		{"function", "doc.title.startsWith('a')", member, FilterGateway, "", "startsWith", false},
		{"doc id", "doc_id != 'x'", member, FilterGateway, "", "", false},
		{"two fields", "doc.a == doc.b", member, FilterGateway, "", "constant", false},
		{"list equality", "doc.tags == ['a']", member, FilterGateway, "", "constant", false},
		{"in with null", "doc.a in ['a', null]", member, FilterGateway, "", "list element", false},
		{"reserved field", "doc.__name__ == 'x'", member, FilterGateway, "", "reserved", false},
		{"too many disjuncts", strings.Repeat("(doc.a == 1 || doc.a == 2 || doc.a == 3 || doc.a == 4 || doc.a == 5 || doc.a == 6) && ", 2) + "true", member, FilterGateway, "", "disjunctions", false},
		{"comprehension", "doc.tags.exists(t, t == auth.user_id)", member, FilterGateway, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := polMustParse(t, fmt.Sprintf("collections:\n  - path: items\n    scope: org\n    filter: %q\n", tt.filter))
			d, err := p.Decide(tt.pr, "items", nil)
			if tt.forbidden {
				if err == nil {
					t.Fatalf("Decide = %+v, want forbidden", d)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Placement != tt.placement {
				t.Fatalf("Placement = %d (residual %q, reason %q), want %d", d.Placement, d.Residual, d.GatewayReason, tt.placement)
			}
			switch tt.placement {
			case FilterPushedDown:
				if got := pushdownString(d.Pushdown); got != tt.pushdown {
					t.Fatalf("Pushdown = %q, want %q", got, tt.pushdown)
				}
			case FilterGateway:
				if !strings.Contains(d.GatewayReason, tt.reason) || d.GatewayReason == "" {
					t.Fatalf("GatewayReason = %q, want it to contain %q", d.GatewayReason, tt.reason)
				}
				if d.Filter == nil {
					t.Fatal("gateway-side filter without a Filter")
				}
			case FilterNone:
				if d.Filter != nil || d.Pushdown != nil {
					t.Fatalf("FilterNone with Filter or Pushdown %v", d.Pushdown)
				}
			}
		})
	}
}

// TestResidualAgreesWithFilter: on every sample document, the pushed-down
// filters (under the Firestore model) and the residual Filter both agree
// with the whole filter evaluated with the principal.
func TestResidualAgreesWithFilter(t *testing.T) {
	filters := []string{
		"doc.visibility != 'private' || auth.org_role == 'org:admin'",
		"doc.a == auth.user_id || doc.b in ['a', 'b', 1]",
		"!(doc.a in ['a', 1, true]) && doc.b != null",
		"'a' in doc.a || doc.m.c >= 1",
		"doc.a < 2 && doc.a >= 0 || doc.b > 'a'",
		"has(doc.a) && (doc.a == 1.0 || doc.a == '')",
		"!(doc.a == 'a' || doc.b != 'a')",
		"doc.a || doc.b == false",
		"doc.a <= true",
	}
	for _, src := range filters {
		checkResidualAgrees(t, src)
	}
}

func checkResidualAgrees(t *testing.T, src string) {
	t.Helper()
	p, err := ParsePolicy([]byte(fmt.Sprintf("collections:\n  - path: items\n    scope: org\n    filter: %q\n", src)))
	if err != nil {
		return // not a valid filter
	}
	r := p.rules[0]
	for _, pr := range []*Principal{polV1("u1", "org_1", "org:member"), polV1("a", "org_1", "org:admin")} {
		full, err := p.decideFull(pr)
		if err != nil {
			t.Fatal(err)
		}
		d, derr := p.Decide(pr, "items", nil)
		for _, doc := range residualSampleDocs() {
			want, _ := evalDoc(r.filter.prg, full, "a", "items/a", doc)
			if derr != nil {
				if want {
					t.Fatalf("filter %q: refused, but the filter shows %v", src, doc)
				}
				continue
			}
			if got := decisionVisible(d, "a", "items/a", doc); got != want {
				t.Fatalf("filter %q: residual %q gives %v on %v, the filter %v", src, d.Residual, got, doc, want)
			}
			if d.Placement == FilterPushedDown {
				if got := fsMatch(doc, d.Pushdown); got != want {
					t.Fatalf("filter %q: pushdown %s matches %v: %v, the filter says %v", src, pushdownString(d.Pushdown), doc, got, want)
				}
			}
		}
	}
}

// decideFull binds pr for evaluating the whole filter of the first rule.
func (p *Policy) decideFull(pr *Principal) (*celVars, error) {
	ce, err := envs()
	if err != nil {
		return nil, err
	}
	return newCELVars(ce.filter.CELTypeAdapter(), principalAuthMap(pr), nil), nil
}

// FuzzResidualTranslation builds filters from fuzzed pieces and checks that
// a translation never disagrees with CEL on the sample documents (and that
// nothing panics).
func FuzzResidualTranslation(f *testing.F) {
	f.Add("doc.a == 'a' || doc.b != 1", "&&", "!(doc.a in ['a', 1])")
	f.Add("has(doc.a)", "&&", "doc.a < 2.5")
	f.Add("'a' in doc.a", "||", "auth.org_role == 'org:admin'")
	f.Add("doc.m.c", "&&", "!doc.b")
	f.Add("doc.a > 'a'", "||", "!(doc.a == null)")
	f.Add("doc['a'] <= 1u", "&&", "doc.b >= -1.0")
	f.Fuzz(func(t *testing.T, a, op, b string) {
		if len(a)+len(b) > 300 || strings.ContainsAny(a+b, "\n\"\\") {
			return
		}
		if op != "&&" && op != "||" {
			op = "&&"
		}
		checkResidualAgrees(t, "("+a+") "+op+" ("+b+")")
		checkResidualAgrees(t, "!(("+a+") "+op+" ("+b+"))")
	})
}

func TestExplainFilterPlacement(t *testing.T) {
	p := polMustParse(t, "collections:\n  - path: tasks\n    scope: org\n    filter: \"doc.visibility != 'private' || auth.org_role == 'org:admin'\"\n  - path: notes\n    scope: org\n    filter: \"!has(doc.v) || doc.v != 'private'\"\n")
	claims := func(role string) map[string]any {
		return map[string]any{"sub": "u1", "sid": "s1", "org_id": "org_1", "org_role": role}
	}
	tests := []struct {
		role, coll, runs, residual, reason string
	}{
		{"org:member", "tasks", "firestore", `doc.visibility != "private"`, ""},
		{"org:admin", "tasks", "none", "", ""},
		{"org:member", "notes", "gateway", `!has(doc.v) || doc.v != "private"`, "!has"},
	}
	for _, tt := range tests {
		ex := p.Explain(claims(tt.role), tt.coll, nil)
		if ex.Decision != "allow" || ex.FilterRuns != tt.runs || ex.Residual != tt.residual || !strings.Contains(ex.GatewayReason, tt.reason) {
			t.Errorf("%s on %s: %+v, want filter_runs %s, residual %q, reason containing %q", tt.role, tt.coll, ex, tt.runs, tt.residual, tt.reason)
		}
	}
}

// BenchmarkDecideResidual measures a subscribe's policy decision with a
// filter that pushes down (partial evaluation, cached residual).
func BenchmarkDecideResidual(b *testing.B) {
	p, err := ParsePolicy([]byte("collections:\n  - path: tasks\n    scope: org\n    filter: \"doc.visibility != 'private' || auth.org_role == 'org:admin'\"\n"))
	if err != nil {
		b.Fatal(err)
	}
	pr := polV1("u1", "org_1", "org:member")
	b.ReportAllocs()
	for b.Loop() {
		if d, err := p.Decide(pr, "tasks", nil); err != nil || d.Placement != FilterPushedDown {
			b.Fatal(d, err)
		}
	}
}

// TestResidualConcurrentDecide: Decide is safe for concurrent use on one
// Policy when pruning drops a macro (the pruner edits the macro-call map
// it is given, which must not be the checked filter's own). Run under
// -race; every caller gets the same plan.
func TestResidualConcurrentDecide(t *testing.T) {
	p := polMustParse(t, fmt.Sprintf("collections:\n  - path: items\n    scope: org\n    filter: %q\n",
		"['org:admin'].exists(r, r == auth.org_role) || doc.a == 1"))
	member := polV1("u1", "org_1", "org:member")
	const callers = 8
	got := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			d, err := p.Decide(member, "items", nil)
			if err != nil {
				errs[i] = err
				return
			}
			got[i] = fmt.Sprintf("%d %s", d.Placement, pushdownString(d.Pushdown))
		})
	}
	wg.Wait()
	want := fmt.Sprintf("%d %s", FilterPushedDown, "a == 1")
	for i := range callers {
		if errs[i] != nil || got[i] != want {
			t.Fatalf("caller %d: %q, %v; want %q", i, got[i], errs[i], want)
		}
	}
}
