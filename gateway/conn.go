package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// frameBufs holds the buffers writers splice frames into; a writer holds
// one only while it writes a batch, so idle connections pin none.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// noSeq marks a subscription with no complete state at the client (its
// snapshot was cut short); a catch-up from it is a fresh snapshot.
const noSeq = math.MaxUint64

// subscription is one client subscription on one connection. It implements
// subscriptions.Subscriber. lagging, takenSeq and catchUpFrom are guarded
// by the connection's queue mutex.
type subscription struct {
	id     string
	quoted []byte
	c      *conn
	req    wire.ClientMessage
	scope  string // "org" | "user"
	key    string
	hs     atomic.Pointer[subscriptions.Subscription]
	closed atomic.Bool

	lagging     bool
	takenSeq    uint64
	catchUpFrom uint64
	// gen counts the Feeds the subscription was attached to (each brings a
	// `subscribed`); a catch-up scheduled under an older gen is stale.
	gen        uint64
	catchUpGen uint64
}

// Lagging implements subscriptions.Lagger: whether the subscription is
// dropping live frames until a catch-up (so a Move must send a snapshot).
func (s *subscription) Lagging() bool {
	s.c.q.mu.Lock()
	defer s.c.q.mu.Unlock()
	return s.lagging
}

// Deliver implements subscriptions.Subscriber; it never blocks.
func (s *subscription) Deliver(m *subscriptions.Message, catchUp bool) {
	s.c.q.pushMsg(s, m, catchUp)
}

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
	wbuf       []byte

	// Guarded by mu: expiry timers (re-armed by refreshes and webhooks).
	warnTimer    Timer
	expireTimer  Timer
	closedTimers bool

	writers  sync.WaitGroup // the writer goroutine, while one runs
	closeWhy atomic.Pointer[string]
}

func (s *Server) newConn(ws *websocket.Conn, tr transport, ip string, start time.Time) *conn {
	id := s.nextConnID.Add(1)
	c := &conn{
		s: s, id: id, ws: ws, tr: tr, ip: ip, start: start,
		log:        s.log.With("conn", id),
		subs:       make(map[string]*subscription),
		msgLimiter: rate.NewLimiter(s.cfg.Limits.MessagesPerConn, s.cfg.Limits.MessageBurst),
	}
	c.q = newSendQueue(s.cfg.SendQueueMessages, s.cfg.SendQueueBytes, func(action string) {
		s.m.QueueOverflows[action].Inc()
	})
	c.q.spawn = func() {
		c.writers.Add(1)
		go c.writeLoop()
	}
	c.ctx, c.cancel = context.WithCancel(s.baseCtx)
	return c
}

// serve runs the connection until it ends. token is what the handshake
// carried ("" to wait for an `auth` message).
//
// The caller has called open (so drain sees the connection at once) and
// runs serve on a fresh goroutine after the HTTP handler returned: the
// upgrade request is not kept alive, and the read loop's stack stays
// small because everything deep (token verification, policy, JSON) runs
// in offStack.
func (c *conn) serve(token string) {
	s := c.s

	c.ws.SetReadLimit(s.cfg.MaxMessageBytes)
	if token != "" {
		var ok bool
		offStack(func() { ok = c.authenticate(token, true) })
		if !ok {
			c.drainReads()
			return
		}
	} else {
		c.authTimer = s.clock.AfterFunc(s.cfg.AuthTimeout, func() {
			if c.principal.Load() == nil {
				s.m.Handshakes["unauthorized"].Inc()
				s.m.AuthFailures[authz.ReasonMissing].Inc()
				c.closeWith(wire.CloseUnauthenticated, "authentication timeout", "auth_invalid", false)
			}
		})
	}
	for {
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			c.noteReadError(err)
			return
		}
		if typ != websocket.MessageText {
			s.m.ClientMessages["invalid"].Inc()
			if c.allowMessage() {
				c.sendError("", wire.CodeBadRequest, "binary frames are not supported; send JSON text frames", 0)
			}
			continue
		}
		offStack(func() { c.handle(data) })
	}
}

