package subscriptions

import (
	"errors"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/clock"
	"github.com/firegate/firegate/metrics"
)

// hsWantLimit subscribes spec and wants a refusal by limit.
func hsWantLimit(t *testing.T, h *Hub, spec FeedSpec, limit metrics.Limit) {
	t.Helper()
	_, err := h.Subscribe(spec, hsNewRecorder(), nil)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != limit {
		t.Fatalf("Subscribe(%s) = %v, want a %s refusal", spec.Key, err, limit)
	}
}

func hsUserSpec(key, tenant, user string) FeedSpec {
	s := hsSpec(key, tenant)
	s.User = user
	return s
}

// TestFeedByteBudgetPerTenant is the attack of one org pinning the
// gateway's memory with a few Feeds over huge results: a new Feed is
// refused once the org's Feeds hold its byte budget (len(path) + encoded
// data of every visible document), below it one is admitted, and other
// orgs are unaffected.
func TestFeedByteBudgetPerTenant(t *testing.T) {
	hsLeakCheck(t)
	h, src, _ := hsNewHub(t, HubConfig{MaxFeedBytesPerTenant: 15})
	hsSubscribe(t, h, hsSpec("k1", "a"), nil)
	src.Listener(t, 0).Emit(t, hsReset(hsDoc("a", 1))) // "tasks/a": 7 bytes, no data
	hsSubscribe(t, h, hsSpec("k2", "a"), nil)
	l2 := src.Listener(t, 1)
	l2.Emit(t, hsReset(hsDoc("b", 1))) // 7 more
	if got := h.TenantBytes("a"); got != 14 {
		t.Fatalf("TenantBytes = %d, want 14", got)
	}
	hsSubscribe(t, h, hsSpec("k3", "a"), nil)             // one byte below the budget: admitted
	l2.Emit(t, hsChanges(hsAdded(hsDoc("x", 1, "v", 1)))) // "tasks/x" 7 + {"v":1} 7
	if got := h.TenantBytes("a"); got != 28 {
		t.Fatalf("TenantBytes = %d, want 28 (data counts)", got)
	}
	hsWantLimit(t, h, hsSpec("k4", "a"), LimitFeedBytes) // past the budget
	l2.Emit(t, hsChanges(hsRemoved("x")))
	l2.Emit(t, hsChanges(hsModified(hsDoc("b", 2, "w", 1)))) // 7 + 7
	if got := h.TenantBytes("a"); got != 21 {
		t.Fatalf("TenantBytes = %d, want 21", got)
	}
	l2.Emit(t, hsChanges(hsModified(hsDoc("b", 3))))                 // back to 7: exactly 14
	l2.Emit(t, hsChanges(hsAdded(hsDoc("c", 1))))                    // 7 more: 21
	l2.Emit(t, hsChanges(hsRemoved("a")))                            // not in k2: no change
	src.Listener(t, 0).Emit(t, hsChanges(hsModified(hsDoc("a", 2)))) // same size
	l2.Emit(t, hsChanges(hsRemoved("c")))                            // 14
	l2.Emit(t, hsChanges(hsModified(hsDoc("b", 4, "", nil))))        // tasks/b {"":null} 7+9 = 16; total 23
	l2.Emit(t, hsChanges(hsModified(hsDoc("b", 5, "z", 1))))         // 7+7: total 21
	l2.Emit(t, hsChanges(hsRemoved("b")))                            // 7
	l2.Emit(t, hsChanges(hsAdded(hsDoc("bb", 1))))                   // "tasks/bb" 8: exactly 15
	if got := h.TenantBytes("a"); got != 15 {
		t.Fatalf("TenantBytes = %d, want 15", got)
	}
	hsWantLimit(t, h, hsSpec("k4", "a"), LimitFeedBytes) // at the budget
	if _, err := h.Subscribe(hsSpec("k2", "a"), hsNewRecorder(), nil); err != nil {
		t.Fatalf("joining an existing Feed over the budget: %v", err)
	}
	if _, err := h.Subscribe(hsSpec("k5", "b"), hsNewRecorder(), nil); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	l2.Emit(t, hsChanges(hsRemoved("bb"))) // 7
	if _, err := h.Subscribe(hsSpec("k4", "a"), hsNewRecorder(), nil); err != nil {
		t.Fatalf("below the budget again: %v", err)
	}
}

