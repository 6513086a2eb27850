package gateway

import (
	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/wire"
)

// The methods below act on Clerk's revocation webhooks (package webhooks
// calls them). Webhooks are best-effort: token expiry stays the backstop.
// They are safe for concurrent use and never block on a connection.

// EndSession closes every connection of the session with 4001.
func (s *Server) EndSession(sessionID string) {
	s.closeMatching(func(p *authz.Principal) bool { return p.SessionID == sessionID }, "session ended")
}

// EndUser closes every connection of the user with 4001.
func (s *Server) EndUser(userID string) {
	s.closeMatching(func(p *authz.Principal) bool { return p.UserID == userID }, "user deleted")
}

func (s *Server) closeMatching(match func(*authz.Principal) bool, reason string) {
	for _, c := range s.snapshotConns() {
		if p := c.principal.Load(); p != nil && match(p) {
			c.closeWith(causeAuthInvalid(reason))
		}
	}
}

// EndMembership ends the user's org-scoped subscriptions in orgID with
// `unsubscribed` reason forbidden, and refuses new ones on those
// connections until a token without that org arrives.
func (s *Server) EndMembership(userID, orgID string) {
	for _, c := range s.snapshotConns() {
		p := c.principal.Load()
		if p == nil || p.UserID != userID || p.OrgID != orgID {
			continue
		}
		revoked := *p
		revoked.OrgID, revoked.OrgSlug, revoked.OrgRole, revoked.OrgPermissions = "", "", "", nil
		c.replacePrincipal(p, &revoked, wire.ReasonForbidden)
	}
}

// UpdateMembership re-checks the user's subscriptions in orgID against the
// new role and permissions.
func (s *Server) UpdateMembership(userID, orgID, role string, permissions []string) {
	for _, c := range s.snapshotConns() {
		p := c.principal.Load()
		if p == nil || p.UserID != userID || p.OrgID != orgID {
			continue
		}
		updated := *p
		updated.OrgRole, updated.OrgPermissions = role, append([]string(nil), permissions...)
		c.replacePrincipal(p, &updated, "")
	}
}

// replacePrincipal swaps in a principal derived from a webhook and
// re-checks subscriptions; an org removal ends org-scoped ones with reason.
// Expiry timers keep following the token (same ExpiresAt).
func (c *conn) replacePrincipal(old, p *authz.Principal, reason string) {
	c.mu.Lock()
	if !c.principal.CompareAndSwap(old, p) {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if reason != "" {
		c.opMu.Lock()
		c.mu.Lock()
		var ended []*subscription
		for _, sub := range c.subs {
			if sub.scope == "org" {
				ended = append(ended, sub)
			}
		}
		c.mu.Unlock()
		for _, sub := range ended {
			c.endWith(sub, reason, "organization membership ended")
		}
		c.opMu.Unlock()
	}
	c.recheck(nil, p)
	c.armExpiry(p)
}
