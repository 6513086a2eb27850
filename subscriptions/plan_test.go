package subscriptions

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/firegate/firegate/wire"
)

func planFilter(string, string, map[string]any) bool { return true }

func TestPlan(t *testing.T) {
	base := func() PlanRequest {
		return PlanRequest{Collection: "tasks", ScopeField: "org_id", ScopeValue: "o1", Tenant: "org:o1", Rule: "r1", MaxLimit: 100}
	}
	f := func(field, op string, v any) wire.Filter { return wire.Filter{Field: field, Op: op, Value: v} }
	in := func(vals ...any) []any { return vals }
	tests := []struct {
		name    string
		mod     func(r *PlanRequest)
		where   FilterWhere
		filters string // the query's Filters, rendered
		or      string // the query's Or, rendered
		err     string // part of a *QueryError
	}{
		{"no filter", func(r *PlanRequest) {}, FilterNowhere, "org_id == o1", "", ""},
		{"scope filter of the client dropped", func(r *PlanRequest) { r.Where = []wire.Filter{f("org_id", "==", "o1"), f("a", "==", int64(1))} }, FilterNowhere, "a == 1; org_id == o1", "", ""},
		{"one conjunct joins the filters", func(r *PlanRequest) {
			r.Pushdown, r.Filter = [][]wire.Filter{{f("vis", "==", "public")}}, planFilter
		}, FilterInFirestore, "org_id == o1; vis == public", "", ""},
		{"!= gains its null alternative", func(r *PlanRequest) {
			r.Pushdown, r.Filter, r.Limit = [][]wire.Filter{{f("vis", "!=", "private"), f("n", ">", int64(1))}}, planFilter, 5
		}, FilterInFirestore, "n > 1; org_id == o1", "vis != private | vis == <nil>", ""},
		{"!= null stays", func(r *PlanRequest) {
			r.Pushdown, r.Filter = [][]wire.Filter{{f("vis", "!=", nil)}}, planFilter
		}, FilterInFirestore, "org_id == o1; vis != <nil>", "", ""},
		{"disjunction", func(r *PlanRequest) {
			r.Pushdown, r.Filter = [][]wire.Filter{{f("owner", "==", "u1")}, {f("team", "in", in("t1", "t2"))}}, planFilter
		}, FilterInFirestore, "org_id == o1", "team in [t1 t2] | owner == u1", ""},
		{"duplicate disjuncts merge", func(r *PlanRequest) {
			r.Pushdown, r.Filter = [][]wire.Filter{{f("a", "==", "x")}, {f("a", "==", "x")}}, planFilter
		}, FilterInFirestore, "a == x; org_id == o1", "", ""},
		{"two != fall back", func(r *PlanRequest) {
			r.Pushdown, r.Filter = [][]wire.Filter{{f("a", "!=", "x"), f("b", "!=", "y")}}, planFilter
		}, FilterInGateway, "org_id == o1", "", ""},
		{"client != and policy != refuse a limit", func(r *PlanRequest) {
			r.Where, r.Limit = []wire.Filter{f("b", "!=", "y")}, 3
			r.Pushdown, r.Filter = [][]wire.Filter{{f("a", "!=", "x")}}, planFilter
		}, 0, "", "", "Firestore allows one per query"},
		{"!= in a disjunction", func(r *PlanRequest) {
			r.Pushdown, r.Filter = [][]wire.Filter{{f("a", "!=", "x")}, {f("b", "==", int64(1))}}, planFilter
		}, FilterInGateway, "org_id == o1", "", ""},
		{"range in only some disjuncts", func(r *PlanRequest) {
			r.Pushdown, r.Filter, r.Limit = [][]wire.Filter{{f("a", "<", int64(2))}, {f("b", "==", int64(1))}}, planFilter, 1
		}, 0, "", "", "range comparison of a in only some disjuncts"},
		{"range in every disjunct", func(r *PlanRequest) {
			r.Pushdown, r.Filter = [][]wire.Filter{{f("a", "<", int64(2))}, {f("a", ">", int64(5)), f("b", "==", int64(1))}}, planFilter
		}, FilterInFirestore, "org_id == o1", "a < 2 | a > 5; b == 1", ""},
		{"too many disjunctions with the client's in", func(r *PlanRequest) {
			r.Where = []wire.Filter{f("c", "in", in(int64(1), int64(2), int64(3), int64(4), int64(5), int64(6), int64(7), int64(8)))}
			r.Pushdown, r.Filter = [][]wire.Filter{{f("a", "in", in("x", "y"))}, {f("b", "in", in("x", "y"))}}, planFilter
		}, FilterInGateway, "", "", ""},
		{"at the disjunction limit", func(r *PlanRequest) {
			r.Where = []wire.Filter{f("c", "in", in(int64(1), int64(2), int64(3), int64(4), int64(5)))}
			r.Pushdown, r.Filter = [][]wire.Filter{{f("a", "in", in("x", "y", "z"))}, {f("b", "in", in("x", "y", "z"))}}, planFilter
		}, FilterInFirestore, "", "", ""},
		{"two array-contains in one disjunct", func(r *PlanRequest) {
			r.Where = []wire.Filter{f("tags", "array-contains", "x")}
			r.Pushdown, r.Filter = [][]wire.Filter{{f("labels", "array-contains", "y")}, {f("a", "==", int64(1))}}, planFilter
		}, FilterInGateway, "", "", ""},
		{"gateway reason refuses a limit", func(r *PlanRequest) {
			r.GatewayReason, r.Filter, r.Limit = "!has(...)", planFilter, 10
		}, 0, "", "", "!has(...)"},
		{"gateway reason without limit", func(r *PlanRequest) { r.GatewayReason, r.Filter = "!has(...)", planFilter }, FilterInGateway, "org_id == o1", "", ""},
		{"document", func(r *PlanRequest) { r.DocID = "t1" }, FilterNowhere, "org_id == o1", "", ""},
		{"document with a filter stays in the gateway", func(r *PlanRequest) {
			r.DocID, r.Pushdown, r.Filter = "t1", [][]wire.Filter{{f("vis", "!=", "private")}}, planFilter
		}, FilterInGateway, "org_id == o1", "", ""},
		{"document with a limit", func(r *PlanRequest) { r.DocID, r.Limit = "t1", 1 }, 0, "", "", "no where, order_by or limit"},
		{"reserved document id", func(r *PlanRequest) { r.DocID = "__x__" }, 0, "", "", "reserved"},
		{"document id with a slash", func(r *PlanRequest) { r.DocID = "a/b" }, 0, "", "", "contains /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.mod(&r)
			spec, where, err := Plan(r)
			if tt.err != "" {
				var qe *QueryError
				if !errors.As(err, &qe) || !strings.Contains(qe.Msg, tt.err) {
					t.Fatalf("Plan = %v, want a QueryError containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if where != tt.where {
				t.Fatalf("where = %d, want %d", where, tt.where)
			}
			if tt.filters != "" {
				if got := renderFilters(spec.Query.Filters); got != tt.filters {
					t.Fatalf("Filters = %q, want %q", got, tt.filters)
				}
			}
			var ors []string
			for _, conj := range spec.Query.Or {
				ors = append(ors, renderFilters(conj))
			}
			if tt.filters != "" || tt.or != "" {
				if got := strings.Join(ors, " | "); got != tt.or {
					t.Fatalf("Or = %q, want %q", got, tt.or)
				}
			}
			if spec.Rule != "r1" || spec.Tenant != "org:o1" || spec.Query.Doc != r.DocID {
				t.Fatalf("spec %+v", spec)
			}
			// The Firestore limit: the client's, else the rule's max_limit,
			// except where the filter runs only in the gateway (a limit
			// there would count hidden documents) and for one document.
			wantLimit := r.Limit
			if wantLimit == 0 && r.DocID == "" && where != FilterInGateway {
				wantLimit = r.MaxLimit
			}
			if spec.Query.Limit != wantLimit {
				t.Fatalf("Query.Limit = %d, want %d (where %d)", spec.Query.Limit, wantLimit, where)
			}
		})
	}
}

func renderFilters(fs []wire.Filter) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%s %s %v", f.Field, f.Op, f.Value))
	}
	return strings.Join(parts, "; ")
}

