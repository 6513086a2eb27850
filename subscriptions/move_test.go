package subscriptions

// Tests of Hub.Move: a subscription whose Feed key changed (a refresh
// changed an attribute the policy filter reads) moves to its new Feed and
// gets the difference, not a snapshot. Fixtures come from
// fakesource_test.go; helpers here are prefixed mv.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

// mvRec is an hsRecorder as the client of a moving subscription sees it:
// a `subscribed` frame (Move announces the subscription again) restarts
// the announcement and the seq, which is per Feed, and ends any lagging
// (what follows it is a snapshot or a diff carrying catchUp, with nothing
// live in between). Lagging reports the recorder's dropping state, as a
// gateway connection reports an overflowed send queue.
type mvRec struct{ *hsRecorder }

func mvNewRec() mvRec { return mvRec{hsNewRecorder()} }

func (r mvRec) Deliver(m *Message, catchUp bool) {
	if m.Frame.Type == wire.TypeSubscribed {
		r.mu.Lock()
		r.state.subbed, r.state.seq = false, 0
		r.dropping, r.needCatchUp = false, false
		r.mu.Unlock()
	}
	r.hsRecorder.Deliver(m, catchUp)
}

func (r mvRec) Lagging() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropping
}

// mvPublic is the member filter: private documents are for admins only.
func mvPublic(_, _ string, data map[string]any) bool { return data["visibility"] != "private" }

// mvSpec is the Feed of collection "tasks" in org "org" for a role: the
// admin sees every document, any other role only the public ones (the
// filter reads auth.org_role, so the role is part of the key).
func mvSpec(role string) FeedSpec {
	s := hsSpec("tasks|org|"+role, "org")
	if role != "admin" {
		s.Filter = mvPublic
	}
	return s
}

func mvPub(id string, ver int) Document  { return hsDoc(id, ver, "visibility", "public") }
func mvPriv(id string, ver int) Document { return hsDoc(id, ver, "visibility", "private") }

// mvSubscribe subscribes a new mvRec.
func mvSubscribe(t testing.TB, h *Hub, spec FeedSpec) (*Subscription, mvRec) {
	t.Helper()
	r := mvNewRec()
	s, err := h.Subscribe(spec, r, nil)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", spec.Key, err)
	}
	return s, r
}

// mvMove moves and fails the test on error.
func mvMove(t testing.TB, h *Hub, old *Subscription, spec FeedSpec, sub Subscriber, clientCurrent bool) *Subscription {
	t.Helper()
	s, err := h.Move(old, spec, sub, clientCurrent)
	if err != nil {
		t.Fatalf("Move to %q: %v", spec.Key, err)
	}
	return s
}

// mvCheckSynced checks that r's reconstructed state is f's visible set at
// f's seq, and that r saw no protocol violation.
func mvCheckSynced(t testing.TB, r mvRec, f *feed) {
	t.Helper()
	got, seq := r.snapshotState()
	if want := hsVisible(f); !hsMapsEqual(got, want) || seq != hsSeq(f) {
		t.Errorf("client state %v @%d, Feed %v @%d", got, seq, want, hsSeq(f))
	}
	r.check(t)
}

// mvCheckDiff checks that ds is exactly `subscribed` (epoch, resumed=true)
// followed by one catch-up `changes` at seq with the changes want.
func mvCheckDiff(t testing.TB, ds []hsDelivery, epoch string, seq uint64, want []string) {
	t.Helper()
	if got := hsTypes(ds); !slices.Equal(got, []string{"subscribed", "changes"}) {
		t.Fatalf("deliveries %v, want subscribed and changes", got)
	}
	sd, cd := ds[0], ds[1]
	if sd.sm.Epoch != epoch || !sd.sm.Resumed || sd.catchUp {
		t.Errorf("subscribed %s (catchUp %v), want epoch %q resumed=true catchUp=false", sd.raw, sd.catchUp, epoch)
	}
	if !cd.catchUp || cd.sm.Seq != seq || cd.m.Seq != seq || cd.sm.ReadTime != "" || !cd.m.ReceivedAt.IsZero() {
		t.Errorf("diff %s (catchUp %v, Message.Seq %d), want catchUp, seq %d, no read_time", cd.raw, cd.catchUp, cd.m.Seq, seq)
	}
	if got := hsChangeList(cd.sm); !slices.Equal(got, want) {
		t.Errorf("diff changes %v, want %v", got, want)
	}
}

