package subscriptions

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

func hsHistCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var pb dto.Metric
	if err := h.(prometheus.Metric).Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount()
}

func TestSnapshotThenChangesInOrder(t *testing.T) {
	hsLeakCheck(t)
	m := metrics.New(nil)
	h, src, _ := hsNewHub(t, HubConfig{Metrics: m})
	s, r := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	ds := r.deliveries()
	if len(ds) != 1 || ds[0].sm.Type != "subscribed" || ds[0].sm.Epoch != s.Epoch() || ds[0].sm.Resumed || ds[0].catchUp {
		t.Fatalf("before the first upstream snapshot got %+v, want only subscribed", ds)
	}
	if want := `{"type":"subscribed","id":"s1","epoch":"` + s.Epoch() + `","resumed":false}`; ds[0].raw != want {
		t.Errorf("subscribed = %s, want %s", ds[0].raw, want)
	}
	if len(s.Epoch()) != 11 {
		t.Errorf("epoch %q: want 8 random bytes in base64url (11 chars)", s.Epoch())
	}
	l := src.Listener(t, 0)
	l.Emit(t, hsReset(hsDoc("b", 1, "x", int64(1)), hsDoc("a", 1, "x", int64(2))))
	ds = r.take()[1:]
	if len(ds) != 1 || ds[0].sm.Type != "snapshot" || ds[0].sm.Seq != 0 || !ds[0].sm.Final || !ds[0].catchUp {
		t.Fatalf("after Reset got %+v, want one final snapshot at seq 0 with catchUp", hsTypes(ds))
	}
	if ids := []string{ds[0].sm.Docs[0].ID, ds[0].sm.Docs[1].ID}; !slices.Equal(ids, []string{"b", "a"}) {
		t.Errorf("snapshot order %v, want upstream order [b a]", ids)
	}

	snap := hsChanges(hsAdded(hsDoc("c", 1, "x", int64(3))))
	l.Emit(t, snap)
	ds = r.take()
	if len(ds) != 1 || ds[0].catchUp {
		t.Fatalf("got %v, want one live changes", hsTypes(ds))
	}
	want := `{"type":"changes","sub":"s1","seq":1,"read_time":"2025-01-02T03:05:05Z","changes":[` +
		`{"kind":"added","id":"c","path":"tasks/c","data":{"x":3},"update_time":"2025-01-02T03:04:06Z"}]}`
	if ds[0].raw != want {
		t.Errorf("changes frame\n got %s\nwant %s", ds[0].raw, want)
	}
	if ds[0].m.Seq != 1 || !ds[0].m.ReceivedAt.Equal(snap.ReceivedAt) || ds[0].m.End {
		t.Errorf("message Seq %d ReceivedAt %v End %v", ds[0].m.Seq, ds[0].m.ReceivedAt, ds[0].m.End)
	}

	l.Emit(t, hsChanges(hsModified(hsDoc("a", 2, "x", int64(4))), hsRemoved("b")))
	ds = r.take()
	if len(ds) != 1 || ds[0].sm.Seq != 2 || !slices.Equal(hsChangeList(ds[0].sm), []string{"modified:a", "removed:b"}) {
		t.Fatalf("got %v seq %d, want modified:a removed:b at seq 2", hsChangeList(ds[0].sm), ds[0].sm.Seq)
	}
	if !strings.Contains(ds[0].raw, `{"kind":"removed","id":"b","path":"tasks/b"}`) {
		t.Errorf("removed change carries more than id and path: %s", ds[0].raw)
	}
	if got := testutil.ToFloat64(m.UpstreamChanges); got != 5 {
		t.Errorf("upstream_changes_total = %v, want 5", got)
	}
	if got := hsHistCount(t, m.UpstreamLag); got != 3 {
		t.Errorf("upstream_lag_seconds samples = %d, want 3 (one per snapshot)", got)
	}
	r.check(t)
}

func TestLateSubscriberDoesNotBumpSeq(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	_, r1 := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	l := src.Listener(t, 0)
	l.Emit(t, hsReset(hsDoc("a", 1)))
	l.Emit(t, hsChanges(hsAdded(hsDoc("b", 1))))
	l.Emit(t, hsChanges(hsModified(hsDoc("a", 2))))
	f := h.feedFor("k")
	_, r2 := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	_, r3 := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	d2, d3 := r2.deliveries(), r3.deliveries()
	if len(d2) != 2 || d2[1].sm.Type != "snapshot" || d2[1].sm.Seq != 2 || len(d2[1].sm.Docs) != 2 || !d2[1].catchUp {
		t.Fatalf("late subscriber got %v", d2)
	}
	if d2[1].m != d3[1].m {
		t.Error("two late subscribers at one seq did not share the encoded snapshot")
	}
	if hsSeq(f) != 2 {
		t.Errorf("late subscribers moved seq to %d", hsSeq(f))
	}
	l.Emit(t, hsChanges(hsRemoved("b")))
	for i, r := range []*hsRecorder{r1, r2, r3} {
		ds := r.deliveries()
		last := ds[len(ds)-1]
		if last.sm.Type != "changes" || last.sm.Seq != 3 {
			t.Errorf("subscriber %d: next message %s seq %d, want changes seq 3", i, last.sm.Type, last.sm.Seq)
		}
		st, seq := r.snapshotState()
		if !hsMapsEqual(st, hsVisible(f)) || seq != 3 {
			t.Errorf("subscriber %d state %v @%d", i, st, seq)
		}
		r.check(t)
	}
}