// TestFeedSharePerUser is the attack of one member opening every Feed its
// org may have, locking colleagues out: a user may have opened at most
// floor(share × MaxFeedsPerTenant) of the org's Feeds; joining Feeds
// others opened is never limited, and other users keep their share.
func TestFeedSharePerUser(t *testing.T) {
	cases := []struct {
		name  string
		share float64
		cap   int
	}{
		{"half of 4", 0.5, 2},
		{"floor of 0.3 × 4", 0.3, 1},
		{"at least one", 0.01, 1},
		{"whole", 1, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			h, _, _ := hsNewHub(t, HubConfig{MaxFeedsPerTenant: 4, MaxFeedSharePerUser: tc.share})
			for i := range tc.cap { // up to the edge
				if _, err := h.Subscribe(hsUserSpec(string(rune('a'+i)), "org", "u1"), hsNewRecorder(), nil); err != nil {
					t.Fatalf("feed %d of %d: %v", i+1, tc.cap, err)
				}
			}
			if tc.cap == 4 {
				hsWantLimit(t, h, hsUserSpec("x", "org", "u1"), LimitFeedsPerTenant)
				return
			}
			hsWantLimit(t, h, hsUserSpec("x", "org", "u1"), LimitFeedShare) // past it
			if _, err := h.Subscribe(hsUserSpec("y", "org", "u2"), hsNewRecorder(), nil); err != nil {
				t.Fatalf("another user of the org: %v", err)
			}
			if _, err := h.Subscribe(hsUserSpec("y", "org", "u1"), hsNewRecorder(), nil); err != nil {
				t.Fatalf("joining a Feed another user opened: %v", err)
			}
			if _, err := h.Subscribe(hsUserSpec("z", "other", "u1"), hsNewRecorder(), nil); err != nil {
				t.Fatalf("the same user in another org: %v", err)
			}
		})
	}
	if _, err := NewHub(&fakeSource{}, HubConfig{MaxFeedSharePerUser: 1.5}); err == nil {
		t.Error("a share above 1 was accepted")
	}
	if _, err := NewHub(&fakeSource{}, HubConfig{MaxFeedSharePerUser: -0.5}); err == nil {
		t.Error("a negative share was accepted")
	}
	if _, err := NewHub(&fakeSource{}, HubConfig{MaxFeedBytesPerTenant: -1}); err == nil {
		t.Error("a negative byte budget was accepted")
	}
}

// TestLingeringFeedEvictedBeforeRefusal: at any cap, the oldest lingering
// Feed that holds what the cap counts is closed to make room; a cap is
// answered only when none lingers. A lingering Feed that does not count
// against the refusing cap (another user's, for the per-user share) stays.
func TestLingeringFeedEvictedBeforeRefusal(t *testing.T) {
	cases := []struct {
		name    string
		cfg     HubConfig
		fill    []FeedSpec // opened in order, then all left (lingering) but keep
		keep    int        // how many of fill stay subscribed (the last ones)
		next    FeedSpec
		evicted string // key of the Feed that must go
		limit   metrics.Limit
	}{
		{"feeds", HubConfig{MaxFeeds: 3}, []FeedSpec{hsSpec("a", "t1"), hsSpec("b", "t2"), hsSpec("c", "t3")}, 1, hsSpec("d", "t4"), "a", LimitFeeds},
		{"feeds per org", HubConfig{MaxFeedsPerTenant: 3}, []FeedSpec{hsSpec("a", "t"), hsSpec("b", "t"), hsSpec("c", "t")}, 1, hsSpec("d", "t"), "a", LimitFeedsPerTenant},
		{"share per user", HubConfig{MaxFeedsPerTenant: 4, MaxFeedSharePerUser: 0.5},
			[]FeedSpec{hsUserSpec("o", "t", "u2"), hsUserSpec("a", "t", "u1"), hsUserSpec("b", "t", "u1")}, 0, hsUserSpec("d", "t", "u1"), "a", LimitFeedShare},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			fc := clock.NewFake(time.Unix(1_800_000_000, 0))
			tc.cfg.Clock = fc
			h, _, _ := hsNewHub(t, tc.cfg)
			var subs []*Subscription
			for _, sp := range tc.fill {
				s, _ := hsSubscribe(t, h, sp, nil)
				subs = append(subs, s)
			}
			// With nothing lingering the cap refuses.
			hsWantLimit(t, h, tc.next, tc.limit)
			for _, s := range subs[:len(subs)-tc.keep] {
				fc.Advance(time.Second) // a clear lingering order
				s.Unsubscribe()
			}
			before := h.FeedCount()
			if _, err := h.Subscribe(tc.next, hsNewRecorder(), nil); err != nil {
				t.Fatalf("Subscribe with lingering Feeds: %v", err)
			}
			if h.feedFor(tc.evicted) != nil {
				t.Fatalf("the oldest eligible lingering Feed %q was not evicted", tc.evicted)
			}
			if h.FeedCount() != before {
				t.Fatalf("FeedCount %d, want %d (one evicted, one opened)", h.FeedCount(), before)
			}
			for _, sp := range tc.fill {
				if sp.Key != tc.evicted && h.feedFor(sp.Key) == nil {
					t.Fatalf("Feed %q was evicted too", sp.Key)
				}
			}
		})
	}
}