// mvCheckSnapshot checks that ds is `subscribed` (epoch, resumed=false)
// followed by one complete snapshot at seq.
func mvCheckSnapshot(t testing.TB, ds []hsDelivery, epoch string, seq uint64) {
	t.Helper()
	if got := hsTypes(ds); !slices.Equal(got, []string{"subscribed", "snapshot"}) {
		t.Fatalf("deliveries %v, want subscribed and snapshot", got)
	}
	if ds[0].sm.Epoch != epoch || ds[0].sm.Resumed {
		t.Errorf("subscribed %s, want epoch %q resumed=false", ds[0].raw, epoch)
	}
	if !ds[1].catchUp || ds[1].sm.Seq != seq || !ds[1].sm.Final {
		t.Errorf("snapshot %s (catchUp %v), want catchUp, final, seq %d", ds[1].raw, ds[1].catchUp, seq)
	}
}

func TestMoveDiff(t *testing.T) {
	base := []Document{mvPub("a", 1), mvPriv("b", 1), mvPub("c", 1)}
	tests := []struct {
		name       string
		from, to   string
		oldDocs    []Document // the old Feed's Reset
		newDocs    []Document // the new Feed's Reset
		newChanges []Change   // applied to the new Feed after its Reset
		want       []string
	}{
		{name: "admin to member removes private docs only", from: "admin", to: "member",
			oldDocs: base, newDocs: base, want: []string{"removed:b"}},
		{name: "member to admin adds private docs", from: "member", to: "admin",
			oldDocs: base, newDocs: base, want: []string{"added:b"}},
		{name: "same visible set gives an empty diff", from: "member", to: "viewer",
			oldDocs: base, newDocs: base, want: []string{}},
		{name: "newer version in the new Feed is modified", from: "admin", to: "member",
			oldDocs: base, newDocs: []Document{mvPub("a", 2), mvPriv("b", 1), mvPub("c", 1)},
			want: []string{"modified:a", "removed:b"}},
		{name: "older version in the new Feed is modified", from: "member", to: "admin",
			oldDocs: []Document{mvPub("a", 3), mvPub("c", 1)}, newDocs: base,
			want: []string{"modified:a", "added:b"}},
		{name: "new Feed ahead with live changes", from: "admin", to: "member",
			oldDocs: base, newDocs: base,
			newChanges: []Change{hsAdded(mvPub("d", 2)), hsModified(mvPub("c", 2)), hsRemoved("a")},
			want:       []string{"modified:c", "added:d", "removed:a", "removed:b"}},
		{name: "doc turned private is removed, public again is added", from: "member", to: "viewer",
			oldDocs: []Document{mvPub("a", 1), mvPriv("b", 1)}, newDocs: []Document{mvPriv("a", 2), mvPub("b", 2)},
			want: []string{"added:b", "removed:a"}},
		{name: "empty old Feed", from: "admin", to: "member",
			oldDocs: nil, newDocs: base, want: []string{"added:a", "added:c"}},
		{name: "empty new Feed", from: "admin", to: "member",
			oldDocs: base, newDocs: nil, want: []string{"removed:a", "removed:b", "removed:c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			h, src, _ := hsNewHub(t, HubConfig{})
			old, r := mvSubscribe(t, h, mvSpec(tc.from))
			l0 := src.Listener(t, 0)
			l0.Emit(t, hsReset(tc.oldDocs...))
			// Another subscriber makes the new Feed ready before the move.
			_, other := mvSubscribe(t, h, mvSpec(tc.to))
			l1 := src.Listener(t, 1)
			l1.Emit(t, hsReset(tc.newDocs...))
			for _, c := range tc.newChanges {
				l1.Emit(t, hsChanges(c))
			}
			r.take()
			other.take()

			s := mvMove(t, h, old, mvSpec(tc.to), r, true)
			nf := h.feedFor(mvSpec(tc.to).Key)
			if s.Epoch() != nf.epoch {
				t.Errorf("moved Subscription epoch %q, Feed %q", s.Epoch(), nf.epoch)
			}
			mvCheckDiff(t, r.take(), nf.epoch, hsSeq(nf), tc.want)
			mvCheckSynced(t, r, nf)
			if ds := other.take(); len(ds) != 0 {
				t.Errorf("the new Feed's other subscriber got %v", hsTypes(ds))
			}

			// Live messages of the new Feed follow; the old Feed's no longer reach r.
			l0.Emit(t, hsChanges(hsAdded(mvPub("x", 5))))
			l1.Emit(t, hsChanges(hsAdded(mvPub("y", 5))))
			if ds := r.take(); len(ds) != 1 || ds[0].sm.Type != "changes" || ds[0].catchUp || !slices.Equal(hsChangeList(ds[0].sm), []string{"added:y"}) {
				t.Errorf("after the move got %v, want the new Feed's live change only", hsTypes(ds))
			}
			mvCheckSynced(t, r, nf)
			if src.Count() != 2 || h.FeedCount() != 2 {
				t.Errorf("listeners %d, FeedCount %d, want 2 and 2", src.Count(), h.FeedCount())
			}
		})
	}
}

