package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// chaosSeed is the seed of the random operations: FIREGATE_CHAOS_SEED
// when set, to replay a failed run's choices, a fresh one otherwise. A
// failed run logs it. (The choices replay; their interleaving with the
// emulator and the gateway's goroutines is the machine's.)
func chaosSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FIREGATE_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIREGATE_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("chaos seed %d", seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with: FIREGATE_CHAOS_SEED=%d go test -race -run '^TestChaos$' ./gateway", seed)
		}
	})
	return seed
}

// Chaos parameters: how much the random operations do, and the
// population they draw from.
const (
	// chaosSteps random operations run in each of the two phases, before
	// and around the upstream restart, and each phase lasts until
	// chaosWrites writes of its own succeeded: the amount of chaos is
	// counted, not timed, so a slow machine does as much as a fast one.
	chaosSteps  = 60
	chaosWrites = 20
	// chaosPhaseWithin only bounds a failure: a phase whose writes never
	// succeed (the emulator does not come back) fails after it.
	chaosPhaseWithin = 2 * time.Minute
	// chaosWriteWithin bounds one write. A write while the emulator is
	// down fails at once (connection refused); the bound only keeps a
	// hung one from stalling the writer. It is not a bet on speed: a cold
	// emulator on a loaded machine takes seconds per write.
	chaosWriteWithin = waitFor
	chaosOrgs        = 3
	chaosUsers       = 4
	chaosDocsPerOrg  = 6
	chaosMaxClients  = 8
	// chaosMaxSubs bounds subscriptions per client: an org switch queues
	// an `unsubscribed` and a `subscribed` per org subscription plus a
	// welcome, and those frames must fit 4x the tiny send queue below.
	chaosMaxSubs = 3
	// chaosHeapSlack is how far the heap may stay above its baseline once
	// everything is torn down: a leak check, not a performance bound.
	chaosHeapSlack = 32 << 20
)

type chaosUser struct {
	id    string
	admin bool
}

// chaosConn is a connected chaos client: the driver's record of what it
// subscribed; the views live in tc.
type chaosConn struct {
	tc   *tracked
	user chaosUser
	org  string
	subs map[string]subSpec // live subscriptions by id, as the driver knows them
	next int
}

// parkedConn is a client that went offline, with what it needs to resume.
type parkedConn struct {
	user   chaosUser
	org    string
	subs   map[string]subSpec
	states map[string]*subView
	docs   map[string]map[string]docVersion
}

// chaos drives the random operations; only the test goroutine touches it.
type chaos struct {
	t      *testing.T
	e      *env
	rng    *rand.Rand
	orgs   []string
	users  []chaosUser
	conns  []*chaosConn
	parked []*parkedConn
	dead   []*tracked // closed clients, still checked for protocol violations
	ops    map[string]int
	// resumes counts subscribes sent with a resume position.
	resumes int
}

func (ch *chaos) token(u chaosUser, org string) string {
	role := "org:member"
	if u.admin {
		role = "org:admin"
	}
	return ch.e.token(authz.MintOptions{UserID: u.id, OrgID: org, OrgRole: role, TTL: time.Hour})
}

func (ch *chaos) specs(u chaosUser, org string) []subSpec {
	task := func(s subSpec) subSpec {
		s.collection, s.scopeField, s.scopeValue, s.admin = "tasks", "org_id", org, u.admin
		return s
	}
	// A member's tasks filter (!has(...)) stays in the gateway, which
	// refuses a limit; the limited query is an admin's (filter true) or
	// on notes (no filter).
	limited := task(subSpec{orderBy: "n", limit: 3})
	if !u.admin {
		limited = subSpec{collection: "notes", scopeField: "owner_id", scopeValue: u.id, orderBy: "text", limit: 3}
	}
	return []subSpec{
		task(subSpec{}),
		task(subSpec{where: []wire.Filter{{Field: "status", Op: "==", Value: "open"}}}),
		limited,
		{collection: "notes", scopeField: "owner_id", scopeValue: u.id},
	}
}

func (ch *chaos) subscribe(c *chaosConn, s subSpec, resume *wire.Resume, base map[string]docVersion) {
	c.next++
	id := fmt.Sprintf("s%d", c.next)
	c.subs[id] = s
	c.tc.subscribe(id, s, resume, base)
}

// connect opens a new client for a random user and org with one or two
// subscriptions.
func (ch *chaos) connect() {
	u := ch.users[ch.rng.IntN(len(ch.users))]
	org := ch.orgs[ch.rng.IntN(len(ch.orgs))]
	c := &chaosConn{tc: trackClient(ch.e.connect(ch.token(u, org))), user: u, org: org, subs: map[string]subSpec{}}
	ch.conns = append(ch.conns, c)
	specs := ch.specs(u, org)
	for n := 1 + ch.rng.IntN(2); n > 0; n-- {
		ch.subscribe(c, specs[ch.rng.IntN(len(specs))], nil, nil)
	}
}

