package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firegate/firegate/internal/clock"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions"
)

// viewBucket returns a lease-like bucket on a new embedded NATS server;
// its TTL is long, so that only the view's clock decides lapses.
func viewBucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	ns := startNATS(t)
	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "view_test", TTL: time.Hour, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func leaseJSON(owner, tenant string) []byte {
	l := lease{Owner: owner, Epoch: "e", Session: "s"}
	if tenant != "" {
		l.Tenant = tenantHash(tenant)
	}
	b, _ := json.Marshal(l)
	return b
}

// viewSays waits until v.count for tenant and key answers want.
func viewSays(t *testing.T, v *leaseView, tenant, key string, local []string, others int, exists, ok bool) {
	t.Helper()
	loc := map[string]struct{}{}
	for _, k := range local {
		loc[hashKey(k)] = struct{}{}
	}
	testkit.CheckFor(t, wait, poll, func() error {
		o, e, k := v.count(tenantHash(tenant), hashKey(key), loc)
		if o != others || e != exists || k != ok {
			return fmt.Errorf("count(%s, %s) = %d, %v, %v; want %d, %v, %v", tenant, key, o, e, k, others, exists, ok)
		}
		return nil
	})
}

// The view counts the live leases of a tenant that other instances own:
// unknown until the bucket's values are read; puts count (values already
// in the bucket too), this instance's own leases and leases without a
// tenant do not; local keys and the asked key are left out; the asked key
// "exists" when another instance owns it; delete and purge remove; an
// entry not written for a lease TTL lapses; stop makes it unknown.
func TestLeaseView(t *testing.T) {
	kv := viewBucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	put := func(key string, val []byte) {
		t.Helper()
		if _, err := kv.Put(ctx, hashKey(key), val); err != nil {
			t.Fatal(err)
		}
	}
	put("a1", leaseJSON("gw2", "a")) // before the watch starts
	fc := clock.NewFake(time.Unix(1_800_000_000, 0))
	v := newLeaseView("gw1", 10*time.Second)
	v.clk = fc
	t.Cleanup(v.stop)
	if _, _, ok := v.count(tenantHash("a"), hashKey("x"), nil); ok {
		t.Fatal("a view that never watched answers")
	}
	v.watch(kv)
	viewSays(t, v, "a", "x", nil, 1, false, true)

	put("a2", leaseJSON("gw3", "a"))
	put("a3", leaseJSON("gw1", "a")) // this instance's own
	put("old", leaseJSON("gw2", "")) // an instance without tenants
	put("b1", leaseJSON("gw2", "b"))
	viewSays(t, v, "a", "x", nil, 2, false, true)
	for _, tc := range []struct {
		name, tenant, key string
		local             []string
		others            int
		exists            bool
	}{
		{"another tenant", "b", "x", nil, 1, false},
		{"asked key owned elsewhere", "a", "a2", nil, 1, true},
		{"asked key owned here", "a", "a3", nil, 2, false},
		{"asked key without a tenant exists", "c", "old", nil, 0, true},
		{"local keys left out", "a", "x", []string{"a1"}, 1, false},
		{"unknown tenant", "z", "x", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) { viewSays(t, v, tc.tenant, tc.key, tc.local, tc.others, tc.exists, true) })
	}

	if err := kv.Delete(ctx, hashKey("a1")); err != nil {
		t.Fatal(err)
	}
	viewSays(t, v, "a", "x", nil, 1, false, true)
	if err := kv.Purge(ctx, hashKey("a2")); err != nil {
		t.Fatal(err)
	}
	viewSays(t, v, "a", "x", nil, 0, false, true)

	// Lapse: written at T, live through T+ttl, lapsed after.
	put("a4", leaseJSON("gw2", "a"))
	viewSays(t, v, "a", "x", nil, 1, false, true)
	fc.Advance(10 * time.Second)
	viewSays(t, v, "a", "x", nil, 1, false, true)
	fc.Advance(time.Millisecond)
	viewSays(t, v, "a", "a4", nil, 0, false, true)
	put("a4", leaseJSON("gw2", "a")) // a renewal revives it
	viewSays(t, v, "a", "x", nil, 1, false, true)
	fc.Advance(11 * time.Second)
	v.mu.Lock()
	gen := v.gen
	v.mu.Unlock()
	v.prune(gen)
	v.mu.Lock()
	n, nt := len(v.entries), len(v.byTenant)
	v.mu.Unlock()
	if n != 0 || nt != 0 {
		t.Fatalf("after prune: %d entries, %d tenants; want none (all lapsed)", n, nt)
	}

	v.stop()
	if _, _, ok := v.count(tenantHash("a"), hashKey("x"), nil); ok {
		t.Fatal("a stopped view answers")
	}
}

