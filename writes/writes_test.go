package writes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/internal/emulator/emulatortest"
	"github.com/firegate/firegate/wire"
)

var emu emulatortest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}

// testPolicy: {c}-tasks follow the seed article's rules (the scope does
// the org checks); invoices have a permission gate on create and a role
// gate on delete; notes are user-scoped.
const testPolicy = `
collections:
  - path: "{c}"
    scope: org
    create: "true"
    update: "true"
    delete: "true"
  - path: "{c}/{d}/invoices"
    scope: org
    create: "'org:invoices:write' in auth.org_permissions"
    update: "true"
    delete: "auth.org_role == 'org:admin'"
  - path: "{c}/{d}/notes"
    scope: user
    scope_field: owner_id
    create: "true"
    update: "true"
`

var (
	clientOnce sync.Once
	client     *firestore.Client
	clientErr  error
)

func fsClient(t *testing.T) *firestore.Client {
	t.Helper()
	host := emu.Get(t).Host
	clientOnce.Do(func() {
		os.Setenv("FIRESTORE_EMULATOR_HOST", host)
		client, clientErr = firestore.NewClient(context.Background(), "firegate-writes-test")
	})
	if clientErr != nil {
		t.Fatal(clientErr)
	}
	return client
}

type fixture struct {
	t   *testing.T
	fs  *firestore.Client
	w   *Writer
	pol *authz.Policy
	col string // a test-unique top-level collection
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	fs := fsClient(t)
	cfg.Client = fs
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := authz.ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, fs: fs, w: w, pol: pol, col: uniq("tasks")}
}

