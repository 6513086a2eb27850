package subscriptions

// Test fixtures for the Hub and Feed tests: the fake Source of
// subscriptionstest (the seam the tests push Snapshots through), a recording Subscriber that rebuilds the
// client's view exactly as a client would, fake linger timers and small
// builders. Helpers are prefixed hs ("hub suite") to stay clear of the
// other test files of the package.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"

	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions/subscriptionstest"
	"github.com/firegate/firegate/wire"
)

const hsWait = subscriptionstest.Wait

// hsCheck waits (up to hsWait) until cond returns nil; a timeout fails t
// with cond's last error.
func hsCheck(t testing.TB, cond func() error) {
	t.Helper()
	testkit.CheckFor(t, hsWait, time.Millisecond, cond)
}

// hsEnded is a condition: l's Listen has returned.
func hsEnded(l *fakeListener) func() error {
	return func() error {
		if !l.Ended() {
			return errors.New("the listener has not ended")
		}
		return nil
	}
}

// hsFeedCount is a condition: h holds n Feeds.
func hsFeedCount(h *Hub, n int) func() error {
	return func() error {
		if got := h.FeedCount(); got != n {
			return fmt.Errorf("%d Feeds, want %d", got, n)
		}
		return nil
	}
}

// hsFeedGone is a condition: h holds no Feed under key.
func hsFeedGone(h *Hub, key string) func() error {
	return func() error {
		if h.feedFor(key) != nil {
			return fmt.Errorf("Feed %s still open", key)
		}
		return nil
	}
}

// hsConverges is a condition: f shows exactly want.
func hsConverges(f *feed, want map[string]string) func() error {
	return func() error {
		if got := hsVisible(f); !hsMapsEqual(got, want) {
			return fmt.Errorf("Feed %s shows %v, upstream has %v", f.spec.Key, got, want)
		}
		return nil
	}
}

// hsLeakCheck verifies, after the test and its cleanups (Hub.Close
// included), that no goroutine started during the test is left.
func hsLeakCheck(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// fakeSource is the Source the Hub and Feed tests drive: each Listen call
// is a fakeListener the test hands snapshots and errors.
type (
	fakeSource   = subscriptionstest.Source[Query, *Snapshot]
	fakeListener = subscriptionstest.Listener[Query, *Snapshot]
)

// hsTimers replaces the Hub's linger timers so a test fires them by hand.
type hsTimers struct {
	mu     sync.Mutex
	timers []*hsTimer
}

type hsTimer struct {
	fn      func()
	stopped bool
	fired   bool
}

func (ts *hsTimers) afterFunc(_ time.Duration, fn func()) func() bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	tm := &hsTimer{fn: fn}
	ts.timers = append(ts.timers, tm)
	return func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		was := !tm.stopped && !tm.fired
		tm.stopped = true
		return was
	}
}

// fire runs timer i (0-based) if it was neither stopped nor fired; it
// reports whether it ran.
func (ts *hsTimers) fire(i int) bool {
	ts.mu.Lock()
	tm := ts.timers[i]
	run := !tm.stopped && !tm.fired
	tm.fired = true
	ts.mu.Unlock()
	if run {
		tm.fn()
	}
	return run
}

func (ts *hsTimers) len() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.timers)
}

// hsClock is a settable clock.
type hsClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *hsClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *hsClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var hsEpochTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// hsNewHub builds a Hub over a new fake source with fast retries, fresh
// metrics and fake timers; Close runs at cleanup.
func hsNewHub(t testing.TB, cfg HubConfig) (*Hub, *fakeSource, *hsTimers) {
	t.Helper()
	src := &fakeSource{}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 4 * time.Millisecond
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	h, err := NewHub(src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &hsTimers{}
	h.afterFunc = ts.afterFunc
	t.Cleanup(h.Close)
	return h, src, ts
}

// hsSpec is a FeedSpec for collection "tasks" keyed by key.
func hsSpec(key, tenant string) FeedSpec {
	return FeedSpec{
		Query:  Query{Collection: "tasks", Filters: []wire.Filter{{Field: "org_id", Op: "==", Value: tenant}}},
		Key:    key,
		Tenant: tenant,
	}
}

// hsDoc builds document id at version ver (update time hsEpochTime+ver s).
func hsDoc(id string, ver int, kv ...any) Document {
	data := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		data[kv[i].(string)] = kv[i+1]
	}
	return Document{ID: id, Path: "tasks/" + id, Data: data, UpdateTime: hsEpochTime.Add(time.Duration(ver) * time.Second)}
}

func hsReset(docs ...Document) *Snapshot {
	return &Snapshot{Reset: true, Docs: docs, ReadTime: hsEpochTime, ReceivedAt: hsEpochTime.Add(5 * time.Millisecond)}
}

