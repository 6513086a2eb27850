package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

// This file holds the writer: the one goroutine that writes to the socket.
// It takes batches from the send queue (queue.go), splices each shared frame's
// subscription id in, writes the batch in one socket write, applies the
// slow-consumer policy on write deadlines, and asks Feeds for catch-ups.
//
// Contract: at most one writer runs per connection (the queue's running
// flag); it exists only while there is work plus writerLinger. sendCtrl and
// sendError may be called from any goroutine: they only queue.

// frameBufs holds the buffers writers splice frames into; a writer holds
// one only while it writes a batch, so idle connections pin none.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// writerLinger is how long an idle writer waits for more work before it
// exits: a connection that receives changes every few seconds keeps one
// writer, an idle one keeps none.
const writerLinger = 3 * time.Second

// writeLoop is the only goroutine that writes to the socket. It runs
// only while the queue has work (plus writerLinger): then it parks, and
// the next push starts a new one.
func (c *conn) writeLoop() {
	defer c.writers.Done()
	s := c.s
	for {
		batch, cr, catchUp, ok := c.q.take()
		if !ok {
			lingered := make(chan struct{})
			idle := s.clock.AfterFunc(writerLinger, func() { close(lingered) })
			select {
			case <-c.q.wake:
				idle.Stop()
				continue
			case <-lingered:
			case <-c.ctx.Done():
				idle.Stop()
			}
			// Clear the socket deadline before parking: once parked, a new
			// writer may start and set its own.
			c.tr.idle()
			if c.q.park() {
				return
			}
			continue
		}
		if err := c.writeBatch(batch); err != nil {
			c.q.release(batch)
			if c.ctx.Err() == nil {
				// A write that cannot finish within SlowConsumerTimeout: the
				// context's deadline, or the socket's (batched writes).
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
					s.m.QueueOverflows[metrics.OverflowDisconnect].Inc()
					c.setWhy(metrics.DisconnectSlowConsumer)
				} else {
					c.setWhy(metrics.DisconnectError)
				}
			}
			c.q.kill()
			c.tr.closeNow()
			c.cancel()
			return
		}
		c.q.release(batch)
		if cr != nil {
			c.setWhy(cr.why) // a cause the queue itself raised (4009)
			c.q.kill()
			c.tr.close(cr.code, cr.reason)
			c.cancel()
			return
		}
		for _, sub := range catchUp {
			if sub.closed.Load() {
				continue
			}
			hs := sub.hs.Load()
			if from, due := c.q.catchUpDue(sub, hs != nil); due {
				// A Move after the check finds hs detached: a no-op, and the
				// Move itself brings the client up to date.
				hs.CatchUp(from)
			}
		}
	}
}

func (c *conn) writeBatch(batch []entry) error {
	if len(batch) == 0 {
		return nil
	}
	s := c.s
	ctx := c.ctx
	c.tr.begin(s.cfg.SlowConsumerTimeout)
	bp := frameBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			frameBufs.Put(bp)
		}
	}()
	for i := range batch {
		e := &batch[i]
		var b []byte
		if e.msg != nil {
			if e.sub.closed.Load() && !e.msg.End {
				continue
			}
			*bp = e.msg.Frame.AppendTo((*bp)[:0], e.sub.quoted)
			b = *bp
		} else {
			b = e.ctrl
		}
		if err := c.tr.write(ctx, e, b); err != nil {
			return err
		}
		s.m.MessagesSent[e.typ].Inc()
		s.m.BytesSent.Add(float64(len(b)))
		if e.msg != nil {
			if !e.msg.ReceivedAt.IsZero() {
				s.m.FanoutLatency.Observe(s.clock.Now().Sub(e.msg.ReceivedAt).Seconds())
			}
			if e.msg.End {
				c.mu.Lock()
				if c.subs[e.sub.id] == e.sub {
					delete(c.subs, e.sub.id)
				}
				c.mu.Unlock()
				if !e.sub.closed.Swap(true) {
					s.m.SubscriptionsActive.Dec()
				}
			}
		}
	}
	return c.tr.flush()
}

func (c *conn) sendCtrl(typ string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("failed to encode message", "type", typ, "err", err)
		return
	}
	c.q.pushCtrl(sentTypeOf(typ), b)
}

func (c *conn) sendError(id, code, msg string, retry time.Duration) {
	e := wire.Error{Type: wire.TypeError, ID: id, Code: code, Message: msg}
	if retry > 0 {
		e.RetryAfterMS = max(retry.Milliseconds(), 1)
	}
	c.sendCtrl(wire.TypeError, e)
}