func (ch *chaos) pick() (int, *chaosConn) {
	i := ch.rng.IntN(len(ch.conns))
	return i, ch.conns[i]
}

// goOffline closes a random client and parks it with its views.
func (ch *chaos) disconnect() {
	i, c := ch.pick()
	ch.conns = append(ch.conns[:i], ch.conns[i+1:]...)
	_ = c.tc.cl.c.Close(websocket.StatusNormalClosure, "offline")
	select {
	case <-c.tc.applied:
	case <-time.After(waitFor):
		ch.t.Fatal("a closed client's reader did not stop")
	}
	ch.dead = append(ch.dead, c.tc)
	p := &parkedConn{user: c.user, org: c.org, subs: map[string]subSpec{}, states: map[string]*subView{}, docs: map[string]map[string]docVersion{}}
	for id, s := range c.subs {
		docs, v, _ := c.tc.state(id)
		if v == nil { // ended by the server meanwhile
			continue
		}
		p.subs[id], p.states[id], p.docs[id] = s, v, docs
	}
	ch.parked = append(ch.parked, p)
}

// resume reconnects a parked client: every subscription that had a state
// resumes from it (a hit patches the old docs, a miss replaces them).
func (ch *chaos) resume() {
	i := ch.rng.IntN(len(ch.parked))
	p := ch.parked[i]
	ch.parked = append(ch.parked[:i], ch.parked[i+1:]...)
	c := &chaosConn{tc: trackClient(ch.e.connect(ch.token(p.user, p.org))), user: p.user, org: p.org, subs: map[string]subSpec{}}
	ch.conns = append(ch.conns, c)
	for id, s := range p.subs {
		v := p.states[id]
		if v.synced {
			ch.resumes++
			ch.subscribe(c, s, &wire.Resume{Epoch: v.epoch, Seq: v.seq}, p.docs[id])
		} else {
			ch.subscribe(c, s, nil, nil)
		}
	}
}

// switchOrg refreshes a client's token with another org: its org-scoped
// subscriptions must end with org_changed before the welcome; it then
// subscribes again in the new org.
func (ch *chaos) switchOrg() {
	_, c := ch.pick()
	org := c.org
	for org == c.org {
		org = ch.orgs[ch.rng.IntN(len(ch.orgs))]
	}
	c.tc.mu.Lock()
	welcomes := len(c.tc.welcomes)
	c.tc.mu.Unlock()
	c.tc.sendNoFail(map[string]any{"type": "auth", "token": ch.token(c.user, org)})
	testkit.CheckFor(ch.t, waitFor, 5*time.Millisecond, func() error {
		c.tc.mu.Lock()
		got := len(c.tc.welcomes) > welcomes
		c.tc.mu.Unlock()
		switch {
		case got:
			return nil
		case c.tc.isDone():
			return testkit.Stop(fmt.Errorf("closed without a welcome after an org switch: %v", c.tc.closeErr()))
		}
		return errors.New("no welcome after an org switch")
	})
	var resub []subSpec
	c.tc.mu.Lock()
	if w := c.tc.welcomes[len(c.tc.welcomes)-1]; w.OrgID != org {
		c.tc.errs = append(c.tc.errs, fmt.Sprintf("welcome after switching to %s names %s", org, w.OrgID))
	}
	for id, s := range c.subs {
		if s.collection != "tasks" {
			continue
		}
		if r := c.tc.ended[id]; r != wire.ReasonOrgChanged {
			c.tc.errs = append(c.tc.errs, fmt.Sprintf("sub %s of the old org not ended org_changed before the welcome (reason %q)", id, r))
		}
		delete(c.subs, id)
		resub = append(resub, s)
	}
	c.tc.mu.Unlock()
	c.org = org
	for _, s := range resub {
		s.scopeValue = org
		ch.subscribe(c, s, nil, nil)
	}
}

// unsubscribe ends one subscription of a client, or adds one.
func (ch *chaos) churnSub() {
	_, c := ch.pick()
	if len(c.subs) > 0 && ch.rng.IntN(2) == 0 {
		for id := range c.subs {
			delete(c.subs, id)
			// Its view goes when `unsubscribed` arrives.
			c.tc.sendNoFail(map[string]any{"type": "unsubscribe", "id": id})
			return
		}
	}
	if len(c.subs) >= chaosMaxSubs {
		return
	}
	specs := ch.specs(c.user, c.org)
	ch.subscribe(c, specs[ch.rng.IntN(len(specs))], nil, nil)
}

