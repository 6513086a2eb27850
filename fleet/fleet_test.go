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
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// fleetOf starts n instances on one NATS server and one project.
func fleetOf(t *testing.T, n int) (*natsServer, []*instance, *store) {
	t.Helper()
	project := testProject(t)
	ns := startNATS(t)
	var ins []*instance
	for i := range n {
		ins = append(ins, newInstance(t, fmt.Sprintf("gw%d", i), ns.url(), project))
	}
	return ns, ins, newStore(t, project)
}

func sumOf(ins []*instance, f func(*instance) float64) float64 {
	s := 0.0
	for _, in := range ins {
		s += f(in)
	}
	return s
}

func ownerOf(t *testing.T, ins []*instance) *instance {
	t.Helper()
	var owner *instance
	testkit.CheckFor(t, wait, poll, about("one owner", func() error {
		owner = nil
		n := 0
		for _, in := range ins {
			if in.owned() == 1 {
				owner = in
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%d owners", n)
		}
		return nil
	}))
	return owner
}

func task(org, title string, n int) map[string]any {
	return map[string]any{"org_id": org, "title": title, "n": int64(n)}
}

// Clients of one org spread over three instances share exactly one
// Firestore listener fleet-wide, and every client gets every change.
func TestOneListenerFleetWide(t *testing.T) {
	_, ins, st := fleetOf(t, 3)
	st.set("t1", task("org_a", "one", 1))
	st.set("other", task("org_b", "not ours", 1))

	var cs []*client
	for i, in := range ins {
		for j := range 2 {
			cs = append(cs, subscribe(t, in, fmt.Sprintf("c%d%d", i, j), "org_a", nil))
		}
	}
	converged(t, "initial result everywhere", st.fresh("org_a"), cs...)

	st.set("t2", task("org_a", "two", 2))
	st.set("t1", task("org_a", "one, edited", 3))
	st.del("t2")
	st.set("t3", task("org_a", "three", 4))
	want := st.fresh("org_a")
	converged(t, "every change everywhere", want, cs...)

	if got := sumOf(ins, (*instance).listeners); got != 1 {
		t.Errorf("Firestore listeners started fleet-wide = %v, want 1", got)
	}
	if got := sumOf(ins, (*instance).owned); got != 1 {
		t.Errorf("owned Feeds fleet-wide = %v, want 1", got)
	}
	if got := sumOf(ins, (*instance).mirrored); got != 2 {
		t.Errorf("mirrored Feeds = %v, want 2", got)
	}
	epoch, seq, _, _ := cs[0].state()
	for _, c := range cs {
		e, s, _, _ := c.state()
		if e != epoch || s != seq {
			t.Errorf("%s at epoch %s seq %d, %s at %s %d: one Feed has one epoch and seq fleet-wide", c.name, e, s, cs[0].name, epoch, seq)
		}
		if n := len(c.framesOf(wire.TypeSnapshot)); n != 1 {
			t.Errorf("%s got %d snapshots, want 1", c.name, n)
		}
	}
}

// A resume on another instance gets resumed:true and the net change since
// the client's seq, not a snapshot.
func TestResumeOnAnotherInstance(t *testing.T) {
	_, ins, st := fleetOf(t, 2)
	a, b := ins[0], ins[1]
	st.set("t1", task("org_a", "one", 1))
	st.set("t2", task("org_a", "two", 1))
	first := subscribe(t, a, "first", "org_a", nil)
	converged(t, "first client", st.fresh("org_a"), first)
	// Keep the Feed on a while the first client is away.
	stay := subscribe(t, a, "stay", "org_a", nil)

	epoch, seq, _, _ := first.state()
	first.sub.Unsubscribe()
	st.set("t1", task("org_a", "one, edited", 2))
	st.del("t2")
	st.set("t3", task("org_a", "three", 3))
	want := st.fresh("org_a")
	converged(t, "the staying client", want, stay)

	back := newClient("back")
	back.docs = map[string]string{}
	_, _, held, _ := first.state()
	for k, v := range held {
		back.docs[k] = v
	}
	back.seq = seq
	s, err := b.hub.Subscribe(spec("org_a"), back, &wire.Resume{Epoch: epoch, Seq: seq})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("resume from epoch %s seq %d; frames: %+v", epoch, seq, back.frames)
		}
	})
	converged(t, "the resumed client on the other instance", want, back)
	subs := back.framesOf(wire.TypeSubscribed)
	if len(subs) != 1 || !subs[0].Resumed || subs[0].Epoch != epoch {
		t.Fatalf("subscribed frames %+v, want one with resumed:true and epoch %s", subs, epoch)
	}
	if n := len(back.framesOf(wire.TypeSnapshot)); n != 0 {
		t.Fatalf("the resumed client got %d snapshots, want none", n)
	}
	ch := back.framesOf(wire.TypeChanges)
	if len(ch) == 0 {
		t.Fatal("no net change")
	}
	kinds := map[string]string{}
	for _, c := range ch[0].Changes {
		kinds[c.ID] = c.Kind
	}
	if kinds["t1"] != wire.KindModified || kinds["t2"] != wire.KindRemoved || kinds["t3"] != wire.KindAdded || len(kinds) != 3 {
		t.Errorf("net change %v, want t1 modified, t2 removed, t3 added", kinds)
	}
	if got := sumOf(ins, (*instance).listeners); got != 1 {
		t.Errorf("Firestore listeners fleet-wide = %v, want 1", got)
	}
}

