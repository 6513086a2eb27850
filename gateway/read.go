package gateway

import (
	"errors"
	"fmt"

	"github.com/coder/websocket"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

// This file holds the read side: the read loop (serve), the per-connection
// message rate, and the dispatch of decoded client messages to auth.go and
// subscribe.go.
//
// Contract: exactly one goroutine (the read loop) runs serve and handle;
// deep work runs in offStack so the long-lived read loop keeps a small
// stack. Nothing here writes to the socket: replies go through the send
// queue (writer.go).

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
		offStack(func() { ok = c.authenticate("", token, true) })
		if !ok {
			c.drainReads()
			return
		}
	} else {
		c.authTimer = s.clock.AfterFunc(s.cfg.AuthTimeout, func() {
			if c.principal.Load() == nil {
				s.m.Handshakes[metrics.HandshakeUnauthorized].Inc()
				s.m.AuthFailures[metrics.AuthMissing].Inc()
				c.closeWith(causeAuthTimeout)
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
			s.m.ClientMessages[metrics.ClientInvalid].Inc()
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
	why := metrics.DisconnectClient // its close frame, EOF or a reset
	if websocket.CloseStatus(err) == websocket.StatusMessageTooBig || errors.Is(err, websocket.ErrMessageTooBig) {
		why = metrics.DisconnectTooBig
	}
	c.setWhy(why)
}

func (c *conn) handle(data []byte) {
	s := c.s
	m, err := wire.DecodeClient(data)
	if err != nil {
		s.m.ClientMessages[metrics.ClientInvalid].Inc()
		if !c.allowMessage() {
			return
		}
		var we *wire.WriteDecodeError
		if errors.As(err, &we) {
			c.sendWriteDecodeError(m.ID, we)
			return
		}
		c.sendError(m.ID, wire.CodeBadRequest, err.Error(), 0)
		return
	}
	s.m.ClientMessages[clientTypeOf(m.Type)].Inc()
	if !c.allowMessage() {
		return
	}
	authed := c.principal.Load() != nil
	switch m.Type {
	case wire.TypePing:
		c.sendCtrl(wire.TypePong, wire.Pong{Type: wire.TypePong, ID: m.ID})
	case wire.TypeAuth:
		c.authenticate(m.ID, m.Token, !authed)
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
	case wire.TypeWrite:
		if !authed {
			c.sendError(m.ID, wire.CodeUnauthorized, "authenticate first", 0)
			return
		}
		c.write(m)
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
	s.m.RateLimited[metrics.LimitMessages].Inc()
	if c.limitedRun >= s.cfg.Limits.AbuseThreshold {
		c.closeWith(causeMessageRate)
		return false
	}
	r := c.msgLimiter.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	c.sendError("", wire.CodeRateLimited, fmt.Sprintf("messages limit: at most %v per second", float64(s.cfg.Limits.MessagesPerConn)), d)
	return false
}