func TestSnapshotChunking(t *testing.T) {
	// Four equally sized documents: three in the Reset, the fourth added
	// (so the late subscriber's snapshot is at seq 1).
	mk := func(i int) Document { return hsDoc("d"+string(rune('0'+i)), 1, "payload", strings.Repeat("x", 100)) }
	var wireDocs []wire.Doc
	for i := 1; i <= 4; i++ {
		d := mk(i)
		data, _ := json.Marshal(d.Data)
		wireDocs = append(wireDocs, wire.Doc{ID: d.ID, Path: d.Path, Data: data, UpdateTime: d.UpdateTime.UTC().Format(time.RFC3339Nano)})
	}
	size := func(docs []wire.Doc, final bool) int {
		return (&Message{Frame: wire.SnapshotFrame(1, docs, final)}).Size()
	}
	L := len(wire.AppendDoc(nil, &wireDocs[0]))
	eOpen, eFinal := size(nil, false), size(nil, true)
	total := size(wireDocs, true)
	if total != eFinal+4*L+3 || eOpen != eFinal+1 {
		t.Fatalf("size model broken: total %d, eFinal %d, eOpen %d, L %d", total, eFinal, eOpen, L)
	}
	tests := []struct {
		name   string
		limit  int
		chunks []int // docs per chunk
	}{
		{"all fit exactly", total, []int{4}},
		{"one byte short of all", total - 1, []int{3, 1}},
		{"two per chunk exactly", eOpen + 2*L + 1, []int{2, 2}},
		{"one byte short of two", eOpen + 2*L, []int{1, 1, 2}}, // the final chunk is a byte smaller
		{"smaller than any doc", 10, []int{1, 1, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			h, src, _ := hsNewHub(t, HubConfig{SnapshotChunkBytes: tc.limit})
			hsSubscribe(t, h, hsSpec("k", "org"), nil)
			l := src.Listener(t, 0)
			l.Emit(t, hsReset(mk(1), mk(2), mk(3)))
			l.Emit(t, hsChanges(hsAdded(mk(4))))
			_, r := hsSubscribe(t, h, hsSpec("k", "org"), nil)
			ds := r.deliveries()[1:]
			var counts []int
			var ids []string
			for i, d := range ds {
				counts = append(counts, len(d.sm.Docs))
				if d.sm.Type != "snapshot" || d.sm.Seq != 1 || d.m.Seq != 1 {
					t.Errorf("chunk %d: %s seq %d, want snapshot seq 1", i, d.sm.Type, d.sm.Seq)
				}
				if d.sm.Final != (i == len(ds)-1) {
					t.Errorf("chunk %d: final=%v", i, d.sm.Final)
				}
				if d.catchUp != (i == 0) {
					t.Errorf("chunk %d: catchUp=%v", i, d.catchUp)
				}
				if d.m.Size() > tc.limit && len(d.sm.Docs) > 1 {
					t.Errorf("chunk %d: %d bytes over the %d limit with %d docs", i, d.m.Size(), tc.limit, len(d.sm.Docs))
				}
				for _, doc := range d.sm.Docs {
					ids = append(ids, doc.ID)
				}
			}
			if !slices.Equal(counts, tc.chunks) {
				t.Errorf("docs per chunk %v, want %v", counts, tc.chunks)
			}
			if !slices.Equal(ids, []string{"d1", "d2", "d3", "d4"}) {
				t.Errorf("docs %v, want d1..d4 in order", ids)
			}
			r.check(t)
		})
	}
	t.Run("empty result", func(t *testing.T) {
		hsLeakCheck(t)
		h, src, _ := hsNewHub(t, HubConfig{SnapshotChunkBytes: 10})
		_, r := hsSubscribe(t, h, hsSpec("k", "org"), nil)
		src.Listener(t, 0).Emit(t, hsReset())
		ds := r.deliveries()
		if len(ds) != 2 || !strings.HasSuffix(ds[1].raw, `"seq":0,"docs":[],"final":true}`) {
			t.Errorf("empty snapshot %v", ds)
		}
	})
}

