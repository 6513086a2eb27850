package gateway_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/wire"
)

// propertyCases bounds the push-down property test (each case is one
// policy, ten documents and three principals with two subscriptions each,
// against the emulator).
const propertyCases = 30

// TestPushdownProperty: for random documents, random filters and random
// principals, the documents a subscriber holds — with and without limit,
// after its snapshot and after live changes — are exactly those a direct
// evaluation of the policy's filter allows (the whole CEL filter, compiled
// here independently of the gateway's partial evaluation), in scope, and,
// with limit, the first N of them by name. A subscription whose filter
// Firestore cannot apply must be refused a limit with bad_request. Replay a
// run with FIREGATE_PROPERTY_SEED=<the logged seed>.
func TestPushdownProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FIREGATE_PROPERTY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIREGATE_PROPERTY_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("property seed %d (replay with FIREGATE_PROPERTY_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	e := newEnv(t, envOpts{policy: "collections:\n  - path: props\n    scope: org\n"})
	celEnv, err := cel.NewEnv(
		cel.Variable("auth", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("doc", cel.MapType(cel.StringType, cel.DynType)),
		cel.CrossTypeNumericComparisons(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for c := 0; c < propertyCases; c++ {
		filter := genFilter(rng, 0)
		org, other := uniq("org"), uniq("org")
		users := []string{uniq("u"), uniq("u"), uniq("u")}
		roles := []string{"org:member", "org:member", "org:admin"}
		pol, err := authz.ParsePolicy([]byte(fmt.Sprintf("collections:\n  - path: props\n    scope: org\n    filter: %q\n", filter)))
		if err != nil {
			t.Fatalf("case %d: filter %s: %v", c, filter, err)
		}
		ast, iss := celEnv.Compile(filter)
		if iss.Err() != nil {
			t.Fatal(iss.Err())
		}
		prg, err := celEnv.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		e.srv.SetPolicy(pol)
		docs := map[string]map[string]any{}
		for i := 0; i < 10; i++ {
			o := org
			if i >= 8 {
				o = other
			}
			id := fmt.Sprintf("%s_%02d", org, i)
			d := genDoc(rng, o, users)
			d["name"] = fmt.Sprintf("%03d", rng.IntN(1000)) + id // unique, random order
			docs[id] = d
			putRetrying(t, e.fs, "props/"+id, d) // the emulator may fail a write while Listen streams of a closed client end
		}
		visible := func(user, role, id string) bool {
			d := docs[id]
			if d == nil || d["org_id"] != org {
				return false
			}
			out, _, err := prg.Eval(map[string]any{"auth": map[string]any{"user_id": user, "org_id": org, "org_role": role}, "doc": d})
			return err == nil && out == types.True
		}
		expected := func(user, role string, limit int) []string {
			var ids []string
			for id := range docs {
				if visible(user, role, id) {
					ids = append(ids, id)
				}
			}
			slices.SortFunc(ids, func(a, b string) int { return strings.Compare(docs[a]["name"].(string), docs[b]["name"].(string)) })
			if limit > 0 && len(ids) > limit {
				ids = ids[:limit]
			}
			slices.Sort(ids)
			return ids
		}
		type watcher struct {
			cl         *client
			user, role string
			limit      int
			state      map[string]map[string]bool
		}
		var ws []*watcher
		for i, u := range users {
			cl := e.connect(e.token(authz.MintOptions{UserID: u, OrgID: org, OrgRole: roles[i]}))
			w := &watcher{cl: cl, user: u, role: roles[i], limit: 1 + rng.IntN(4), state: map[string]map[string]bool{}}
			cl.send(map[string]any{"type": "subscribe", "id": "all", "collection": "props"})
			if m := cl.next(); m.Type == "error" {
				// Refused: the filter is false for every document for this
				// principal, which the direct evaluation must confirm.
				if m.Code != "forbidden" || len(expected(u, roles[i], 0)) != 0 {
					t.Fatalf("case %d (seed %d) filter %s: %s refused with %+v, but the policy allows %v", c, seed, filter, roles[i], m, expected(u, roles[i], 0))
				}
				continue
			} else if m.Type != "subscribed" {
				t.Fatalf("case %d: got %+v", c, m)
			}
			var all []wire.Doc
			for {
				s := cl.expect("snapshot")
				all = append(all, s.Docs...)
				if s.Final {
					break
				}
			}
			w.state["all"] = map[string]bool{}
			for _, d := range all {
				w.state["all"][d.ID] = true
			}
			cl.send(map[string]any{"type": "subscribe", "id": "lim", "collection": "props", "order_by": []map[string]any{{"field": "name"}}, "limit": w.limit})
			m := cl.next()
			if m.Type == "error" {
				if m.Code != "bad_request" || !strings.Contains(m.Message, "cannot be applied by Firestore") {
					t.Fatalf("case %d (seed %d) filter %s: limit refused with %+v", c, seed, filter, m)
				}
				refused++
			} else {
				if m.Type != "subscribed" {
					t.Fatalf("case %d: got %+v", c, m)
				}
				w.state["lim"] = map[string]bool{}
				for {
					s := cl.expect("snapshot")
					for _, d := range s.Docs {
						w.state["lim"][d.ID] = true
					}
					if s.Final {
						break
					}
				}
			}
			ws = append(ws, w)
		}
		check := func(phase string) {
			for _, w := range ws {
				for sub, st := range w.state {
					limit := 0
					if sub == "lim" {
						limit = w.limit
					}
					want := expected(w.user, w.role, limit)
					deadline := time.Now().Add(waitFor)
					for {
						got := make([]string, 0, len(st))
						for id := range st {
							got = append(got, id)
						}
						slices.Sort(got)
						if slices.Equal(got, want) {
							break
						}
						var m wireMsg
						select {
						case m.ServerMessage = <-w.cl.msgs:
							<-w.cl.raw
						case <-time.After(time.Until(deadline)):
							var diff []string
							for id, d := range docs {
								if slices.Contains(got, id) != slices.Contains(want, id) {
									diff = append(diff, fmt.Sprintf("%s=%v", id, d))
								}
							}
							t.Fatalf("case %d (seed %d) %s: filter %s, %s %s sub %s (limit %d): holds %v, the policy allows %v; differing documents: %v",
								c, seed, phase, filter, w.role, w.user, sub, limit, got, want, diff)
						}
						if m.Type != "changes" {
							t.Fatalf("case %d: unexpected %+v", c, m)
						}
						s := w.state[m.Sub]
						for _, ch := range m.Changes {
							if ch.Kind == "removed" {
								delete(s, ch.ID)
							} else {
								s[ch.ID] = true
							}
						}
					}
				}
			}
		}
		check("snapshot")
		// Live: three random documents change (or leave the scope).
		for i := 0; i < 3; i++ {
			id := fmt.Sprintf("%s_%02d", org, rng.IntN(8))
			d := genDoc(rng, org, users)
			if rng.IntN(5) == 0 {
				d["org_id"] = other
			}
			d["name"] = docs[id]["name"]
			docs[id] = d
			putRetrying(t, e.fs, "props/"+id, d) // the emulator may fail a write while Listen streams of a closed client end
		}
		check("after changes")
		for _, w := range ws {
			w.cl.c.CloseNow()
		}
	}
	pushed := e.counter("firegate_policy_filters_total", map[string]string{"where": "pushed_down"})
	if pushed < propertyCases {
		t.Fatalf("only %v subscriptions pushed their filter down over %d cases: the generator does not exercise push-down", pushed, propertyCases)
	}
	t.Logf("%d limits refused (filter not expressible in Firestore with the query)", refused)
}

var propLeaves = []string{
	"doc.vis == 'public'", "doc.vis != 'private'", "doc.vis in ['public', 'team']", "!(doc.vis in ['private', 'team'])",
	"doc.vis != null", "doc.n < 2", "doc.n >= 1", "doc.n == 1", "doc.n != 1.5", "1 <= doc.n", "'x' in doc.tags",
	"'y' in doc.tags", "doc.done", "!doc.done", "doc.done == true", "doc.owner == auth.user_id",
	"auth.org_role == 'org:admin'", "has(doc.n) && doc.n > 0", "doc.m.k == 'a'",
}

func genFilter(rng *rand.Rand, depth int) string {
	if depth >= 2 || rng.IntN(3) == 0 {
		return propLeaves[rng.IntN(len(propLeaves))]
	}
	op := " && "
	if rng.IntN(2) == 0 {
		op = " || "
	}
	s := "(" + genFilter(rng, depth+1) + op + genFilter(rng, depth+1) + ")"
	if rng.IntN(6) == 0 {
		s = "!" + s
	}
	return s
}

func pick(rng *rand.Rand, vals ...any) any { return vals[rng.IntN(len(vals))] }

var propMissing = struct{}{}

// genDoc draws each field from values of several kinds, or leaves it out.
func genDoc(rng *rand.Rand, org string, users []string) map[string]any {
	d := map[string]any{"org_id": org}
	set := func(k string, v any) {
		if v != propMissing {
			d[k] = v
		}
	}
	set("vis", pick(rng, "public", "private", "team", nil, int64(1), propMissing))
	set("n", pick(rng, int64(0), int64(1), 1.0, 1.5, int64(2), "2", nil, propMissing))
	set("tags", pick(rng, []any{"x"}, []any{"x", "y"}, []any{}, []any{"y", int64(1)}, "x", propMissing))
	set("done", pick(rng, true, false, "true", propMissing))
	set("owner", pick(rng, users[0], users[1], propMissing))
	set("m", pick(rng, map[string]any{"k": "a"}, map[string]any{"k": "b"}, "a", propMissing))
	return d
}
