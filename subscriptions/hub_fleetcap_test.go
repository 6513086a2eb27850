package subscriptions

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/firegate/firegate/internal/clock"
	"github.com/firegate/firegate/metrics"
)

// hsFleet is a FleetSource and FleetLimiter over the fake source: remote
// holds the Feeds other instances own (key → tenant), and FleetFeeds
// answers from it as the fleet's lease view does.
type hsFleet struct {
	*fakeSource
	mu      sync.Mutex
	remote  map[string]string // guarded by mu
	unknown bool              // guarded by mu: the view is unknown (degraded)
	epochs  []string          // guarded by mu: keys FeedEpoch was asked for
	locals  [][]string        // guarded by mu: the local keys of each FleetFeeds call
	refused []string          // guarded by mu: keys Refused was told
}

func (x *hsFleet) Refused(key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.refused = append(x.refused, key)
}

func (x *hsFleet) refusedKeys() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.refused)
}

func (x *hsFleet) FeedEpoch(key, _ string) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.epochs = append(x.epochs, key)
	return "fleet-" + key
}

func (x *hsFleet) ListenFeed(ctx context.Context, f FleetFeed, emit func(*Snapshot)) error {
	return x.Listen(ctx, f.Query(), emit)
}

func (x *hsFleet) FleetFeeds(tenant, key string, local []string) (others int, exists, ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.locals = append(x.locals, slices.Sorted(slices.Values(local)))
	if x.unknown {
		return 0, false, false
	}
	for k, t := range x.remote {
		if k == key {
			exists = true
		} else if t == tenant && !slices.Contains(local, k) {
			others++
		}
	}
	return others, exists, true
}

func (x *hsFleet) asked(key string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Contains(x.epochs, key)
}

func hsNewFleetHub(t *testing.T, cfg HubConfig, remote map[string]string, unknown bool) (*Hub, *hsFleet, *hsTimers) {
	t.Helper()
	x := &hsFleet{fakeSource: &fakeSource{}, remote: remote, unknown: unknown}
	cfg.RetryMin, cfg.RetryMax = time.Millisecond, 4*time.Millisecond
	cfg.Metrics = metrics.New(nil)
	h, err := NewHub(x, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &hsTimers{}
	h.afterFunc = ts.afterFunc
	t.Cleanup(h.Close)
	return h, x, ts
}

// In fleet mode MaxFeedsPerTenant counts the tenant's Feeds here plus
// those other instances own: a new Feed at the cap is refused before its
// lease is asked for, with the local cap's LimitError; opening a Feed
// another instance owns (mirroring it) is never limited; other tenants are
// unaffected; and with the fleet unknown (degraded) only the local count
// applies.
func TestHubFleetWideTenantCap(t *testing.T) {
	remote2 := map[string]string{"r1": "a", "r2": "a"}
	cases := []struct {
		name    string
		remote  map[string]string
		unknown bool
		local   []FeedSpec // opened first, all admitted
		next    FeedSpec
		refused bool
	}{
		{name: "remote Feeds at the cap", remote: remote2, next: hsSpec("k3", "a"), refused: true},
		{name: "one remote, one local: at the cap", remote: map[string]string{"r1": "a"}, local: []FeedSpec{hsSpec("k1", "a")}, next: hsSpec("k3", "a"), refused: true},
		{name: "one remote below the cap", remote: map[string]string{"r1": "a"}, next: hsSpec("k3", "a")},
		{name: "mirroring a remote Feed at the cap", remote: remote2, next: hsSpec("r2", "a")},
		{name: "mirroring past the cap", remote: map[string]string{"r1": "a", "r2": "a", "r3": "a"}, next: hsSpec("r3", "a")},
		{name: "another tenant", remote: remote2, next: hsSpec("k3", "b")},
		{name: "local mirrors count once", remote: remote2, local: []FeedSpec{hsSpec("r1", "a")}, next: hsSpec("k3", "a"), refused: true},
		{name: "remote Feeds of other tenants", remote: map[string]string{"r1": "b", "r2": "c"}, local: []FeedSpec{hsSpec("k1", "a")}, next: hsSpec("k3", "a")},
		{name: "degraded: local cap only", remote: remote2, unknown: true, local: []FeedSpec{hsSpec("k1", "a")}, next: hsSpec("k3", "a")},
		{name: "degraded: local cap refuses", remote: remote2, unknown: true, local: []FeedSpec{hsSpec("k1", "a"), hsSpec("k2", "a")}, next: hsSpec("k3", "a"), refused: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			h, x, _ := hsNewFleetHub(t, HubConfig{MaxFeedsPerTenant: 2, Linger: 10 * time.Second}, tc.remote, tc.unknown)
			for _, sp := range tc.local {
				hsSubscribe(t, h, sp, nil)
			}
			_, err := h.Subscribe(tc.next, hsNewRecorder(), nil)
			if !tc.refused {
				if err != nil {
					t.Fatalf("Subscribe(%s) = %v, want it admitted", tc.next.Key, err)
				}
				if f := h.feedFor(tc.next.Key); f == nil || f.epoch != "fleet-"+tc.next.Key {
					t.Fatalf("the Feed did not take the fleet's epoch")
				}
				return
			}
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != LimitFeedsPerTenant || le.RetryAfter != 10*time.Second {
				t.Fatalf("Subscribe(%s) = %v, want a %s refusal retrying after the linger", tc.next.Key, err, LimitFeedsPerTenant)
			}
			if x.asked(tc.next.Key) {
				t.Fatal("a refused Feed asked for its epoch (and may have taken a lease)")
			}
			if r := x.refusedKeys(); len(r) != 0 {
				t.Fatalf("Refused(%v) without an epoch asked for", r)
			}
			if h.feedFor(tc.next.Key) != nil {
				t.Fatal("a refused Feed is registered")
			}
		})
	}
}

