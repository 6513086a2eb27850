package gateway

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

// This file holds authentication: the first token (acceptFirst), in-band
// refresh (authenticate), and the expiry timers (auth_expiring, then 4001).
//
// Contract: authenticate runs on the read loop (or from a handshake before
// it starts). After verifying, it checks the revocation Store and installs
// the principal under opMu (then swapped under mu), so a revocation recorded
// meanwhile is either seen here or finds the new principal when its
// re-check takes opMu (revoke.go). A refresh never installs a token issued
// before the one in force (it answers `error` unauthorized and keeps the old
// principal). Timers are re-armed under mu and never after cleanup
// (closedTimers). `welcome` is queued before the expiry timers are armed, so
// `auth_expiring` can never precede it.

// acceptFirst admits the connection's first principal: a connection slot
// for the user, metrics, expiry timers and the welcome. It reports whether
// the connection stays open.
func (c *conn) acceptFirst(p *authz.Principal) bool {
	c.opMu.Lock()
	ok := c.acceptFirstLocked(p)
	c.opMu.Unlock()
	if ok {
		// A revocation recorded after the check above but before the
		// install may have skipped this connection (it had no principal
		// yet): look again now that the principal is in force.
		c.enforceRevocations()
	}
	return ok
}

// acceptFirstLocked is acceptFirst under opMu.
func (c *conn) acceptFirstLocked(p *authz.Principal) bool {
	s := c.s
	p, ok := s.checkRevoked(p)
	if !ok {
		s.m.AuthFailures[metrics.AuthRevoked].Inc()
		s.m.Handshakes[metrics.HandshakeUnauthorized].Inc()
		s.connLogs.log(c.log, slog.LevelInfo, "authentication failed", "reason", "revoked", "first", true)
		c.closeWith(causeRevoked)
		return false
	}
	if !s.users.acquire(p.UserID) {
		s.m.RateLimited[metrics.LimitConnectionsPerUser].Inc()
		s.m.Handshakes[metrics.HandshakeRateLimited].Inc()
		c.sendError("", wire.CodeRateLimited, fmt.Sprintf("connections_per_user limit: at most %d connections per user", s.cfg.Limits.ConnectionsPerUser), 5*time.Second)
		c.closeWith(causeUserConns)
		return false
	}
	c.userSlot = p.UserID
	c.principal.Store(p)
	s.m.Handshakes[metrics.HandshakeOK].Inc()
	s.m.HandshakeLatency.Observe(s.clock.Now().Sub(c.start).Seconds())
	c.log.Debug("authenticated", "user", p.UserID)
	c.sendWelcome(p)
	c.armExpiry(p) // after welcome: auth_expiring never precedes it
	return true
}

// authenticate verifies token; first says whether this is the
// connection's first authentication, id is the `auth` message's id (for
// an `error` answer). It reports whether the connection stays open.
func (c *conn) authenticate(id, token string, first bool) bool {
	s := c.s
	p, err := s.verifier.Verify(c.ctx, token)
	if err != nil {
		reason := authz.ReasonOf(err)
		s.m.AuthFailures[authFailOf(reason)].Inc()
		s.authFails.take(c.ip, 1)
		if first {
			s.m.Handshakes[metrics.HandshakeUnauthorized].Inc()
		}
		s.connLogs.log(c.log, slog.LevelInfo, "authentication failed", "reason", reason, "first", first)
		c.closeWith(causeAuthInvalid(closeReasonFor(reason)))
		return false
	}
	if first {
		if c.authTimer != nil {
			c.authTimer.Stop()
		}
		return c.acceptFirst(p)
	}
	c.opMu.Lock()
	old := c.principal.Load()
	if old.UserID != p.UserID {
		c.opMu.Unlock()
		c.closeWith(causeUserChanged)
		return false
	}
	if p.IssuedAt.Before(old.IssuedAt) {
		// A rollback to an older token (say, one with a higher role from
		// before a demotion): refused, the newer token stays in force.
		c.opMu.Unlock()
		s.connLogs.log(c.log, slog.LevelInfo, "token refused", "reason", "older than the token in force")
		c.sendError(id, wire.CodeUnauthorized, "token refused: issued before the token in force (iat); send a newer token", 0)
		return true
	}
	p, ok := s.checkRevoked(p)
	if !ok {
		c.opMu.Unlock()
		s.m.AuthFailures[metrics.AuthRevoked].Inc()
		s.connLogs.log(c.log, slog.LevelInfo, "authentication failed", "reason", "revoked", "first", false)
		c.closeWith(causeRevoked)
		return false
	}
	c.mu.Lock()
	c.principal.Store(p)
	c.mu.Unlock()
	c.opMu.Unlock()
	s.m.TokenRefreshes.Inc()
	c.recheck(old, p)
	c.sendWelcome(p)
	c.armExpiry(p) // after welcome: auth_expiring never precedes it
	// A revocation recorded after the check above but before the install
	// may have skipped this connection (it matched the old principal's
	// session or org, not the new one's): look again.
	c.enforceRevocations()
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

// sendWelcome queues `welcome` for p (after the first authentication and
// after every refresh).
func (c *conn) sendWelcome(p *authz.Principal) {
	c.sendCtrl(wire.TypeWelcome, wire.Welcome{Type: wire.TypeWelcome, UserID: p.UserID, OrgID: p.OrgID, SessionID: p.SessionID, ExpiresAt: p.ExpiresAt.UTC()})
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
			s.m.AuthFailures[metrics.AuthExpired].Inc()
			c.closeWith(causeTokenExpiry)
		}
	})
}
