package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/revocation"
	"github.com/firegate/firegate/wire"
)

// This file holds revocations: Clerk's webhooks (package webhooks calls
// Revoke and UpdateMembership) and the revocations other instances share
// through the Store (revocation.Sync adds them).
//
// Contract: a revocation is recorded in the Store first, then every
// connection whose principal it names is re-checked under its opMu (Store
// watcher applyRevocation). Authentication checks the Store after verifying,
// installs the principal under the same opMu (auth.go), and checks the
// Store once more after the install. So a token is either refused when it
// arrives, or installed before the watcher looks (which then finds it), or
// installed after — and then the post-install check, which follows the
// recording, finds the revocation: a revocation racing a refresh is never
// lost.
//
// What a revocation does to a token issued at or before it:
//   - session or user: 4001 "session revoked" (handshake, refresh or live);
//   - membership or org: the principal loses its active org (org-scoped
//     subscriptions end `forbidden`, new ones are refused `forbidden`); the
//     connection stays, for user-scoped subscriptions.

// Publisher shares a revocation with the other instances;
// *revocation.Sync implements it.
type Publisher interface {
	Publish(ctx context.Context, r revocation.Revocation) error
}

// causeRevoked closes a connection whose session or user was revoked.
var causeRevoked = closeCause{wire.CloseUnauthenticated, "session revoked", metrics.DisconnectAuthInvalid, false}

// errPublish wraps a failed Publish.
var errPublish = errors.New("failed to share the revocation with other instances")

// Revoke records r in the Store (which ends what it covers on this
// instance before Revoke returns) and publishes it to the other instances.
// The error is the publication's: the revocation is in force here anyway,
// and a webhook retry publishes it again.
func (s *Server) Revoke(ctx context.Context, r revocation.Revocation) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("failed to revoke: %w", err)
	}
	s.revocations.Add(r)
	if s.publisher == nil {
		return nil
	}
	if err := s.publisher.Publish(ctx, r); err != nil {
		return fmt.Errorf("%w: %w", errPublish, err)
	}
	return nil
}

// Revocations returns the Store the gateway checks tokens against.
func (s *Server) Revocations() *revocation.Store { return s.revocations }

// applyRevocation re-checks every connection r may concern. It is the
// Store's watcher: it runs after r was recorded, on the goroutine that
// recorded it (a webhook request or the Sync listener). It skips, without
// taking their lock, connections whose principal r does not name; a
// principal installed after that look is checked by the authentication
// that installed it (acceptFirst and authenticate re-check the Store once
// the principal is in force), so no connection escapes r.
func (s *Server) applyRevocation(r revocation.Revocation) {
	for _, c := range s.snapshotConns() {
		if p := c.principal.Load(); p != nil && names(r, p) {
			c.enforceRevocations()
		}
	}
}

// names reports whether r concerns p.
func names(r revocation.Revocation, p *authz.Principal) bool {
	switch r.Kind {
	case revocation.KindSession:
		return p.SessionID == r.ID
	case revocation.KindUser:
		return p.UserID == r.ID
	case revocation.KindMembership:
		return p.UserID == r.ID && p.OrgID == r.OrgID
	case revocation.KindOrg:
		return p.OrgID == r.ID
	}
	return false
}

// enforceRevocations applies the Store to the principal in force.
func (c *conn) enforceRevocations() {
	c.opMu.Lock()
	p := c.principal.Load()
	if p == nil {
		c.opMu.Unlock()
		return
	}
	q, ok := c.s.checkRevoked(p)
	if !ok {
		c.s.m.AuthFailures[metrics.AuthRevoked].Inc()
		c.opMu.Unlock()
		c.closeWith(causeRevoked)
		return
	}
	if q == p {
		c.opMu.Unlock()
		return
	}
	c.mu.Lock()
	c.principal.Store(q)
	var ended []*subscription
	for _, sub := range c.subs {
		if sub.scope == authz.ScopeOrg {
			ended = append(ended, sub)
		}
	}
	c.mu.Unlock()
	for _, sub := range ended {
		c.endWith(sub, wire.ReasonForbidden, "organization membership revoked")
	}
	c.opMu.Unlock()
	c.recheck(nil, q)
	c.armExpiry(q)
}

// checkRevoked applies the Store to a verified principal: ok is false when
// its session or user is revoked; otherwise q is p, or p without its
// active org when that membership or org is revoked.
func (s *Server) checkRevoked(p *authz.Principal) (q *authz.Principal, ok bool) {
	if _, revoked := s.revocations.Session(p.UserID, p.SessionID, p.IssuedAt); revoked {
		return nil, false
	}
	if _, revoked := s.revocations.Org(p.UserID, p.OrgID, p.IssuedAt); revoked {
		return withoutOrg(p), true
	}
	return p, true
}

// orgClaims are the claims that carry the active org (v1 and v2 tokens).
var orgClaims = []string{"org_id", "org_slug", "org_role", "org_permissions", "o"}

// withoutOrg returns a copy of p without its active organization, in the
// Principal's fields and in its raw claims (which policies read as
// auth.claims).
func withoutOrg(p *authz.Principal) *authz.Principal {
	q := *p
	q.OrgID, q.OrgSlug, q.OrgRole, q.OrgPermissions = "", "", "", nil
	q.Claims = maps.Clone(p.Claims)
	for _, k := range orgClaims {
		delete(q.Claims, k)
	}
	return &q
}

// UpdateMembership re-checks the user's subscriptions in orgID against the
// new role and permissions (organizationMembership.updated). It is
// instance-local and best-effort: the next token carries the new role
// anyway.
func (s *Server) UpdateMembership(userID, orgID, role string, permissions []string) {
	for _, c := range s.snapshotConns() {
		p := c.principal.Load()
		if p == nil || p.UserID != userID || p.OrgID != orgID {
			continue
		}
		updated := *p
		updated.OrgRole, updated.OrgPermissions = role, append([]string(nil), permissions...)
		c.replacePrincipal(p, &updated)
	}
}

// replacePrincipal swaps in a principal derived from a webhook and
// re-checks subscriptions. Expiry timers keep following the token (same
// ExpiresAt).
func (c *conn) replacePrincipal(old, p *authz.Principal) {
	c.opMu.Lock()
	c.mu.Lock()
	swapped := c.principal.CompareAndSwap(old, p)
	c.mu.Unlock()
	c.opMu.Unlock()
	if !swapped {
		return
	}
	c.recheck(nil, p)
	c.armExpiry(p)
}
