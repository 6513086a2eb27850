package subscriptions

import (
	"slices"
	"time"

	"github.com/firegate/firegate/wire"
)

// replayChange is what the replay buffer remembers of one visible change:
// which document, and whether it became visible (Added), changed while
// visible (Modified) or stopped being visible (Removed). Data is not kept:
// the net change is always built from the Feed's current visible set.
type replayChange struct {
	id   string
	path string // for a removal of a document no longer in the visible set
	kind ChangeKind
}

// replayEntry records the visible changes of one `changes` message.
type replayEntry struct {
	seq     uint64
	at      time.Time // Hub clock when the message was fanned out
	changes []replayChange
}

// replayRing is a Feed's bounded replay buffer: the last max `changes`
// messages not older than maxAge, in seq order. It holds every entry with
// seq in (base, newest], so a subscriber whose last seq is S can be served
// a net change iff base <= S <= current seq.
//
// A replayRing is not safe for concurrent use; the Feed guards it with its
// mutex. Slots are reused when the ring is full, keeping their changes
// slices' capacity, so a Feed in steady state appends without allocating.
type replayRing struct {
	buf    []replayEntry // circular; len(buf) grows up to max
	head   int           // index of the oldest entry
	n      int           // number of entries held
	max    int
	maxAge time.Duration
	base   uint64
}

func newReplayRing(max int, maxAge time.Duration) replayRing {
	return replayRing{max: max, maxAge: maxAge}
}

// add appends an entry for seq (which must be larger than any seq held) and
// returns it with an empty changes slice for the caller to fill. The oldest
// entry is evicted when the ring is full.
func (r *replayRing) add(seq uint64, at time.Time) *replayEntry {
	r.prune(at)
	if r.n == r.max {
		r.dropOldest()
	}
	if r.n == len(r.buf) {
		r.grow()
	}
	e := &r.buf[(r.head+r.n)%len(r.buf)]
	r.n++
	e.seq = seq
	e.at = at
	e.changes = e.changes[:0]
	return e
}

