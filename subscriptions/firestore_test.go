package subscriptions

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firegate/firegate/internal/emulator/emulatortest"
	"github.com/firegate/firegate/wire"
)

// fsWait bounds every wait for the emulator; generous because the test
// machine may be heavily loaded (only failures wait this long).
const fsWait = 60 * time.Second

var fsProjectSeq atomic.Int64

// fsTestProject returns a project id no other test uses, so tests sharing the
// emulator never see each other's documents.
func fsTestProject() string { return fmt.Sprintf("fg-test-%d", fsProjectSeq.Add(1)) }

// fsNewSource starts (or reuses) the emulator and returns a source on a
// fresh project.
func fsNewSource(t *testing.T, cfg FirestoreConfig) *FirestoreSource {
	t.Helper()
	testEmulator(t)
	if cfg.ProjectID == "" {
		cfg.ProjectID = fsTestProject()
	}
	s, err := NewFirestoreSource(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fsListener runs Source.Listen in a goroutine and collects its snapshots.
type fsListener struct {
	snaps  chan *Snapshot
	done   chan error
	cancel context.CancelFunc
}

func fsListen(t *testing.T, src Source, q Query) *fsListener {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &fsListener{snaps: make(chan *Snapshot, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		l.done <- src.Listen(ctx, q, func(s *Snapshot) {
			c := *s // emit must not retain the Snapshot: copy it
			l.snaps <- &c
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-l.done:
		case <-time.After(fsWait):
			t.Error("listener did not stop")
		}
	})
	return l
}

// next waits for the next snapshot.
func (l *fsListener) next(t *testing.T) *Snapshot {
	t.Helper()
	select {
	case s := <-l.snaps:
		return s
	case err := <-l.done:
		t.Fatalf("listener ended: %v", err)
	case <-time.After(fsWait):
		t.Fatalf("no snapshot within %v", fsWait)
	}
	return nil
}

// quiet asserts that no snapshot arrives for a while (used only after a
// write that must not reach the listener, and followed by a write that
// must, so ordering is still checked).
func (l *fsListener) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case s := <-l.snaps:
		t.Fatalf("unexpected snapshot: %+v", s)
	case <-time.After(d):
	}
}

// stop cancels the listener and returns Listen's result.
func (l *fsListener) stop(t *testing.T) error {
	t.Helper()
	l.cancel()
	select {
	case err := <-l.done:
		l.done <- err // for the cleanup
		return err
	case <-time.After(fsWait):
		t.Fatal("Listen did not return after cancel")
	}
	return nil
}

func fsMustSet(t *testing.T, c *firestore.Client, path string, data map[string]any) {
	t.Helper()
	if _, err := c.Doc(path).Set(context.Background(), data); err != nil {
		t.Fatalf("set %s: %v", path, err)
	}
}

func fsIDs(docs []Document) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.ID
	}
	return out
}

func fsChanges(cs []Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s:%s", fsKindName(c.Kind), c.Doc.Path)
	}
	return out
}

func fsKindName(k ChangeKind) string {
	switch k {
	case Added:
		return "added"
	case Modified:
		return "modified"
	case Removed:
		return "removed"
	}
	return "?"
}

func fsOrgQuery(coll, org string) Query {
	return Query{Collection: coll, Filters: []wire.Filter{{Field: "org_id", Op: "==", Value: org}}}
}