func (ch *chaos) step() {
	switch r := ch.rng.IntN(100); {
	case len(ch.conns) == 0 || (r < 25 && len(ch.conns) < chaosMaxClients):
		ch.ops["connect"]++
		ch.connect()
	case r < 40:
		ch.ops["disconnect"]++
		ch.disconnect()
	case r < 60 && len(ch.parked) > 0:
		ch.ops["resume"]++
		ch.resume()
	case r < 75:
		ch.ops["switch_org"]++
		ch.switchOrg()
	default:
		ch.ops["sub_churn"]++
		ch.churnSub()
	}
}

func conns(cs []*chaosConn) []*tracked {
	out := make([]*tracked, len(cs))
	for i, c := range cs {
		out[i] = c.tc
	}
	return out
}

// chaosWrite makes one random write: a task set (sometimes moving it to
// another org, sometimes private) or delete, or a note set or delete.
// Errors are returned, not fatal: the emulator is down for a while.
func chaosWrite(e *env, rng *rand.Rand, orgs []string, users []chaosUser) error {
	ctx, cancel := context.WithTimeout(context.Background(), chaosWriteWithin)
	defer cancel()
	if rng.IntN(4) == 0 {
		u := users[rng.IntN(len(users))]
		ref := e.fs.Doc(fmt.Sprintf("notes/%s_%d", u.id, rng.IntN(3)))
		if rng.IntN(4) == 0 {
			_, err := ref.Delete(ctx)
			return err
		}
		_, err := ref.Set(ctx, map[string]any{"owner_id": u.id, "text": fmt.Sprint(rng.IntN(1000))})
		return err
	}
	org := orgs[rng.IntN(len(orgs))]
	ref := e.fs.Doc(fmt.Sprintf("tasks/%s_%d", org, rng.IntN(chaosDocsPerOrg)))
	if rng.IntN(5) == 0 {
		_, err := ref.Delete(ctx)
		return err
	}
	owner := org
	if rng.IntN(6) == 0 {
		owner = orgs[rng.IntN(len(orgs))] // moves to another org (or stays)
	}
	data := map[string]any{
		"org_id": owner,
		"status": []string{"open", "done"}[rng.IntN(2)],
		"n":      rng.IntN(10),
	}
	if rng.IntN(3) == 0 {
		data["visibility"] = "private"
	}
	_, err := ref.Set(ctx, data)
	return err
}