func TestFilterTransitions(t *testing.T) {
	hsLeakCheck(t)
	calls := 0
	spec := hsSpec("k", "org")
	spec.Filter = func(id, path string, data map[string]any) bool {
		calls++
		if path != "tasks/"+id {
			t.Errorf("filter got path %q for %q", path, id)
		}
		return data["visible"] == true
	}
	h, src, _ := hsNewHub(t, HubConfig{})
	var recs []*hsRecorder
	for i := 0; i < 3; i++ {
		_, r := hsSubscribe(t, h, spec, nil)
		recs = append(recs, r)
	}
	l := src.Listener(t, 0)
	l.Emit(t, hsReset(hsDoc("a", 1, "visible", true), hsDoc("b", 1, "visible", false)))
	for _, r := range recs {
		r.take()
	}
	steps := []struct {
		name   string
		change Change
		want   []string // nil: no message at all
	}{
		{"modified while visible", hsModified(hsDoc("a", 2, "visible", true)), []string{"modified:a"}},
		{"stops matching", hsModified(hsDoc("a", 3, "visible", false)), []string{"removed:a"}},
		{"starts matching", hsModified(hsDoc("b", 2, "visible", true)), []string{"added:b"}},
		{"added never visible", hsAdded(hsDoc("c", 1, "visible", false)), nil},
		{"modified never visible", hsModified(hsDoc("c", 2, "visible", false)), nil},
		{"removed never visible", hsRemoved("c"), nil},
		{"removed while visible", hsRemoved("b"), []string{"removed:b"}},
		{"removed unknown", hsRemoved("zz"), nil},
		{"added visible", hsAdded(hsDoc("d", 1, "visible", true)), []string{"added:d"}},
		{"invisible again after removal", hsAdded(hsDoc("a", 4, "visible", false)), nil},
	}
	f := h.feedFor("k")
	seq := uint64(0)
	for _, st := range steps {
		l.Emit(t, hsChanges(st.change))
		if st.want != nil {
			seq++
		}
		for i, r := range recs {
			ds := r.take()
			switch {
			case st.want == nil && len(ds) != 0:
				t.Errorf("%s: subscriber %d got %v, want nothing", st.name, i, hsTypes(ds))
			case st.want != nil && (len(ds) != 1 || !slices.Equal(hsChangeList(ds[0].sm), st.want) || ds[0].sm.Seq != seq):
				t.Errorf("%s: subscriber %d got %+v, want %v at seq %d", st.name, i, ds, st.want, seq)
			}
		}
		if hsSeq(f) != seq {
			t.Errorf("%s: Feed seq %d, want %d", st.name, hsSeq(f), seq)
		}
	}
	// Reset: 2 docs; steps: every Added/Modified once — per Feed, not per subscriber.
	if calls != 2+7 {
		t.Errorf("filter called %d times, want 9 (once per change per Feed)", calls)
	}
	for _, r := range recs {
		r.check(t)
	}
}

func TestDuplicateSuppression(t *testing.T) {
	tests := []struct {
		name     string
		snap     *Snapshot
		want     []string
		wantDups float64
	}{
		{"modified same version", hsChanges(hsModified(hsDoc("a", 1, "v", "a1"))), nil, 1},
		{"added same version", hsChanges(hsAdded(hsDoc("a", 1, "v", "a1"))), nil, 1},
		{"dup and real change", hsChanges(hsModified(hsDoc("a", 1, "v", "a1")), hsModified(hsDoc("b", 2, "v", "b2"))), []string{"modified:b"}, 1},
		{"new version same data", hsChanges(hsModified(hsDoc("a", 2, "v", "a1"))), []string{"modified:a"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			m := metrics.New(nil)
			h, src, _ := hsNewHub(t, HubConfig{Metrics: m})
			_, r := hsSubscribe(t, h, hsSpec("k", "org"), nil)
			l := src.Listener(t, 0)
			l.Emit(t, hsReset(hsDoc("a", 1, "v", "a1"), hsDoc("b", 1, "v", "b1")))
			r.take()
			l.Emit(t, tc.snap)
			ds := r.take()
			if tc.want == nil {
				if len(ds) != 0 {
					t.Errorf("duplicate delivered: %v", hsTypes(ds))
				}
				if hsSeq(h.feedFor("k")) != 0 {
					t.Error("duplicate bumped seq")
				}
			} else if len(ds) != 1 || !slices.Equal(hsChangeList(ds[0].sm), tc.want) {
				t.Errorf("got %v, want %v", ds, tc.want)
			}
			if got := testutil.ToFloat64(m.DuplicatesSuppr); got != tc.wantDups {
				t.Errorf("duplicates_suppressed_total = %v, want %v", got, tc.wantDups)
			}
			r.check(t)
		})
	}
}