func TestFirestoreListenScopedChanges(t *testing.T) {
	src := fsNewSource(t, FirestoreConfig{})
	c := src.Client()
	ctx := context.Background()
	fsMustSet(t, c, "tasks/t1", map[string]any{"org_id": "orgA", "title": "one"})
	fsMustSet(t, c, "tasks/t2", map[string]any{"org_id": "orgB", "title": "two"})

	before := time.Now()
	a := fsListen(t, src, fsOrgQuery("tasks", "orgA"))
	b := fsListen(t, src, fsOrgQuery("tasks", "orgB"))

	first := a.next(t)
	if !first.Reset || len(first.Changes) != 0 {
		t.Fatalf("first snapshot: Reset=%v changes=%d, want a reset without changes", first.Reset, len(first.Changes))
	}
	if got := fsIDs(first.Docs); !reflect.DeepEqual(got, []string{"t1"}) {
		t.Fatalf("reset docs = %v, want [t1]", got)
	}
	d := first.Docs[0]
	if d.Path != "tasks/t1" || !reflect.DeepEqual(d.Data, map[string]any{"org_id": "orgA", "title": "one"}) || d.UpdateTime.IsZero() {
		t.Fatalf("reset doc = %+v", d)
	}
	if first.ReadTime.IsZero() || first.ReceivedAt.Before(before) || first.ReceivedAt.After(time.Now()) {
		t.Fatalf("ReadTime %v ReceivedAt %v", first.ReadTime, first.ReceivedAt)
	}
	if bf := b.next(t); !bf.Reset || !reflect.DeepEqual(fsIDs(bf.Docs), []string{"t2"}) {
		t.Fatalf("orgB reset = %+v", bf)
	}

	steps := []struct {
		name  string
		write func() error
		wantA []string // changes orgA's listener sees; nil: none
		wantB []string
		dataA map[string]any // data of the single non-removed change, if checked
	}{
		{
			name: "add in org",
			write: func() error {
				_, err := c.Doc("tasks/t3").Set(ctx, map[string]any{"org_id": "orgA", "title": "three"})
				return err
			},
			wantA: []string{"added:tasks/t3"},
			dataA: map[string]any{"org_id": "orgA", "title": "three"},
		},
		{
			name: "modify carries the whole document",
			write: func() error {
				_, err := c.Doc("tasks/t1").Update(ctx, []firestore.Update{{Path: "title", Value: "one!"}})
				return err
			},
			wantA: []string{"modified:tasks/t1"},
			dataA: map[string]any{"org_id": "orgA", "title": "one!"},
		},
		{
			name:  "add in other org",
			write: func() error { _, err := c.Doc("tasks/t4").Set(ctx, map[string]any{"org_id": "orgB"}); return err },
			wantB: []string{"added:tasks/t4"},
		},
		{
			name: "move to other org",
			write: func() error {
				_, err := c.Doc("tasks/t3").Update(ctx, []firestore.Update{{Path: "org_id", Value: "orgB"}})
				return err
			},
			wantA: []string{"removed:tasks/t3"},
			wantB: []string{"added:tasks/t3"},
		},
		{
			name:  "delete",
			write: func() error { _, err := c.Doc("tasks/t1").Delete(ctx); return err },
			wantA: []string{"removed:tasks/t1"},
		},
	}
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		for _, side := range []struct {
			name string
			l    *fsListener
			want []string
		}{{"orgA", a, st.wantA}, {"orgB", b, st.wantB}} {
			if side.want == nil {
				continue
			}
			s := side.l.next(t)
			if s.Reset || len(s.Docs) != 0 || s.ReadTime.IsZero() {
				t.Fatalf("%s/%s: snapshot Reset=%v docs=%d ReadTime=%v", st.name, side.name, s.Reset, len(s.Docs), s.ReadTime)
			}
			if got := fsChanges(s.Changes); !reflect.DeepEqual(got, side.want) {
				t.Fatalf("%s/%s: changes %v, want %v", st.name, side.name, got, side.want)
			}
			ch := s.Changes[0]
			if ch.Kind == Removed {
				if ch.Doc.Data != nil || !ch.Doc.UpdateTime.IsZero() || ch.Doc.ID == "" {
					t.Fatalf("%s/%s: removed doc carries %+v, want id and path only", st.name, side.name, ch.Doc)
				}
			} else if side.name == "orgA" && st.dataA != nil && !reflect.DeepEqual(ch.Doc.Data, st.dataA) {
				t.Fatalf("%s: data %v, want %v", st.name, ch.Doc.Data, st.dataA)
			}
		}
	}
	// Nothing else was delivered (a write for one org never reached the
	// other's listener, checked in order by the steps above).
	a.quiet(t, 200*time.Millisecond)
	b.quiet(t, 10*time.Millisecond)
}