func uniq(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

var (
	alice = &authz.Principal{UserID: "user_alice", OrgID: "org_a", OrgRole: "org:member", OrgPermissions: []string{"org:invoices:write"}}
	admin = &authz.Principal{UserID: "user_admin", OrgID: "org_a", OrgRole: "org:admin"}
)

// write decodes src (a write body) and applies it as pr.
func (f *fixture) write(pr *authz.Principal, src string) (*Result, error) {
	f.t.Helper()
	req, err := wire.DecodeWrite([]byte(strings.ReplaceAll(src, "$C", f.col)))
	if err != nil {
		f.t.Fatalf("decode %s: %v", src, err)
	}
	return f.w.Apply(context.Background(), f.pol, pr, req)
}

func (f *fixture) seed(path string, data map[string]any) time.Time {
	f.t.Helper()
	wr, err := f.fs.Doc(strings.ReplaceAll(path, "$C", f.col)).Set(context.Background(), data)
	if err != nil {
		f.t.Fatal(err)
	}
	return wr.UpdateTime
}

// get returns the stored document (nil when missing) and its update time.
func (f *fixture) get(path string) (map[string]any, time.Time) {
	f.t.Helper()
	snap, err := f.fs.Doc(strings.ReplaceAll(path, "$C", f.col)).Get(context.Background())
	if err != nil {
		if snap != nil && !snap.Exists() {
			return nil, time.Time{}
		}
		f.t.Fatal(err)
	}
	return snap.Data(), snap.UpdateTime
}

func wantCode(t *testing.T, err error, code string, index int) {
	t.Helper()
	var we *Error
	if !errors.As(err, &we) {
		t.Fatalf("got %v, want a *writes.Error %s at %d", err, code, index)
	}
	if we.Code != code || we.Index != index {
		t.Fatalf("got %s at %d (%s), want %s at %d", we.Code, we.Index, we.Msg, code, index)
	}
}

// TestSeedRules: the seed article's appendix rules, case by case, and
// nothing written when refused.
func TestSeedRules(t *testing.T) {
	f := newFixture(t, Config{})
	tests := []struct {
		name  string
		seed  map[string]any // stored before, at $C/d1 (nil: none)
		pr    *authz.Principal
		write string
		code  string         // "" → allowed
		after map[string]any // the stored document afterwards (nil: missing)
	}{
		{"own org create", nil, alice, `{"ops":[{"op":"create","path":"$C/d1","data":{"org_id":"org_a","t":"x"}}]}`, "",
			map[string]any{"org_id": "org_a", "t": "x"}},
		{"own org update", map[string]any{"org_id": "org_a", "t": "x"}, alice, `{"ops":[{"op":"update","path":"$C/d1","data":{"t":"y"}}]}`, "",
			map[string]any{"org_id": "org_a", "t": "y"}},
		{"own org delete", map[string]any{"org_id": "org_a", "t": "x"}, alice, `{"ops":[{"op":"delete","path":"$C/d1"}]}`, "", nil},
		{"create into another org", nil, alice, `{"ops":[{"op":"create","path":"$C/d1","data":{"org_id":"org_b","t":"x"}}]}`, wire.CodeForbidden, nil},
		{"update moving to another org", map[string]any{"org_id": "org_a", "t": "x"}, alice, `{"ops":[{"op":"update","path":"$C/d1","data":{"org_id":"org_b"}}]}`, wire.CodeForbidden,
			map[string]any{"org_id": "org_a", "t": "x"}},
		{"set moving to another org", map[string]any{"org_id": "org_a", "t": "x"}, alice, `{"ops":[{"op":"set","path":"$C/d1","data":{"org_id":"org_b"}}]}`, wire.CodeForbidden,
			map[string]any{"org_id": "org_a", "t": "x"}},
		{"merge moving to another org", map[string]any{"org_id": "org_a", "t": "x"}, alice, `{"ops":[{"op":"set","path":"$C/d1","data":{"org_id":"org_b"},"merge":["org_id"]}]}`, wire.CodeForbidden,
			map[string]any{"org_id": "org_a", "t": "x"}},
		{"delete of another org's document", map[string]any{"org_id": "org_b", "t": "x"}, alice, `{"ops":[{"op":"delete","path":"$C/d1"}]}`, wire.CodeForbidden,
			map[string]any{"org_id": "org_b", "t": "x"}},
		{"update of another org's document", map[string]any{"org_id": "org_b", "t": "x"}, alice, `{"ops":[{"op":"update","path":"$C/d1","data":{"t":"mine"}}]}`, wire.CodeForbidden,
			map[string]any{"org_id": "org_b", "t": "x"}},
		{"set over another org's document", map[string]any{"org_id": "org_b", "t": "x"}, alice, `{"ops":[{"op":"set","path":"$C/d1","data":{"t":"mine"}}]}`, wire.CodeForbidden,
			map[string]any{"org_id": "org_b", "t": "x"}},
		{"create over another org's document", map[string]any{"org_id": "org_b", "t": "x"}, alice, `{"ops":[{"op":"create","path":"$C/d1","data":{"t":"mine"}}]}`, wire.CodeForbidden,
			map[string]any{"org_id": "org_b", "t": "x"}},
		{"update of a missing document", nil, alice, `{"ops":[{"op":"update","path":"$C/d1","data":{"t":"y"}}]}`, wire.CodeForbidden, nil},
		{"delete of a missing document", nil, alice, `{"ops":[{"op":"delete","path":"$C/d1"}]}`, wire.CodeForbidden, nil},
		{"create of an existing own document", map[string]any{"org_id": "org_a", "t": "x"}, alice, `{"ops":[{"op":"create","path":"$C/d1","data":{"t":"y"}}]}`, wire.CodeAlreadyExists,
			map[string]any{"org_id": "org_a", "t": "x"}},
		{"no rule", nil, alice, `{"ops":[{"op":"create","path":"$C/d1/other/x","data":{"t":"y"}}]}`, wire.CodeForbidden, nil},
		{"idempotency records are out of reach", nil, alice, `{"ops":[{"op":"create","path":"_firegate_writes/x","data":{"t":"y"}}]}`, wire.CodeForbidden, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.t = t
			f.col = fmt.Sprintf("seed%d_%s", i, uniq("c"))
			if tt.seed != nil {
				f.seed("$C/d1", tt.seed)
			}
			res, err := f.write(tt.pr, tt.write)
			if tt.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Written.Results) != 1 || res.Written.Results[0].Path != f.col+"/d1" {
					t.Fatalf("results %+v", res.Written.Results)
				}
			} else {
				wantCode(t, err, tt.code, 0)
			}
			got, _ := f.get("$C/d1")
			if !reflect.DeepEqual(got, tt.after) {
				t.Fatalf("stored %v, want %v", got, tt.after)
			}
		})
	}
}