// offStack runs f on a short-lived goroutine and waits for it, so the
// stack growth of deep work (RSA, JSON, CEL) dies with that goroutine
// instead of staying with the long-lived read loop of every idle
// connection.
func offStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
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

// drainReads keeps reading after a close was requested so the close
// handshake can complete.
func (c *conn) drainReads() {
	for {
		if _, _, err := c.ws.Read(c.ctx); err != nil {
			return
		}
	}
}

// noteReadError records why the read loop ended unless the server already
// decided (the first reason wins): a frame over the read limit (which
// coder/websocket answers with 1009 itself), else the client went away.
func (c *conn) noteReadError(err error) {
	why := "client" // its close frame, EOF or a reset
	if websocket.CloseStatus(err) == websocket.StatusMessageTooBig || isReadLimitErr(err) {
		why = "too_big"
	}
	c.setWhy(why)
}

func isReadLimitErr(err error) bool {
	return err != nil && containsAny(err.Error(), "read limited at", "message too big")
}

func (c *conn) setWhy(why string) {
	c.closeWhy.CompareAndSwap(nil, &why)
}

// closeWith asks the writer to close the connection with code and reason
// (the first request wins) and records why for disconnects_total.
func (c *conn) closeWith(code int, reason, why string, immediate bool) {
	c.setWhy(why)
	c.q.requestClose(closeRequest{code: code, reason: reason, why: why, immediate: immediate})
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
	why := "client"
	if p := c.closeWhy.Load(); p != nil {
		why = *p
	}
	s.m.Disconnects[why].Inc()
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

func (c *conn) handle(data []byte) {
	s := c.s
	m, err := wire.DecodeClient(data)
	if err != nil {
		s.m.ClientMessages["invalid"].Inc()
		if !c.allowMessage() {
			return
		}
		c.sendError(m.ID, wire.CodeBadRequest, err.Error(), 0)
		return
	}
	s.m.ClientMessages[m.Type].Inc()
	if !c.allowMessage() {
		return
	}
	authed := c.principal.Load() != nil
	switch m.Type {
	case wire.TypePing:
		c.sendCtrl(wire.TypePong, wire.Pong{Type: wire.TypePong, ID: m.ID})
	case wire.TypeAuth:
		c.authenticate(m.Token, !authed)
	case wire.TypeSubscribe:
		if !authed {
			c.sendError(m.ID, wire.CodeUnauthorized, "authenticate first: send {\"type\":\"auth\",\"token\":...}", 0)
			return
		}
		c.subscribe(m)
	case wire.TypeUnsubscribe:
		if !authed {
			c.sendError(m.ID, wire.CodeUnauthorized, "authenticate first", 0)
			return
		}
		c.unsubscribe(m.ID)
	}
}

// allowMessage applies the per-connection message rate; persistent abuse
// closes the connection 4008.
func (c *conn) allowMessage() bool {
	s := c.s
	now := s.clock.Now()
	if c.msgLimiter.AllowN(now, 1) {
		c.limitedRun = 0
		return true
	}
	c.limitedRun++
	s.m.RateLimited["messages"].Inc()
	if c.limitedRun >= s.cfg.Limits.AbuseThreshold {
		c.closeWith(wire.CloseRateLimited, "rate limited: messages", "rate_limited", false)
		return false
	}
	r := c.msgLimiter.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	c.sendError("", wire.CodeRateLimited, fmt.Sprintf("messages limit: at most %v per second", float64(s.cfg.Limits.MessagesPerConn)), d)
	return false
}

// acceptFirst admits the connection's first principal: a connection slot
// for the user, metrics, expiry timers and the welcome. It reports whether
// the connection stays open.
func (c *conn) acceptFirst(p *authz.Principal) bool {
	s := c.s
	if !s.users.acquire(p.UserID) {
		s.m.RateLimited["connections_per_user"].Inc()
		s.m.Handshakes["rate_limited"].Inc()
		c.sendError("", wire.CodeRateLimited, fmt.Sprintf("connections_per_user limit: at most %d connections per user", s.cfg.Limits.ConnectionsPerUser), 5*time.Second)
		c.closeWith(wire.CloseRateLimited, "rate limited: connections_per_user", "rate_limited", false)
		return false
	}
	c.userSlot = p.UserID
	c.principal.Store(p)
	s.m.Handshakes["ok"].Inc()
	s.m.HandshakeLatency.Observe(s.clock.Now().Sub(c.start).Seconds())
	c.log.Debug("authenticated", "user", p.UserID)
	c.armExpiry(p)
	c.sendCtrl(wire.TypeWelcome, wire.Welcome{Type: wire.TypeWelcome, UserID: p.UserID, OrgID: p.OrgID, SessionID: p.SessionID, ExpiresAt: p.ExpiresAt.UTC()})
	return true
}

// authenticate verifies token; first says whether this is the
// connection's first authentication. It reports whether the connection
// stays open.
func (c *conn) authenticate(token string, first bool) bool {
	s := c.s
	p, err := s.verifier.Verify(c.ctx, token)
	if err != nil {
		reason := authz.ReasonOf(err)
		s.m.AuthFailures[reason].Inc()
		s.authFails.take(c.ip, 1)
		if first {
			s.m.Handshakes["unauthorized"].Inc()
		}
		s.connLogs.log(c.log, slog.LevelInfo, "authentication failed", "reason", reason, "first", first)
		c.closeWith(wire.CloseUnauthenticated, closeReasonFor(reason), "auth_invalid", false)
		return false
	}
	if first {
		if c.authTimer != nil {
			c.authTimer.Stop()
		}
		return c.acceptFirst(p)
	}
	old := c.principal.Load()
	if old.UserID != p.UserID {
		c.closeWith(wire.CloseUserChanged, "token names another user", "user_changed", false)
		return false
	}
	c.mu.Lock()
	c.principal.Store(p)
	c.mu.Unlock()
	s.m.TokenRefreshes.Inc()
	c.recheck(old, p)
	c.armExpiry(p)
	c.sendCtrl(wire.TypeWelcome, wire.Welcome{Type: wire.TypeWelcome, UserID: p.UserID, OrgID: p.OrgID, SessionID: p.SessionID, ExpiresAt: p.ExpiresAt.UTC()})
	return true
}

func closeReasonFor(reason string) string {
	switch reason {
	case authz.ReasonExpired:
		return "token expired"
	case authz.ReasonMissing:
		return "token missing"
	default:
		return "token invalid: " + reason
	}
}

// armExpiry (re)arms auth_expiring and the 4001 close for p's expiry.
func (c *conn) armExpiry(p *authz.Principal) {
	s := c.s
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closedTimers {
		return
	}
	if c.warnTimer != nil {
		c.warnTimer.Stop()
	}
	if c.expireTimer != nil {
		c.expireTimer.Stop()
	}
	now := s.clock.Now()
	warnIn := max(p.ExpiresAt.Sub(now)-s.cfg.ExpiryWarning, 0)
	exp := p.ExpiresAt
	c.warnTimer = s.clock.AfterFunc(warnIn, func() {
		if c.principal.Load() == p {
			c.sendCtrl(wire.TypeAuthExpiring, wire.AuthExpiring{Type: wire.TypeAuthExpiring, ExpiresAt: exp.UTC()})
		}
	})
	c.expireTimer = s.clock.AfterFunc(max(p.ExpiresAt.Sub(now)+s.cfg.Leeway, 0), func() {
		if c.principal.Load() == p {
			s.m.AuthFailures[authz.ReasonExpired].Inc()
			c.closeWith(wire.CloseUnauthenticated, "token expired", "auth_expired", false)
		}
	})
}

// recheck re-decides every subscription after a refresh (or a policy
// reload, with old == nil): an org change ends org-scoped subscriptions
// with org_changed; a subscription the policy no longer allows ends with
// forbidden; one whose Feed key changed (the filter reads an attribute
// that changed) moves to its new Feed with a fresh `subscribed` and
// snapshot.
func (c *conn) recheck(old, p *authz.Principal) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	subs := make([]*subscription, 0, len(c.subs))
	for _, sub := range c.subs {
		subs = append(subs, sub)
	}
	c.mu.Unlock()
	pol := c.s.policy.Load()
	for _, sub := range subs {
		if sub.closed.Load() {
			continue
		}
		if old != nil && old.OrgID != p.OrgID && sub.scope == "org" {
			c.endWith(sub, wire.ReasonOrgChanged, "the active organization changed; subscribe again")
			continue
		}
		spec, _, err := c.plan(pol, p, sub.req)
		if err != nil {
			c.endWith(sub, wire.ReasonForbidden, "no longer allowed")
			continue
		}
		if spec.Key == sub.key {
			continue
		}
		old := sub.hs.Load()
		if old == nil {
			continue // still subscribing; it planned with the new principal or policy
		}
		sub.key = spec.Key
		hs, err := c.s.hub.Move(old, spec, sub, true)
		if err != nil {
			c.endWith(sub, wire.ReasonUpstreamError, err.Error())
			continue
		}
		sub.hs.Store(hs)
	}
}