func TestFirestoreNestedCollection(t *testing.T) {
	src := fsNewSource(t, FirestoreConfig{})
	c := src.Client()
	fsMustSet(t, c, "projects/p1/tasks/t9", map[string]any{"org_id": "o", "n": int64(9)})
	fsMustSet(t, c, "projects/p2/tasks/t8", map[string]any{"org_id": "o"})
	fsMustSet(t, c, "tasks/t7", map[string]any{"org_id": "o"})

	l := fsListen(t, src, fsOrgQuery("projects/p1/tasks", "o"))
	s := l.next(t)
	if len(s.Docs) != 1 || s.Docs[0].ID != "t9" || s.Docs[0].Path != "projects/p1/tasks/t9" || s.Docs[0].Data["n"] != int64(9) {
		t.Fatalf("reset = %+v", s.Docs)
	}
	fsMustSet(t, c, "projects/p2/tasks/t10", map[string]any{"org_id": "o"})
	fsMustSet(t, c, "projects/p1/tasks/t11", map[string]any{"org_id": "o"})
	if got := fsChanges(l.next(t).Changes); !reflect.DeepEqual(got, []string{"added:projects/p1/tasks/t11"}) {
		t.Fatalf("changes = %v", got)
	}
}

func TestFirestoreOrderByLimit(t *testing.T) {
	src := fsNewSource(t, FirestoreConfig{})
	c := src.Client()
	for i := 1; i <= 5; i++ {
		fsMustSet(t, c, fmt.Sprintf("items/i%d", i), map[string]any{"org_id": "o", "n": int64(i)})
	}
	q := fsOrgQuery("items", "o")
	q.OrderBy = []wire.Order{{Field: "n", Direction: "desc"}}
	q.Limit = 2
	l := fsListen(t, src, q)
	if got := fsIDs(l.next(t).Docs); !reflect.DeepEqual(got, []string{"i5", "i4"}) {
		t.Fatalf("reset = %v, want [i5 i4] in order", got)
	}
	fsMustSet(t, c, "items/i6", map[string]any{"org_id": "o", "n": int64(6)})
	if got := fsChanges(l.next(t).Changes); !reflect.DeepEqual(got, []string{"removed:items/i4", "added:items/i6"}) {
		t.Fatalf("after adding i6: %v", got)
	}
	if _, err := c.Doc("items/i6").Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fsChanges(l.next(t).Changes); !reflect.DeepEqual(got, []string{"removed:items/i6", "added:items/i4"}) {
		t.Fatalf("after deleting i6: %v", got)
	}

	// Ascending is the default direction.
	q.OrderBy = []wire.Order{{Field: "n"}}
	q.Limit = 3
	l2 := fsListen(t, src, q)
	if got := fsIDs(l2.next(t).Docs); !reflect.DeepEqual(got, []string{"i1", "i2", "i3"}) {
		t.Fatalf("asc reset = %v", got)
	}
}