// When the owner dies, another instance takes the lease and every client
// converges to a fresh query's result through `changes` only, with seq
// continuous and the same epoch.
func TestOwnerCrashFailover(t *testing.T) {
	_, ins, st := fleetOf(t, 3)
	st.set("t1", task("org_a", "one", 1))
	var cs []*client
	for i, in := range ins {
		cs = append(cs, subscribe(t, in, fmt.Sprintf("c%d", i), "org_a", nil))
	}
	converged(t, "initial", st.fresh("org_a"), cs...)
	owner := ownerOf(t, ins)
	var rest []*instance
	var restClients []*client
	for i, in := range ins {
		if in != owner {
			rest = append(rest, in)
			restClients = append(restClients, cs[i])
		}
	}
	epoch, _, _, _ := restClients[0].state()

	owner.crash()
	// Changes while no one owns the Feed: the new owner's fresh listener
	// brings them as one diff.
	st.set("t1", task("org_a", "one, while ownerless", 2))
	st.set("t2", task("org_a", "two", 3))
	ownerOf(t, rest)
	converged(t, "after failover", st.fresh("org_a"), restClients...)
	listenersCurrent(t, "the new owner's listener", 1, rest...)
	st.set("t3", task("org_a", "three", 4))
	st.del("t1")
	converged(t, "changes after failover", st.fresh("org_a"), restClients...)

	for _, c := range restClients {
		e, _, _, problems := c.state()
		if e != epoch {
			t.Errorf("%s: epoch %s, want %s", c.name, e, epoch)
		}
		if len(problems) > 0 {
			t.Errorf("%s: %v", c.name, problems)
		}
		if n := len(c.framesOf(wire.TypeSnapshot)); n != 1 {
			t.Errorf("%s: %d snapshots, want only the first", c.name, n)
		}
	}
	lost := 0.0
	for _, in := range rest {
		lost += testutil.ToFloat64(in.m.Fleet.LeaseChanges[metrics.LeaseAcquired])
	}
	if lost < 1 {
		t.Errorf("no surviving instance acquired the lease")
	}
}