// The fleet check hands the limiter this Hub's keys of the tenant (which
// the Hub counts itself), not other tenants'.
func TestHubFleetCapPassesLocalKeys(t *testing.T) {
	hsLeakCheck(t)
	h, x, _ := hsNewFleetHub(t, HubConfig{MaxFeedsPerTenant: 5}, map[string]string{}, false)
	hsSubscribe(t, h, hsSpec("a1", "a"), nil)
	hsSubscribe(t, h, hsSpec("b1", "b"), nil)
	hsSubscribe(t, h, hsSpec("a2", "a"), nil)
	x.mu.Lock()
	last := x.locals[len(x.locals)-1]
	x.mu.Unlock()
	if !slices.Equal(last, []string{"a1"}) {
		t.Fatalf("local keys of the last check = %v, want [a1]", last)
	}
}

// At the fleet-wide cap a lingering Feed of the tenant here is evicted to
// make room, as with the local cap, when that frees a fleet slot (this
// instance owns it); evicting a lingering mirror of a Feed another
// instance owns frees none, so the new Feed is refused after one such
// eviction (the other lingering mirrors stay).
func TestHubFleetCapEvictsLingering(t *testing.T) {
	cases := []struct {
		name      string
		remote    map[string]string
		lingering []string // oldest first
		evicted   []string
		admitted  bool
	}{
		{name: "owned here", remote: map[string]string{"r1": "a"}, lingering: []string{"k1"}, evicted: []string{"k1"}, admitted: true},
		{name: "mirrors here", remote: map[string]string{"r1": "a", "r2": "a", "r3": "a"}, lingering: []string{"r2", "r3"}, evicted: []string{"r2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hsLeakCheck(t)
			fc := clock.NewFake(time.Unix(1_800_000_000, 0))
			h, _, _ := hsNewFleetHub(t, HubConfig{MaxFeedsPerTenant: 2, Clock: fc}, tc.remote, false)
			for _, k := range tc.lingering {
				s, _ := hsSubscribe(t, h, hsSpec(k, "a"), nil)
				fc.Advance(time.Second) // a clear lingering order
				s.Unsubscribe()
			}
			_, err := h.Subscribe(hsSpec("k3", "a"), hsNewRecorder(), nil)
			for _, k := range tc.lingering {
				if gone := h.feedFor(k) == nil; gone != slices.Contains(tc.evicted, k) {
					t.Fatalf("lingering Feed %s evicted = %v, want %v", k, gone, !gone)
				}
			}
			if tc.admitted {
				if err != nil {
					t.Fatalf("Subscribe with a lingering owned Feed: %v", err)
				}
				return
			}
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != LimitFeedsPerTenant {
				t.Fatalf("Subscribe = %v, want a %s refusal", err, LimitFeedsPerTenant)
			}
		})
	}
}

// A Feed refused after FeedEpoch (here by the per-instance MaxFeeds) is
// reported to the FleetLimiter, so that the lease FeedEpoch took can be
// released; an admitted Feed is not.
func TestHubFleetRefusedAfterEpoch(t *testing.T) {
	hsLeakCheck(t)
	h, x, _ := hsNewFleetHub(t, HubConfig{MaxFeeds: 1}, map[string]string{}, false)
	hsSubscribe(t, h, hsSpec("k1", "a"), nil)
	_, err := h.Subscribe(hsSpec("k2", "b"), hsNewRecorder(), nil)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != LimitFeeds {
		t.Fatalf("Subscribe = %v, want a %s refusal", err, LimitFeeds)
	}
	if !x.asked("k2") {
		t.Fatal("MaxFeeds refused before FeedEpoch; this test needs the refusal after it")
	}
	if r := x.refusedKeys(); !slices.Equal(r, []string{"k2"}) {
		t.Fatalf("Refused keys = %v, want [k2]", r)
	}
}