// TestPlanKeys: the Feed key separates rules, residuals, documents and
// where the filter runs, and is equal for equal plans.
func TestPlanKeys(t *testing.T) {
	r := PlanRequest{Collection: "tasks", ScopeField: "org_id", ScopeValue: "o1", Rule: "r1", ResidualKey: "x", Filter: planFilter,
		Pushdown: [][]wire.Filter{{{Field: "v", Op: "==", Value: "a"}}}}
	key := func(mod func(*PlanRequest)) string {
		c := r
		mod(&c)
		spec, _, err := Plan(c)
		if err != nil {
			t.Fatal(err)
		}
		return spec.Key
	}
	k := key(func(*PlanRequest) {})
	if k2 := key(func(*PlanRequest) {}); k2 != k {
		t.Fatal("equal plans, different keys")
	}
	for name, mod := range map[string]func(*PlanRequest){
		"rule":     func(c *PlanRequest) { c.Rule = "r2" },
		"residual": func(c *PlanRequest) { c.ResidualKey = "y" },
		"pushdown": func(c *PlanRequest) { c.Pushdown = [][]wire.Filter{{{Field: "v", Op: "==", Value: "b"}}} },
		"gateway":  func(c *PlanRequest) { c.Pushdown, c.GatewayReason = nil, "why" },
		"doc":      func(c *PlanRequest) { c.DocID = "t1" },
		"scope":    func(c *PlanRequest) { c.ScopeValue = "o2" },
	} {
		if key(mod) == k {
			t.Errorf("changing the %s keeps the key", name)
		}
	}
}