// A graceful stop of the owner releases its lease; another instance takes
// over and its clients see only `changes`.
func TestDrainHandsLeaseOver(t *testing.T) {
	_, ins, st := fleetOf(t, 2)
	st.set("t1", task("org_a", "one", 1))
	c0 := subscribe(t, ins[0], "c0", "org_a", nil)
	c1 := subscribe(t, ins[1], "c1", "org_a", nil)
	converged(t, "initial", st.fresh("org_a"), c0, c1)
	owner := ownerOf(t, ins)
	other, oc := ins[1], c1
	if owner == ins[1] {
		other, oc = ins[0], c0
	}
	owner.shutdown()
	if got := testutil.ToFloat64(owner.m.Fleet.LeaseChanges[metrics.LeaseReleased]); got != 1 {
		t.Errorf("drained owner released %v leases, want 1", got)
	}
	testkit.CheckFor(t, wait, poll, about("the other instance owns the Feed", func() error {
		if other.owned() != 1 {
			return errors.New("not yet")
		}
		return nil
	}))
	listenersCurrent(t, "the new owner's listener", 1, other)
	st.set("t2", task("org_a", "two", 2))
	converged(t, "after the handover", st.fresh("org_a"), oc)
	if n := len(oc.framesOf(wire.TypeSnapshot)); n != 1 {
		t.Errorf("%d snapshots, want only the first", n)
	}
}

// NATS stopped: instances go degraded (local listeners, metric, status)
// and keep delivering; NATS back: the Feed converges to one owner, and
// clients never see a second snapshot or a seq going back.
func TestNATSOutageDegradesThenConverges(t *testing.T) {
	ns, ins, st := fleetOf(t, 2)
	st.set("t1", task("org_a", "one", 1))
	c0 := subscribe(t, ins[0], "c0", "org_a", nil)
	c1 := subscribe(t, ins[1], "c1", "org_a", nil)
	for _, c := range []*client{c0, c1} {
		c.mu.Lock()
		c.jumps = true
		c.mu.Unlock()
	}
	converged(t, "initial", st.fresh("org_a"), c0, c1)

	ns.stop()
	testkit.CheckFor(t, wait, poll, about("degraded", func() error {
		for _, in := range ins {
			if !in.src.Degraded() || testutil.ToFloat64(in.m.Fleet.Degraded) != 1 || !strings.Contains(in.src.Status(), "degraded") {
				return fmt.Errorf("%s not degraded", in.name)
			}
			if in.local() != 1 {
				return fmt.Errorf("%s: local Feeds %v, want 1", in.name, in.local())
			}
		}
		return nil
	}))
	for _, in := range ins {
		listenersCurrent(t, in.name+"'s local listener", 1, in)
	}
	st.set("t2", task("org_a", "two while degraded", 2))
	converged(t, "delivery while degraded", st.fresh("org_a"), c0, c1)

	ns.start()
	testkit.CheckFor(t, wait, poll, about("converged to one owner", func() error {
		for _, in := range ins {
			if in.src.Degraded() || testutil.ToFloat64(in.m.Fleet.Degraded) != 0 {
				return fmt.Errorf("%s still degraded", in.name)
			}
		}
		if o := sumOf(ins, (*instance).owned); o != 1 {
			return fmt.Errorf("%v owners", o)
		}
		if l := sumOf(ins, (*instance).local); l != 0 {
			return fmt.Errorf("%v local Feeds", l)
		}
		return nil
	}))
	listenersCurrent(t, "the owner's listener, alone in the fleet", 1, ins...)
	st.set("t3", task("org_a", "three after", 3))
	converged(t, "delivery after convergence", st.fresh("org_a"), c0, c1)
	for _, c := range []*client{c0, c1} {
		if n := len(c.framesOf(wire.TypeSnapshot)); n != 1 {
			t.Errorf("%s: %d snapshots, want only the first", c.name, n)
		}
	}
}

