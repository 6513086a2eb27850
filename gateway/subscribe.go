package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// This file holds subscription planning and its re-checks: turning a
// subscribe request into a FeedSpec under the current policy (plan),
// subscribe and unsubscribe, and re-deciding every subscription after a
// refresh or a policy reload (recheck).
//
// Contract: everything that changes a connection's subscriptions holds
// opMu (subscribe, unsubscribe, recheck, cleanup), so a refresh, a policy
// reload and a webhook cannot interleave. subscription.lagging, takenSeq,
// catchUpFrom, gen and catchUpGen are guarded by the send queue's mutex
// (queue.go's methods).

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
	return s.c.q.isLagging(s)
}

// Deliver implements subscriptions.Subscriber; it never blocks.
func (s *subscription) Deliver(m *subscriptions.Message, catchUp bool) {
	s.c.q.pushMsg(s, m, catchUp)
}

// recheck re-decides every subscription after a refresh (or a policy
// reload, with old == nil): an org change ends org-scoped subscriptions
// with org_changed; a subscription the policy no longer allows (or whose
// limit it no longer can honour) ends with forbidden; one whose Feed key
// changed (the filter reads an attribute that changed, or a reload
// changed its rule) moves to its new Feed with `subscribed` resumed=true
// and the exact diff (Hub.Move): documents it may no longer see are
// `removed`. It plans with the principal in force when it holds opMu (p
// only stands in before one is installed), so a re-check that runs late
// never plans with a principal a revocation or a newer refresh replaced.
func (c *conn) recheck(old, p *authz.Principal) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if cur := c.principal.Load(); cur != nil {
		p = cur // a refresh or revocation since the caller's swap: plan with what is in force
	}
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
		spec, _, _, err := c.plan(pol, p, sub.req)
		if err != nil {
			msg := "no longer allowed"
			var qe *subscriptions.QueryError
			if errors.As(err, &qe) {
				msg = "no longer allowed: " + qe.Msg
			}
			c.endWith(sub, wire.ReasonForbidden, msg)
			continue
		}
		if spec.Key == sub.key {
			continue
		}
		prev := sub.hs.Load()
		if prev == nil {
			continue // still subscribing; it planned with the new principal or policy
		}
		sub.key = spec.Key
		hs, err := c.s.hub.Move(prev, spec, sub, true)
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
	c.q.pushCtrl(metrics.SentUnsubscribed, f.AppendTo(nil, sub.quoted))
}

// plan turns a subscribe request (a collection query or a document) into a
// FeedSpec under policy pol for p: the policy decides (scope, allow, the
// filter's residual for p) and subscriptions.Plan builds the query and
// the Feed key. The FilterWhere says where the policy filter runs.
func (c *conn) plan(pol *authz.Policy, p *authz.Principal, m wire.ClientMessage) (subscriptions.FeedSpec, *authz.Decision, subscriptions.FilterWhere, error) {
	coll, docID := m.Collection, ""
	if m.Doc != "" {
		var err error
		if coll, docID, err = wire.SplitDocPath(m.Doc); err != nil {
			return subscriptions.FeedSpec{}, nil, 0, &subscriptions.QueryError{Msg: err.Error()}
		}
	}
	dec, err := pol.Decide(p, coll, m.Where)
	if err != nil {
		return subscriptions.FeedSpec{}, nil, 0, err
	}
	spec, where, err := subscriptions.Plan(subscriptions.PlanRequest{
		Collection:    dec.Collection,
		DocID:         docID,
		Where:         m.Where,
		OrderBy:       m.OrderBy,
		Limit:         m.Limit,
		MaxLimit:      dec.MaxLimit,
		ScopeField:    dec.ScopeField,
		ScopeValue:    dec.ScopeValue,
		Tenant:        dec.Scope + ":" + dec.ScopeValue,
		Rule:          dec.RuleFingerprint,
		Pushdown:      dec.Pushdown,
		GatewayReason: dec.GatewayReason,
		ResidualKey:   dec.ResidualKey,
		Filter:        dec.Filter,
	})
	if err != nil {
		return subscriptions.FeedSpec{}, nil, 0, err
	}
	spec.User = feedUser(dec, p)
	return spec, dec, where, nil
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
		s.m.RateLimited[metrics.LimitSubscriptions].Inc()
		c.sendError(m.ID, wire.CodeLimitExceeded, fmt.Sprintf("subscriptions limit: at most %d per connection; unsubscribe first", s.cfg.Limits.SubscriptionsPerConn), 0)
		return
	}
	p := c.principal.Load()
	spec, dec, where, err := c.plan(s.policy.Load(), p, m)
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
	switch where {
	case subscriptions.FilterInFirestore:
		s.m.PolicyFilters[metrics.FilterPushedDown].Inc()
	case subscriptions.FilterInGateway:
		s.m.PolicyFilters[metrics.FilterGateway].Inc()
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
	c.q.pushCtrl(metrics.SentUnsubscribed, f.AppendTo(nil, sub.quoted))
}