// endWith ends a live subscription from the server side.
func (c *conn) endWith(sub *subscription, reason, msg string) {
	c.mu.Lock()
	if c.subs[sub.id] != sub {
		c.mu.Unlock()
		return
	}
	delete(c.subs, sub.id)
	c.mu.Unlock()
	c.endSub(sub)
	f := wire.UnsubscribedFrame(reason, msg)
	c.q.pushCtrl(wire.TypeUnsubscribed, f.AppendTo(nil, sub.quoted))
}

// plan turns a subscribe request into a FeedSpec under policy pol for p.
func (c *conn) plan(pol *authz.Policy, p *authz.Principal, m wire.ClientMessage) (subscriptions.FeedSpec, *authz.Decision, error) {
	dec, err := pol.Decide(p, m.Collection, m.Where)
	if err != nil {
		return subscriptions.FeedSpec{}, nil, err
	}
	where := make([]wire.Filter, 0, len(m.Where))
	for _, f := range m.Where {
		if f.Field != dec.ScopeField {
			where = append(where, f)
		}
	}
	q, err := subscriptions.NormalizeQuery(dec.Collection, where, m.OrderBy, m.Limit, dec.MaxLimit)
	if err != nil {
		return subscriptions.FeedSpec{}, nil, err
	}
	q = q.WithFilter(wire.Filter{Field: dec.ScopeField, Op: "==", Value: dec.ScopeValue})
	return subscriptions.FeedSpec{
		Query:  q,
		Key:    q.Key() + "\x1f" + dec.KeyAttrs,
		Tenant: dec.Scope + ":" + dec.ScopeValue,
		Filter: dec.Filter,
	}, dec, nil
}