func TestMoveBeforeNewFeedReady(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	old, r := mvSubscribe(t, h, mvSpec("admin"))
	src.Listener(t, 0).Emit(t, hsReset(mvPub("a", 1), mvPriv("b", 1)))
	r.take()

	s := mvMove(t, h, old, mvSpec("member"), r, true) // creates the member Feed
	nf := h.feedFor(mvSpec("member").Key)
	if ds := r.take(); len(ds) != 1 || ds[0].sm.Type != "subscribed" || !ds[0].sm.Resumed || ds[0].sm.Epoch != nf.epoch {
		t.Fatalf("before the new Feed's first snapshot got %v, want subscribed resumed=true only", hsTypes(ds))
	}
	_, other := mvSubscribe(t, h, mvSpec("member"))
	s.CatchUp(0) // waiting for the first Reset: nothing
	if ds := r.take(); len(ds) != 0 {
		t.Fatalf("CatchUp while waiting delivered %v", hsTypes(ds))
	}

	src.Listener(t, 1).Emit(t, hsReset(mvPub("a", 2), mvPriv("b", 1), mvPub("c", 1)))
	mvCheckSnapshot(t, other.take(), nf.epoch, 0)
	ds := r.take()
	if len(ds) != 1 || ds[0].sm.Type != "changes" || !ds[0].catchUp || ds[0].sm.Seq != 0 || ds[0].sm.ReadTime != "" {
		t.Fatalf("at the first Reset got %v, want one catch-up changes at seq 0", hsTypes(ds))
	}
	if got, want := hsChangeList(ds[0].sm), []string{"modified:a", "added:c", "removed:b"}; !slices.Equal(got, want) {
		t.Errorf("diff %v, want %v", got, want)
	}
	mvCheckSynced(t, r, nf)
	mvCheckSynced(t, other, nf)
}

// A subscription moved again before its new Feed was ready still holds
// what the first Feed showed it: the next diff starts from there.
func TestMoveAgainBeforeReadyKeepsBase(t *testing.T) {
	hsLeakCheck(t)
	h, src, timers := hsNewHub(t, HubConfig{})
	old, r := mvSubscribe(t, h, mvSpec("admin"))
	l0 := src.Listener(t, 0)
	l0.Emit(t, hsReset(mvPub("a", 1), mvPriv("b", 1)))
	r.take()

	mid := mvMove(t, h, old, mvSpec("member"), r, true) // member Feed not ready
	l0.Emit(t, hsChanges(hsAdded(mvPriv("c", 2))))      // admin moves on without r
	s := mvMove(t, h, mid, mvSpec("admin"), r, true)    // back, warm
	af := h.feedFor(mvSpec("admin").Key)
	ds := r.take()
	if len(ds) != 3 || ds[0].sm.Type != "subscribed" {
		t.Fatalf("got %v, want subscribed (member) + subscribed + changes (admin)", hsTypes(ds))
	}
	mvCheckDiff(t, ds[1:], af.epoch, 1, []string{"added:c"})
	mvCheckSynced(t, r, af)

	// The member Feed's first Reset has nobody to tell; it lingers.
	src.Listener(t, 1).Emit(t, hsReset(mvPub("a", 1)))
	if ds := r.take(); len(ds) != 0 {
		t.Errorf("the left member Feed delivered %v", hsTypes(ds))
	}
	if timers.len() != 2 { // admin (first move) then member (second)
		t.Errorf("linger timers %d, want 2", timers.len())
	}
	if s.Epoch() != af.epoch || src.Count() != 2 {
		t.Errorf("epoch %q (want %q), listeners %d (want 2)", s.Epoch(), af.epoch, src.Count())
	}
}