func TestFirestoreFilterOps(t *testing.T) {
	src := fsNewSource(t, FirestoreConfig{})
	c := src.Client()
	docs := map[string]map[string]any{
		"a": {"org_id": "o", "n": int64(1), "s": "x", "tags": []any{"red", "blue"}, "opt": nil},
		"b": {"org_id": "o", "n": int64(2), "s": "y", "tags": []any{"green"}, "opt": "set"},
		"c": {"org_id": "o", "n": 3.5, "s": "z", "tags": []any{}, "opt": "set"},
		"d": {"org_id": "other", "n": int64(2), "s": "y", "tags": []any{"red"}},
	}
	for id, d := range docs {
		fsMustSet(t, c, "f/"+id, d)
	}
	tests := []struct {
		op    string
		field string
		value any
		want  []string
	}{
		{"==", "n", int64(2), []string{"b"}},
		{"==", "n", 2.0, []string{"b"}}, // numbers compare across int and double
		{"!=", "s", "x", []string{"b", "c"}},
		{"<", "n", int64(2), []string{"a"}},
		{"<=", "n", int64(2), []string{"a", "b"}},
		{">", "n", int64(2), []string{"c"}},
		{">=", "n", 3.5, []string{"c"}},
		{"in", "s", []any{"x", "z"}, []string{"a", "c"}},
		{"not-in", "s", []any{"x", "z"}, []string{"b"}},
		{"array-contains", "tags", "red", []string{"a"}},
		{"array-contains-any", "tags", []any{"green", "blue"}, []string{"a", "b"}},
		{"==", "opt", nil, []string{"a"}},
		{"==", "s", json.Number("7"), nil},
		{"in", "n", []any{json.Number("1"), json.Number("3.5")}, []string{"a", "c"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %s %v", tc.field, tc.op, tc.value), func(t *testing.T) {
			q := fsOrgQuery("f", "o")
			q.Filters = append(q.Filters, wire.Filter{Field: tc.field, Op: tc.op, Value: tc.value})
			l := fsListen(t, src, q)
			got := fsIDs(l.next(t).Docs)
			sort.Strings(got)
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("docs = %v, want %v", got, tc.want)
			}
			if err := l.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("Listen returned %v, want context.Canceled", err)
			}
		})
	}
}

// TestFirestoreValueMapping writes every Firestore value type through the
// client and checks what a listener delivers, and that it encodes as JSON.
func TestFirestoreValueMapping(t *testing.T) {
	src := fsNewSource(t, FirestoreConfig{})
	c := src.Client()
	ts := time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.FixedZone("x", 2*3600))
	tests := []struct {
		field string
		in    any
		want  any
	}{
		{"string", "héllo", "héllo"},
		{"int", int64(math.MaxInt64), int64(math.MaxInt64)},
		{"negint", int64(-42), int64(-42)},
		{"float", 1.5, 1.5},
		{"floatint", 2.0, 2.0},
		{"nan", math.NaN(), "NaN"},
		{"inf", math.Inf(1), "Infinity"},
		{"neginf", math.Inf(-1), "-Infinity"},
		{"bool", true, true},
		{"null", nil, nil},
		{"time", ts, "2024-02-29T21:59:58.123456Z"},
		{"time_whole", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), "2020-01-01T00:00:00Z"},
		{"bytes", []byte{0, 1, 2, 0xfe, 0xff}, "AAEC/v8="},
		{"bytes_empty", []byte{}, ""},
		{"ref", c.Doc("tasks/t1"), "tasks/t1"},
		{"ref_nested", c.Doc("projects/p1/tasks/t9"), "projects/p1/tasks/t9"},
		{"geo", &latlng.LatLng{Latitude: 48.8566, Longitude: -2.35}, map[string]any{"latitude": 48.8566, "longitude": -2.35}},
		{"array", []any{int64(1), "two", 3.0, nil, []byte("hi")}, []any{int64(1), "two", 3.0, nil, "aGk="}},
		{"map", map[string]any{"a": map[string]any{"b": []any{ts, c.Doc("x/y")}}, "n": int64(1)},
			map[string]any{"a": map[string]any{"b": []any{"2024-02-29T21:59:58.123456Z", "x/y"}}, "n": int64(1)}},
		{"array_of_maps", []any{map[string]any{"k": "v"}}, []any{map[string]any{"k": "v"}}},
		{"empty_map", map[string]any{}, map[string]any{}},
		{"empty_array", []any{}, []any{}},
		{"vector", firestore.Vector64{1, 2.5}, []any{1.0, 2.5}},
		{"vector32", firestore.Vector32{0.5}, []any{0.5}},
	}
	in := map[string]any{"org_id": "o"}
	want := map[string]any{"org_id": "o"}
	for _, tc := range tests {
		in[tc.field] = tc.in
		want[tc.field] = tc.want
	}
	fsMustSet(t, c, "values/v1", in)
	l := fsListen(t, src, fsOrgQuery("values", "o"))
	s := l.next(t)
	if len(s.Docs) != 1 {
		t.Fatalf("docs = %v", fsIDs(s.Docs))
	}
	got := s.Docs[0].Data
	for _, tc := range tests {
		if !reflect.DeepEqual(got[tc.field], tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.field, got[tc.field], tc.want)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d fields, want %d", len(got), len(want))
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("delivered data does not encode as JSON: %v", err)
	}
	// The same values arrive through a modification.
	if _, err := c.Doc("values/v1").Update(context.Background(), []firestore.Update{{Path: "bool", Value: false}}); err != nil {
		t.Fatal(err)
	}
	ch := l.next(t).Changes
	if len(ch) != 1 || ch[0].Kind != Modified || ch[0].Doc.Data["bool"] != false || ch[0].Doc.Data["time"] != "2024-02-29T21:59:58.123456Z" {
		t.Fatalf("modified = %+v", ch)
	}
}

