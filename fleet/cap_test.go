package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// capLimit is MaxFeedsPerTenant in the cap tests.
const capLimit = 2

// newCapInstance is newInstance with MaxFeedsPerTenant = capLimit and no
// linger (a Feed closes, and its owner releases the lease, when its last
// subscriber leaves).
func newCapInstance(t *testing.T, name, natsURL, project string) *instance {
	t.Helper()
	in := &instance{name: name, reg: prometheus.NewRegistry()}
	in.m = metrics.New(in.reg)
	var err error
	in.fs, err = subscriptions.NewFirestoreSource(context.Background(), subscriptions.FirestoreConfig{ProjectID: project, MaxFeeds: 10})
	if err != nil {
		t.Fatal(err)
	}
	in.src, err = New(Config{URL: natsURL, Inner: in.fs, Instance: name, LeaseTTL: 1500 * time.Millisecond, Metrics: in.m, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	in.hub, err = subscriptions.NewHub(in.src, subscriptions.HubConfig{
		Metrics: in.m, Linger: -1, MaxFeedsPerTenant: capLimit, RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.shutdown)
	return in
}

// capSpec is Feed i of org: its own query (org_id == org and n == i).
func capSpec(org string, i int) subscriptions.FeedSpec {
	return subscriptions.FeedSpec{
		Query: subscriptions.Query{Collection: "tasks", Filters: []wire.Filter{
			{Field: "org_id", Op: "==", Value: org}, {Field: "n", Op: "==", Value: int64(i)},
		}},
		Key:    fmt.Sprintf("tasks|org_id==%s|n==%d", org, i),
		Tenant: org,
	}
}

// open subscribes a new client to Feed i of org on in, or returns the
// Hub's error.
func open(in *instance, org string, i int) (*client, error) {
	c := newClient(fmt.Sprintf("%s-%s-%d", in.name, org, i))
	s, err := in.hub.Subscribe(capSpec(org, i), c, nil)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.sub = s
	c.mu.Unlock()
	return c, nil
}

func mustOpen(t *testing.T, in *instance, org string, i int) *client {
	t.Helper()
	c, err := open(in, org, i)
	if err != nil {
		t.Fatalf("%s: open %s/%d: %v", in.name, org, i, err)
	}
	return c
}

// wantCapRefusal wants err to be the per-org cap's LimitError.
func wantCapRefusal(t *testing.T, what string, err error) {
	t.Helper()
	var le *subscriptions.LimitError
	if !errors.As(err, &le) || le.Limit != subscriptions.LimitFeedsPerTenant || le.RetryAfter != time.Second {
		t.Fatalf("%s: %v, want a %s refusal retrying after 1s", what, err, subscriptions.LimitFeedsPerTenant)
	}
}

// seesFleet waits until in's lease view counts others Feeds of org owned
// by other instances.
func seesFleet(t *testing.T, in *instance, org string, others int) {
	t.Helper()
	testkit.CheckFor(t, wait, poll, about(fmt.Sprintf("%s sees %d Feeds of %s elsewhere", in.name, others, org), func() error {
		o, _, ok := in.src.FleetFeeds(org, "probe", nil)
		if !ok || o != others {
			return fmt.Errorf("FleetFeeds = %d, ok %v", o, ok)
		}
		return nil
	}))
}

// admitted waits until opening Feed i of org on in succeeds (each refused
// attempt leaves nothing behind).
func admitted(t *testing.T, in *instance, org string, i int, what string) *client {
	t.Helper()
	var c *client
	testkit.CheckFor(t, wait, poll, about(what, func() error {
		var err error
		c, err = open(in, org, i)
		return err
	}))
	return c
}

// MaxFeedsPerTenant holds across the fleet: org A's two Feeds on one
// instance fill its cap for the other instance too, which may still
// mirror them and open Feeds of other orgs; when one of A's Feeds closes
// fleet-wide (its lease released) the other instance may open a new one.
func TestFleetWideTenantCap(t *testing.T) {
	project := testProject(t)
	ns := startNATS(t)
	in1 := newCapInstance(t, "gw1", ns.url(), project)
	in2 := newCapInstance(t, "gw2", ns.url(), project)

	mustOpen(t, in1, "org_a", 1)
	a2 := mustOpen(t, in1, "org_a", 2)
	seesFleet(t, in2, "org_a", 2)

	_, err := open(in2, "org_a", 3)
	wantCapRefusal(t, "a third Feed of org_a on gw2", err)
	if got := in2.hub.FeedCount(); got != 0 {
		t.Fatalf("gw2 holds %d Feeds after the refusal, want 0", got)
	}
	mustOpen(t, in2, "org_a", 1) // joining a fleet Feed: never limited
	testkit.CheckFor(t, wait, poll, about("gw2 mirrors org_a/1", func() error {
		if in2.mirrored() != 1 {
			return fmt.Errorf("mirrored %v", in2.mirrored())
		}
		return nil
	}))
	mustOpen(t, in2, "org_b", 1)
	_, err = open(in1, "org_a", 4)
	wantCapRefusal(t, "a third Feed of org_a on gw1", err)

	a2.sub.Unsubscribe() // org_a/2 closes fleet-wide: its lease is released
	admitted(t, in2, "org_a", 3, "gw2 opens org_a/3 once org_a/2 closed")
	seesFleet(t, in1, "org_a", 1) // org_a/3, owned by gw2 (org_a/1 is local to gw1)
	_, err = open(in1, "org_a", 4)
	wantCapRefusal(t, "org_a full again", err)
}

// A lease that is no longer renewed (its owner died) counts until its TTL
// passed, then stops counting; a lease value without a tenant (an older
// instance) counts for no org.
func TestFleetCapLapsedLease(t *testing.T) {
	project := testProject(t)
	ns := startNATS(t)
	in1 := newCapInstance(t, "gw1", ns.url(), project)
	in2 := newCapInstance(t, "gw2", ns.url(), project)

	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucketName)
	if err != nil {
		t.Fatal(err)
	}
	// A ghost lease of org_c (never renewed), and one without a tenant.
	if _, err := kv.Create(ctx, hashKey("ghost"), leaseJSON("dead", "org_c")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, hashKey("old"), leaseJSON("old-instance", "")); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, in1, "org_c", 1)
	seesFleet(t, in2, "org_c", 2)
	_, err = open(in2, "org_c", 2)
	wantCapRefusal(t, "org_c with a live ghost lease", err)
	admitted(t, in2, "org_c", 2, "the ghost lease lapsed")
	seesFleet(t, in1, "org_c", 1)
}

// With NATS unreachable the view is unknown and only each instance's own
// count applies; when NATS is back the view follows the bucket again.
func TestFleetCapDegraded(t *testing.T) {
	project := testProject(t)
	ns := startNATS(t)
	in1 := newCapInstance(t, "gw1", ns.url(), project)
	in2 := newCapInstance(t, "gw2", ns.url(), project)
	for _, c := range []*client{mustOpen(t, in1, "org_d", 1), mustOpen(t, in1, "org_d", 2)} {
		c.mu.Lock()
		c.jumps = true // degraded Feeds move their seq ahead
		c.mu.Unlock()
	}
	seesFleet(t, in2, "org_d", 2)
	_, err := open(in2, "org_d", 3)
	wantCapRefusal(t, "connected: fleet-wide cap", err)

	ns.stop()
	testkit.CheckFor(t, wait, poll, about("degraded", func() error {
		if !in2.src.Degraded() || !strings.Contains(in2.src.Status(), "degraded") {
			return errors.New("gw2 not degraded")
		}
		return nil
	}))
	if _, _, ok := in2.src.FleetFeeds("org_d", "probe", nil); ok {
		t.Fatal("a degraded instance answers for the fleet")
	}
	mustOpen(t, in2, "org_d", 3) // local count 0
	mustOpen(t, in2, "org_d", 4) // local count 1
	_, err = open(in2, "org_d", 5)
	wantCapRefusal(t, "degraded: the local cap still holds", err)

	// Meanwhile what gw2 last saw of gw1's leases lapses (no renewal
	// reaches it).
	testkit.CheckFor(t, wait, poll, about("gw2's view of gw1's leases lapsed", func() error {
		if o, _, _ := in2.src.view.count(tenantHash("org_d"), hashKey("probe"), nil); o != 0 {
			return fmt.Errorf("%d still live", o)
		}
		return nil
	}))

	ns.start()
	// gw1's two Feeds take their leases again and gw2 sees them; gw2's
	// own do not count for gw2.
	seesFleet(t, in2, "org_d", 2)
}
