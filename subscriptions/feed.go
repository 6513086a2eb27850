package subscriptions

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/firegate/firegate/wire"
)

// feedDoc is the Feed's record of one visible document: its last delivered
// version and the pieces of its encoded DOC JSON. Everything but pos and
// mark is immutable once the entry is published in a message; a new version
// replaces the fields under the Feed lock (messages already built hold their
// own encoded copies).
type feedDoc struct {
	id         string
	path       string
	updateTime time.Time
	updateStr  string // updateTime as RFC 3339 (nano), UTC
	data       []byte // data encoded once (encoding/json, sorted keys); nil encodes as {}
	size       int64  // len(path)+len(data) as counted in feed.bytes
	pos        uint64 // snapshot order: upstream result order, later additions last
	mark       uint64 // Reset sweep generation that last saw the document
}

// feed is one shared upstream listener and its subscribers. One goroutine
// (run) drives Source.Listen in a retry loop and processes every snapshot
// under mu; subscribers attach, detach and catch up under mu too, which is
// what makes every Deliver for a subscription ordered and gap-free.
type feed struct {
	hub    *Hub
	spec   FeedSpec
	epoch  string
	ctx    context.Context
	cancel context.CancelFunc

	// refs counts the Subscriptions that reserved this Feed and have not
	// unsubscribed. It is incremented only under the Feed's shard lock
	// while the Feed is registered, so a linger expiry that holds the shard
	// lock and reads 0 knows no subscriber is on its way in. Decremented
	// under mu.
	refs atomic.Int64

	// bytes is the size of the visible set: the sum of len(path) +
	// len(encoded data) of the visible documents (what a snapshot carries,
	// without the envelope). Written under mu, read by the Hub's limit
	// checks without it.
	bytes atomic.Int64

	subscribed    *Message // `subscribed` with resumed=false; immutable
	subscribedRes *Message // `subscribed` with resumed=true; immutable

	mu sync.Mutex // guards everything below
	// closed is set once, when the Feed leaves the registry (linger
	// expiry, permanent error or Hub.Close); a closed Feed delivers nothing.
	closed bool
	// retired is set by Hub.Retire when the Feed left the registry while
	// subscribers were attached: the last one to leave closes it at once
	// instead of lingering.
	retired bool
	failure *UpstreamError // the permanent error that closed the Feed, if any
	// ready is set by the first Reset snapshot; before it subscribers wait
	// for their snapshot.
	ready   bool
	seq     uint64
	visible map[string]*feedDoc
	nextPos uint64
	markGen uint64
	subs    []feedSub // attached subscribers; Subscription.idx is the index
	replay  replayRing

	snapCache []*Message // encoded snapshot chunks for the current seq; nil when stale

	lingerAt   time.Time   // when the last subscriber left (lingering order)
	lingerGen  uint64      // bumped every time the last subscriber leaves
	lingerStop func() bool // stops the pending linger timer; nil if none

	scratch []wire.Change // reused per snapshot to build the changes message
}

func newFeed(h *Hub, spec FeedSpec) *feed {
	ctx, cancel := context.WithCancel(context.Background())
	f := &feed{
		hub:     h,
		spec:    spec,
		epoch:   newFeedEpoch(),
		ctx:     ctx,
		cancel:  cancel,
		visible: make(map[string]*feedDoc),
		replay:  newReplayRing(h.cfg.ReplayCount, h.cfg.ReplayAge),
	}
	f.setEpoch(f.epoch)
	return f
}

// setEpoch sets the Feed's epoch (a fleet-wide one in fleet mode) before
// the Feed is published to the registry.
func (f *feed) setEpoch(epoch string) {
	f.epoch = epoch
	f.subscribed = &Message{Frame: wire.SubscribedFrame(f.epoch, false)}
	f.subscribedRes = &Message{Frame: wire.SubscribedFrame(f.epoch, true)}
}