func TestNewValidates(t *testing.T) {
	inner := &subscriptions.FirestoreSource{}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no url", Config{Inner: inner}, "empty NATS URL"},
		{"no inner", Config{URL: "nats://127.0.0.1:1"}, "nil inner"},
		{"negative ttl", Config{URL: "nats://127.0.0.1:1", Inner: inner, LeaseTTL: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// The owner keeps its listener while another instance has subscribers,
// though its own left (no handover, no second listener), and stops one
// linger after the last subscriber fleet-wide left.
func TestOwnerStaysWhileOthersAreInterested(t *testing.T) {
	project := testProject(t)
	ns := startNATS(t)
	st := newStore(t, project)
	a := newInstanceLinger(t, "gwA", ns.url(), project, 100*time.Millisecond)
	b := newInstanceLinger(t, "gwB", ns.url(), project, 100*time.Millisecond)
	ins := []*instance{a, b}
	st.set("t1", task("org_a", "one", 1))
	ca := subscribe(t, a, "ca", "org_a", nil) // a opens the Feed first: a owns it
	converged(t, "a's client", st.fresh("org_a"), ca)
	cb := subscribe(t, b, "cb", "org_a", nil)
	converged(t, "b's client", st.fresh("org_a"), cb)
	if a.owned() != 1 || b.mirrored() != 1 {
		t.Fatalf("a owned %v, b mirrored %v; want a to own and b to mirror", a.owned(), b.mirrored())
	}

	ca.sub.Unsubscribe()
	testkit.CheckFor(t, wait, poll, about("a's linger ran out several times", func() error {
		a.src.mu.Lock()
		n := a.src.interestAsks
		a.src.mu.Unlock()
		if n < 3 {
			return fmt.Errorf("%d linger expiries", n)
		}
		return nil
	}))
	st.set("t2", task("org_a", "two", 2))
	converged(t, "b's client after a's left", st.fresh("org_a"), cb)
	if a.owned() != 1 || sumOf(ins, (*instance).listeners) != 1 {
		t.Fatalf("a owned %v, listeners %v: the owner must keep the only listener while b is interested", a.owned(), sumOf(ins, (*instance).listeners))
	}

	cb.sub.Unsubscribe()
	testkit.CheckFor(t, wait, poll, about("the Feed ends everywhere", func() error {
		if o, m := sumOf(ins, (*instance).owned), sumOf(ins, (*instance).mirrored); o != 0 || m != 0 {
			return fmt.Errorf("%v owned, %v mirrored", o, m)
		}
		if a.hub.FeedCount() != 0 || b.hub.FeedCount() != 0 {
			return fmt.Errorf("Feeds open: a %d, b %d", a.hub.FeedCount(), b.hub.FeedCount())
		}
		return nil
	}))
	if got := sumOf(ins, (*instance).listeners); got != 1 {
		t.Errorf("listeners started = %v, want 1 (no handover)", got)
	}
}

// An owner that applied a change but could not publish it (a foreign
// message on the Feed's subject makes its publish fail: the owner gives
// the Feed up without releasing the lease) leaves mirrors behind its Feed;
// whichever instance owns the Feed next, every client converges to a fresh
// query's result. Several rounds, as either instance may win the lease.
func TestUnpublishedChangeReachesMirrors(t *testing.T) {
	ns, ins, st := fleetOf(t, 2)
	st.set("t0", task("org_a", "zero", 0))
	c0 := subscribe(t, ins[0], "c0", "org_a", nil)
	converged(t, "owner's client", st.fresh("org_a"), c0)
	c1 := subscribe(t, ins[1], "c1", "org_a", nil)
	converged(t, "mirror's client", st.fresh("org_a"), c1)
	for _, c := range []*client{c0, c1} {
		c.mu.Lock()
		c.jumps = true // a resync moves a mirror to its owner's seq
		c.mu.Unlock()
	}

	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subj := subjectPrefix + hashKey(spec("org_a").Key)
	for round := 1; round <= 3; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		_, err := js.Publish(ctx, subj, []byte("not a batch"))
		cancel()
		if err != nil {
			t.Fatalf("round %d: publishing the foreign message: %v", round, err)
		}
		st.set(fmt.Sprintf("t%d", round), task("org_a", "unpublished", round))
		converged(t, fmt.Sprintf("round %d", round), st.fresh("org_a"), c0, c1)
		ownerOf(t, ins)
		listenersCurrent(t, fmt.Sprintf("round %d: the owner's listener", round), 1, ins...)
	}
	for _, c := range []*client{c0, c1} {
		if n := len(c.framesOf(wire.TypeSnapshot)); n != 1 {
			t.Errorf("%s: %d snapshots, want only the first", c.name, n)
		}
	}
}