func (c *conn) subscribe(m wire.ClientMessage) {
	s := c.s
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	_, dup := c.subs[m.ID]
	n := len(c.subs)
	c.mu.Unlock()
	if dup {
		c.sendError(m.ID, wire.CodeBadRequest, "subscription id already in use on this connection", 0)
		return
	}
	if n >= s.cfg.Limits.SubscriptionsPerConn {
		s.m.RateLimited["subscriptions"].Inc()
		c.sendError(m.ID, wire.CodeLimitExceeded, fmt.Sprintf("subscriptions limit: at most %d per connection; unsubscribe first", s.cfg.Limits.SubscriptionsPerConn), 0)
		return
	}
	p := c.principal.Load()
	spec, dec, err := c.plan(s.policy.Load(), p, m)
	if err != nil {
		var de *authz.DenyError
		var qe *subscriptions.QueryError
		switch {
		case errors.As(err, &de):
			c.sendError(m.ID, de.Code, de.Msg, 0)
		case errors.As(err, &qe):
			c.sendError(m.ID, wire.CodeBadRequest, qe.Msg, 0)
		default:
			c.s.connLogs.log(c.log, slog.LevelError, "failed to plan subscription", "err", err)
			c.sendError(m.ID, wire.CodeInternal, "internal error", 0)
		}
		return
	}
	sub := &subscription{id: m.ID, quoted: wire.QuoteID(m.ID), c: c, req: m, scope: dec.Scope, key: spec.Key, takenSeq: noSeq}
	c.mu.Lock()
	c.subs[m.ID] = sub
	c.mu.Unlock()
	s.m.SubscriptionsActive.Inc()
	hs, err := s.hub.Subscribe(spec, sub, m.Resume)
	if err != nil {
		c.mu.Lock()
		delete(c.subs, m.ID)
		c.mu.Unlock()
		sub.closed.Store(true)
		s.m.SubscriptionsActive.Dec()
		var le *subscriptions.LimitError
		if errors.As(err, &le) {
			s.m.RateLimited[le.Limit].Inc()
			c.sendError(m.ID, wire.CodeLimitExceeded, fmt.Sprintf("%s limit reached; try again later", le.Limit), le.RetryAfter)
			return
		}
		s.connLogs.log(c.log, slog.LevelError, "failed to subscribe", "err", err)
		c.sendError(m.ID, wire.CodeUnavailable, "could not open the subscription", time.Second)
		return
	}
	sub.hs.Store(hs)
	if sub.closed.Load() {
		// Ended while Subscribe ran (connection closing): detach.
		hs.Unsubscribe()
	}
}