func hsChanges(cs ...Change) *Snapshot {
	return &Snapshot{Changes: cs, ReadTime: hsEpochTime.Add(time.Minute), ReceivedAt: hsEpochTime.Add(time.Minute + 7*time.Millisecond)}
}

func hsAdded(d Document) Change    { return Change{Kind: Added, Doc: d} }
func hsModified(d Document) Change { return Change{Kind: Modified, Doc: d} }
func hsRemoved(id string) Change {
	return Change{Kind: Removed, Doc: Document{ID: id, Path: "tasks/" + id}}
}

// hsDelivery is one Deliver call as the client would see it.
type hsDelivery struct {
	m       *Message
	catchUp bool
	sm      wire.ServerMessage
	raw     string
}

// hsRecorder is a Subscriber that records and decodes every delivery and
// maintains the client's reconstructed state. It flags any delivery after
// Unsubscribe returned (markClosed) and any protocol violation.
type hsRecorder struct {
	mu     sync.Mutex
	got    []hsDelivery
	state  *hsClientState
	closed bool
	errs   []string
	keep   bool // keep deliveries (tests); false in the stress test
	// lagging simulation (stress test): while dropping, non-catch-up
	// messages are discarded; needCatchUp asks the driver to call CatchUp.
	dropEvery   int
	count       int
	dropping    bool
	needCatchUp bool
	lastSeq     uint64
}

func hsNewRecorder() *hsRecorder { return &hsRecorder{keep: true, state: hsNewClientState()} }

func (r *hsRecorder) Deliver(m *Message, catchUp bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.errs = append(r.errs, "delivery after Unsubscribe returned")
		return
	}
	if r.dropping && !catchUp {
		return
	}
	if catchUp {
		r.dropping = false
		r.needCatchUp = false
	}
	raw := m.Frame.AppendTo(nil, wire.QuoteID("s1"))
	var sm wire.ServerMessage
	if err := json.Unmarshal(raw, &sm); err != nil {
		r.errs = append(r.errs, fmt.Sprintf("undecodable frame %s: %v", raw, err))
		return
	}
	if len(raw) != m.Frame.Len(len(wire.QuoteID("s1"))) || m.Size() != len(m.Frame.Head)+len(m.Frame.Tail) {
		r.errs = append(r.errs, "frame length mismatch")
	}
	if r.keep {
		r.got = append(r.got, hsDelivery{m: m, catchUp: catchUp, sm: sm, raw: string(raw)})
	}
	if err := r.state.apply(&sm, catchUp); err != nil {
		r.errs = append(r.errs, err.Error())
	}
	r.count++
	if r.dropEvery > 0 && r.count%r.dropEvery == 0 && !r.state.inSnap && r.state.synced && sm.Type == wire.TypeChanges {
		r.dropping = true
		r.needCatchUp = true
		r.lastSeq = r.state.seq
	}
}

// markClosed records that Unsubscribe returned.
func (r *hsRecorder) markClosed() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

func (r *hsRecorder) deliveries() []hsDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// take returns the deliveries so far and forgets them.
func (r *hsRecorder) take() []hsDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func (r *hsRecorder) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		t.Error(e)
	}
}

// snapshotState returns the reconstructed docs and seq.
func (r *hsRecorder) snapshotState() (map[string]string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.state.docs), r.state.seq
}

// hsClientState rebuilds a subscriber's view from its messages, checking
// the ordering rules on the way: snapshot chunks share one seq and end with
// final; live changes advance seq by exactly one; catch-ups never go back;
// added only for unseen docs, modified/removed only for seen ones.
type hsClientState struct {
	docs     map[string]string // id -> data JSON + " @" + update_time
	seq      uint64
	epoch    string
	resumed  bool
	inSnap   bool
	snapSeq  uint64
	synced   bool // has a complete snapshot or resume
	subbed   bool
	ended    bool
	snapDocs map[string]string
}

func hsNewClientState() *hsClientState { return &hsClientState{docs: map[string]string{}} }

func hsDocValue(data json.RawMessage, ut string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return "invalid:" + string(data)
	}
	return b.String() + " @" + ut
}

