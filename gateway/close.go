package gateway

import (
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

// This file holds close causes: why a connection ends, as typed values
// that carry the close code, the close reason sent to the client, and the
// disconnects_total label, so each cause is defined once.
//
// Contract: the first recorded cause wins (setWhy/closeWith use a
// compare-and-swap); closeWith only asks the writer (writer.go) to send
// the close frame, it never touches the socket itself.

// closeCause is one reason a connection ends: the WebSocket close code and
// reason the client sees, the disconnects_total label (also the log text),
// and whether queued frames are dropped first (slow consumer, drain).
type closeCause struct {
	code      int
	reason    string
	why       metrics.DisconnectReason
	immediate bool
}

// The close causes of the gateway, one value each.
var (
	causeAuthTimeout = closeCause{wire.CloseUnauthenticated, "authentication timeout", metrics.DisconnectAuthInvalid, false}
	causeTokenExpiry = closeCause{wire.CloseUnauthenticated, "token expired", metrics.DisconnectAuthExpired, false}
	causeUserChanged = closeCause{wire.CloseUserChanged, "token names another user", metrics.DisconnectUserChanged, false}
	causeMessageRate = closeCause{wire.CloseRateLimited, "rate limited: messages", metrics.DisconnectRateLimited, false}
	causeUserConns   = closeCause{wire.CloseRateLimited, "rate limited: connections_per_user", metrics.DisconnectRateLimited, false}
	causeQueueFull   = closeCause{wire.CloseTooSlow, "too slow: send queue overflow", metrics.DisconnectSlowConsumer, true}
	causeDrain       = closeCause{wire.CloseServiceRestart, "server restarting; reconnect", metrics.DisconnectDrain, true}
)

// causeAuthInvalid is a 4001 for a token that failed verification (reason
// is the client-facing text, e.g. "token invalid: bad_signature").
func causeAuthInvalid(reason string) closeCause {
	return closeCause{wire.CloseUnauthenticated, reason, metrics.DisconnectAuthInvalid, false}
}

// setWhy records why the connection ends for disconnects_total unless a
// cause was already recorded (the first one wins).
func (c *conn) setWhy(why metrics.DisconnectReason) {
	c.closeWhy.CompareAndSwap(0, uint32(why)+1)
}

// why reports the recorded cause; a connection that ended without one was
// ended by its client.
func (c *conn) why() metrics.DisconnectReason {
	if w := c.closeWhy.Load(); w != 0 {
		return metrics.DisconnectReason(w - 1)
	}
	return metrics.DisconnectClient
}

// closeWith asks the writer to close the connection for cause (the first
// request wins) and records the cause for disconnects_total.
func (c *conn) closeWith(cause closeCause) {
	c.setWhy(cause.why)
	c.q.requestClose(cause)
}