// A missing document and another org's get the same refusal.
func TestNoExistenceDisclosure(t *testing.T) {
	f := newFixture(t, Config{})
	f.seed("$C/theirs", map[string]any{"org_id": "org_b"})
	for _, op := range []string{`"op":"delete"`, `"op":"update","data":{"t":1}`} {
		_, e1 := f.write(alice, `{"ops":[{`+op+`,"path":"$C/theirs"}]}`)
		_, e2 := f.write(alice, `{"ops":[{`+op+`,"path":"$C/nothing"}]}`)
		if e1 == nil || e2 == nil || e1.Error() != e2.Error() {
			t.Fatalf("%s: %v vs %v", op, e1, e2)
		}
	}
}

func TestStampAndGeneratedID(t *testing.T) {
	f := newFixture(t, Config{})
	res, err := f.write(alice, `{"ops":[{"op":"create","path":"$C","data":{"t":"x"}},{"op":"set","path":"$C/s1","data":{"t":"y"}},
		{"op":"set","path":"$C/m1","data":{"t":"z","u":1},"merge":["t"]},{"op":"create","path":"$C/d1/notes/n1","data":{"t":"n"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	gen := res.Written.Results[0].Path
	if !strings.HasPrefix(gen, f.col+"/") || len(gen) <= len(f.col)+1 {
		t.Fatalf("generated path %q", gen)
	}
	for path, want := range map[string]map[string]any{
		gen:                    {"t": "x", "org_id": "org_a"},
		f.col + "/s1":          {"t": "y", "org_id": "org_a"},
		f.col + "/m1":          {"t": "z", "org_id": "org_a"},
		f.col + "/d1/notes/n1": {"t": "n", "owner_id": "user_alice"},
	} {
		got, ut := f.get(path)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", path, got, want)
		}
		for _, r := range res.Written.Results {
			if r.Path == path && r.UpdateTime != formatTime(ut) {
				t.Errorf("%s: answered update_time %s, stored %s", path, r.UpdateTime, formatTime(ut))
			}
		}
	}
	if res.Written.CommitTime == "" {
		t.Fatal("no commit time")
	}
}

func TestRoleAndPermissionGates(t *testing.T) {
	f := newFixture(t, Config{})
	member := &authz.Principal{UserID: "user_m", OrgID: "org_a", OrgRole: "org:member"}
	// Permission gate on create.
	_, err := f.write(member, `{"ops":[{"op":"create","path":"$C/p/invoices/i1","data":{"amount":1}}]}`)
	wantCode(t, err, wire.CodeForbidden, 0)
	if got, _ := f.get("$C/p/invoices/i1"); got != nil {
		t.Fatalf("written: %v", got)
	}
	if _, err := f.write(alice, `{"ops":[{"op":"create","path":"$C/p/invoices/i1","data":{"amount":1}}]}`); err != nil {
		t.Fatal(err)
	}
	// Role gate on delete.
	_, err = f.write(alice, `{"ops":[{"op":"delete","path":"$C/p/invoices/i1"}]}`)
	wantCode(t, err, wire.CodeForbidden, 0)
	if got, _ := f.get("$C/p/invoices/i1"); got == nil {
		t.Fatal("a member deleted")
	}
	if _, err := f.write(admin, `{"ops":[{"op":"delete","path":"$C/p/invoices/i1"}]}`); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.get("$C/p/invoices/i1"); got != nil {
		t.Fatal("the admin's delete did not happen")
	}
	// notes have no delete expression: absent denies.
	f.seed("$C/p/notes/n1", map[string]any{"owner_id": "user_alice"})
	_, err = f.write(alice, `{"ops":[{"op":"delete","path":"$C/p/notes/n1"}]}`)
	wantCode(t, err, wire.CodeForbidden, 0)
}

func TestPreconditions(t *testing.T) {
	f := newFixture(t, Config{})
	ut := f.seed("$C/d1", map[string]any{"org_id": "org_a", "n": int64(1)})
	stale := ut.Add(-time.Millisecond).UTC().Format(time.RFC3339Nano)
	_, err := f.write(alice, `{"ops":[{"op":"update","path":"$C/d1","data":{"n":2},"precondition":{"update_time":"`+stale+`"}}]}`)
	wantCode(t, err, wire.CodeFailedPrecondition, 0)
	if got, _ := f.get("$C/d1"); got["n"] != int64(1) {
		t.Fatalf("written despite a stale update_time: %v", got)
	}
	res, err := f.write(alice, `{"ops":[{"op":"update","path":"$C/d1","data":{"n":2},"precondition":{"update_time":"`+formatTime(ut)+`"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	// The answer's update_time is the precondition of the next write.
	if _, err := f.write(alice, `{"ops":[{"op":"delete","path":"$C/d1","precondition":{"update_time":"`+res.Written.Results[0].UpdateTime+`"}}]}`); err != nil {
		t.Fatal(err)
	}
	f.seed("$C/d2", map[string]any{"org_id": "org_a"})
	_, err = f.write(alice, `{"ops":[{"op":"set","path":"$C/d2","data":{"x":1},"precondition":{"exists":false}}]}`)
	wantCode(t, err, wire.CodeFailedPrecondition, 0)
	_, err = f.write(alice, `{"ops":[{"op":"set","path":"$C/d3","data":{"x":1},"precondition":{"exists":true}}]}`)
	wantCode(t, err, wire.CodeFailedPrecondition, 0)
	if got, _ := f.get("$C/d3"); got != nil {
		t.Fatalf("written: %v", got)
	}
}

func TestAtomicBatch(t *testing.T) {
	f := newFixture(t, Config{})
	f.seed("$C/theirs", map[string]any{"org_id": "org_b"})
	f.seed("$C/mine", map[string]any{"org_id": "org_a", "n": int64(1)})
	_, err := f.write(alice, `{"ops":[
		{"op":"create","path":"$C/new1","data":{"t":"x"}},
		{"op":"update","path":"$C/mine","data":{"n":2}},
		{"op":"delete","path":"$C/theirs"},
		{"op":"create","path":"$C/new2","data":{"t":"y"}}]}`)
	wantCode(t, err, wire.CodeForbidden, 2)
	for _, p := range []string{"$C/new1", "$C/new2"} {
		if got, _ := f.get(p); got != nil {
			t.Fatalf("%s written: %v", p, got)
		}
	}
	if got, _ := f.get("$C/mine"); got["n"] != int64(1) {
		t.Fatalf("mine changed: %v", got)
	}
	if got, _ := f.get("$C/theirs"); got == nil {
		t.Fatal("theirs deleted")
	}
	// Two operations on one document are refused up front.
	_, err = f.write(alice, `{"ops":[{"op":"create","path":"$C/a","data":{}},{"op":"update","path":"$C/a","data":{"x":1}}]}`)
	wantCode(t, err, wire.CodeBadRequest, 1)
}

func TestTransforms(t *testing.T) {
	f := newFixture(t, Config{})
	seeded := f.seed("$C/d1", map[string]any{"org_id": "org_a", "n": int64(5), "f": 1.5, "tags": []any{"a", "b"}, "m": map[string]any{"k": int64(1)}})
	res, err := f.write(alice, `{"ops":[{"op":"update","path":"$C/d1","data":{
		"n":{"$transform":"increment","by":2},
		"f":{"$transform":"increment","by":0.25},
		"fresh":{"$transform":"increment","by":3},
		"tags":{"$transform":"array_union","values":["b","c"]},
		"m.k":{"$transform":"array_remove","values":[1]},
		"ts":{"$transform":"server_timestamp"}}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	got, ut := f.get("$C/d1")
	if got["n"] != int64(7) || got["f"] != 1.75 || got["fresh"] != int64(3) {
		t.Fatalf("increments: %v", got)
	}
	if !reflect.DeepEqual(got["tags"], []any{"a", "b", "c"}) {
		t.Fatalf("array_union: %v", got["tags"])
	}
	if !reflect.DeepEqual(got["m"], map[string]any{"k": []any{}}) {
		t.Fatalf("array_remove on a non-array: %v", got["m"])
	}
	// The emulator stamps a server timestamp at millisecond precision,
	// not exactly the commit time: it lies between the two commits.
	ts, ok := got["ts"].(time.Time)
	if !ok || ts.After(ut) || ts.Before(seeded.Truncate(time.Millisecond)) {
		t.Fatalf("server_timestamp %v, seeded %v, update time %v", got["ts"], seeded, ut)
	}
	if res.Written.Results[0].UpdateTime != formatTime(ut) {
		t.Fatalf("answer %s, stored %s", res.Written.Results[0].UpdateTime, formatTime(ut))
	}
	if _, err := f.write(alice, `{"ops":[{"op":"update","path":"$C/d1","data":{"tags":{"$transform":"array_remove","values":["a","zz"]}}}]}`); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.get("$C/d1"); !reflect.DeepEqual(got["tags"], []any{"b", "c"}) {
		t.Fatalf("array_remove: %v", got["tags"])
	}
	// Transforms in create data, nested.
	if _, err := f.write(alice, `{"ops":[{"op":"create","path":"$C/d2","data":{"meta":{"at":{"$transform":"server_timestamp"},"n":{"$transform":"increment","by":1}}}}]}`); err != nil {
		t.Fatal(err)
	}
	got, _ = f.get("$C/d2")
	meta := got["meta"].(map[string]any)
	if _, ok := meta["at"].(time.Time); !ok || meta["n"] != int64(1) {
		t.Fatalf("nested transforms: %v", got)
	}
}

// request.doc shows transforms resolved: a rule can bound the result.
func TestRulesSeeResolvedTransforms(t *testing.T) {
	f := newFixture(t, Config{})
	pol, err := authz.ParsePolicy([]byte(`
collections:
  - path: "{c}"
    scope: org
    create: "true"
    update: "request.doc.n <= 10 && request.fields == ['n'] && doc.n < request.doc.n"
`))
	if err != nil {
		t.Fatal(err)
	}
	f.pol = pol
	f.seed("$C/d1", map[string]any{"org_id": "org_a", "n": int64(8)})
	if _, err := f.write(alice, `{"ops":[{"op":"update","path":"$C/d1","data":{"n":{"$transform":"increment","by":2}}}]}`); err != nil {
		t.Fatal(err)
	}
	_, err = f.write(alice, `{"ops":[{"op":"update","path":"$C/d1","data":{"n":{"$transform":"increment","by":1}}}]}`)
	wantCode(t, err, wire.CodeForbidden, 0)
	if got, _ := f.get("$C/d1"); got["n"] != int64(10) {
		t.Fatalf("n = %v", got["n"])
	}
}

func TestIdempotentReplay(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	f := newFixture(t, Config{IdempotencyWindow: time.Hour, Now: clock.Now})
	// A second Writer on its own client: another instance.
	other := newFixture(t, Config{IdempotencyWindow: time.Hour, Now: clock.Now})
	f.seed("$C/c", map[string]any{"org_id": "org_a", "n": int64(0)})
	body := `{"idempotency_key":"k1","ops":[{"op":"update","path":"$C/c","data":{"n":{"$transform":"increment","by":1}}},{"op":"create","path":"$C","data":{"t":"x"}}]}`
	first, err := f.write(alice, body)
	if err != nil {
		t.Fatal(err)
	}
	other.col = f.col
	for _, w := range []*fixture{f, other} {
		again, err := w.write(alice, body)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Replayed || !reflect.DeepEqual(again.Written, first.Written) {
			t.Fatalf("replay %+v\nfirst %+v", again.Written, first.Written)
		}
	}
	if got, _ := f.get("$C/c"); got["n"] != int64(1) {
		t.Fatalf("written twice: n = %v", got["n"])
	}
	// Another user's identical key is another write.
	if _, err := f.write(admin, body); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.get("$C/c"); got["n"] != int64(2) {
		t.Fatalf("n = %v", got["n"])
	}
	// A refused write records nothing: the key stays usable.
	_, err = f.write(alice, `{"idempotency_key":"k2","ops":[{"op":"update","path":"$C/c","data":{"org_id":"org_b"}}]}`)
	wantCode(t, err, wire.CodeForbidden, 0)
	if _, err := f.write(alice, `{"idempotency_key":"k2","ops":[{"op":"update","path":"$C/c","data":{"x":1}}]}`); err != nil {
		t.Fatal(err)
	}
	// Past the window the key is forgotten; at its edge it is not.
	clock.Add(time.Hour - time.Millisecond)
	if r, err := f.write(alice, body); err != nil || !r.Replayed {
		t.Fatalf("inside the window: %+v %v", r, err)
	}
	clock.Add(time.Millisecond)
	if r, err := f.write(alice, body); err != nil || r.Replayed {
		t.Fatalf("at the window's end: %+v %v", r, err)
	}
	if got, _ := f.get("$C/c"); got["n"] != int64(3) {
		t.Fatalf("n = %v", got["n"])
	}
}

// Concurrent idempotent writes with one key: exactly one writes.
func TestIdempotentRace(t *testing.T) {
	f := newFixture(t, Config{})
	f.seed("$C/c", map[string]any{"org_id": "org_a", "n": int64(0)})
	body := `{"idempotency_key":"race","ops":[{"op":"update","path":"$C/c","data":{"n":{"$transform":"increment","by":1}}}]}`
	var wg sync.WaitGroup
	results := make([]*Result, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := wire.DecodeWrite([]byte(strings.ReplaceAll(body, "$C", f.col)))
			results[i], errs[i] = f.w.Apply(context.Background(), f.pol, alice, req)
		}()
	}
	wg.Wait()
	var ok []*Result
	for i, err := range errs {
		if err != nil {
			wantCode(t, err, wire.CodeUnavailable, -1) // contention past the retries
			continue
		}
		ok = append(ok, results[i])
	}
	if len(ok) == 0 {
		t.Fatal("no write succeeded")
	}
	for _, r := range ok[1:] {
		if r.Written.CommitTime != ok[0].Written.CommitTime {
			t.Fatalf("different answers: %+v vs %+v", r.Written, ok[0].Written)
		}
	}
	if got, _ := f.get("$C/c"); got["n"] != int64(1) {
		t.Fatalf("n = %v after one key", got["n"])
	}
}

// Concurrent writers on one document: every acknowledged increment
// counts, the refused ones wrote nothing.
func TestConcurrentWriters(t *testing.T) {
	f := newFixture(t, Config{})
	f.seed("$C/c", map[string]any{"org_id": "org_a", "n": int64(0)})
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := wire.DecodeWrite([]byte(`{"ops":[{"op":"update","path":"` + f.col + `/c","data":{"n":{"$transform":"increment","by":1},"last":` + fmt.Sprint(i) + `}}]}`))
			_, errs[i] = f.w.Apply(context.Background(), f.pol, alice, req)
		}()
	}
	wg.Wait()
	okCount := 0
	for _, err := range errs {
		if err == nil {
			okCount++
			continue
		}
		wantCode(t, err, wire.CodeUnavailable, -1)
	}
	if okCount == 0 {
		t.Fatal("no writer succeeded")
	}
	if got, _ := f.get("$C/c"); got["n"] != int64(okCount) {
		t.Fatalf("n = %v, acknowledged %d", got["n"], okCount)
	}
}

func TestBatchLimit(t *testing.T) {
	f := newFixture(t, Config{})
	ops := make([]string, wire.MaxWriteOps)
	for i := range ops {
		ops[i] = fmt.Sprintf(`{"op":"create","path":"$C/d%d","data":{"i":%d}}`, i, i)
	}
	// At the limit, with the idempotency record on top.
	res, err := f.write(alice, `{"idempotency_key":"big","ops":[`+strings.Join(ops, ",")+`]}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Written.Results) != wire.MaxWriteOps {
		t.Fatalf("%d results", len(res.Written.Results))
	}
	// Past it: refused before anything happens.
	req := wire.WriteRequest{Ops: make([]wire.WriteOp, wire.MaxWriteOps+1)}
	_, err = f.w.Apply(context.Background(), f.pol, alice, req)
	wantCode(t, err, wire.CodeBadRequest, -1)
}

func TestDocumentSizeLimit(t *testing.T) {
	f := newFixture(t, Config{})
	path := f.col + "/big"
	// Two fields: one field value is limited to 1 MiB - 89 bytes.
	base := DocumentSize(path, map[string]any{"org_id": "org_a", "s": "", "t": ""})
	half := (MaxDocumentBytes - base) / 2
	s1, s2 := strings.Repeat("x", half), strings.Repeat("y", MaxDocumentBytes-base-half)
	if n := DocumentSize(path, map[string]any{"org_id": "org_a", "s": s1, "t": s2}); n != MaxDocumentBytes {
		t.Fatalf("size %d", n)
	}
	// Past the edge: refused by the gateway, nothing written.
	_, err := f.write(alice, `{"ops":[{"op":"create","path":"$C/big","data":{"s":"`+s1+`","t":"`+s2+`z"}}]}`)
	wantCode(t, err, wire.CodeBadRequest, 0)
	if got, _ := f.get("$C/big"); got != nil {
		t.Fatal("written")
	}
	// At the edge: accepted by the gateway and by Firestore.
	if _, err := f.write(alice, `{"ops":[{"op":"create","path":"$C/big","data":{"s":"`+s1+`","t":"`+s2+`"}}]}`); err != nil {
		t.Fatal(err)
	}
	// An update that grows the stored document past the limit.
	_, err = f.write(alice, `{"ops":[{"op":"update","path":"$C/big","data":{"y":1}}]}`)
	wantCode(t, err, wire.CodeBadRequest, 0)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// DocumentSize follows Firestore's storage size rules.
func TestDocumentSize(t *testing.T) {
	// name: "tasks"+1 + "t1"+1 + 16 = 25; fixed 32.
	base := 25 + 32
	tests := []struct {
		data map[string]any
		want int
	}{
		{map[string]any{}, base},
		{map[string]any{"a": "xyz"}, base + 2 + 4},
		{map[string]any{"a": int64(1), "b": 2.5, "c": true, "d": nil}, base + 4*2 + 8 + 8 + 1 + 1},
		{map[string]any{"m": map[string]any{"k": "v"}}, base + 2 + (2 + 2)},
		{map[string]any{"l": []any{"ab", int64(1)}}, base + 2 + 3 + 8},
	}
	for _, tt := range tests {
		if got := DocumentSize("tasks/t1", tt.data); got != tt.want {
			t.Errorf("%v: %d, want %d", tt.data, got, tt.want)
		}
	}
}

// TestIdempotencyKeyPerUserAndOrg: a key is one user's within one active
// organization. Another user reusing it, or the same user after switching
// org, gets a write of their own — never the first answer (which names
// another org's documents) and never a silently dropped write.
func TestIdempotencyKeyPerUserAndOrg(t *testing.T) {
	f := newFixture(t, Config{})
	aliceB := *alice
	aliceB.OrgID = "org_b"
	bob := &authz.Principal{UserID: "user_bob", OrgID: "org_a", OrgRole: "org:member"}
	body := `{"idempotency_key":"shared","ops":[{"op":"create","path":"$C","data":{"t":"x"}}]}`
	first, err := f.write(alice, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range []*authz.Principal{bob, &aliceB} {
		r, err := f.write(pr, body)
		if err != nil {
			t.Fatal(err)
		}
		if r.Replayed || r.Written.Results[0].Path == first.Written.Results[0].Path {
			t.Fatalf("%s in %s got the first answer: %+v", pr.UserID, pr.OrgID, r.Written)
		}
		got, _ := f.get(r.Written.Results[0].Path)
		if got["org_id"] != pr.OrgID {
			t.Fatalf("%s's write stored %v", pr.UserID, got)
		}
	}
	// The same user in the same org still replays.
	if r, err := f.write(alice, body); err != nil || !r.Replayed || !reflect.DeepEqual(r.Written, first.Written) {
		t.Fatalf("replay %+v %v", r, err)
	}
}