// TestRetire: a reload retires the Feeds of replaced rules: a lingering
// one closes at once, a live one is never joined again and closes when its
// last subscriber leaves; current ones are untouched.
func TestRetire(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	oldLive, oldLinger, current := hsSpec("old-live", "org"), hsSpec("old-linger", "org"), hsSpec("current", "org")
	oldLive.Rule, oldLinger.Rule, current.Rule = "old", "old", "new"
	live, _ := hsSubscribe(t, h, oldLive, nil)
	gone, _ := hsSubscribe(t, h, oldLinger, nil)
	hsSubscribe(t, h, current, nil)
	gone.Unsubscribe()
	if h.FeedCount() != 3 {
		t.Fatalf("FeedCount = %d", h.FeedCount())
	}
	closed, retired := h.Retire(func(s FeedSpec) bool { return s.Rule == "old" })
	if closed != 1 || retired != 1 || h.FeedCount() != 2 {
		t.Fatalf("Retire = %d closed, %d retired; FeedCount %d", closed, retired, h.FeedCount())
	}
	if h.feedFor("old-live") != nil || h.feedFor("old-linger") != nil || h.feedFor("current") == nil {
		t.Fatal("registry still holds a retired Feed, or lost the current one")
	}
	// A new subscriber of the old key gets a new Feed, not the retired one.
	again, _ := hsSubscribe(t, h, oldLive, nil)
	if again.Epoch() == live.Epoch() || h.FeedCount() != 3 {
		t.Fatalf("joined the retired Feed (epoch %s), FeedCount %d", again.Epoch(), h.FeedCount())
	}
	again.Unsubscribe() // lingers: the current rule's Feeds are kept
	live.Unsubscribe()
	hsCheck(t, hsFeedCount(h, 2))
	hsCheck(t, func() error {
		running := 0
		for i := 0; i < src.Count(); i++ {
			if src.Listener(t, i).Context().Err() == nil {
				running++
			}
		}
		if running != 2 {
			return fmt.Errorf("%d listeners run, want the two current Feeds' only", running)
		}
		return nil
	})
}

// TestCloseReachesRetiredFeeds: Hub.Close stops a retired Feed that still
// has subscribers (it is no longer in the registry).
func TestCloseReachesRetiredFeeds(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	spec := hsSpec("old", "org")
	spec.Rule = "old"
	hsSubscribe(t, h, spec, nil)
	if _, retired := h.Retire(func(s FeedSpec) bool { return true }); retired != 1 {
		t.Fatalf("retired %d, want 1", retired)
	}
	l := src.Listener(t, 0)
	h.Close()
	if l.Context().Err() == nil || h.FeedCount() != 0 {
		t.Fatalf("Close left the retired Feed running (FeedCount %d)", h.FeedCount())
	}
}
