package gateway

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/metrics"
	"golang.org/x/time/rate"
)

// This file holds the connection's lifecycle: the conn type, its creation,
// registration with the server (open) and the teardown that detaches every
// subscription and counts the disconnect (cleanup). Reading lives in
// read.go, authentication in auth.go, subscriptions in subscribe.go, the
// writer in writer.go and close causes in close.go.
//
// Contract: a conn is created by newConn, registered by open (whose returned
// func ends it exactly once), and served by serve on its own goroutine.
// Lock order: opMu, then Feed locks, then the send queue's mutex; mu is a
// leaf.

// conn is one client connection. The read loop (serve) owns authentication
// state and handles client messages; the writer goroutine alone writes to
// the socket. mu guards subs and principal writes.
type conn struct {
	s   *Server
	id  uint64
	ws  *websocket.Conn // nil for SSE
	tr  transport
	ip  string
	log *slog.Logger
	q   *sendQueue

	ctx    context.Context
	cancel context.CancelFunc

	// opMu serializes what changes subscriptions: subscribe, unsubscribe
	// and re-checks (which may come from the read loop, a policy reload or
	// a webhook at once). Lock order: opMu, then Feed locks, then the queue
	// mutex; mu is a leaf.
	opMu      sync.Mutex
	mu        sync.Mutex
	subs      map[string]*subscription
	principal atomic.Pointer[authz.Principal]

	// Read-loop state.
	start      time.Time
	userSlot   string
	msgLimiter *rate.Limiter
	limitedRun int
	authTimer  Timer
	// writeLimiter is the per-connection write rate (write.go), made on
	// the first write; read-loop only.
	writeLimiter *rate.Limiter

	// Guarded by mu: expiry timers (re-armed by refreshes and webhooks).
	warnTimer    Timer
	expireTimer  Timer
	closedTimers bool

	writers sync.WaitGroup // the writer goroutine, while one runs
	// closeWhy is the recorded close cause plus one (0: none yet); see
	// close.go.
	closeWhy atomic.Uint32
}

func (s *Server) newConn(ws *websocket.Conn, tr transport, ip string, start time.Time) *conn {
	id := s.nextConnID.Add(1)
	c := &conn{
		s: s, id: id, ws: ws, tr: tr, ip: ip, start: start,
		log:        s.log.With("conn", id),
		subs:       make(map[string]*subscription),
		msgLimiter: rate.NewLimiter(s.cfg.Limits.MessagesPerConn, s.cfg.Limits.MessageBurst),
	}
	c.q = newSendQueue(s.cfg.SendQueueMessages, s.cfg.SendQueueBytes, func(action metrics.OverflowAction) {
		s.m.QueueOverflows[action].Inc()
	})
	c.q.spawn = func() {
		c.writers.Add(1)
		go c.writeLoop()
	}
	c.ctx, c.cancel = context.WithCancel(s.baseCtx)
	return c
}

// open registers the connection and returns what ends it: stop the writer,
// detach every subscription, unregister, count.
func (c *conn) open() (end func()) {
	s := c.s
	s.m.ConnectionsActive.Inc()
	s.track(c, true)
	return func() {
		c.cancel()
		c.q.kill()
		c.writers.Wait()
		c.cleanup()
		s.track(c, false)
		s.m.ConnectionsActive.Dec()
	}
}

func (c *conn) cleanup() {
	s := c.s
	c.opMu.Lock() // no re-check may move a subscription of a closing connection
	defer c.opMu.Unlock()
	c.mu.Lock()
	c.closedTimers = true
	for _, t := range []Timer{c.authTimer, c.warnTimer, c.expireTimer} {
		if t != nil {
			t.Stop()
		}
	}
	subs := c.subs
	c.subs = map[string]*subscription{}
	c.mu.Unlock()
	for _, sub := range subs {
		c.endSub(sub)
	}
	if c.userSlot != "" {
		s.users.release(c.userSlot)
	}
	s.m.Disconnects[c.why()].Inc()
	c.tr.closeNow()
}

// endSub detaches a subscription from its Feed; the caller has removed it
// from c.subs.
func (c *conn) endSub(sub *subscription) {
	if sub.closed.Swap(true) {
		return
	}
	if hs := sub.hs.Load(); hs != nil {
		hs.Unsubscribe()
	}
	c.s.m.SubscriptionsActive.Dec()
}
