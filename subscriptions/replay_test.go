package subscriptions

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	fgclock "github.com/firegate/firegate/internal/clock"

	"github.com/firegate/firegate/wire"
)

func TestReplayRing(t *testing.T) {
	t0 := hsEpochTime
	r := newReplayRing(3, time.Minute)
	ids := func(after uint64) []string {
		var out []string
		r.since(after, func(c replayChange) { out = append(out, c.id) })
		return out
	}
	for seq := uint64(1); seq <= 5; seq++ {
		e := r.add(seq, t0.Add(time.Duration(seq)*time.Second))
		e.changes = append(e.changes, replayChange{id: fmt.Sprint(seq), kind: Modified})
	}
	tests := []struct {
		after uint64
		now   time.Time
		ok    bool
		ids   []string
	}{
		{after: 2, now: t0.Add(5 * time.Second), ok: true, ids: []string{"3", "4", "5"}},  // base is 2: at the edge
		{after: 1, now: t0.Add(5 * time.Second), ok: false},                               // evicted by count
		{after: 5, now: t0.Add(5 * time.Second), ok: true, ids: nil},                      // current
		{after: 6, now: t0.Add(5 * time.Second), ok: false},                               // future
		{after: 2, now: t0.Add(63 * time.Second), ok: true, ids: []string{"3", "4", "5"}}, // entry 3 exactly maxAge old
		{after: 2, now: t0.Add(63*time.Second + 1), ok: false},                            // entry 3 past maxAge
		{after: 3, now: t0.Add(63*time.Second + 1), ok: true, ids: []string{"4", "5"}},
		{after: 4, now: t0.Add(time.Hour), ok: false},
		{after: 5, now: t0.Add(time.Hour), ok: true, ids: nil}, // all aged out: only "current" is served
	}
	for i, tc := range tests {
		if got := r.covers(tc.after, 5, tc.now); got != tc.ok {
			t.Fatalf("case %d: covers(%d) = %v, want %v", i, tc.after, got, tc.ok)
		}
		if tc.ok {
			if got := ids(tc.after); !slices.Equal(got, tc.ids) {
				t.Errorf("case %d: since(%d) = %v, want %v", i, tc.after, got, tc.ids)
			}
		}
	}

	// Growth and wrap-around keep seq order; evicted slots drop their ids.
	g := newReplayRing(20, time.Hour)
	for seq := uint64(1); seq <= 50; seq++ {
		e := g.add(seq, t0)
		e.changes = append(e.changes, replayChange{id: fmt.Sprint(seq)})
	}
	if g.n != 20 || len(g.buf) != 20 || g.base != 30 {
		t.Fatalf("ring n=%d len=%d base=%d, want 20 20 30", g.n, len(g.buf), g.base)
	}
	var got []string
	g.since(45, func(c replayChange) { got = append(got, c.id) })
	if !slices.Equal(got, []string{"46", "47", "48", "49", "50"}) {
		t.Errorf("since(45) after wrap = %v", got)
	}
}

// hsHistory drives a Feed through a fixed history and returns the state a
// subscriber had at every seq:
//
//	Reset: a, b          seq 1: modified a    seq 2: added c
//	seq 3: removed b     seq 4: added d       seq 5: removed d
//	seq 6: modified c
func hsHistory(t *testing.T, h *Hub, src *fakeSource, clock *hsClock) (map[uint64]map[string]string, *fakeListener) {
	t.Helper()
	_, r := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	l := src.Listener(t, 0)
	l.Emit(t, hsReset(hsDoc("a", 1, "v", "a1"), hsDoc("b", 1, "v", "b1")))
	states := map[uint64]map[string]string{}
	st, _ := r.snapshotState()
	states[0] = st
	for i, c := range []Change{
		hsModified(hsDoc("a", 2, "v", "a2")),
		hsAdded(hsDoc("c", 1, "v", "c1")),
		hsRemoved("b"),
		hsAdded(hsDoc("d", 1, "v", "d1")),
		hsRemoved("d"),
		hsModified(hsDoc("c", 2, "v", "c2")),
	} {
		if clock != nil {
			clock.advance(10 * time.Second)
		}
		l.Emit(t, hsChanges(c))
		st, seq := r.snapshotState()
		if seq != uint64(i+1) {
			t.Fatalf("history: seq %d after step %d", seq, i+1)
		}
		states[seq] = st
	}
	r.check(t)
	return states, l
}