func TestFirestoreCancel(t *testing.T) {
	src := fsNewSource(t, FirestoreConfig{MaxFeeds: 90})
	fsMustSet(t, src.Client(), "tasks/t1", map[string]any{"org_id": "o"})

	t.Run("cancel after first snapshot", func(t *testing.T) {
		l := fsListen(t, src, fsOrgQuery("tasks", "o"))
		l.next(t)
		if got := src.loads(); got[0] != 1 {
			t.Fatalf("loads = %v while listening", got)
		}
		if err := l.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Listen = %v, want context.Canceled", err)
		}
		if got := src.loads(); got[0] != 0 {
			t.Fatalf("loads = %v after stop", got)
		}
	})
	t.Run("cancel before first snapshot", func(t *testing.T) {
		// A listener on a query that never produces a snapshot quickly is
		// not needed: cancel right away and Listen must still return.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Listen(ctx, fsOrgQuery("tasks", "o"), func(*Snapshot) {}) }()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Listen = %v, want context.Canceled", err)
			}
		case <-time.After(fsWait):
			t.Fatal("Listen did not return")
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := src.Listen(ctx, fsOrgQuery("tasks", "o"), func(*Snapshot) { t.Error("emit called") }); !errors.Is(err, context.Canceled) {
			t.Fatalf("Listen = %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n := 0
		err := src.Listen(ctx, fsOrgQuery("tasks", "o"), func(*Snapshot) { n++ })
		if !errors.Is(err, context.DeadlineExceeded) || n > 1 {
			t.Fatalf("Listen = %v after %d snapshots, want DeadlineExceeded after at most 1", err, n)
		}
	})
}

func TestFirestoreRejectedQueries(t *testing.T) {
	src := fsNewSource(t, FirestoreConfig{})
	many := make([]any, 31)
	for i := range many {
		many[i] = int64(i)
	}
	thirty := many[:30]
	f := func(field, op string, v any) wire.Filter { return wire.Filter{Field: field, Op: op, Value: v} }
	tests := []struct {
		name string
		q    Query
		code codes.Code
		msg  string
	}{
		{"in over 30 values", Query{Collection: "t", Filters: []wire.Filter{f("n", "in", many)}}, codes.InvalidArgument, "30"},
		{"in with an empty list", Query{Collection: "t", Filters: []wire.Filter{f("n", "in", []any{})}}, codes.InvalidArgument, "IN"},
		{"in with a scalar", Query{Collection: "t", Filters: []wire.Filter{f("n", "in", int64(3))}}, codes.InvalidArgument, "ArrayValue"},
		{"two not-equal filters", Query{Collection: "t", Filters: []wire.Filter{f("a", "not-in", []any{int64(1)}), f("b", "!=", int64(3))}}, codes.InvalidArgument, "NOT_EQUAL"},
		{"two array-contains", Query{Collection: "t", Filters: []wire.Filter{f("a", "array-contains", "x"), f("a", "array-contains", "y")}}, codes.FailedPrecondition, "array-contains"},
		{"bad field path", Query{Collection: "t", Filters: []wire.Filter{f("a..b", "==", int64(1))}}, codes.InvalidArgument, "field path"},
		{"unknown operator", Query{Collection: "t", Filters: []wire.Filter{f("a", "~", int64(1))}}, codes.InvalidArgument, "operator"},
		{"bad direction", Query{Collection: "t", OrderBy: []wire.Order{{Field: "a", Direction: "up"}}}, codes.InvalidArgument, "direction"},
		{"document path", Query{Collection: "t/d"}, codes.InvalidArgument, "collection path"},
		{"empty segment", Query{Collection: "a//b"}, codes.InvalidArgument, "collection path"},
		{"empty collection", Query{}, codes.InvalidArgument, "collection path"},
		{"negative limit", Query{Collection: "t", Limit: -1}, codes.InvalidArgument, "limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), fsWait)
			defer cancel()
			err := src.Listen(ctx, tc.q, func(s *Snapshot) { t.Errorf("emit called: %+v", s) })
			var ue *UpstreamError
			if !errors.As(err, &ue) {
				t.Fatalf("Listen = %v, want *UpstreamError", err)
			}
			if ue.Code != tc.code || !strings.Contains(ue.Message, tc.msg) || !ue.Permanent() {
				t.Fatalf("UpstreamError{%v, %q}, want code %v mentioning %q, permanent", ue.Code, ue.Message, tc.code, tc.msg)
			}
		})
	}
	// At the edge: 30 values are accepted.
	l := fsListen(t, src, Query{Collection: "t", Filters: []wire.Filter{f("n", "in", thirty)}})
	if s := l.next(t); !s.Reset {
		t.Fatal("30 in-values: no reset snapshot")
	}
}

