package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

func TestNewHubConfig(t *testing.T) {
	src := &fakeSource{}
	bad := []struct {
		name string
		cfg  HubConfig
	}{
		{"negative MaxFeeds", HubConfig{MaxFeeds: -1}},
		{"negative MaxFeedsPerTenant", HubConfig{MaxFeedsPerTenant: -1}},
		{"negative ReplayCount", HubConfig{ReplayCount: -1}},
		{"negative ReplayAge", HubConfig{ReplayAge: -time.Second}},
		{"negative SnapshotChunkBytes", HubConfig{SnapshotChunkBytes: -1}},
		{"negative RetryMin", HubConfig{RetryMin: -time.Second}},
		{"negative RetryMax", HubConfig{RetryMax: -time.Second}},
		{"RetryMin above RetryMax", HubConfig{RetryMin: 2 * time.Second, RetryMax: time.Second}},
		{"RetryMin above default RetryMax", HubConfig{RetryMin: time.Minute}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if h, err := NewHub(src, tc.cfg); err == nil {
				h.Close()
				t.Fatal("NewHub accepted an invalid config")
			}
		})
	}
	if _, err := NewHub(nil, HubConfig{}); err == nil {
		t.Error("NewHub accepted a nil Source")
	}
	h, err := NewHub(src, HubConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c := h.cfg
	got := []any{c.Linger, c.MaxFeeds, c.MaxFeedsPerTenant, c.ReplayCount, c.ReplayAge, c.SnapshotChunkBytes, c.RetryMin, c.RetryMax}
	want := []any{30 * time.Second, 1000, 100, 1024, 5 * time.Minute, 256 << 10, 500 * time.Millisecond, 30 * time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("defaults = %v, want %v", got, want)
	}
	if h.cfg.Metrics == nil || h.cfg.Logger == nil || h.cfg.Clock == nil {
		t.Error("nil Metrics, Logger or Clock not defaulted")
	}
	neg, err := NewHub(src, HubConfig{Linger: -1})
	if err != nil {
		t.Fatalf("negative Linger refused: %v", err)
	}
	neg.Close()
}

func TestSubscribeValidation(t *testing.T) {
	hsLeakCheck(t)
	h, _, _ := hsNewHub(t, HubConfig{})
	if _, err := h.Subscribe(hsSpec("k", "org"), nil, nil); err == nil {
		t.Error("nil Subscriber accepted")
	}
	if _, err := h.Subscribe(hsSpec("", "org"), hsNewRecorder(), nil); err == nil {
		t.Error("empty key accepted")
	}
	if h.FeedCount() != 0 {
		t.Errorf("FeedCount = %d after refused subscribes", h.FeedCount())
	}
}

func TestSharedFeedOneListener(t *testing.T) {
	hsLeakCheck(t)
	m := metrics.New(nil)
	h, src, _ := hsNewHub(t, HubConfig{Metrics: m})
	s1, r1 := hsSubscribe(t, h, hsSpec("k1", "org"), nil)
	s2, r2 := hsSubscribe(t, h, hsSpec("k1", "org"), nil)
	l := src.Listener(t, 0)
	l.Emit(t, hsReset(hsDoc("a", 1, "n", 1)))
	l.Emit(t, hsChanges(hsModified(hsDoc("a", 2, "n", 2))))

	if n := src.Count(); n != 1 {
		t.Errorf("Listen calls = %d, want 1", n)
	}
	if h.ListenersStarted() != 1 || testutil.ToFloat64(m.ListenersStarted) != 1 {
		t.Errorf("ListenersStarted = %d (metric %v), want 1", h.ListenersStarted(), testutil.ToFloat64(m.ListenersStarted))
	}
	if h.FeedCount() != 1 || testutil.ToFloat64(m.FeedsActive) != 1 {
		t.Errorf("FeedCount = %d, feeds_active = %v, want 1", h.FeedCount(), testutil.ToFloat64(m.FeedsActive))
	}
	if s1.Epoch() != s2.Epoch() || s1.Epoch() == "" {
		t.Errorf("epochs %q %q: want equal and non-empty", s1.Epoch(), s2.Epoch())
	}
	d1, d2 := r1.deliveries(), r2.deliveries()
	want := []string{"subscribed", "snapshot", "changes"}
	if !slices.Equal(hsTypes(d1), want) || !slices.Equal(hsTypes(d2), want) {
		t.Fatalf("deliveries %v / %v, want %v", hsTypes(d1), hsTypes(d2), want)
	}
	// Encoded once: the very same Message (and frame) reaches both.
	for i := range d1 {
		if d1[i].m != d2[i].m {
			t.Errorf("message %d (%s) not shared between subscribers", i, d1[i].sm.Type)
		}
	}
	r1.check(t)
	r2.check(t)
}