type hsResumeCase struct {
	name    string
	cfg     HubConfig
	clockAt time.Duration // clock offset from the history start when resuming (with ReplayAge)
	epoch   string        // "" → the Feed's epoch
	seq     uint64
	hit     bool
	changes []string
}

func hsResumeCases() []hsResumeCase {
	return []hsResumeCase{
		{name: "from 0", seq: 0, hit: true, changes: []string{"modified:a", "added:c", "removed:b"}},
		{name: "from 2", seq: 2, hit: true, changes: []string{"removed:b", "modified:c"}},
		{name: "from 4", seq: 4, hit: true, changes: []string{"removed:d", "modified:c"}},
		{name: "from 5", seq: 5, hit: true, changes: []string{"modified:c"}},
		{name: "current seq: empty changes", seq: 6, hit: true, changes: []string{}},
		{name: "seq in the future", seq: 7, hit: false},
		{name: "wrong epoch", seq: 6, epoch: "AAAAAAAAAAA", hit: false},
		{name: "by count at the edge", cfg: HubConfig{ReplayCount: 3}, seq: 3, hit: true, changes: []string{"modified:c"}}, // d added and removed: never seen
		{name: "by count past the edge", cfg: HubConfig{ReplayCount: 3}, seq: 2, hit: false},
		// Entries are stamped at +10s (seq 1) … +60s (seq 6).
		{name: "by age at the edge", cfg: HubConfig{ReplayAge: time.Minute}, clockAt: 70 * time.Second, seq: 0, hit: true, changes: []string{"modified:a", "added:c", "removed:b"}},
		{name: "by age past the edge", cfg: HubConfig{ReplayAge: time.Minute}, clockAt: 70*time.Second + 1, seq: 0, hit: false},
		{name: "by age, later seq still covered", cfg: HubConfig{ReplayAge: time.Minute}, clockAt: 70*time.Second + 1, seq: 1, hit: true, changes: []string{"added:c", "removed:b"}},
	}
}

func TestResume(t *testing.T) {
	for _, tc := range hsResumeCases() {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			clock := &hsClock{t: hsEpochTime}
			cfg := tc.cfg
			cfg.Clock = fgclock.NowFunc(clock.now)
			h, src, _ := hsNewHub(t, cfg)
			states, l := hsHistory(t, h, src, clock)
			if tc.clockAt != 0 {
				clock.mu.Lock()
				clock.t = hsEpochTime.Add(tc.clockAt)
				clock.mu.Unlock()
			}
			f := h.feedFor("k")
			epoch := tc.epoch
			if epoch == "" {
				epoch = f.epoch
			}
			// The resuming client starts from what it had at tc.seq.
			r := hsNewRecorder()
			if base, ok := states[tc.seq]; ok {
				r.state.docs, r.state.seq, r.state.synced = maps.Clone(base), tc.seq, true
			}
			s, err := h.Subscribe(hsSpec("k", "org"), r, &wire.Resume{Epoch: epoch, Seq: tc.seq})
			if err != nil {
				t.Fatal(err)
			}
			ds := r.take()
			if ds[0].sm.Type != "subscribed" || ds[0].sm.Resumed != tc.hit || ds[0].catchUp {
				t.Fatalf("first delivery %s", ds[0].raw)
			}
			hsCheckCatchUp(t, ds[1:], tc.hit, tc.changes)
			if got, seq := r.snapshotState(); !hsMapsEqual(got, hsVisible(f)) || seq != 6 {
				t.Errorf("resumed state %v @%d, Feed %v @6", got, seq, hsVisible(f))
			}
			// Live delivery continues right after the catch-up.
			l.Emit(t, hsChanges(hsAdded(hsDoc("e", 1))))
			if ds := r.take(); len(ds) != 1 || ds[0].sm.Seq != 7 || ds[0].catchUp {
				t.Errorf("next live message %v", ds)
			}
			r.check(t)
			s.Unsubscribe()
		})
	}
}