// put records a lease at once (FeedEpoch's own creation), before any
// watch delivers it.
func TestLeaseViewPutIsImmediate(t *testing.T) {
	kv := viewBucket(t)
	v := newLeaseView("gw1", time.Minute)
	t.Cleanup(v.stop)
	v.watch(kv)
	viewSays(t, v, "a", "x", nil, 0, false, true)
	v.put(hashKey("k"), leaseJSON("gw2", "a"))
	if o, e, ok := v.count(tenantHash("a"), hashKey("k"), nil); o != 0 || !e || !ok {
		t.Fatalf("count after put = %d, %v, %v; want 0, true, true", o, e, ok)
	}
}

// Refused releases the lease FeedEpoch took for a Feed the Hub then
// refused, so no instance counts it; for a key with no lease it does
// nothing.
func TestRefusedReleasesLease(t *testing.T) {
	ns := startNATS(t)
	m := metrics.New(nil)
	src, err := New(Config{URL: ns.url(), Inner: &subscriptions.FirestoreSource{}, Instance: "gw1", Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	kv, err := src.bucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src.FeedEpoch("k", "org")
	e, err := kv.Get(ctx, hashKey("k"))
	if err != nil {
		t.Fatalf("FeedEpoch took no lease: %v", err)
	}
	var l lease
	if err := json.Unmarshal(e.Value(), &l); err != nil || l.Tenant != tenantHash("org") || l.Owner != "gw1" {
		t.Fatalf("lease value %s (%v), want owner gw1 and the org's hash", e.Value(), err)
	}
	src.Refused("other") // no lease: nothing
	src.Refused("k")
	if _, err := kv.Get(ctx, hashKey("k")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease after Refused: %v, want it released", err)
	}
	if got := testutil.ToFloat64(m.Fleet.LeaseChanges[metrics.LeaseReleased]); got != 1 {
		t.Fatalf("lease releases = %v, want 1", got)
	}
}

// FuzzLeaseViewPut feeds the view lease values as any peer (or anyone
// with write access to the bucket) could write them: a value never
// panics, a malformed one counts for no tenant and is not this
// instance's, a well-formed one counts for its tenant exactly once, and
// the tenant index always matches the entries.
func FuzzLeaseViewPut(f *testing.F) {
	f.Add("fa", leaseJSON("gw2", "org"))
	f.Add("fb", leaseJSON("gw1", "org"))
	f.Add("fc", leaseJSON("gw2", ""))
	f.Add("fd", []byte(`{"owner":"gw2","t":5}`))
	f.Add("fdd", []byte(`{"owner":"gw1","t":"x","epoch":5}`))
	f.Add("fe", []byte(`{"owner":"gw2","t":"x","t":"y"}`))
	f.Add("ff", []byte(`not json`))
	f.Add("fg", []byte(`null`))
	f.Fuzz(func(t *testing.T, key string, val []byte) {
		v := newLeaseView("gw1", time.Minute)
		v.synced = true
		v.put("other", leaseJSON("gw3", "org"))
		v.put(key, val)
		v.put(key, val) // a renewal with the same value: still once
		var l lease
		parsed := json.Unmarshal(val, &l) == nil
		v.mu.Lock()
		e := v.entries[key]
		indexed := 0
		for th, keys := range v.byTenant {
			for k := range keys {
				indexed++
				if ent, ok := v.entries[k]; !ok || ent.tenant != th {
					v.mu.Unlock()
					t.Fatalf("index has %s under %q, entry %+v", k, th, ent)
				}
			}
		}
		withTenant := 0
		for _, ent := range v.entries {
			if ent.tenant != "" {
				withTenant++
			}
		}
		v.mu.Unlock()
		if indexed != withTenant {
			t.Fatalf("index holds %d keys, %d entries have a tenant", indexed, withTenant)
		}
		if parsed && (e.tenant != l.Tenant || e.mine != (l.Owner == "gw1")) {
			t.Fatalf("entry %+v for value %s", e, val)
		}
		if !parsed && key != "other" && (e.tenant != "" || e.mine) {
			t.Fatalf("entry %+v for malformed value %s", e, val)
		}
		others, _, ok := v.count(tenantHash("org"), "none", nil)
		want := 1
		if key != "other" && parsed && l.Tenant == tenantHash("org") && l.Owner != "gw1" {
			want++
		}
		if key == "other" && !(parsed && l.Tenant == tenantHash("org") && l.Owner != "gw1") {
			want--
		}
		if !ok || others != want {
			t.Fatalf("count = %d, %v; want %d", others, ok, want)
		}
	})
}
