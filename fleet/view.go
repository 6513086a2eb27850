package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/firegate/firegate/internal/clock"
	"github.com/nats-io/nats.go/jetstream"
)

// The lease view: each instance watches the whole lease bucket
// (kv.WatchAll) and keeps, per lease key, the tenant hash and owner of the
// lease and when it last saw it written. It answers FleetFeeds (the
// fleet-wide MaxFeedsPerTenant) without I/O.
//
//   - A Put (acquisition or renewal, every third of the lease TTL) records
//     the entry and its time; a Delete or Purge (release) removes it.
//   - A lease expiring by the bucket's TTL (its owner died) sends no event:
//     an entry not seen written within one lease TTL counts as lapsed, and
//     pruneEvery removes it.
//   - A lease value without a tenant (an instance that predates it) counts
//     for no tenant.
//   - Until the watch has delivered the bucket's current values, after it
//     ended, and while NATS is unreachable, the view is unknown and the Hub
//     applies its local count alone.

// tenantHash is the tenant as lease values carry it: a hash, so that org
// ids do not appear in the bucket in clear.
func tenantHash(tenant string) string {
	h := sha256.Sum256([]byte("firegate-tenant\x00" + tenant))
	return hex.EncodeToString(h[:12])
}

// viewEntry is what the view knows of one lease.
type viewEntry struct {
	tenant string    // tenant hash; "" unknown
	mine   bool      // owned by this instance
	seen   time.Time // last written, by this instance's clock
}

// leaseView is the view of the lease bucket. It is safe for concurrent
// use; mu guards every field below it and is a leaf lock (FleetFeeds is
// called under the Hub's limit lock).
type leaseView struct {
	me  string        // this instance's Owner in lease values
	ttl time.Duration // lease TTL
	clk clock.Clock   // the view's time (tests: a clock.Fake)

	mu       sync.Mutex
	gen      uint64             // current watch; older watches stop updating
	cancel   context.CancelFunc // stops the current watch; nil if none
	synced   bool               // the current watch delivered the bucket's values
	entries  map[string]viewEntry
	byTenant map[string]map[string]struct{} // tenant hash → lease keys
}

func newLeaseView(me string, ttl time.Duration) *leaseView {
	return &leaseView{me: me, ttl: ttl, clk: clock.Real, entries: make(map[string]viewEntry), byTenant: make(map[string]map[string]struct{})}
}

// watch (re)starts the view on kv: it forgets what it knew, is unknown
// until kv's current values arrive, then follows kv until stop, the next
// watch, or the watch's end (then it is unknown again). It does not block
// on the network beyond creating the watcher.
func (v *leaseView) watch(kv jetstream.KeyValue) {
	ctx, cancel := context.WithCancel(context.Background())
	v.mu.Lock()
	if v.cancel != nil {
		v.cancel()
	}
	v.gen++
	gen := v.gen
	v.cancel = cancel
	v.synced = false
	clear(v.entries)
	clear(v.byTenant)
	v.mu.Unlock()
	w, err := kv.WatchAll(ctx)
	if err != nil {
		cancel()
		return
	}
	go v.follow(ctx, gen, w)
}

// follow applies w's updates to the view while gen is current.
func (v *leaseView) follow(ctx context.Context, gen uint64, w jetstream.KeyWatcher) {
	defer func() { _ = w.Stop() }()
	prune := time.NewTicker(v.ttl)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			v.end(gen)
			return
		case <-prune.C:
			v.prune(gen)
		case e, ok := <-w.Updates():
			if !ok {
				v.end(gen)
				return
			}
			v.apply(gen, e)
		}
	}
}

// apply records one watch update (nil: the current values are all in).
func (v *leaseView) apply(gen uint64, e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if gen != v.gen {
		return
	}
	switch {
	case e == nil:
		v.synced = true
	case e.Operation() == jetstream.KeyValuePut:
		v.putLocked(e.Key(), e.Value())
	default: // Delete, Purge
		v.removeLocked(e.Key())
	}
}

// end marks the view unknown when watch gen ends.
func (v *leaseView) end(gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if gen == v.gen {
		v.synced = false
	}
}

// stop ends the current watch; the view stays unknown.
func (v *leaseView) stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gen++
	v.synced = false
	if v.cancel != nil {
		v.cancel()
		v.cancel = nil
	}
}

// put records the lease value val under key now (also used by FeedEpoch
// for a lease it just created, before the watch reports it).
func (v *leaseView) put(key string, val []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.putLocked(key, val)
}

func (v *leaseView) putLocked(key string, val []byte) {
	var l lease
	if json.Unmarshal(val, &l) != nil {
		l = lease{} // malformed: no tenant, not mine
	}
	v.removeLocked(key)
	v.entries[key] = viewEntry{tenant: l.Tenant, mine: l.Owner != "" && l.Owner == v.me, seen: v.clk.Now()}
	if l.Tenant != "" {
		keys := v.byTenant[l.Tenant]
		if keys == nil {
			keys = make(map[string]struct{})
			v.byTenant[l.Tenant] = keys
		}
		keys[key] = struct{}{}
	}
}

func (v *leaseView) removeLocked(key string) {
	old, ok := v.entries[key]
	if !ok {
		return
	}
	delete(v.entries, key)
	if keys := v.byTenant[old.tenant]; keys != nil {
		delete(keys, key)
		if len(keys) == 0 {
			delete(v.byTenant, old.tenant)
		}
	}
}

// live reports whether e was written within the lease TTL.
func (v *leaseView) live(e viewEntry, now time.Time) bool { return now.Sub(e.seen) <= v.ttl }

// prune removes lapsed entries.
func (v *leaseView) prune(gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if gen != v.gen {
		return
	}
	now := v.clk.Now()
	for k, e := range v.entries {
		if !v.live(e, now) {
			v.removeLocked(k)
		}
	}
}

// count answers FleetFeeds for the tenant hash th and the lease key hk:
// the live leases of th owned by another instance whose key is neither hk
// nor in local; whether hk is a live lease owned by another instance; and
// whether the view is known. It does not block.
func (v *leaseView) count(th, hk string, local map[string]struct{}) (others int, exists, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.synced {
		return 0, false, false
	}
	now := v.clk.Now()
	if e, found := v.entries[hk]; found && !e.mine && v.live(e, now) {
		exists = true
	}
	for k := range v.byTenant[th] {
		e := v.entries[k]
		if k == hk || e.mine || !v.live(e, now) {
			continue
		}
		if _, isLocal := local[k]; isLocal {
			continue
		}
		others++
	}
	return others, exists, true
}