// hsCheckCatchUp checks that ds is one catch-up `changes` with the given
// changes at seq 6 (hit) or a complete snapshot at seq 6 (miss).
func hsCheckCatchUp(t *testing.T, ds []hsDelivery, hit bool, changes []string) {
	t.Helper()
	if len(ds) == 0 {
		t.Fatal("nothing delivered")
	}
	if !ds[0].catchUp {
		t.Error("first catch-up message without catchUp")
	}
	if hit {
		if len(ds) != 1 || ds[0].sm.Type != "changes" || ds[0].sm.Seq != 6 || ds[0].m.Seq != 6 {
			t.Fatalf("got %v, want one changes at seq 6", ds)
		}
		if got := hsChangeList(ds[0].sm); !slices.Equal(got, changes) {
			t.Errorf("net change %v, want %v", got, changes)
		}
		if ds[0].sm.ReadTime != "" || !ds[0].m.ReceivedAt.IsZero() {
			t.Error("catch-up changes carry read_time or ReceivedAt")
		}
		return
	}
	last := ds[len(ds)-1]
	if ds[0].sm.Type != "snapshot" || last.sm.Seq != 6 || !last.sm.Final {
		t.Errorf("got %v, want a snapshot at seq 6", ds)
	}
}

func TestCatchUp(t *testing.T) {
	for _, tc := range hsResumeCases() {
		if tc.epoch != "" {
			continue // CatchUp has no epoch
		}
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			clock := &hsClock{t: hsEpochTime}
			cfg := tc.cfg
			cfg.Clock = fgclock.NowFunc(clock.now)
			h, src, _ := hsNewHub(t, cfg)
			states, l := hsHistory(t, h, src, clock)
			// A subscriber that joined at the start and "dropped" everything
			// after tc.seq.
			r := hsNewRecorder()
			s, err := h.Subscribe(hsSpec("k", "org"), r, nil)
			if err != nil {
				t.Fatal(err)
			}
			r.take()
			r.mu.Lock()
			if base, ok := states[tc.seq]; ok {
				r.state.docs, r.state.seq = maps.Clone(base), tc.seq
			}
			r.mu.Unlock()
			if tc.clockAt != 0 {
				clock.mu.Lock()
				clock.t = hsEpochTime.Add(tc.clockAt)
				clock.mu.Unlock()
			}
			s.CatchUp(tc.seq)
			hsCheckCatchUp(t, r.take(), tc.hit, tc.changes)
			f := h.feedFor("k")
			if got, seq := r.snapshotState(); !hsMapsEqual(got, hsVisible(f)) || seq != 6 {
				t.Errorf("caught-up state %v @%d, Feed %v @6", got, seq, hsVisible(f))
			}
			if hsSeq(f) != 6 {
				t.Errorf("CatchUp moved seq to %d", hsSeq(f))
			}
			l.Emit(t, hsChanges(hsAdded(hsDoc("e", 1))))
			if ds := r.take(); len(ds) != 1 || ds[0].sm.Seq != 7 || ds[0].catchUp {
				t.Errorf("next live message %v", ds)
			}
			r.check(t)
		})
	}
}

func TestCatchUpNoOps(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	s, r := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	s.CatchUp(0) // before the first upstream snapshot: the snapshot will come anyway
	if got := hsTypes(r.deliveries()); !slices.Equal(got, []string{"subscribed"}) {
		t.Errorf("CatchUp before the first snapshot delivered %v", got)
	}
	src.Listener(t, 0).Emit(t, hsReset(hsDoc("a", 1)))
	if got := hsTypes(r.deliveries()); !slices.Equal(got, []string{"subscribed", "snapshot"}) {
		t.Errorf("got %v", got)
	}
	s.Unsubscribe()
	r.markClosed()
	s.CatchUp(0) // detached
	r.check(t)
}