func TestMoveSnapshotInstead(t *testing.T) {
	tests := []struct {
		name          string
		clientCurrent bool
		lagging       bool // the subscriber dropped messages (Lagger)
		oldNotReady   bool // the old Feed never sent a snapshot
		unsubscribed  bool // old was unsubscribed before the move
		oldFailed     bool // old's Feed ended with a permanent error
		newNotReady   bool // the new Feed gets its first Reset after the move
	}{
		{name: "client not current", clientCurrent: false},
		{name: "client not current, new Feed not ready", clientCurrent: false, newNotReady: true},
		{name: "subscriber lagging overrides clientCurrent", clientCurrent: true, lagging: true},
		{name: "old Feed not ready", clientCurrent: true, oldNotReady: true},
		{name: "old unsubscribed", clientCurrent: true, unsubscribed: true},
		{name: "old ended by its Feed", clientCurrent: true, oldFailed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			h, src, _ := hsNewHub(t, HubConfig{})
			old, r := mvSubscribe(t, h, mvSpec("admin"))
			l0 := src.Listener(t, 0)
			if !tc.oldNotReady {
				l0.Emit(t, hsReset(mvPub("a", 1), mvPriv("b", 1)))
				l0.Emit(t, hsChanges(hsAdded(mvPub("c", 2))))
			}
			var l1 *fakeListener
			if !tc.newNotReady {
				mvSubscribe(t, h, mvSpec("member"))
				l1 = src.Listener(t, 1)
				l1.Emit(t, hsReset(mvPub("a", 1), mvPriv("b", 1)))
				l1.Emit(t, hsChanges(hsAdded(mvPub("d", 3))))
			}
			switch {
			case tc.lagging:
				r.mu.Lock()
				r.dropping, r.needCatchUp, r.lastSeq = true, true, r.state.seq
				r.mu.Unlock()
				l0.Emit(t, hsChanges(hsAdded(mvPub("e", 4)))) // dropped by r
			case tc.unsubscribed:
				old.Unsubscribe()
			case tc.oldFailed:
				l0.Fail(t, &UpstreamError{Code: codes.PermissionDenied, Message: "denied"})
				hsCheck(t, hsFeedGone(h, mvSpec("admin").Key))
			}
			sub := r
			if tc.oldFailed {
				sub = mvNewRec() // r was told the subscription ended
			}
			sub.take()

			s := mvMove(t, h, old, mvSpec("member"), sub, tc.clientCurrent)
			nf := h.feedFor(mvSpec("member").Key)
			if tc.newNotReady {
				if ds := sub.take(); len(ds) != 1 || ds[0].sm.Type != "subscribed" || ds[0].sm.Resumed {
					t.Fatalf("before the first Reset got %v, want subscribed resumed=false", hsTypes(ds))
				}
				l1 = src.Listener(t, 1)
				l1.Emit(t, hsReset(mvPub("a", 1), mvPriv("b", 1), mvPub("d", 3)))
				ds := sub.take()
				if len(ds) != 1 || ds[0].sm.Type != "snapshot" || !ds[0].catchUp || !ds[0].sm.Final {
					t.Fatalf("at the first Reset got %v, want the snapshot", hsTypes(ds))
				}
			} else {
				mvCheckSnapshot(t, sub.take(), nf.epoch, hsSeq(nf))
			}
			if s.Epoch() != nf.epoch {
				t.Errorf("epoch %q, want %q", s.Epoch(), nf.epoch)
			}
			mvCheckSynced(t, sub, nf)
			l1.Emit(t, hsChanges(hsAdded(mvPub("z", 9))))
			mvCheckSynced(t, sub, nf)
		})
	}
}

func TestMoveSameKeyIsNoOp(t *testing.T) {
	hsLeakCheck(t)
	h, src, timers := hsNewHub(t, HubConfig{})
	old, r := mvSubscribe(t, h, mvSpec("admin"))
	l := src.Listener(t, 0)
	l.Emit(t, hsReset(mvPub("a", 1)))
	r.take()
	other := mvNewRec()
	for _, current := range []bool{true, false} {
		s, err := h.Move(old, mvSpec("admin"), other, current)
		if err != nil || s != old {
			t.Fatalf("Move to the same key = %p, %v; want old (%p), nil", s, err, old)
		}
	}
	if ds := r.take(); len(ds) != 0 {
		t.Errorf("same-key move delivered %v", hsTypes(ds))
	}
	l.Emit(t, hsChanges(hsAdded(mvPub("b", 2))))
	if ds := r.take(); len(ds) != 1 || ds[0].sm.Type != "changes" {
		t.Errorf("after a same-key move got %v, want the live change", hsTypes(ds))
	}
	if ds := other.take(); len(ds) != 0 {
		t.Errorf("the other Subscriber got %v", hsTypes(ds))
	}
	if src.Count() != 1 || h.FeedCount() != 1 || timers.len() != 0 {
		t.Errorf("listeners %d, Feeds %d, linger timers %d; want 1, 1, 0", src.Count(), h.FeedCount(), timers.len())
	}
	mvCheckSynced(t, r, h.feedFor(mvSpec("admin").Key))
}