// TestChaos runs random connects, disconnects, resumes, subscription
// churn, org switches and a steady write stream against a gateway on its
// own emulator, in two phases of a counted number of operations and
// successful writes (not a wall-clock duration: a busy machine runs the
// same amount of chaos, more slowly), with one upstream failure starting
// the second (the emulator SIGKILLed and started again, empty, on the same
// port). Afterwards every connected client's view of every subscription
// equals a fresh Firestore query of it; no client ever saw a document
// outside its org, user or filter, or a message after its subscription
// ended; and once everything is torn down no goroutine is left and the
// heap is back near its baseline.
func TestChaos(t *testing.T) {
	// Leak baselines first: everything that exists now (other tests'
	// leftovers, package-level workers) is ignored; what this test starts
	// must be gone after its cleanups, which run before this one.
	leakOpts := []goleak.Option{goleak.IgnoreCurrent()}
	heapBase := heapAfterGC()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		goleak.VerifyNone(t, leakOpts...)
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		t.Logf("heap after GC: baseline %d MiB, after teardown %d MiB", heapBase>>20, ms.HeapAlloc>>20)
		if ms.HeapAlloc > heapBase+chaosHeapSlack {
			t.Errorf("heap %d MiB after teardown, baseline %d MiB: more than %d MiB retained",
				ms.HeapAlloc>>20, heapBase>>20, chaosHeapSlack>>20)
		}
	})

	seed := chaosSeed(t)
	emu := startOwnEmulator(t)
	src := newOwnSource(t, emu.host(), "firegate-chaos")
	e := newEnvOn(t, src, envOpts{
		cfg: gateway.Config{
			// Small queues, so bursts overflow into catch-ups too.
			SendQueueMessages: 2,
			SendQueueBytes:    1024,
			Limits:            gateway.Limits{HandshakesPerIP: 1000, HandshakeBurst: 1000},
		},
		// A short linger and a small replay buffer, so resumes both hit and
		// miss (an expired Feed, a seq out of the buffer).
		hub: subscriptions.HubConfig{Linger: time.Second, ReplayCount: 8, RetryMin: 100 * time.Millisecond, RetryMax: time.Second},
	})
	ch := &chaos{t: t, e: e, rng: rand.New(rand.NewPCG(seed, 1)), ops: map[string]int{}}
	for i := 0; i < chaosOrgs; i++ {
		ch.orgs = append(ch.orgs, uniq("org"))
	}
	for i := 0; i < chaosUsers; i++ {
		ch.users = append(ch.users, chaosUser{id: uniq("user"), admin: i%2 == 0})
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopWrites := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer stopWrites() // also when a phase fails
	var writes, writeErrs atomic.Int64
	wg.Add(1)
	go func() { // steady writes
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(10+rng.IntN(30)) * time.Millisecond):
			}
			// Now and then a burst of concurrent writes, so that changes
			// pile up faster than a small send queue drains.
			n := 1
			if rng.IntN(5) == 0 {
				n = 4
			}
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				r := rand.New(rand.NewPCG(rng.Uint64(), 3))
				go func() { errs <- chaosWrite(e, r, ch.orgs, ch.users) }()
			}
			for i := 0; i < n; i++ {
				if err := <-errs; err != nil {
					writeErrs.Add(1)
				} else {
					writes.Add(1)
				}
			}
		}
	}()
	// phase runs random operations until it made chaosSteps of them and,
	// once ready is closed (nil: at once), chaosWrites writes succeeded
	// after that point; onReady (if any) runs when ready is seen closed. Between operations the driver paces itself a little so
	// the writes interleave; no condition depends on that pause.
	phase := func(name string, ready <-chan struct{}, onReady func()) {
		deadline := time.Now().Add(chaosPhaseWithin)
		steps := 0
		var from int64 = -1 // writes when ready fired
		if ready == nil {
			from = writes.Load()
		}
		for {
			if from < 0 {
				select {
				case <-ready:
					from = writes.Load()
					if onReady != nil {
						onReady()
					}
				default:
				}
			}
			if steps >= chaosSteps && from >= 0 && writes.Load()-from >= chaosWrites {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("chaos phase %s: not within %v: %d operations, %d writes succeeded since it began (want %d, %d); %d writes failed in all",
					name, chaosPhaseWithin, steps, max(0, writes.Load()-from), chaosSteps, chaosWrites, writeErrs.Load())
			}
			ch.step()
			steps++
			time.Sleep(time.Duration(10+ch.rng.IntN(40)) * time.Millisecond)
		}
	}
	phase("before the restart", nil, nil)
	// One upstream failure while the operations go on: the emulator is
	// SIGKILLed and started again, empty, on the same port; the phase
	// counts only writes the new emulator took.
	var restartErr error
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		restartErr = emu.restart()
	}()
	defer func() { <-restarted }() // before the emulator's cleanup
	phase("around the restart", restarted, func() {
		if restartErr != nil {
			t.Fatal(restartErr)
		}
	})
	stopWrites()
	hits := 0
	for _, tc := range append(append([]*tracked(nil), ch.dead...), conns(ch.conns)...) {
		tc.mu.Lock()
		hits += tc.resumedHits
		tc.mu.Unlock()
	}
	t.Logf("operations %v; resumes %d (%d hits); writes %d ok, %d failed (emulator down); listeners started %d; catch-up overflows %v",
		ch.ops, ch.resumes, hits, writes.Load(), writeErrs.Load(), e.hub.ListenersStarted(),
		e.counter("firegate_send_queue_overflows_total", map[string]string{"action": "catchup"}))

	// A last write per org, after the upstream is surely back, so the
	// final state was written by this emulator.
	for _, org := range ch.orgs {
		putRetrying(t, e.fs, fmt.Sprintf("tasks/%s_final", org), map[string]any{"org_id": org, "status": "open", "n": 0})
	}
	var checks []convergeCheck
	for i, c := range ch.conns {
		if c.tc.isDone() {
			t.Fatalf("client %d (%s) was disconnected by the gateway: %v", i, c.user.id, c.tc.closeErr())
		}
		for id, s := range c.subs {
			checks = append(checks, convergeCheck{fmt.Sprintf("client%d/%s", i, id), c.tc, id, s, ch.token(c.user, c.org)})
		}
	}
	awaitConvergedDiag(t, e, convergeWithin, checks)
	for _, c := range ch.conns {
		ch.dead = append(ch.dead, c.tc)
	}
	for _, tc := range ch.dead {
		if p := tc.problems(); len(p) > 0 {
			t.Fatalf("protocol violations seen by a client: %v", p)
		}
	}
	// Unsubscribes acknowledged: the live views are exactly the driver's.
	for i, c := range ch.conns {
		c.tc.mu.Lock()
		n := len(c.tc.views)
		c.tc.mu.Unlock()
		if n != len(c.subs) {
			t.Errorf("client %d holds %d views for %d subscriptions", i, n, len(c.subs))
		}
	}
}