func TestDocumentEncoding(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	_, r := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	l := src.Listener(t, 0)
	l.Emit(t, hsReset())
	r.take()
	nested := Document{
		ID: "n", Path: "projects/p1/tasks/n",
		Data: map[string]any{
			"z": int64(1), "a": map[string]any{"y": "<&>", "b": []any{1.5, nil, true}},
			"nan": math.NaN(), "inf": math.Inf(1),
		},
		UpdateTime: time.Date(2025, 3, 4, 5, 6, 7, 891000, time.FixedZone("x", 3600)),
	}
	empty := Document{ID: "e", Path: "tasks/e", UpdateTime: hsEpochTime}
	l.Emit(t, hsChanges(hsAdded(nested), hsAdded(empty)))
	ds := r.take()
	want := `{"type":"changes","sub":"s1","seq":1,"read_time":"2025-01-02T03:05:05Z","changes":[` +
		`{"kind":"added","id":"n","path":"projects/p1/tasks/n","data":{"a":{"b":[1.5,null,true],"y":"\u003c\u0026\u003e"},"inf":null,"nan":null,"z":1},"update_time":"2025-03-04T04:06:07.000891Z"},` +
		`{"kind":"added","id":"e","path":"tasks/e","data":{},"update_time":"2025-01-02T03:04:05Z"}]}`
	if len(ds) != 1 || ds[0].raw != want {
		t.Fatalf("changes frame\n got %v\nwant %s", ds, want)
	}
	r.check(t)
}

// hsRing is a Subscriber that stores messages in a preallocated ring (no
// allocation per delivery), like the gateway's bounded queue.
type hsRing struct {
	buf [64]*Message
	n   int
}

func (r *hsRing) Deliver(m *Message, _ bool) {
	r.buf[r.n%len(r.buf)] = m
	r.n++
}

// hsFanoutSetup builds a Feed with n ring subscribers and returns it and a
// function that processes one new upstream change (a new version of one
// document) through the Feed's snapshot path.
func hsFanoutSetup(tb testing.TB, n int) (*feed, []*hsRing, func()) {
	return hsFanoutSetupFiltered(tb, n, nil)
}

// hsFanoutSetupFiltered is hsFanoutSetup with a per-document policy filter.
func hsFanoutSetupFiltered(tb testing.TB, n int, filter func(id, path string, data map[string]any) bool) (*feed, []*hsRing, func()) {
	h, src, _ := hsNewHub(tb, HubConfig{ReplayCount: 8})
	spec := hsSpec("k", "org")
	spec.Filter = filter
	rings := make([]*hsRing, n)
	for i := range rings {
		rings[i] = &hsRing{}
		if _, err := h.Subscribe(spec, rings[i], nil); err != nil {
			tb.Fatal(err)
		}
	}
	data := map[string]any{
		"title": "Write the quarterly report", "status": "open", "org_id": "org_2abc", "priority": int64(3),
		"assignee": "user_123", "tags": []any{"finance", "q3"}, "estimate": 2.5, "done": false,
	}
	src.Listener(tb, 0).Emit(tb, hsReset(Document{ID: "t1", Path: "tasks/t1", Data: data, UpdateTime: hsEpochTime}))
	f := h.feedFor("k")
	snap := &Snapshot{
		Changes:  []Change{{Kind: Modified, Doc: Document{ID: "t1", Path: "tasks/t1", Data: data}}},
		ReadTime: hsEpochTime,
	}
	v := 0
	step := func() {
		v++
		snap.Changes[0].Doc.UpdateTime = hsEpochTime.Add(time.Duration(v) * time.Microsecond)
		snap.ReceivedAt = snap.Changes[0].Doc.UpdateTime
		f.onSnapshot(snap)
	}
	for i := 0; i < 16; i++ { // fill the replay ring: steady state
		step()
	}
	return f, rings, step
}

func TestFanoutAllocsIndependentOfSubscribers(t *testing.T) {
	hsLeakCheck(t)
	allocs := map[int]float64{}
	for _, n := range []int{1, 1000} {
		f, rings, step := hsFanoutSetup(t, n)
		allocs[n] = testing.AllocsPerRun(200, step)
		seq := hsSeq(f)
		for i, r := range rings {
			if last := r.buf[(r.n-1)%len(r.buf)]; last.Seq != seq {
				t.Fatalf("n=%d: subscriber %d last seq %d, want %d", n, i, last.Seq, seq)
			}
		}
	}
	t.Logf("allocations per fanned-out change: 1 subscriber %.0f, 1000 subscribers %.0f", allocs[1], allocs[1000])
	slack := 0.0
	if raceEnabled {
		slack = 3 // pools drop items at random under -race; a growth with n would be ~1000x
	}
	if allocs[1000] > allocs[1]+slack {
		t.Errorf("allocations grow with subscribers: %v (1) vs %v (1000)", allocs[1], allocs[1000])
	}
}