func TestMoveLimits(t *testing.T) {
	tests := []struct {
		name     string
		cfg      HubConfig
		existing []FeedSpec // subscribed first; existing[0] is the one that moves
		target   FeedSpec
		limit    string // "" for success
		feeds    int    // FeedCount afterwards
	}{
		{name: "MaxFeeds at the edge", cfg: HubConfig{MaxFeeds: 2},
			existing: []FeedSpec{hsSpec("k1", "a")}, target: hsSpec("k2", "a"), feeds: 2},
		{name: "MaxFeeds past the edge", cfg: HubConfig{MaxFeeds: 2},
			existing: []FeedSpec{hsSpec("k1", "a"), hsSpec("k2", "b")}, target: hsSpec("k3", "c"), limit: LimitFeeds.String(), feeds: 2},
		{name: "MaxFeeds joining an existing Feed", cfg: HubConfig{MaxFeeds: 2},
			existing: []FeedSpec{hsSpec("k1", "a"), hsSpec("k2", "b")}, target: hsSpec("k2", "b"), feeds: 2},
		{name: "MaxFeedsPerTenant at the edge", cfg: HubConfig{MaxFeedsPerTenant: 2},
			existing: []FeedSpec{hsSpec("k1", "a")}, target: hsSpec("k2", "a"), feeds: 2},
		{name: "MaxFeedsPerTenant past the edge", cfg: HubConfig{MaxFeedsPerTenant: 2},
			existing: []FeedSpec{hsSpec("k1", "a"), hsSpec("k2", "a")}, target: hsSpec("k3", "a"), limit: LimitFeedsPerTenant.String(), feeds: 2},
		{name: "MaxFeedsPerTenant another tenant", cfg: HubConfig{MaxFeedsPerTenant: 2},
			existing: []FeedSpec{hsSpec("k1", "a"), hsSpec("k2", "a")}, target: hsSpec("k3", "b"), feeds: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			h, src, timers := hsNewHub(t, tc.cfg)
			var subs []*Subscription
			for i, sp := range tc.existing {
				s, _ := mvSubscribe(t, h, sp)
				src.Listener(t, i).Emit(t, hsReset(hsDoc("a", 1)))
				subs = append(subs, s)
			}
			l0 := src.Listener(t, 0)
			r := mvNewRec()
			old, err := h.Subscribe(tc.existing[0], r, nil)
			if err != nil {
				t.Fatal(err)
			}
			subs[0].Unsubscribe() // r is now the only subscriber of existing[0]
			r.take()

			s, err := h.Move(old, tc.target, r, true)
			if tc.limit == "" {
				if err != nil {
					t.Fatalf("Move: %v", err)
				}
				if s.Epoch() != h.feedFor(tc.target.Key).epoch {
					t.Error("moved to the wrong Feed")
				}
			} else {
				var le *LimitError
				if !errors.As(err, &le) || le.Limit.String() != tc.limit || le.RetryAfter <= 0 || s != nil {
					t.Fatalf("Move past the cap = %v, %v; want *LimitError %q with RetryAfter", s, err, tc.limit)
				}
				// Refused, old is detached all the same: nothing more reaches r.
				if ds := r.take(); len(ds) != 0 {
					t.Errorf("refused move delivered %v", hsTypes(ds))
				}
				r.markClosed()
				l0.Emit(t, hsChanges(hsAdded(hsDoc("b", 2))))
				r.check(t)
			}
			if h.FeedCount() != tc.feeds {
				t.Errorf("FeedCount = %d, want %d", h.FeedCount(), tc.feeds)
			}
			// Either way the old Feed lost its last subscriber, once: one linger.
			if timers.len() != 1 {
				t.Errorf("linger timers %d, want 1", timers.len())
			}
			old.Unsubscribe() // already detached: no second linger
			if timers.len() != 1 {
				t.Errorf("Unsubscribe after Move armed another linger (%d timers)", timers.len())
			}
		})
	}
}