func (c *hsClientState) apply(sm *wire.ServerMessage, catchUp bool) error {
	if c.ended {
		return fmt.Errorf("%s after the end message", sm.Type)
	}
	switch sm.Type {
	case wire.TypeSubscribed:
		if c.subbed {
			return fmt.Errorf("second subscribed")
		}
		c.subbed, c.epoch, c.resumed = true, sm.Epoch, sm.Resumed
		if !sm.Resumed {
			c.synced = false
		}
	case wire.TypeSnapshot:
		if !c.subbed {
			return fmt.Errorf("snapshot before subscribed")
		}
		if !c.inSnap {
			if !catchUp {
				return fmt.Errorf("first snapshot chunk without catchUp")
			}
			c.inSnap, c.snapSeq, c.snapDocs = true, sm.Seq, map[string]string{}
		} else {
			if catchUp {
				return fmt.Errorf("later snapshot chunk with catchUp")
			}
			if sm.Seq != c.snapSeq {
				return fmt.Errorf("snapshot chunk seq %d, want %d", sm.Seq, c.snapSeq)
			}
		}
		for _, d := range sm.Docs {
			if _, dup := c.snapDocs[d.ID]; dup {
				return fmt.Errorf("doc %s twice in one snapshot", d.ID)
			}
			c.snapDocs[d.ID] = hsDocValue(d.Data, d.UpdateTime)
		}
		if sm.Final {
			if c.synced && sm.Seq < c.seq {
				return fmt.Errorf("snapshot seq %d goes back from %d", sm.Seq, c.seq)
			}
			c.docs, c.seq, c.inSnap, c.synced = c.snapDocs, sm.Seq, false, true
			c.snapDocs = nil
		}
	case wire.TypeChanges:
		if c.inSnap {
			return fmt.Errorf("changes inside a snapshot")
		}
		switch {
		case catchUp:
			if !c.synced && !c.resumed {
				return fmt.Errorf("catch-up changes without a base state")
			}
			if sm.Seq < c.seq {
				return fmt.Errorf("catch-up seq %d goes back from %d", sm.Seq, c.seq)
			}
			if sm.ReadTime != "" {
				return fmt.Errorf("catch-up changes carry read_time")
			}
		default:
			if !c.synced {
				return fmt.Errorf("live changes before the snapshot")
			}
			if sm.Seq != c.seq+1 {
				return fmt.Errorf("live changes seq %d after %d", sm.Seq, c.seq)
			}
			if sm.ReadTime == "" {
				return fmt.Errorf("live changes without read_time")
			}
		}
		seen := map[string]bool{}
		for _, ch := range sm.Changes {
			if seen[ch.ID] {
				return fmt.Errorf("doc %s twice in one changes message", ch.ID)
			}
			seen[ch.ID] = true
			_, have := c.docs[ch.ID]
			switch ch.Kind {
			case wire.KindAdded:
				if have {
					return fmt.Errorf("seq %d: added %s which the client has", sm.Seq, ch.ID)
				}
				c.docs[ch.ID] = hsDocValue(ch.Data, ch.UpdateTime)
			case wire.KindModified:
				if !have {
					return fmt.Errorf("seq %d: modified %s which the client lacks", sm.Seq, ch.ID)
				}
				c.docs[ch.ID] = hsDocValue(ch.Data, ch.UpdateTime)
			case wire.KindRemoved:
				if !have {
					return fmt.Errorf("seq %d: removed %s which the client lacks", sm.Seq, ch.ID)
				}
				if ch.Data != nil || ch.UpdateTime != "" {
					return fmt.Errorf("removed %s carries data", ch.ID)
				}
				delete(c.docs, ch.ID)
			default:
				return fmt.Errorf("unknown kind %q", ch.Kind)
			}
		}
		c.seq, c.synced = sm.Seq, true
	case wire.TypeUnsubscribed:
		c.ended = true
	default:
		return fmt.Errorf("unexpected message type %q", sm.Type)
	}
	return nil
}

// hsVisible returns a Feed's visible set in the client's representation.
func hsVisible(f *feed) map[string]string {
	out := map[string]string{}
	for id, d := range f.visibleDocs() {
		data := d.Data
		if len(data) == 0 {
			data = json.RawMessage("{}")
		}
		out[id] = hsDocValue(data, d.UpdateTime)
	}
	return out
}

// hsSeq returns a Feed's current seq.
func hsSeq(f *feed) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}

// hsUnavailable is a transient upstream error.
func hsUnavailable() error {
	return &UpstreamError{Code: codes.Unavailable, Message: "stream reset"}
}

// hsTypes lists the message types of ds.
func hsTypes(ds []hsDelivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.sm.Type
	}
	return out
}

// hsChangeList renders the changes of a message as "kind:id" strings.
func hsChangeList(sm wire.ServerMessage) []string {
	out := []string{}
	for _, c := range sm.Changes {
		out = append(out, c.Kind+":"+c.ID)
	}
	return out
}

// hsSubscribe subscribes and fails the test on error.
func hsSubscribe(t testing.TB, h *Hub, spec FeedSpec, resume *wire.Resume) (*Subscription, *hsRecorder) {
	t.Helper()
	r := hsNewRecorder()
	s, err := h.Subscribe(spec, r, resume)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", spec.Key, err)
	}
	return s, r
}