// FuzzFeedResume drives a Feed through an arbitrary sequence of upstream
// operations (adds, modifications that toggle the filter, removals,
// listener restarts with a Reset diff, duplicates) and checks that a live
// subscriber's reconstructed state always equals the Feed's visible set,
// that the visible set equals the filtered upstream truth, and that resuming
// from every seq ever seen yields that same state (net change when the
// replay buffer still covers the seq, snapshot otherwise).
func FuzzFeedResume(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x02, 0x08, 0x10, 0x18, 0x03, 0x0b})
	f.Add([]byte{0x00, 0x00, 0x00, 0x10, 0x00, 0x18, 0x20, 0x28})
	f.Add([]byte{0x01, 0x09, 0x11, 0x19, 0x02, 0x0a, 0x12, 0x1a, 0x03, 0x04, 0x05, 0x18})
	f.Add([]byte("the quick brown fox jumps over the lazy dog"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		const replay = 4
		spec := hsSpec("k", "org")
		spec.Filter = func(id, path string, data map[string]any) bool { return data["show"] == true }
		h, src, _ := hsNewHub(t, HubConfig{ReplayCount: replay})
		s, r := hsSubscribe(t, h, spec, nil)
		src.Listener(t, 0).Emit(t, hsReset())
		fd := h.feedFor("k")

		truth := map[string]Document{}
		ver := 0
		states := map[uint64]map[string]string{0: {}}
		for _, b := range ops {
			id := fmt.Sprintf("d%d", b&7)
			var snap *Snapshot
			switch (b >> 3) & 7 {
			case 0, 1: // add or modify, visible for op 0, hidden for op 1
				ver++
				d := hsDoc(id, ver, "show", (b>>3)&7 == 0)
				kind := Added
				if _, ok := truth[id]; ok {
					kind = Modified
				}
				truth[id] = d
				snap = hsChanges(Change{Kind: kind, Doc: d})
			case 2: // remove (or nothing if absent upstream)
				if _, ok := truth[id]; !ok {
					continue
				}
				delete(truth, id)
				snap = hsChanges(hsRemoved(id))
			case 3: // listener restart: Reset with the truth
				snap = hsReset(slices.Collect(maps.Values(truth))...)
			case 4: // duplicate of the current version
				d, ok := truth[id]
				if !ok {
					continue
				}
				snap = hsChanges(hsModified(d))
			default: // quiet
				continue
			}
			fd.onSnapshot(snap)
			st, seq := r.snapshotState()
			states[seq] = st
		}
		r.check(t)
		want := map[string]string{}
		for id, d := range truth {
			if d.Data["show"] == true {
				want[id] = hsDocValue([]byte(`{"show":true}`), d.UpdateTime.UTC().Format(time.RFC3339Nano))
			}
		}
		vis := hsVisible(fd)
		if !hsMapsEqual(vis, want) {
			t.Fatalf("visible %v, upstream %v", vis, want)
		}
		cur := hsSeq(fd)
		if got, seq := r.snapshotState(); !hsMapsEqual(got, vis) || seq != cur {
			t.Fatalf("live subscriber %v @%d, Feed %v @%d", got, seq, vis, cur)
		}
		for seq, st := range states {
			rr := hsNewRecorder()
			rr.state.docs, rr.state.seq, rr.state.synced = maps.Clone(st), seq, true
			ss, err := h.Subscribe(spec, rr, &wire.Resume{Epoch: s.Epoch(), Seq: seq})
			if err != nil {
				t.Fatal(err)
			}
			rr.check(t)
			ds := rr.deliveries()
			wantHit := seq+replay >= cur
			if ds[0].sm.Resumed != wantHit {
				t.Fatalf("resume from %d at %d: resumed=%v, want %v", seq, cur, ds[0].sm.Resumed, wantHit)
			}
			if got, gseq := rr.snapshotState(); !hsMapsEqual(got, vis) || gseq != cur {
				t.Fatalf("resume from %d: %v @%d, want %v @%d", seq, got, gseq, vis, cur)
			}
			ss.Unsubscribe()
		}
	})
}