func TestMoveOldFeedLinger(t *testing.T) {
	tests := []struct {
		name      string
		linger    time.Duration
		keepOld   bool // another subscriber stays on the old Feed
		wantTimer bool
	}{
		{name: "lingers then closes", wantTimer: true},
		{name: "negative linger closes at once", linger: -1},
		{name: "other subscriber keeps it open", keepOld: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			m := metrics.New(nil)
			h, src, timers := hsNewHub(t, HubConfig{Linger: tc.linger, Metrics: m})
			old, r := mvSubscribe(t, h, mvSpec("admin"))
			l0 := src.Listener(t, 0)
			l0.Emit(t, hsReset(mvPub("a", 1), mvPriv("b", 1)))
			var keeper mvRec
			if tc.keepOld {
				_, keeper = mvSubscribe(t, h, mvSpec("admin"))
			}
			s := mvMove(t, h, old, mvSpec("member"), r, true)
			l1 := src.Listener(t, 1)
			l1.Emit(t, hsReset(mvPub("a", 1)))
			nf := h.feedFor(mvSpec("member").Key)
			mvCheckSynced(t, r, nf)

			switch {
			case tc.keepOld:
				if timers.len() != 0 || h.FeedCount() != 2 || l0.Ended() {
					t.Errorf("old Feed with a subscriber left: timers %d, Feeds %d", timers.len(), h.FeedCount())
				}
				keeper.take()
				l0.Emit(t, hsChanges(hsAdded(mvPub("c", 2))))
				if ds := keeper.take(); len(ds) != 1 {
					t.Errorf("remaining subscriber got %v", hsTypes(ds))
				}
			case tc.wantTimer:
				if timers.len() != 1 || h.FeedCount() != 2 || l0.Context().Err() != nil {
					t.Fatalf("after the move: timers %d, Feeds %d, listener cancelled %v; want 1, 2, false",
						timers.len(), h.FeedCount(), l0.Context().Err() != nil)
				}
				if !timers.fire(0) {
					t.Fatal("linger timer already stopped")
				}
				hsCheck(t, hsEnded(l0))
				if h.FeedCount() != 1 || testutil.ToFloat64(m.FeedsActive) != 1 || h.feedFor(mvSpec("admin").Key) != nil {
					t.Errorf("after linger: FeedCount %d, feeds_active %v", h.FeedCount(), testutil.ToFloat64(m.FeedsActive))
				}
			default:
				if h.FeedCount() != 1 || l0.Context().Err() == nil || timers.len() != 0 {
					t.Errorf("negative linger: FeedCount %d, listener cancelled %v, timers %d",
						h.FeedCount(), l0.Context().Err() != nil, timers.len())
				}
			}
			l1.Emit(t, hsChanges(hsAdded(mvPub("d", 3))))
			mvCheckSynced(t, r, nf)
			if s.Epoch() != nf.epoch {
				t.Error("epoch mismatch")
			}
		})
	}
}

// Moving back into a lingering Feed revives it warm: same epoch, no new
// listener, and a diff rather than a snapshot.
func TestMoveBackIntoLingeringFeed(t *testing.T) {
	hsLeakCheck(t)
	h, src, timers := hsNewHub(t, HubConfig{})
	old, r := mvSubscribe(t, h, mvSpec("admin"))
	l0 := src.Listener(t, 0)
	l0.Emit(t, hsReset(mvPub("a", 1), mvPriv("b", 1)))
	epoch := old.Epoch()
	mid := mvMove(t, h, old, mvSpec("member"), r, true)
	l1 := src.Listener(t, 1)
	l1.Emit(t, hsReset(mvPub("a", 1)))
	l0.Emit(t, hsChanges(hsModified(mvPriv("b", 2)))) // while admin lingers
	r.take()

	s := mvMove(t, h, mid, mvSpec("admin"), r, true)
	af := h.feedFor(mvSpec("admin").Key)
	if s.Epoch() != epoch || src.Count() != 2 || h.ListenersStarted() != 2 {
		t.Errorf("revive: epoch %q (want %q), %d listeners (want 2)", s.Epoch(), epoch, src.Count())
	}
	mvCheckDiff(t, r.take(), epoch, 1, []string{"added:b"})
	mvCheckSynced(t, r, af)
	if timers.len() != 2 || timers.fire(0) {
		t.Errorf("the admin Feed's linger timer (of %d) was not stopped by the revive", timers.len())
	}
	if h.FeedCount() != 2 || l0.Context().Err() != nil {
		t.Error("stale linger closed the revived Feed")
	}
}