// newFeedEpoch returns 8 random bytes, base64url without padding.
func newFeedEpoch() string {
	var b [8]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// run drives the Feed's listener: one Source.Listen at a time, rebuilt with
// exponential backoff after transient errors, until the Feed's context is
// cancelled or a permanent error closes the Feed.
func (f *feed) run() {
	defer f.hub.wg.Done()
	h := f.hub
	backoff := h.cfg.RetryMin
	var emitted atomic.Bool
	emit := func(s *Snapshot) {
		emitted.Store(true)
		f.onSnapshot(s)
	}
	for {
		if f.ctx.Err() != nil {
			return
		}
		h.listeners.Add(1)
		emitted.Store(false)
		start := h.now()
		var err error
		if fs, ok := h.src.(FleetSource); ok {
			// The fleet source counts the Firestore listeners it starts.
			err = fs.ListenFeed(f.ctx, fleetFeed{f}, emit)
		} else {
			h.m.ListenersStarted.Inc()
			err = h.src.Listen(f.ctx, f.spec.Query, emit)
		}
		if f.ctx.Err() != nil {
			return
		}
		var ue *UpstreamError
		code := codes.Unknown
		switch {
		case errors.As(err, &ue):
			code = ue.Code
		case err == nil:
			err = errors.New("listener ended without an error")
		}
		h.m.FeedError(code)
		if ue != nil && ue.Permanent() {
			h.log.Warn("feed listener failed permanently; ending its subscriptions",
				"collection", f.spec.Query.Collection, "epoch", f.epoch, "code", code.String(), "error", err)
			h.failFeed(f, ue)
			return
		}
		if emitted.Load() && h.now().Sub(start) >= h.cfg.RetryMax {
			backoff = h.cfg.RetryMin // the listener was healthy for a while
		}
		d := feedJitter(backoff)
		backoff = min(2*backoff, h.cfg.RetryMax)
		h.log.Warn("feed listener failed; retrying",
			"collection", f.spec.Query.Collection, "epoch", f.epoch, "code", code.String(), "error", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-f.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// feedJitter returns a duration in [d/2, d].
func feedJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// onSnapshot applies one upstream snapshot: it updates the visible set,
// encodes the visible changes once, records them in the replay buffer and
// delivers the one Message to every subscriber, all under mu.
func (f *feed) onSnapshot(s *Snapshot) {
	m := f.hub.m
	if !s.ReadTime.IsZero() && !s.ReceivedAt.IsZero() {
		m.UpstreamLag.Observe(max(0, s.ReceivedAt.Sub(s.ReadTime).Seconds()))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.scratch = f.scratch[:0]
	dups := 0
	if s.Reset {
		m.UpstreamChanges.Add(float64(len(s.Docs)))
		if !f.ready {
			if s.Seq != 0 { // a fleet mirror starts at the owner's position
				f.seq = s.Seq
				f.seedReplay(s.History)
			}
			f.initialize(s.Docs)
			return
		}
		dups = f.applyReset(s.Docs)
	} else {
		m.UpstreamChanges.Add(float64(len(s.Changes)))
		for i := range s.Changes {
			c := &s.Changes[i]
			if c.Kind == Removed {
				f.applyRemoved(c.Doc.ID)
				continue
			}
			if f.applyDoc(&c.Doc) {
				dups++
			}
		}
	}
	if dups > 0 {
		m.DuplicatesSuppr.Add(float64(dups))
	}
	next := f.seq + 1
	if s.Seq != 0 && s.Seq != next {
		// A fleet position that is not the next seq: a mirror resynced from
		// its owner, or a Feed leaving the fleet's numbering (degraded).
		// Seq never goes back: a lower one keeps the local numbering. This
		// message is not a step from every earlier seq, so the replay
		// buffer restarts at it (an older resume gets a snapshot).
		if s.Seq < next && len(f.scratch) == 0 {
			return // a stale position that changed nothing
		}
		if s.Seq > next {
			next = s.Seq
		}
		f.replay = newReplayRing(f.hub.cfg.ReplayCount, f.hub.cfg.ReplayAge)
		f.replay.base = next
		if len(f.scratch) == 0 {
			f.seq = next
			f.snapCache = nil
			return
		}
	}
	if len(f.scratch) == 0 {
		return
	}
	f.seq = next
	f.snapCache = nil
	msg := &Message{
		Frame:      wire.ChangesFrame(f.seq, s.ReadTime, f.scratch),
		Seq:        f.seq,
		ReceivedAt: s.ReceivedAt,
	}
	e := f.replay.add(f.seq, f.hub.now())
	for i := range f.scratch {
		e.changes = append(e.changes, replayChange{id: f.scratch[i].ID, path: f.scratch[i].Path, kind: feedKindOf(f.scratch[i].Kind)})
	}
	if s.Published != nil {
		s.Published(f.seq, s.ReadTime, f.scratch)
	}
	clear(f.scratch) // do not pin document data until the next snapshot
	f.scratch = f.scratch[:0]
	for i := range f.subs {
		f.subs[i].sub.Deliver(msg, false)
	}
}

func feedKindOf(k string) ChangeKind {
	switch k {
	case wire.KindAdded:
		return Added
	case wire.KindModified:
		return Modified
	}
	return Removed
}

// initialize takes the first Reset of a new Feed: it fills the visible set
// (seq stays 0) and releases the snapshots of the subscribers waiting for
// it. Called with mu held.
func (f *feed) initialize(docs []Document) {
	for i := range docs {
		d := &docs[i]
		if f.spec.Filter != nil && !f.spec.Filter(d.ID, d.Path, d.Data) {
			continue
		}
		e := &feedDoc{id: d.ID, path: d.Path, pos: f.nextPos}
		f.nextPos++
		f.setVersion(e, d)
		f.visible[d.ID] = e
	}
	f.ready = true
	f.snapCache = nil
	for i := range f.subs {
		fs := &f.subs[i]
		if base := fs.s.moveBase; base != nil {
			fs.s.moveBase = nil
			fs.sub.Deliver(f.moveDiff(base), true)
			continue
		}
		if r := fs.s.resume; r != nil {
			fs.s.resume = nil
			if f.replay.covers(r.Seq, f.seq, f.hub.now()) {
				fs.sub.Deliver(f.subscribedRes, false)
				fs.sub.Deliver(f.netChange(r.Seq), true)
				continue
			}
			fs.sub.Deliver(f.subscribed, false)
		}
		feedDeliverChunks(fs.sub, f.snapshot())
	}
}

// applyReset diffs a rebuilt listener's full result against the visible
// set, appending the visible changes to f.scratch. It returns the number of
// documents whose version the Feed already held (duplicates). Called with
// mu held.
func (f *feed) applyReset(docs []Document) (dups int) {
	f.markGen++
	for i := range docs {
		d := &docs[i]
		if e := f.visible[d.ID]; e != nil {
			e.mark = f.markGen
			e.pos = f.nextPos
			f.nextPos++
		}
		if f.applyDoc(d) {
			dups++
		}
	}
	var gone []*feedDoc
	for _, e := range f.visible {
		if e.mark != f.markGen {
			gone = append(gone, e)
		}
	}
	slices.SortFunc(gone, func(a, b *feedDoc) int { return feedCmpPos(a.pos, b.pos) })
	for _, e := range gone {
		f.applyRemoved(e.id)
	}
	return dups
}

func feedCmpPos(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// applyDoc applies an upstream Added or Modified document (or one document
// of a Reset): it reports whether the change is a duplicate of the version
// the Feed holds, and otherwise appends the visible change, if any, to
// f.scratch. The filter runs at most once. Called with mu held.
func (f *feed) applyDoc(d *Document) (dup bool) {
	e := f.visible[d.ID]
	if e != nil && e.updateTime.Equal(d.UpdateTime) {
		return true
	}
	ok := f.spec.Filter == nil || f.spec.Filter(d.ID, d.Path, d.Data)
	switch {
	case e != nil && ok:
		e.path = d.Path
		f.setVersion(e, d)
		f.scratch = append(f.scratch, wire.Change{Kind: wire.KindModified, ID: e.id, Path: e.path, Data: e.data, UpdateTime: e.updateStr})
	case e == nil && ok:
		e = &feedDoc{id: d.ID, path: d.Path, pos: f.nextPos, mark: f.markGen}
		f.nextPos++
		f.setVersion(e, d)
		f.visible[d.ID] = e
		f.scratch = append(f.scratch, wire.Change{Kind: wire.KindAdded, ID: e.id, Path: e.path, Data: e.data, UpdateTime: e.updateStr})
	case e != nil && !ok:
		f.applyRemoved(d.ID)
	}
	return false
}

// applyRemoved removes a visible document, appending the removal to
// f.scratch; a document that was not visible produces nothing.
func (f *feed) applyRemoved(id string) {
	e := f.visible[id]
	if e == nil {
		return
	}
	delete(f.visible, id)
	f.bytes.Add(-e.size)
	f.scratch = append(f.scratch, wire.Change{Kind: wire.KindRemoved, ID: e.id, Path: e.path})
}

// setVersion stores d's version in e: the data encoded once and the update
// time formatted once.
func (f *feed) setVersion(e *feedDoc, d *Document) {
	e.updateTime = d.UpdateTime
	e.updateStr = ""
	if !d.UpdateTime.IsZero() {
		e.updateStr = d.UpdateTime.UTC().Format(time.RFC3339Nano)
	}
	e.data = f.encodeData(d.Data)
	size := int64(len(e.path) + len(e.data))
	f.bytes.Add(size - e.size)
	e.size = size
}

// encodeData encodes document data with encoding/json (keys sorted). JSON
// cannot carry NaN or ±Inf: such numbers become null rather than losing the
// document. Empty data encodes as nil (the wire writes {}).
func (f *feed) encodeData(data map[string]any) []byte {
	if len(data) == 0 {
		return nil
	}
	b, err := json.Marshal(data)
	if err == nil {
		return b
	}
	b, err2 := json.Marshal(feedSanitizeJSON(data))
	if err2 != nil {
		f.hub.log.Warn("document data cannot be encoded as JSON; sending it empty",
			"collection", f.spec.Query.Collection, "error", err2)
		return nil
	}
	return b
}

// feedSanitizeJSON returns a copy of v with non-finite floats replaced by nil.
func feedSanitizeJSON(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return x
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = feedSanitizeJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = feedSanitizeJSON(e)
		}
		return out
	}
	return v
}

// snapshot returns the encoded snapshot chunks for the current seq, built
// once per seq and shared by every subscriber that needs one. Docs come in
// upstream result order (later additions last). A chunk's Message.Size()
// stays within SnapshotChunkBytes unless it holds a single bigger document.
// Called with mu held.
func (f *feed) snapshot() []*Message {
	if f.snapCache != nil {
		return f.snapCache
	}
	docs := f.ordered()
	wd := make([]wire.Doc, len(docs))
	for i, e := range docs {
		wd[i] = wire.Doc{ID: e.id, Path: e.path, Data: e.data, UpdateTime: e.updateStr}
	}

	limit := f.hub.cfg.SnapshotChunkBytes
	emptyOpen := (&Message{Frame: wire.SnapshotFrame(f.seq, nil, false)}).Size()
	emptyFinal := (&Message{Frame: wire.SnapshotFrame(f.seq, nil, true)}).Size()
	var chunks []*Message
	emit := func(part []wire.Doc, final bool) {
		chunks = append(chunks, &Message{Frame: wire.SnapshotFrame(f.seq, part, final), Seq: f.seq})
	}
	var buf []byte
	start, size := 0, 0 // wd[start:i] is the open chunk; size sums their encoded lengths plus commas
	for i := range wd {
		buf = wire.AppendDoc(buf[:0], &wd[i])
		docLen := len(buf)
		add := docLen
		if i > start {
			add++ // comma
		}
		empty := emptyOpen
		if i == len(wd)-1 {
			empty = emptyFinal
		}
		if i > start && empty+size+add > limit {
			emit(wd[start:i], false)
			start, size, add = i, 0, docLen
		}
		size += add
	}
	emit(wd[start:], true)
	f.snapCache = chunks
	return chunks
}

// ordered returns the visible documents in snapshot order (upstream result
// order, later additions last). Called with mu held.
func (f *feed) ordered() []*feedDoc {
	docs := make([]*feedDoc, 0, len(f.visible))
	for _, e := range f.visible {
		docs = append(docs, e)
	}
	slices.SortFunc(docs, func(a, b *feedDoc) int { return feedCmpPos(a.pos, b.pos) })
	return docs
}

// feedDeliverChunks delivers a snapshot; the first chunk carries catchUp.
func feedDeliverChunks(sub Subscriber, chunks []*Message) {
	for i, m := range chunks {
		sub.Deliver(m, i == 0)
	}
}

// attach adds a subscriber to the Feed (the caller holds a reservation in
// refs) and delivers `subscribed` and then the resume catch-up or the
// snapshot, or queues the snapshot until the first upstream Reset. A
// non-nil base (Hub.Move) replaces the resume and the snapshot: the
// subscriber gets `subscribed` resumed=true and the diff from base to the
// visible set (see moveDiff), queued likewise until the first Reset. On a
// Feed closed by a permanent error the subscriber gets `subscribed` and the
// `unsubscribed` end message and a detached Subscription.
func (f *feed) attach(sub Subscriber, resume *wire.Resume, base moveBase) (*Subscription, error) {
	h := f.hub
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &Subscription{f: f, sub: sub, idx: -1}
	if f.closed {
		if f.failure == nil {
			return nil, ErrHubClosed
		}
		sub.Deliver(f.subscribed, false)
		sub.Deliver(feedEndMessage(f.failure), false)
		return s, nil
	}
	if f.lingerStop != nil {
		f.lingerStop()
		f.lingerStop = nil
	}
	s.idx = len(f.subs)
	f.subs = append(f.subs, feedSub{sub: sub, s: s})
	if base != nil {
		sub.Deliver(f.subscribedRes, false)
		if !f.ready {
			s.moveBase = base // the diff follows the first Reset
			return s, nil
		}
		sub.Deliver(f.moveDiff(base), true)
		return s, nil
	}
	if !f.ready {
		if resume != nil && resume.Epoch == f.epoch {
			// A fleet Feed opened on this instance has an epoch that
			// existed before it: the resume is decided once the Feed has
			// its state (its replay buffer comes with it).
			s.resume = resume
			return s, nil
		}
		sub.Deliver(f.subscribed, false) // the snapshot follows the first Reset
		return s, nil
	}
	if resume != nil && resume.Epoch == f.epoch && f.replay.covers(resume.Seq, f.seq, h.now()) {
		sub.Deliver(f.subscribedRes, false)
		sub.Deliver(f.netChange(resume.Seq), true)
		return s, nil
	}
	sub.Deliver(f.subscribed, false)
	feedDeliverChunks(sub, f.snapshot())
	return s, nil
}

func feedEndMessage(err *UpstreamError) *Message {
	return &Message{Frame: wire.UnsubscribedFrame(wire.ReasonUpstreamError, err.Message), End: true}
}

// removeSub swap-removes s from f.subs. Called with mu held.
func (f *feed) removeSub(s *Subscription) {
	last := len(f.subs) - 1
	moved := f.subs[last]
	f.subs[s.idx] = moved
	moved.s.idx = s.idx
	f.subs[last] = feedSub{}
	f.subs = f.subs[:last]
	s.idx = -1
	s.moveBase = nil
	s.resume = nil
}

// detachAll detaches every subscriber (delivering m to each first when m is
// not nil). Called with mu held.
func (f *feed) detachAll(m *Message) {
	for i := range f.subs {
		f.subs[i].s.idx = -1
		f.subs[i].s.moveBase = nil
		f.subs[i].s.resume = nil
		if m != nil {
			f.subs[i].sub.Deliver(m, false)
		}
		f.subs[i] = feedSub{}
	}
	f.subs = nil
}

// feedSub is one entry of a Feed's subscriber slice: the Subscriber itself
// (so the fan-out loop reads one contiguous slice) and its Subscription.
type feedSub struct {
	sub Subscriber
	s   *Subscription
}

// Subscription is one subscriber attached to a Feed. Its methods are safe
// for concurrent use with each other and with the Feed's deliveries.
type Subscription struct {
	f   *feed
	sub Subscriber
	idx int // position in f.subs while attached, -1 once detached; guarded by f.mu
	// moveBase is what the subscriber holds while a Move waits for this
	// Feed's first Reset (its diff is then built from it); nil otherwise.
	// Guarded by f.mu.
	moveBase moveBase
	// resume is a resume naming the epoch of a Feed that has not had its
	// first Reset yet (fleet mode): `subscribed` and the catch-up or
	// snapshot wait for it. Guarded by f.mu.
	resume *wire.Resume
}

// Epoch returns the Feed's epoch (what a client passes back in resume).
func (s *Subscription) Epoch() string { return s.f.epoch }

// Unsubscribe detaches the subscription. It is idempotent, and no Deliver
// for this subscription happens after it returns. When the last subscriber
// leaves, the Feed lingers for HubConfig.Linger before it stops.
func (s *Subscription) Unsubscribe() { s.leave(false) }

// leave detaches s exactly as Unsubscribe does (reference count, linger).
// With capture set it also returns, read under the same hold of the Feed
// lock and so consistent with everything delivered to s, what s's
// subscriber holds of this Feed (see baseOf); nil when s was no longer
// attached or that is unknown. Called with no lock held.
func (s *Subscription) leave(capture bool) moveBase {
	f := s.f
	h := f.hub
	f.mu.Lock()
	if s.idx < 0 {
		f.mu.Unlock()
		return nil
	}
	var base moveBase
	if capture {
		base = f.baseOf(s)
	}
	f.removeSub(s)
	var gen uint64
	expireNow := false
	if f.refs.Add(-1) == 0 && !f.closed {
		f.lingerGen++
		f.lingerAt = h.now()
		gen = f.lingerGen
		if f.lingerStop != nil {
			f.lingerStop()
			f.lingerStop = nil
		}
		if h.cfg.Linger < 0 || f.retired {
			expireNow = true
		} else {
			f.lingerStop = h.armLinger(f, gen)
		}
	}
	f.mu.Unlock()
	if expireNow {
		h.expireLinger(f, gen)
	}
	return base
}

// CatchUp serves a subscriber that overflowed and dropped the messages after
// afterSeq (the last seq it delivered): it delivers, with catchUp=true, one
// `changes` message with the net change since afterSeq and the current seq
// (an empty changes list when afterSeq is the current seq, so the
// subscriber knows it is current), or a fresh snapshot when the replay
// buffer no longer reaches back (by count or age) or afterSeq is ahead of
// the Feed. It runs under the Feed lock, so it is atomic with respect to
// live delivery: the next live message follows it without gap or duplicate.
// A detached subscription, or one still waiting for its first snapshot
// (which will carry catchUp=true), gets nothing.
func (s *Subscription) CatchUp(afterSeq uint64) {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.idx < 0 || f.closed || !f.ready {
		return
	}
	if f.replay.covers(afterSeq, f.seq, f.hub.now()) {
		s.sub.Deliver(f.netChange(afterSeq), true)
		return
	}
	feedDeliverChunks(s.sub, f.snapshot())
}

// visibleDocs returns a copy of the visible set as id → encoded DOC fields
// (for tests and diagnostics).
func (f *feed) visibleDocs() map[string]wire.Doc {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]wire.Doc, len(f.visible))
	for id, e := range f.visible {
		out[id] = wire.Doc{ID: e.id, Path: e.path, Data: e.data, UpdateTime: e.updateStr}
	}
	return out
}