func TestDistinctKeysDistinctFeeds(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	s1, _ := hsSubscribe(t, h, hsSpec("k1", "org1"), nil)
	s2, _ := hsSubscribe(t, h, hsSpec("k2", "org2"), nil)
	l0, l1 := src.Listener(t, 0), src.Listener(t, 1)
	if h.FeedCount() != 2 || src.Count() != 2 {
		t.Fatalf("FeedCount = %d, listeners = %d, want 2, 2", h.FeedCount(), src.Count())
	}
	if s1.Epoch() == s2.Epoch() {
		t.Error("two Feeds share an epoch")
	}
	orgs := []any{l0.Query().Filters[0].Value, l1.Query().Filters[0].Value}
	slices.SortFunc(orgs, func(a, b any) int { return hsCmpString(a.(string), b.(string)) })
	if orgs[0] != "org1" || orgs[1] != "org2" {
		t.Errorf("listener queries for %v, want org1 and org2", orgs)
	}
}

func hsCmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestFeedLimits(t *testing.T) {
	tests := []struct {
		name      string
		cfg       HubConfig
		subs      []FeedSpec // all must succeed
		refused   FeedSpec
		limit     metrics.Limit
		joinAtCap FeedSpec
		otherOK   *FeedSpec // a new Feed that is still allowed
	}{
		{
			name:      "MaxFeeds",
			cfg:       HubConfig{MaxFeeds: 2},
			subs:      []FeedSpec{hsSpec("k1", "a"), hsSpec("k2", "b")},
			refused:   hsSpec("k3", "c"),
			limit:     metrics.LimitFeeds,
			joinAtCap: hsSpec("k2", "b"),
		},
		{
			name:      "MaxFeedsPerTenant",
			cfg:       HubConfig{MaxFeedsPerTenant: 2},
			subs:      []FeedSpec{hsSpec("k1", "a"), hsSpec("k2", "a")},
			refused:   hsSpec("k3", "a"),
			limit:     metrics.LimitFeedsPerOrg,
			joinAtCap: hsSpec("k2", "a"),
			otherOK:   &FeedSpec{Key: "k4", Tenant: "b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			h, _, timers := hsNewHub(t, tc.cfg)
			var subs []*Subscription
			for _, sp := range tc.subs { // up to the edge
				s, _ := hsSubscribe(t, h, sp, nil)
				subs = append(subs, s)
			}
			_, err := h.Subscribe(tc.refused, hsNewRecorder(), nil) // past the edge
			var le *LimitError
			if !errors.As(err, &le) {
				t.Fatalf("Subscribe past the cap: err = %v, want *LimitError", err)
			}
			if le.Limit != tc.limit || le.RetryAfter <= 0 {
				t.Errorf("LimitError = %+v, want Limit %q and a RetryAfter", le, tc.limit)
			}
			if h.FeedCount() != len(tc.subs) {
				t.Errorf("FeedCount = %d after refusal, want %d", h.FeedCount(), len(tc.subs))
			}
			if _, err := h.Subscribe(tc.joinAtCap, hsNewRecorder(), nil); err != nil {
				t.Errorf("joining an existing Feed at the cap: %v", err)
			}
			if tc.otherOK != nil {
				if _, err := h.Subscribe(*tc.otherOK, hsNewRecorder(), nil); err != nil {
					t.Errorf("another tenant's Feed: %v", err)
				}
			}
			// A lingering Feed is evicted before the cap refuses.
			n := timers.len()
			subs[0].Unsubscribe()
			if timers.len() != n+1 {
				t.Fatal("linger timer not armed")
			}
			if _, err := h.Subscribe(tc.refused, hsNewRecorder(), nil); err != nil {
				t.Fatalf("Subscribe with a lingering Feed to evict: %v", err)
			}
			if h.FeedCount() != len(tc.subs)+btoi(tc.otherOK != nil) {
				t.Errorf("FeedCount = %d after the eviction", h.FeedCount())
			}
			if h.feedFor(tc.subs[0].Key) != nil {
				t.Error("the lingering Feed was not evicted")
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestLingerWarmRevive(t *testing.T) {
	hsLeakCheck(t)
	m := metrics.New(nil)
	h, src, timers := hsNewHub(t, HubConfig{Metrics: m})
	spec := hsSpec("k", "org")
	s1, _ := hsSubscribe(t, h, spec, nil)
	l := src.Listener(t, 0)
	l.Emit(t, hsReset(hsDoc("a", 1)))
	l.Emit(t, hsChanges(hsAdded(hsDoc("b", 1))))
	epoch := s1.Epoch()

	s1.Unsubscribe()
	if timers.len() != 1 {
		t.Fatalf("linger timers = %d, want 1", timers.len())
	}
	// Lingering: the listener keeps running and the Feed keeps its state.
	if l.Context().Err() != nil || l.Ended() {
		t.Fatal("listener stopped during linger")
	}
	if h.FeedCount() != 1 || testutil.ToFloat64(m.FeedsActive) != 1 {
		t.Fatalf("FeedCount = %d during linger, want 1", h.FeedCount())
	}
	l.Emit(t, hsChanges(hsAdded(hsDoc("c", 1)))) // changes while lingering advance seq

	s2, r2 := hsSubscribe(t, h, spec, nil)
	if s2.Epoch() != epoch {
		t.Errorf("revived epoch %q, want %q", s2.Epoch(), epoch)
	}
	if src.Count() != 1 || h.ListenersStarted() != 1 {
		t.Errorf("revive started a listener: %d Listen calls", src.Count())
	}
	ds := r2.deliveries()
	if len(ds) != 2 || ds[1].sm.Type != "snapshot" || ds[1].sm.Seq != 2 || len(ds[1].sm.Docs) != 3 {
		t.Fatalf("revived subscriber got %v, want subscribed + snapshot seq 2 with 3 docs", ds)
	}
	// The old timer was stopped by the revive; firing it does nothing.
	timers.fire(0)
	if h.FeedCount() != 1 || l.Context().Err() != nil {
		t.Fatal("stale linger timer closed a revived Feed")
	}

	// A stale timer of an earlier linger period cannot close the Feed in a
	// later one: leave (timer 1), come back, leave again (timer 2).
	s2.Unsubscribe()
	s3, _ := hsSubscribe(t, h, spec, nil)
	s3.Unsubscribe()
	if timers.len() != 3 {
		t.Fatalf("linger timers = %d, want 3", timers.len())
	}
	timers.mu.Lock()
	timers.timers[1].stopped = false // simulate a timer that fired despite Stop
	timers.mu.Unlock()
	timers.fire(1)
	if h.FeedCount() != 1 || l.Context().Err() != nil {
		t.Fatal("stale linger generation closed the Feed")
	}
	if !timers.fire(2) {
		t.Fatal("current linger timer already stopped")
	}
	hsCheck(t, hsEnded(l))
	if l.Context().Err() == nil {
		t.Error("listener context not cancelled after linger")
	}
	if h.FeedCount() != 0 || testutil.ToFloat64(m.FeedsActive) != 0 {
		t.Errorf("FeedCount = %d, feeds_active = %v after linger", h.FeedCount(), testutil.ToFloat64(m.FeedsActive))
	}
	s4, _ := hsSubscribe(t, h, spec, nil)
	if s4.Epoch() == epoch {
		t.Error("a Feed recreated after linger kept the old epoch")
	}
	src.Listener(t, 1)
	if h.ListenersStarted() != 2 {
		t.Errorf("ListenersStarted = %d, want 2", h.ListenersStarted())
	}
	s1.Unsubscribe() // idempotent on a long-gone Feed
}

func TestLingerRealTimer(t *testing.T) {
	hsLeakCheck(t)
	src := &fakeSource{}
	h, err := NewHub(src, HubConfig{Linger: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, _ := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	l := src.Listener(t, 0)
	s.Unsubscribe()
	hsCheck(t, hsFeedCount(h, 0))
	hsCheck(t, hsEnded(l))
	if l.Context().Err() == nil {
		t.Error("listener context not cancelled")
	}
}

func TestLingerNegativeClosesAtOnce(t *testing.T) {
	hsLeakCheck(t)
	h, src, timers := hsNewHub(t, HubConfig{Linger: -1})
	s1, _ := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	s2, _ := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	l := src.Listener(t, 0)
	s1.Unsubscribe()
	if h.FeedCount() != 1 {
		t.Fatal("Feed closed while a subscriber remained")
	}
	s2.Unsubscribe()
	if h.FeedCount() != 0 {
		t.Errorf("FeedCount = %d right after the last Unsubscribe, want 0", h.FeedCount())
	}
	if l.Context().Err() == nil {
		t.Error("listener context not cancelled at once")
	}
	if timers.len() != 0 {
		t.Errorf("%d linger timers armed with negative Linger", timers.len())
	}
}

func TestPermanentErrorEndsFeed(t *testing.T) {
	for _, beforeReset := range []bool{false, true} {
		t.Run(fmt.Sprintf("beforeReset=%v", beforeReset), func(t *testing.T) {
			hsLeakCheck(t)
			m := metrics.New(nil)
			h, src, _ := hsNewHub(t, HubConfig{Metrics: m})
			spec := hsSpec("k", "org")
			s1, r1 := hsSubscribe(t, h, spec, nil)
			_, r2 := hsSubscribe(t, h, spec, nil)
			l := src.Listener(t, 0)
			if !beforeReset {
				l.Emit(t, hsReset(hsDoc("a", 1)))
			}
			const msg = "The query requires an index. You can create it here: https://console.firebase.google.com/x"
			l.Fail(t, &UpstreamError{Code: codes.FailedPrecondition, Message: msg})
			hsCheck(t, hsFeedCount(h, 0))

			for _, r := range []*hsRecorder{r1, r2} {
				ds := r.deliveries()
				last := ds[len(ds)-1]
				if last.sm.Type != "unsubscribed" || last.sm.Reason != "upstream_error" || last.sm.Message != msg || !last.m.End {
					t.Errorf("last delivery %s (End=%v), want unsubscribed upstream_error with the message and End", last.raw, last.m.End)
				}
				r.markClosed()
				r.check(t)
			}
			if got := testutil.ToFloat64(m.FeedErrorsByCode[codes.FailedPrecondition]); got != 1 {
				t.Errorf("feed_errors_total{FailedPrecondition} = %v, want 1", got)
			}
			if testutil.ToFloat64(m.FeedsActive) != 0 {
				t.Error("feeds_active not back to 0")
			}
			if l.Context().Err() == nil {
				t.Error("listener context not cancelled")
			}
			s1.Unsubscribe() // detached already: no-op, no delivery

			s3, r3 := hsSubscribe(t, h, spec, nil)
			if s3.Epoch() == s1.Epoch() {
				t.Error("new Feed reuses the failed Feed's epoch")
			}
			l2 := src.Listener(t, 1)
			l2.Emit(t, hsReset(hsDoc("a", 1)))
			if got := hsTypes(r3.deliveries()); !slices.Equal(got, []string{"subscribed", "snapshot"}) {
				t.Errorf("resubscribe got %v", got)
			}
		})
	}
}

func TestTransientErrorResetDiff(t *testing.T) {
	errs := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"unavailable", hsUnavailable(), codes.Unavailable},
		{"plain error", errors.New("connection reset"), codes.Unknown},
		{"nil return", nil, codes.Unknown},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			m := metrics.New(nil)
			h, src, _ := hsNewHub(t, HubConfig{Metrics: m})
			s, r := hsSubscribe(t, h, hsSpec("k", "org"), nil)
			l := src.Listener(t, 0)
			l.Emit(t, hsReset(hsDoc("a", 1, "v", "a1"), hsDoc("b", 1, "v", "b1"), hsDoc("c", 1, "v", "c1")))
			r.take()
			l.Fail(t, tc.err)
			// While down: a removed, b changed, c unchanged, d added.
			l2 := src.Listener(t, 1)
			dupBefore := testutil.ToFloat64(m.DuplicatesSuppr)
			l2.Emit(t, hsReset(hsDoc("b", 2, "v", "b2"), hsDoc("c", 1, "v", "c1"), hsDoc("d", 1, "v", "d1")))
			ds := r.take()
			if len(ds) != 1 || ds[0].sm.Type != "changes" || ds[0].sm.Seq != 1 {
				t.Fatalf("after restart got %v, want one changes seq 1", hsTypes(ds))
			}
			got := hsChangeList(ds[0].sm)
			want := []string{"modified:b", "added:d", "removed:a"}
			if !slices.Equal(got, want) {
				t.Errorf("reset diff = %v, want %v", got, want)
			}
			if d := testutil.ToFloat64(m.DuplicatesSuppr) - dupBefore; d != 1 {
				t.Errorf("duplicates counted = %v, want 1 (c)", d)
			}
			if got := testutil.ToFloat64(m.FeedErrorsByCode[tc.code]); got != 1 {
				t.Errorf("feed_errors_total{%s} = %v, want 1", tc.code, got)
			}
			// An identical restart delivers nothing at all.
			l2.Fail(t, tc.err)
			src.Listener(t, 2).Emit(t, hsReset(hsDoc("b", 2, "v", "b2"), hsDoc("c", 1, "v", "c1"), hsDoc("d", 1, "v", "d1")))
			if ds := r.take(); len(ds) != 0 {
				t.Errorf("identical restart delivered %v", hsTypes(ds))
			}
			if h.ListenersStarted() != 3 || s.Epoch() == "" || h.FeedCount() != 1 {
				t.Errorf("ListenersStarted = %d, FeedCount = %d", h.ListenersStarted(), h.FeedCount())
			}
			f := h.feedFor("k")
			st, seq := r.snapshotState()
			if !hsMapsEqual(st, hsVisible(f)) || seq != hsSeq(f) {
				t.Errorf("subscriber state %v @%d, Feed %v @%d", st, seq, hsVisible(f), hsSeq(f))
			}
			r.check(t)
		})
	}
}

func hsMapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestTransientErrorBackoffAndStop(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
	s, r := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	for i := 0; i < 5; i++ { // a listener that keeps failing before any snapshot
		src.Listener(t, i).Fail(t, hsUnavailable())
	}
	l := src.Listener(t, 5)
	l.Emit(t, hsReset(hsDoc("a", 1)))
	if got := hsTypes(r.deliveries()); !slices.Equal(got, []string{"subscribed", "snapshot"}) {
		t.Errorf("after retries got %v", got)
	}
	s.Unsubscribe()
}

func TestUnsubscribeIdempotentNoLateDelivery(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	s1, r1 := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	_, r2 := hsSubscribe(t, h, hsSpec("k", "org"), nil)
	l := src.Listener(t, 0)
	l.Emit(t, hsReset(hsDoc("a", 1)))
	s1.Unsubscribe()
	r1.markClosed()
	s1.Unsubscribe()
	s1.CatchUp(0)
	l.Emit(t, hsChanges(hsAdded(hsDoc("b", 1))))
	r1.check(t) // fails on any delivery after Unsubscribe returned
	if got := hsTypes(r2.deliveries()); !slices.Equal(got, []string{"subscribed", "snapshot", "changes"}) {
		t.Errorf("remaining subscriber got %v", got)
	}
	if h.FeedCount() != 1 {
		t.Error("Feed closed while a subscriber remained")
	}
}

func TestHubClose(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{})
	_, r := hsSubscribe(t, h, hsSpec("k1", "org"), nil)
	s2, _ := hsSubscribe(t, h, hsSpec("k2", "org"), nil)
	l := src.Listener(t, 0)
	src.Listener(t, 1)
	l.Emit(t, hsReset())
	s2.Unsubscribe() // lingering Feed
	h.Close()
	if h.FeedCount() != 0 {
		t.Errorf("FeedCount = %d after Close", h.FeedCount())
	}
	for i := 0; i < 2; i++ {
		if !src.Listener(t, i).Ended() {
			t.Errorf("listener %d still running after Close", i)
		}
	}
	if _, err := h.Subscribe(hsSpec("k1", "org"), hsNewRecorder(), nil); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrHubClosed", err)
	}
	h.Close() // idempotent
	r.markClosed()
	r.check(t)
}

// TestConcurrentSubscribers runs subscribers that come, go, resume and lag
// while upstream worlds mutate and listeners fail; every surviving
// subscriber's reconstructed state must equal its Feed's visible set.
func TestConcurrentSubscribers(t *testing.T) {
	hsLeakCheck(t)
	keys := []string{"k0", "k1", "k2"}
	worlds := map[string]*hsWorld{}
	for _, k := range keys {
		worlds[k] = newHSWorld()
	}
	src := &hsWorldSource{worlds: worlds}
	h, err := NewHub(src, HubConfig{RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond, ReplayCount: 16, Linger: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	filter := func(id, path string, data map[string]any) bool { return data["n"].(int64)%3 != 0 }
	spec := func(k string) FeedSpec { s := hsSpec(k, "org"); s.Query.Collection = k; s.Filter = filter; return s }

	stop := make(chan struct{})
	var mutators sync.WaitGroup
	for _, k := range keys {
		mutators.Add(1)
		go func(w *hsWorld, seed uint64) {
			defer mutators.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%97 == 96 {
					w.failAll()
				} else {
					w.mutate(rng)
				}
				if i%8 == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		}(worlds[k], uint64(len(k)*7+int(k[1])))
	}

	type live struct {
		s *Subscription
		r *hsRecorder
		k string
	}
	var (
		mu        sync.Mutex
		survivors []live
	)
	var workers sync.WaitGroup
	var catchUps, resumes, resumeHits atomic.Int64
	for w := 0; w < 8; w++ {
		workers.Add(1)
		go func(w int) {
			defer workers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			var prev *live
			for i := 0; i < 40; i++ {
				k := keys[rng.IntN(len(keys))]
				r := &hsRecorder{state: hsNewClientState(), dropEvery: 3 + rng.IntN(5)}
				var resume *wire.Resume
				if prev != nil && prev.k == k && rng.IntN(2) == 0 {
					// Resume from what the previous subscription saw.
					prev.r.mu.Lock()
					if prev.r.state.synced && !prev.r.state.inSnap && !prev.r.dropping {
						resume = &wire.Resume{Epoch: prev.r.state.epoch, Seq: prev.r.state.seq}
						for id, v := range prev.r.state.docs {
							r.state.docs[id] = v
						}
						r.state.seq, r.state.synced = prev.r.state.seq, true
					}
					prev.r.mu.Unlock()
				}
				s, err := h.Subscribe(spec(k), r, resume)
				if err != nil {
					t.Error(err)
					return
				}
				if resume != nil {
					resumes.Add(1)
					r.mu.Lock()
					if r.state.resumed {
						resumeHits.Add(1)
					}
					r.mu.Unlock()
				}
				cur := &live{s: s, r: r, k: k}
				for j := 0; j < 1+rng.IntN(20); j++ {
					r.mu.Lock()
					need, last := r.needCatchUp, r.lastSeq
					r.mu.Unlock()
					if need {
						catchUps.Add(1)
						s.CatchUp(last)
					}
					time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
				}
				if prev != nil {
					prev.s.Unsubscribe()
					prev.r.markClosed()
					prev.s.Unsubscribe()
				}
				prev = cur
			}
			mu.Lock()
			survivors = append(survivors, *prev)
			mu.Unlock()
		}(w)
	}
	workers.Wait()
	close(stop)
	mutators.Wait()

	for _, k := range keys {
		if !slices.ContainsFunc(survivors, func(sv live) bool { return sv.k == k }) {
			continue // no survivor holds this Feed: it may be expiring
		}
		f := h.feedFor(k)
		want := worlds[k].visible(filter)
		hsCheck(t, hsConverges(f, want))
	}
	// Only now is every Feed quiet: a survivor that dropped a message while
	// the last upstream snapshots were still being applied catches up here
	// (again, if it drops the catch-up itself).
	for i, sv := range survivors {
		f := h.feedFor(sv.k)
		hsCheck(t, func() error {
			sv.r.mu.Lock()
			need, last := sv.r.needCatchUp, sv.r.lastSeq
			sv.r.mu.Unlock()
			if need {
				sv.s.CatchUp(last)
				return fmt.Errorf("survivor %d needs a catch-up from seq %d", i, last)
			}
			if f == nil {
				return testkit.Stop(fmt.Errorf("survivor %d: Feed %s gone", i, sv.k))
			}
			if got, seq := sv.r.snapshotState(); !hsMapsEqual(got, hsVisible(f)) || seq != hsSeq(f) {
				return fmt.Errorf("survivor %d shows %v at seq %d, its Feed %v at seq %d", i, got, seq, hsVisible(f), hsSeq(f))
			}
			return nil
		})
	}
	for i, sv := range survivors {
		f := h.feedFor(sv.k)
		if f == nil {
			t.Fatalf("survivor %d: Feed %s gone", i, sv.k)
		}
		sv.r.check(t)
		got, seq := sv.r.snapshotState()
		if want := hsVisible(f); !hsMapsEqual(got, want) || seq != hsSeq(f) {
			t.Errorf("survivor %d on %s: state %d docs @%d, Feed %d docs @%d", i, sv.k, len(got), seq, len(want), hsSeq(f))
		}
		if sv.s.Epoch() != f.epoch {
			t.Errorf("survivor %d: epoch %s, Feed %s", i, sv.s.Epoch(), f.epoch)
		}
	}
	if catchUps.Load() == 0 {
		t.Error("the stress test exercised no CatchUp")
	}
	t.Logf("survivors %d, catch-ups %d, resumes %d (hits %d), listeners %d",
		len(survivors), catchUps.Load(), resumes.Load(), resumeHits.Load(), h.ListenersStarted())
}

// hsWorld is the upstream truth of one query for the stress test: its
// listeners get a Reset of the current state and then every change.
type hsWorld struct {
	mu    sync.Mutex
	docs  map[string]Document
	vers  int
	lists map[chan hsWorldEvent]struct{}
}

type hsWorldEvent struct {
	snap *Snapshot
	err  error
}

func newHSWorld() *hsWorld {
	return &hsWorld{docs: map[string]Document{}, lists: map[chan hsWorldEvent]struct{}{}}
}

func (w *hsWorld) mutate(rng *rand.Rand) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.vers++
	id := fmt.Sprintf("d%02d", rng.IntN(24))
	var ch Change
	if _, ok := w.docs[id]; ok && rng.IntN(4) == 0 {
		delete(w.docs, id)
		ch = hsRemoved(id)
	} else {
		d := hsDoc(id, w.vers, "n", int64(rng.IntN(9)))
		ch = Change{Kind: Added, Doc: d}
		if _, ok := w.docs[id]; ok {
			ch.Kind = Modified
		}
		w.docs[id] = d
	}
	for c := range w.lists {
		select {
		case c <- hsWorldEvent{snap: hsChanges(ch)}:
		default: // listener too far behind: fail it, it rebuilds
			close(c)
			delete(w.lists, c)
		}
	}
}

func (w *hsWorld) failAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.lists {
		select {
		case c <- hsWorldEvent{err: hsUnavailable()}:
		default:
			close(c)
		}
		delete(w.lists, c)
	}
}

func (w *hsWorld) visible(filter func(id, path string, data map[string]any) bool) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]string{}
	for id, d := range w.docs {
		if filter(id, d.Path, d.Data) {
			out[id] = hsDocValue([]byte(fmt.Sprintf(`{"n":%d}`, d.Data["n"])), d.UpdateTime.UTC().Format(time.RFC3339Nano))
		}
	}
	return out
}

type hsWorldSource struct{ worlds map[string]*hsWorld }

func (s *hsWorldSource) Listen(ctx context.Context, q Query, emit func(*Snapshot)) error {
	w := s.worlds[q.Collection]
	c := make(chan hsWorldEvent, 256)
	w.mu.Lock()
	docs := make([]Document, 0, len(w.docs))
	for _, d := range w.docs {
		docs = append(docs, d)
	}
	w.lists[c] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.lists, c)
		w.mu.Unlock()
	}()
	emit(hsReset(docs...))
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-c:
			if !ok {
				return hsUnavailable()
			}
			if ev.err != nil {
				return ev.err
			}
			emit(ev.snap)
		}
	}
}