func TestMoveNoDeliveryToOld(t *testing.T) {
	hsLeakCheck(t)
	h, src, timers := hsNewHub(t, HubConfig{})
	old, r1 := mvSubscribe(t, h, mvSpec("admin"))
	_, keeper := mvSubscribe(t, h, mvSpec("admin"))
	l0 := src.Listener(t, 0)
	l0.Emit(t, hsReset(mvPub("a", 1), mvPriv("b", 1)))
	mvSubscribe(t, h, mvSpec("member"))
	l1 := src.Listener(t, 1)
	l1.Emit(t, hsReset(mvPub("a", 1)))

	// r2 is the same client under a new Subscriber: it starts from r1's state.
	r2 := mvNewRec()
	r1.mu.Lock()
	r2.state.docs, r2.state.seq, r2.state.synced = maps.Clone(r1.state.docs), r1.state.seq, true
	r1.mu.Unlock()
	s := mvMove(t, h, old, mvSpec("member"), r2, true)
	r1.markClosed()
	nf := h.feedFor(mvSpec("member").Key)
	mvCheckDiff(t, r2.take(), nf.epoch, 0, []string{"removed:b"})

	l0.Emit(t, hsChanges(hsAdded(mvPub("c", 2))))
	old.Unsubscribe() // detached by the move: a no-op
	old.CatchUp(0)
	r1.check(t) // fails on any delivery after Move returned
	l0.Emit(t, hsChanges(hsAdded(mvPub("d", 3))))
	r1.check(t)
	if timers.len() != 0 {
		t.Fatalf("Unsubscribe of a moved Subscription armed a linger")
	}
	if got := len(keeper.take()); got != 4 { // subscribed, snapshot, 2 changes
		t.Errorf("keeper got %d messages, want 4", got)
	}
	mvCheckSynced(t, keeper, h.feedFor(mvSpec("admin").Key))
	mvCheckSynced(t, r2, nf)
	if s.Epoch() != nf.epoch {
		t.Error("epoch mismatch")
	}
}

func TestMoveEndedByNewFeedError(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	old, r := mvSubscribe(t, h, mvSpec("admin"))
	src.Listener(t, 0).Emit(t, hsReset(mvPub("a", 1)))
	r.take()
	mvMove(t, h, old, mvSpec("member"), r, true) // waiting for the first Reset
	src.Listener(t, 1).Fail(t, &UpstreamError{Code: codes.FailedPrecondition, Message: "needs an index"})
	hsCheck(t, hsFeedGone(h, mvSpec("member").Key))
	ds := r.take()
	if got := hsTypes(ds); !slices.Equal(got, []string{"subscribed", "unsubscribed"}) || !ds[1].m.End || ds[1].sm.Reason != "upstream_error" {
		t.Fatalf("got %v, want subscribed then the upstream_error end", got)
	}
	r.check(t)
}

func TestMoveValidation(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	if _, err := h.Move(nil, mvSpec("member"), mvNewRec(), true); err == nil {
		t.Error("nil Subscription accepted")
	}
	bad := []struct {
		name string
		spec FeedSpec
		sub  Subscriber
	}{
		{"nil Subscriber", mvSpec("member"), nil},
		{"empty key", FeedSpec{Query: mvSpec("member").Query, Tenant: "org"}, mvNewRec()},
	}
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			old, r := mvSubscribe(t, h, mvSpec(fmt.Sprint("admin", i)))
			l := src.Listener(t, i)
			l.Emit(t, hsReset(mvPub("a", 1)))
			if s, err := h.Move(old, tc.spec, tc.sub, true); err == nil || s != nil {
				t.Fatalf("Move = %v, %v; want an error", s, err)
			}
			r.markClosed() // refused, and detached: nothing more reaches r
			l.Emit(t, hsChanges(hsAdded(mvPub("b", 2))))
			r.check(t)
		})
	}
	if h.FeedCount() != 2 {
		t.Errorf("FeedCount %d after refused moves, want 2", h.FeedCount())
	}
	old, _ := mvSubscribe(t, h, mvSpec("admin"))
	h.Close()
	if _, err := h.Move(old, mvSpec("member"), mvNewRec(), true); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Move after Close: %v, want ErrHubClosed", err)
	}
}

