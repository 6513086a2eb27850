package gateway

import (
	"slices"
	"sync"

	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// entry is one queued frame: a subscription-bound shared Message (sub and
// msg set; the writer splices the subscription id in) or a connection-level
// control frame (ctrl set).
type entry struct {
	sub  *subscription
	msg  *subscriptions.Message
	ctrl []byte
	typ  metrics.SentType
}

func (e *entry) size() int {
	if e.msg != nil {
		return e.msg.Size() + len(e.sub.quoted)
	}
	return len(e.ctrl)
}

// droppable reports whether an overflow may drop the entry: live data
// that a catch-up replaces. Control frames, `subscribed` and the final
// `unsubscribed` of a subscription are never dropped.
func (e *entry) droppable() bool {
	return e.msg != nil && !e.msg.End && e.msg.Frame.Type != wire.TypeSubscribed
}

// sendQueue is a connection's bounded send queue. Producers (Feeds, under
// their locks, and the read loop) call push*, which never block; the one
// writer goroutine calls take. mu guards every field and the lagging and
// takenSeq fields of the subscriptions queued here.
//
// Slow-consumer policy ("catch-up, then disconnect"): a live `changes`
// that finds the queue full (messages or bytes) drops every queued data
// frame, marks the subscriptions concerned lagging (live frames for them are
// then discarded at push) and, once the writer has drained the queue, asks
// each Feed for the catch-up since the last seq the writer took. If
// undroppable frames alone exceed four times the bounds, the connection is
// closed 4009.
type sendQueue struct {
	mu    sync.Mutex
	items []entry
	spare []entry
	bytes int
	// fixedN and fixedBytes count the undroppable entries queued: only they
	// can grow the queue past its bounds, so only they are capped hard.
	fixedN     int
	fixedBytes int
	maxItems   int
	maxBytes   int
	lagging    []*subscription
	closeReq   *closeCause
	// running says a writer goroutine is live; dead that none may start
	// again. The writer exists only while there is something to write, so
	// an idle connection costs no writer stack.
	running bool
	dead    bool
	// spawn starts a writer goroutine; it is called with mu held (so that
	// its WaitGroup.Add happens before kill) and must not block.
	spawn func()
	// wake tells a lingering writer that work arrived (capacity 1).
	wake chan struct{}
	// onOverflow is called (without mu) with the action taken.
	onOverflow func(action metrics.OverflowAction)
}

func newSendQueue(maxItems, maxBytes int, onOverflow func(metrics.OverflowAction)) *sendQueue {
	return &sendQueue{maxItems: maxItems, maxBytes: maxBytes, onOverflow: onOverflow, spawn: func() {}, wake: make(chan struct{}, 1)}
}

// wakeLocked starts the writer unless one runs, and nudges it if it
// lingers.
func (q *sendQueue) wakeLocked() {
	if q.dead {
		return
	}
	if !q.running {
		q.running = true
		q.spawn()
		return
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// park stops the writer if there is still nothing to do, and reports
// whether it must exit.
func (q *sendQueue) park() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 || q.closeReq != nil || len(q.lagging) > 0 {
		return false
	}
	q.running = false
	if cap(q.items) > 64 {
		q.items, q.spare = nil, nil // do not pin a burst's slices on an idle connection
	}
	return true
}

// kill forbids new writers; after it returns the caller may wait for the
// running one.
func (q *sendQueue) kill() {
	q.mu.Lock()
	q.dead = true
	q.mu.Unlock()
}

// pushCtrl queues a control frame.
func (q *sendQueue) pushCtrl(typ metrics.SentType, b []byte) {
	q.mu.Lock()
	if q.closeReq != nil {
		q.mu.Unlock()
		return
	}
	q.items = append(q.items, entry{ctrl: b, typ: typ})
	q.bytes += len(b)
	q.fixedN++
	q.fixedBytes += len(b)
	over := q.hardOverLocked()
	q.wakeLocked()
	q.mu.Unlock()
	if over {
		q.overflowDisconnect()
	}
}

// pushMsg queues a subscription-bound message; see Subscriber.Deliver.
func (q *sendQueue) pushMsg(s *subscription, m *subscriptions.Message, catchUp bool) {
	q.mu.Lock()
	if q.closeReq != nil || s.closed.Load() {
		q.mu.Unlock()
		return
	}
	if m.Frame.Type == wire.TypeSubscribed {
		// A (re)attachment to a Feed: whatever was lagging concerned the
		// previous Feed, whose seqs mean nothing here; what follows is a
		// snapshot or a diff against what the client has.
		s.gen++
		if s.lagging {
			s.lagging = false
			q.lagging = slices.DeleteFunc(q.lagging, func(x *subscription) bool { return x == s })
		}
	} else if catchUp {
		s.lagging = false
	} else if s.lagging {
		q.mu.Unlock()
		return
	}
	e := entry{sub: s, msg: m, typ: sentTypeOf(m.Frame.Type)}
	live := !m.ReceivedAt.IsZero()
	if live && (len(q.items) >= q.maxItems || q.bytes+e.size() > q.maxBytes) {
		q.overflowLocked(s)
		over := q.hardOverLocked()
		q.wakeLocked()
		q.mu.Unlock()
		if over {
			q.overflowDisconnect()
			return
		}
		q.onOverflow(metrics.OverflowCatchup)
		return
	}
	q.items = append(q.items, e)
	q.bytes += e.size()
	if !e.droppable() {
		q.fixedN++
		q.fixedBytes += e.size()
	}
	over := q.hardOverLocked()
	q.wakeLocked()
	q.mu.Unlock()
	if over {
		q.overflowDisconnect()
	}
}

// hardOverLocked reports whether undroppable frames alone exceed four
// times the bounds. Data frames never count here: live ones are bounded by
// the overflow policy, snapshots and catch-ups by the subscriptions that
// asked for them (and the next overflow drops them).
func (q *sendQueue) hardOverLocked() bool {
	return q.fixedN > 4*q.maxItems || q.fixedBytes > 4*q.maxBytes
}

func (q *sendQueue) overflowDisconnect() {
	q.onOverflow(metrics.OverflowDisconnect)
	q.requestClose(causeQueueFull)
}

// overflowLocked drops every droppable entry and marks their
// subscriptions (and s) lagging.
func (q *sendQueue) overflowLocked(s *subscription) {
	kept := q.items[:0]
	q.bytes, q.fixedN, q.fixedBytes = 0, 0, 0
	for _, e := range q.items {
		if e.droppable() {
			q.markLaggingLocked(e.sub)
			continue
		}
		kept = append(kept, e)
		q.bytes += e.size()
		q.fixedN++
		q.fixedBytes += e.size()
	}
	clear(q.items[len(kept):])
	q.items = kept
	q.markLaggingLocked(s)
}

// isLagging reports whether s drops live frames until its catch-up.
func (q *sendQueue) isLagging(s *subscription) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return s.lagging
}

// catchUpDue decides a catch-up the writer found scheduled for s: due
// (with the seq to catch up from) when it was scheduled for s's current
// Feed and s is attached to it. A catch-up for an older Feed (a Move
// happened since) is dropped; one for a subscription whose Subscribe has
// not returned yet (not attached) is re-scheduled by marking s lagging
// again.
func (q *sendQueue) catchUpDue(s *subscription, attached bool) (from uint64, due bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if s.gen != s.catchUpGen {
		return 0, false
	}
	if !attached {
		q.markLaggingLocked(s)
		return 0, false
	}
	return s.catchUpFrom, true
}

func (q *sendQueue) markLaggingLocked(s *subscription) {
	if !s.lagging {
		s.lagging = true
		q.lagging = append(q.lagging, s)
	}
}

// requestClose asks the writer to close the connection; the first request
// wins.
func (q *sendQueue) requestClose(r closeCause) {
	q.mu.Lock()
	if q.closeReq == nil {
		q.closeReq = &r
		if r.immediate {
			clear(q.items)
			q.items = q.items[:0]
			q.bytes, q.fixedN, q.fixedBytes = 0, 0, 0
		}
	}
	q.wakeLocked()
	q.mu.Unlock()
}

// take hands the writer everything queued (the returned slice is the
// writer's until the next take), the close request if any, and, when the
// queue is empty, the subscriptions to catch up. When there is nothing at
// all it reports ok=false: the writer then lingers for more work and parks.
func (q *sendQueue) take() (batch []entry, cr *closeCause, catchUp []*subscription, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 && q.closeReq == nil && len(q.lagging) == 0 {
		return nil, nil, nil, false
	}
	batch = q.items
	q.items = q.spare[:0]
	q.spare = batch
	q.bytes, q.fixedN, q.fixedBytes = 0, 0, 0
	for i := range batch {
		e := &batch[i]
		if e.msg == nil {
			continue
		}
		switch e.msg.Frame.Type {
		case wire.TypeSubscribed:
			e.sub.takenSeq = noSeq
		case wire.TypeChanges:
			e.sub.takenSeq = e.msg.Seq
		case wire.TypeSnapshot:
			if e.msg.Frame.FinalChunk() {
				e.sub.takenSeq = e.msg.Seq
			} else {
				e.sub.takenSeq = noSeq
			}
		}
	}
	if len(batch) == 0 && len(q.lagging) > 0 && q.closeReq == nil {
		catchUp = q.lagging
		q.lagging = nil
		for _, s := range catchUp {
			s.catchUpFrom = s.takenSeq
			s.catchUpGen = s.gen
		}
	}
	return batch, q.closeReq, catchUp, true
}

// release clears the writer's batch so the frames can be collected.
func (q *sendQueue) release(batch []entry) {
	clear(batch)
}