func (c *conn) unsubscribe(id string) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	sub := c.subs[id]
	if sub != nil {
		delete(c.subs, id)
	}
	c.mu.Unlock()
	if sub == nil {
		c.sendError(id, wire.CodeBadRequest, "no such subscription on this connection", 0)
		return
	}
	c.endSub(sub)
	f := wire.UnsubscribedFrame(wire.ReasonClient, "")
	c.q.pushCtrl(wire.TypeUnsubscribed, f.AppendTo(nil, sub.quoted))
}

func (c *conn) sendCtrl(typ string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("failed to encode message", "type", typ, "err", err)
		return
	}
	c.q.pushCtrl(typ, b)
}

func (c *conn) sendError(id, code, msg string, retry time.Duration) {
	e := wire.Error{Type: wire.TypeError, ID: id, Code: code, Message: msg}
	if retry > 0 {
		e.RetryAfterMS = max(retry.Milliseconds(), 1)
	}
	c.sendCtrl(wire.TypeError, e)
}

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
	var idle *time.Timer
	for {
		batch, cr, catchUp, ok := c.q.take()
		if !ok {
			if idle == nil {
				idle = time.NewTimer(writerLinger)
			} else {
				idle.Reset(writerLinger)
			}
			select {
			case <-c.q.wake:
				idle.Stop()
				continue
			case <-idle.C:
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
					s.m.QueueOverflows["disconnect"].Inc()
					c.setWhy("slow_consumer")
				} else {
					c.setWhy("error")
				}
			}
			c.q.kill()
			c.tr.closeNow()
			c.cancel()
			return
		}
		c.q.release(batch)
		if cr != nil {
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
			c.q.mu.Lock()
			stale := sub.gen != sub.catchUpGen
			if hs == nil && !stale {
				c.q.markLaggingLocked(sub) // Subscribe has not returned yet
			}
			c.q.mu.Unlock()
			if hs != nil && !stale {
				// A Move after the check finds hs detached: a no-op, and the
				// Move itself brings the client up to date.
				hs.CatchUp(sub.catchUpFrom)
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