func TestFirestorePing(t *testing.T) {
	testEmulator(t)
	// Stopping the shared emulator would break other tests: ping one of
	// this test's own.
	e := emulatortest.Start(t)
	t.Setenv("FIRESTORE_EMULATOR_HOST", e.Host)
	src, err := NewFirestoreSource(context.Background(), FirestoreConfig{ProjectID: fsTestProject(), MaxFeeds: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// A fresh emulator on a busy machine may take longer than Ping's own
	// 5 s default to answer its first read: the caller's deadline rules.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := src.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// Ping follows its context: a cancelled one ends it with Canceled
	// (Ping's own timeout would end it otherwise).
	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if err := src.Ping(cancelled); !errors.Is(err, context.Canceled) && status.Code(errors.Unwrap(err)) != codes.Canceled {
		t.Fatalf("Ping with a cancelled context = %v, want Canceled", err)
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := src.Ping(ctx2); err == nil || !strings.Contains(err.Error(), "failed to ping firestore") {
		t.Fatalf("Ping after stop = %v, want an error", err)
	}
}

func TestFirestoreConfig(t *testing.T) {
	testEmulator(t)
	tests := []struct {
		cfg     FirestoreConfig
		conns   int
		wantErr string
	}{
		{FirestoreConfig{ProjectID: "p"}, 12, ""}, // default 1000 Feeds
		{FirestoreConfig{ProjectID: "p", MaxFeeds: 1}, 1, ""},
		{FirestoreConfig{ProjectID: "p", MaxFeeds: FeedsPerConn}, 1, ""},
		{FirestoreConfig{ProjectID: "p", MaxFeeds: FeedsPerConn + 1}, 2, ""},
		{FirestoreConfig{ProjectID: "p", MaxFeeds: 2 * FeedsPerConn}, 2, ""},
		{FirestoreConfig{ProjectID: "p", MaxFeeds: 2*FeedsPerConn + 1}, 3, ""},
		{FirestoreConfig{ProjectID: "p", MaxFeeds: -1}, 0, "negative"},
		{FirestoreConfig{}, 0, "ProjectID is required"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%+v", tc.cfg), func(t *testing.T) {
			s, err := NewFirestoreSource(context.Background(), tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Conns() != tc.conns {
				t.Fatalf("Conns = %d, want %d", s.Conns(), tc.conns)
			}
		})
	}
}

// TestFirestorePool checks that listeners spread over the pool's
// connections, least loaded first, and that the pool really is several TCP
// connections to the emulator even though FIRESTORE_EMULATOR_HOST is set.
func TestFirestorePool(t *testing.T) {
	e := testEmulator(t)
	_, portStr, _ := strings.Cut(e.Host, ":")
	port, _ := strconv.Atoi(portStr)
	base := fsEstablishedTo(t, port)

	src := fsNewSource(t, FirestoreConfig{MaxFeeds: 3 * FeedsPerConn})
	fsMustSet(t, src.Client(), "tasks/t1", map[string]any{"org_id": "o"})
	var ls []*fsListener
	for i := 0; i < 7; i++ {
		l := fsListen(t, src, fsOrgQuery("tasks", fmt.Sprintf("o%d", i%2)))
		l.next(t)
		ls = append(ls, l)
	}
	if got := src.loads(); !reflect.DeepEqual(got, []int{3, 2, 2}) {
		t.Fatalf("loads = %v, want [3 2 2]", got)
	}
	fresh := 0
	for inode := range fsEstablishedTo(t, port) {
		if !base[inode] {
			fresh++
		}
	}
	if fresh != 3 {
		t.Fatalf("%d new connections to the emulator, want 3", fresh)
	}
	// Freed slots are reused first.
	for _, i := range []int{1, 4} { // listeners 1 and 4 sit on clients 1 and 1
		if err := ls[i].stop(t); !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
	if got := src.loads(); !reflect.DeepEqual(got, []int{3, 0, 2}) {
		t.Fatalf("loads after stopping two = %v, want [3 0 2]", got)
	}
	l := fsListen(t, src, fsOrgQuery("tasks", "o"))
	if s := l.next(t); len(s.Docs) != 1 {
		t.Fatalf("docs = %v", fsIDs(s.Docs))
	}
	if got := src.loads(); !reflect.DeepEqual(got, []int{3, 1, 2}) {
		t.Fatalf("loads = %v, want [3 1 2]", got)
	}

	// Close ends running listeners with an error and refuses new ones.
	if err := src.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-l.done:
		var ue *UpstreamError
		if !errors.As(err, &ue) {
			t.Fatalf("Listen after Close = %v, want *UpstreamError", err)
		}
		l.done <- err
	case <-time.After(fsWait):
		t.Fatal("listener still running after Close")
	}
	err := src.Listen(context.Background(), fsOrgQuery("tasks", "o"), func(*Snapshot) {})
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Code != codes.Unavailable {
		t.Fatalf("Listen on a closed source = %v, want Unavailable", err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// fsEstablishedTo returns the socket inodes of this network namespace's
// established TCP connections whose remote port is port (client sides of
// connections to the emulator).
func fsEstablishedTo(t *testing.T, port int) map[string]bool {
	t.Helper()
	n := map[string]bool{}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "01" {
				continue
			}
			_, rp, ok := strings.Cut(fields[2], ":")
			if !ok {
				continue
			}
			p, err := strconv.ParseUint(rp, 16, 16)
			if err == nil && int(p) == port {
				n[fields[9]] = true
			}
		}
		f.Close()
	}
	return n
}

func TestFirestoreNamedDatabase(t *testing.T) {
	project := fsTestProject()
	def := fsNewSource(t, FirestoreConfig{ProjectID: project})
	other := fsNewSource(t, FirestoreConfig{ProjectID: project, DatabaseID: "other"})
	fsMustSet(t, def.Client(), "tasks/d1", map[string]any{"org_id": "o"})
	fsMustSet(t, other.Client(), "tasks/x1", map[string]any{"org_id": "o"})
	for _, tc := range []struct {
		src  *FirestoreSource
		want string
	}{{def, "d1"}, {other, "x1"}} {
		l := fsListen(t, tc.src, fsOrgQuery("tasks", "o"))
		s := l.next(t)
		if len(s.Docs) != 1 || s.Docs[0].ID != tc.want || s.Docs[0].Path != "tasks/"+tc.want {
			t.Fatalf("docs = %+v, want only %s", s.Docs, tc.want)
		}
	}
}