// TestMoveConcurrent moves subscribers back and forth between three role
// Feeds of one collection while upstream mutates and listeners fail, with
// lagging subscribers, catch-ups and lingering Feeds closing and reopening
// under them. Each subscriber's reconstructed state must end equal to its
// current Feed's visible set, and every diff must have applied cleanly to
// what the client held (the recorder checks each change against it).
func TestMoveConcurrent(t *testing.T) {
	hsLeakCheck(t)
	world := newHSWorld()
	src := &hsWorldSource{worlds: map[string]*hsWorld{"tasks": world}}
	h, err := NewHub(src, HubConfig{RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond, ReplayCount: 16, Linger: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	filters := map[string]func(id, path string, data map[string]any) bool{
		"admin":  func(_, _ string, _ map[string]any) bool { return true },
		"member": func(_, _ string, data map[string]any) bool { return data["n"].(int64)%3 != 0 },
		"viewer": func(_, _ string, data map[string]any) bool { return data["n"].(int64)%2 == 0 },
	}
	roles := []string{"admin", "member", "viewer"}
	spec := func(role string) FeedSpec {
		s := hsSpec("tasks|org|"+role, "org")
		s.Filter = filters[role]
		return s
	}

	stop := make(chan struct{})
	var mutator sync.WaitGroup
	mutator.Add(1)
	go func() {
		defer mutator.Done()
		rng := rand.New(rand.NewPCG(7, 7))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%97 == 96 {
				world.failAll()
			} else {
				world.mutate(rng)
			}
			if i%4 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()

	type mover struct {
		s    *Subscription
		r    mvRec
		role string
	}
	movers := make([]*mover, 6)
	var moves, diffs, snapshots, catchUps atomic.Int64
	var workers sync.WaitGroup
	for w := range movers {
		workers.Add(1)
		go func(w int) {
			defer workers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			r := mvRec{&hsRecorder{state: hsNewClientState(), dropEvery: 3 + rng.IntN(5)}}
			role := roles[w%len(roles)]
			s, err := h.Subscribe(spec(role), r, nil)
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < 60; i++ {
				for j := 0; j < 1+rng.IntN(4); j++ {
					r.mu.Lock()
					need, last := r.needCatchUp, r.lastSeq
					r.mu.Unlock()
					if need {
						catchUps.Add(1)
						s.CatchUp(last)
					}
					time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
				}
				next := roles[rng.IntN(len(roles))] // sometimes the same key: a no-op
				ns, err := h.Move(s, spec(next), r, rng.IntN(5) != 0)
				if err != nil {
					t.Error(err)
					return
				}
				if next != role {
					moves.Add(1)
					r.mu.Lock() // Move delivered the new `subscribed`: resumed says diff or snapshot
					if r.state.resumed {
						diffs.Add(1)
					} else {
						snapshots.Add(1)
					}
					r.mu.Unlock()
				} else if ns != s {
					t.Error("same-key Move returned another Subscription")
				}
				s, role = ns, next
			}
			movers[w] = &mover{s: s, r: r, role: role}
		}(w)
	}
	workers.Wait()
	close(stop)
	mutator.Wait()
	if t.Failed() {
		return
	}

	used := map[string]bool{}
	for _, m := range movers {
		used[m.role] = true
	}
	for role := range used {
		f := h.feedFor(spec(role).Key)
		want := world.visible(filters[role])
		hsCheck(t, hsConverges(f, want))
	}
	for i, m := range movers {
		f := h.feedFor(spec(m.role).Key)
		if f != m.s.f {
			t.Fatalf("mover %d: Subscription not on the registered %s Feed", i, m.role)
		}
		hsCheck(t, func() error {
			m.r.mu.Lock()
			need, last := m.r.needCatchUp, m.r.lastSeq
			m.r.mu.Unlock()
			if need {
				m.s.CatchUp(last)
				return fmt.Errorf("mover %d needs a catch-up from seq %d", i, last)
			}
			if got, seq := m.r.snapshotState(); !hsMapsEqual(got, hsVisible(f)) || seq != hsSeq(f) {
				return fmt.Errorf("mover %d shows %v at seq %d, its Feed %v at seq %d", i, got, seq, hsVisible(f), hsSeq(f))
			}
			return nil
		})
		mvCheckSynced(t, m.r, f)
		if m.s.Epoch() != f.epoch {
			t.Errorf("mover %d: epoch %s, Feed %s", i, m.s.Epoch(), f.epoch)
		}
	}
	if diffs.Load() == 0 || snapshots.Load() == 0 {
		t.Errorf("moves %d: %d by diff, %d by snapshot; want both kinds", moves.Load(), diffs.Load(), snapshots.Load())
	}
	t.Logf("moves %d (diff %d, snapshot %d), catch-ups %d, listeners %d",
		moves.Load(), diffs.Load(), snapshots.Load(), catchUps.Load(), h.ListenersStarted())
}