// grow enlarges the ring (doubling, up to max) and lays it out from index 0.
func (r *replayRing) grow() {
	size := 2 * len(r.buf)
	if size < 8 {
		size = 8
	}
	if size > r.max {
		size = r.max
	}
	nb := make([]replayEntry, size)
	for i := 0; i < r.n; i++ {
		nb[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf = nb
	r.head = 0
}

// dropOldest evicts the oldest entry, moving base up to its seq. The slot
// keeps its slice capacity but no longer references document ids.
func (r *replayRing) dropOldest() {
	e := &r.buf[r.head]
	r.base = e.seq
	clear(e.changes)
	e.changes = e.changes[:0]
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}

// prune drops entries older than maxAge at now (an entry exactly maxAge old
// is kept).
func (r *replayRing) prune(now time.Time) {
	for r.n > 0 && now.Sub(r.buf[r.head].at) > r.maxAge {
		r.dropOldest()
	}
}

// covers reports whether the changes after seq `after` can be served from
// the buffer at now, given the Feed's current seq cur.
func (r *replayRing) covers(after, cur uint64, now time.Time) bool {
	r.prune(now)
	return after >= r.base && after <= cur
}

// since calls fn, in seq order, for every change recorded after seq `after`.
// The caller checks covers first.
func (r *replayRing) since(after uint64, fn func(c replayChange)) {
	for i := 0; i < r.n; i++ {
		e := &r.buf[(r.head+i)%len(r.buf)]
		if e.seq <= after {
			continue
		}
		for _, c := range e.changes {
			fn(c)
		}
	}
}

// netChange builds the one `changes` message that brings a subscriber from
// seq `after` to the Feed's current seq: for every document changed after
// `after`, in order of its first change, "added" with its current data if
// it is visible now and its first change was an add (it was not visible at
// `after`), "modified" with its current data if it is visible now
// otherwise, "removed" if it is not visible now unless its first change was
// an add (then the subscriber never saw it and nothing is sent). The message
// carries the current seq and no read_time; its changes list is empty when
// nothing changed. Called with mu held, after replay.covers.
func (f *feed) netChange(after uint64) *Message {
	var first map[string]ChangeKind
	var order []replayChange
	f.replay.since(after, func(c replayChange) {
		if first == nil {
			first = make(map[string]ChangeKind)
		}
		if _, seen := first[c.id]; !seen {
			first[c.id] = c.kind
			order = append(order, c)
		}
	})
	changes := make([]wire.Change, 0, len(order))
	for _, c := range order {
		e := f.visible[c.id]
		switch {
		case e != nil && c.kind == Added:
			changes = append(changes, wire.Change{Kind: wire.KindAdded, ID: e.id, Path: e.path, Data: e.data, UpdateTime: e.updateStr})
		case e != nil:
			changes = append(changes, wire.Change{Kind: wire.KindModified, ID: e.id, Path: e.path, Data: e.data, UpdateTime: e.updateStr})
		case c.kind != Added:
			changes = append(changes, wire.Change{Kind: wire.KindRemoved, ID: c.id, Path: c.path})
		}
	}
	return &Message{Frame: wire.ChangesFrame(f.seq, time.Time{}, changes), Seq: f.seq}
}

// moveBase is what a moving subscriber holds of the Feed it leaves: the
// version of every document that Feed made visible to it, by id. nil means
// unknown (a snapshot is needed); an empty non-nil map is an empty result.
// A moveBase is immutable once captured.
type moveBase map[string]moveDoc

// moveDoc is one document of a moveBase.
type moveDoc struct {
	path       string
	updateTime time.Time
	pos        uint64 // snapshot order in the Feed it was captured from
}

// baseOf returns what s's subscriber holds of this Feed: the base of a Move
// still waiting for this Feed's first Reset (the subscriber has not been
// told anything newer), else the visible set (what every delivery so far
// adds up to), or nil when the Feed has not sent it a snapshot yet, or the
// subscriber reports (Lagger) that it dropped some of those deliveries.
// Called with mu held, s attached.
func (f *feed) baseOf(s *Subscription) moveBase {
	if s.moveBase != nil {
		return s.moveBase
	}
	if !f.ready {
		return nil
	}
	if l, ok := s.sub.(Lagger); ok && l.Lagging() {
		return nil
	}
	base := make(moveBase, len(f.visible))
	for id, e := range f.visible {
		base[id] = moveDoc{path: e.path, updateTime: e.updateTime, pos: e.pos}
	}
	return base
}

// moveDiff builds the one `changes` message that brings a subscriber
// holding base to this Feed's visible set at its current seq: "added" for a
// visible document not in base, "modified" (whole document) for one whose
// version (update time) or path differs from base, nothing for one at the
// same version, all in snapshot order; then "removed" for every document of
// base that is not visible, in base's order. The message carries the
// current seq and no read_time; its changes list is empty when base already
// equals the visible set. Called with mu held, f.ready.
func (f *feed) moveDiff(base moveBase) *Message {
	changes := make([]wire.Change, 0, len(f.visible))
	for _, e := range f.ordered() {
		b, had := base[e.id]
		switch {
		case !had:
			changes = append(changes, wire.Change{Kind: wire.KindAdded, ID: e.id, Path: e.path, Data: e.data, UpdateTime: e.updateStr})
		case b.path != e.path || !b.updateTime.Equal(e.updateTime):
			changes = append(changes, wire.Change{Kind: wire.KindModified, ID: e.id, Path: e.path, Data: e.data, UpdateTime: e.updateStr})
		}
	}
	var gone []string
	for id := range base {
		if f.visible[id] == nil {
			gone = append(gone, id)
		}
	}
	slices.SortFunc(gone, func(a, b string) int { return feedCmpPos(base[a].pos, base[b].pos) })
	for _, id := range gone {
		changes = append(changes, wire.Change{Kind: wire.KindRemoved, ID: id, Path: base[id].path})
	}
	return &Message{Frame: wire.ChangesFrame(f.seq, time.Time{}, changes), Seq: f.seq}
}
