package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/gateway"
	"github.com/firegate/firegate/revocation"
	"github.com/firegate/firegate/webhooks"
	"github.com/firegate/firegate/wire"
)

// webhookServer serves e's gateway as Clerk's webhook endpoint.
func webhookServer(t *testing.T, e *env) string {
	t.Helper()
	wh, err := webhooks.NewHandler(webhooks.Config{Secret: testWebhookSecret}, e.srv)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(wh)
	t.Cleanup(hs.Close)
	return hs.URL
}

func membershipDeleted(user, org string) string {
	return `{"type":"organizationMembership.deleted","data":{"organization":{"id":"` + org + `"},"public_user_data":{"user_id":"` + user + `"}}}`
}

// dialToken dials with tok in the Authorization header without waiting
// for anything.
func (e *env) dialToken(tok string) *client {
	e.t.Helper()
	cl, _, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	return cl
}

// wantClosed4001 waits for the close and checks code and reason.
func wantClosed4001(t *testing.T, cl *client, reason string) {
	t.Helper()
	code, got := cl.closed()
	if code != wire.CloseUnauthenticated || got != reason {
		t.Fatalf("closed %d %q, want %d %q", code, got, wire.CloseUnauthenticated, reason)
	}
}

// wantForbidden subscribes to tasks and expects `error` forbidden.
func wantForbidden(t *testing.T, cl *client, id string) {
	t.Helper()
	cl.send(map[string]any{"type": "subscribe", "id": id, "collection": "tasks"})
	if m := cl.expect("error"); m.Code != wire.CodeForbidden || m.ID != id {
		t.Fatalf("subscribe %s after the revocation: %+v, want error forbidden", id, m)
	}
}

// TestRevokedMembershipResentTokenForbidden is the attack of a removed
// member re-sending the (still valid) token issued before the removal:
// on the live connection (auth refresh) and on a new one, org-scoped
// subscribe is forbidden; user-scoped data stays reachable; a token
// issued after the removal (re-invited) works again.
func TestRevokedMembershipResentTokenForbidden(t *testing.T) {
	e := newEnv(t, envOpts{})
	hook := webhookServer(t, e)
	org, member := uniq("org"), uniq("u")
	e.put("tasks/"+uniq("t"), map[string]any{"org_id": org, "title": "secret plan"})
	tok := e.token(authz.MintOptions{UserID: member, OrgID: org, OrgRole: "org:member"})
	cl := e.connect(tok)
	if _, docs, _ := cl.subscribe(map[string]any{"id": "t", "collection": "tasks"}); len(docs) != 1 {
		t.Fatalf("before the removal: %d docs, want 1", len(docs))
	}
	if code := postWebhook(t, hook, uniq("msg"), membershipDeleted(member, org)); code != 204 {
		t.Fatalf("webhook status %d", code)
	}
	if m := cl.expect("unsubscribed"); m.Sub != "t" || m.Reason != wire.ReasonForbidden {
		t.Fatalf("live subscription: %+v, want unsubscribed forbidden", m)
	}
	// The same token again on the live connection.
	cl.send(map[string]any{"type": "auth", "token": tok})
	if m := cl.expect("welcome"); m.OrgID != "" {
		t.Fatalf("refresh with the revoked membership kept org %q", m.OrgID)
	}
	wantForbidden(t, cl, "t2")
	// The same token on a new connection.
	again := e.connect(tok)
	wantForbidden(t, again, "t3")
	note := uniq("n")
	e.put("notes/"+note, map[string]any{"owner_id": member})
	if _, docs, _ := again.subscribe(map[string]any{"id": "n", "collection": "notes"}); !docIDs(docs)[note] {
		t.Fatalf("user-scoped notes lost with the membership: %v", docIDs(docs))
	}
	// Re-invited: a token issued after the removal.
	later := e.token(authz.MintOptions{UserID: member, OrgID: org, OrgRole: "org:member", IssuedAt: time.Now().Add(time.Second)})
	fresh := e.connect(later)
	if _, docs, _ := fresh.subscribe(map[string]any{"id": "t", "collection": "tasks"}); len(docs) != 1 {
		t.Fatalf("token issued after the removal: %d docs, want 1", len(docs))
	}
}

// TestDeletedOrganizationForbidden: organization.deleted ends every
// member's org-scoped subscriptions and refuses the old tokens.
func TestDeletedOrganizationForbidden(t *testing.T) {
	e := newEnv(t, envOpts{})
	hook := webhookServer(t, e)
	org := uniq("org")
	tokA := e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org})
	// Another member's token, issued before the deletion too. (A token
	// minted after it would carry an iat past the revocation's time once
	// the clock crosses a second, and is not one of the old tokens.)
	tokB := e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org})
	a := e.connect(tokA)
	a.subscribe(map[string]any{"id": "t", "collection": "tasks"})
	if code := postWebhook(t, hook, uniq("msg"), `{"type":"organization.deleted","data":{"id":"`+org+`","deleted":true}}`); code != 204 {
		t.Fatalf("webhook status %d", code)
	}
	if m := a.expect("unsubscribed"); m.Reason != wire.ReasonForbidden {
		t.Fatalf("live subscription: %+v", m)
	}
	wantForbidden(t, e.connect(tokA), "t2")
	wantForbidden(t, e.connect(tokB), "t3")
}

// TestRevokedSessionReconnectRefused is the attack of a signed-out
// (revoked) session reconnecting with its still valid token: 4001 at the
// handshake, and for an `auth` carrying it; the user's other sessions are
// unaffected.
func TestRevokedSessionReconnectRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	hook := webhookServer(t, e)
	user := uniq("u")
	sid := "sess_" + user
	tok := e.token(authz.MintOptions{UserID: user, SessionID: sid})
	live := e.connect(tok)
	other := e.connect(e.token(authz.MintOptions{UserID: user, SessionID: "sess_other_" + user}))
	if code := postWebhook(t, hook, uniq("msg"), `{"type":"session.revoked","data":{"id":"`+sid+`","user_id":"`+user+`"}}`); code != 204 {
		t.Fatalf("webhook status %d", code)
	}
	wantClosed4001(t, live, "session revoked")
	wantClosed4001(t, e.dialToken(tok), "session revoked")
	// In-band: a connection of the same user sends the revoked token.
	other.send(map[string]any{"type": "auth", "token": tok})
	wantClosed4001(t, other, "session revoked")
	if v := e.counter("firegate_auth_failures_total", map[string]string{"reason": "revoked"}); v < 3 {
		t.Fatalf("auth_failures_total{revoked} = %v, want >= 3", v)
	}
	// Another session of the same user still connects.
	e.connect(e.token(authz.MintOptions{UserID: user, SessionID: "sess_third_" + user}))
}

// TestDeletedUserRefused: after user.deleted every token issued before is
// refused 4001, whatever its session.
func TestDeletedUserRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	hook := webhookServer(t, e)
	user := uniq("u")
	tok := e.token(authz.MintOptions{UserID: user})
	// A token of another session, issued before the deletion too (one
	// minted after it carries a later iat once the clock crosses a second).
	otherSession := e.token(authz.MintOptions{UserID: user, SessionID: uniq("sess")})
	live := e.connect(tok)
	if code := postWebhook(t, hook, uniq("msg"), `{"type":"user.deleted","data":{"id":"`+user+`","deleted":true}}`); code != 204 {
		t.Fatalf("webhook status %d", code)
	}
	wantClosed4001(t, live, "session revoked")
	wantClosed4001(t, e.dialToken(tok), "session revoked")
	wantClosed4001(t, e.dialToken(otherSession), "session revoked")
	bystander := e.connect(e.token(authz.MintOptions{UserID: uniq("u")}))
	bystander.send(map[string]any{"type": "ping", "id": "p"})
	bystander.expect("pong")
}

// TestTokenRollbackOnRefreshRefused is the attack of a demoted admin
// re-sending the admin token issued before the demotion: a refresh never
// accepts a token older (iat) than the one in force. It answers `error`
// unauthorized and the newer token stays in force (the connection stays).
func TestTokenRollbackOnRefreshRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	org, user := uniq("org"), uniq("u")
	e.put("tasks/"+uniq("p"), map[string]any{"org_id": org, "visibility": "private"})
	e.put("tasks/"+uniq("q"), map[string]any{"org_id": org, "visibility": "public"})
	now := time.Now()
	adminOld := e.token(authz.MintOptions{UserID: user, OrgID: org, OrgRole: "org:admin", IssuedAt: now.Add(-3 * time.Second), TTL: time.Hour})
	memberNew := e.token(authz.MintOptions{UserID: user, OrgID: org, OrgRole: "org:member", IssuedAt: now, TTL: time.Hour})
	cl := e.connect(memberNew)
	cl.send(map[string]any{"type": "auth", "id": "a1", "token": adminOld})
	if m := cl.expect("error"); m.Code != wire.CodeUnauthorized || m.ID != "a1" {
		t.Fatalf("rollback: %+v, want error unauthorized for a1", m)
	}
	if _, docs, _ := cl.subscribe(map[string]any{"id": "t", "collection": "tasks"}); len(docs) != 1 {
		t.Fatalf("after the refused rollback the subscriber sees %d docs, want 1 (member view)", len(docs))
	}
	// The same token again (equal iat) is a valid refresh.
	cl.send(map[string]any{"type": "auth", "id": "a2", "token": memberNew})
	cl.expect("welcome")
}

// TestRevocationRacingRefreshNeverLost runs a revocation and a refresh
// with a covered token at the same moment, many times: the revocation is
// never lost (the session ends 4001; a revoked membership ends the org
// subscription and refuses a new one).
func TestRevocationRacingRefreshNeverLost(t *testing.T) {
	const iterations = 50
	// Every iteration connects once from the same address. A handshake
	// burst of iterations admits them all however fast they come (the
	// default, 40 at 20/s, refused the 41st on a machine quick enough):
	// the per-IP handshake limit is not what this test is about.
	e := newEnv(t, envOpts{cfg: gateway.Config{Limits: gateway.Limits{HandshakeBurst: iterations}}})
	for i := range iterations {
		user, org := uniq("u"), uniq("org")
		sid := "sess_" + user
		issued := time.Now().Add(-time.Second)
		first := e.token(authz.MintOptions{UserID: user, SessionID: sid, OrgID: org, IssuedAt: issued, TTL: time.Hour})
		refresh := e.token(authz.MintOptions{UserID: user, SessionID: sid, OrgID: org, IssuedAt: issued, TTL: time.Hour, Extra: map[string]any{"n": i}})
		cl := e.connect(first)
		membership := i%2 == 1
		if membership {
			cl.subscribe(map[string]any{"id": "t", "collection": "tasks"})
		}
		r := revocation.Revocation{Kind: revocation.KindSession, ID: sid, At: time.Now()}
		if membership {
			r = revocation.Revocation{Kind: revocation.KindMembership, ID: user, OrgID: org, At: time.Now()}
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			// The revocation may close the socket first: a failed write is
			// one of the orders under test, not an error.
			b, _ := json.Marshal(map[string]any{"type": "auth", "id": "r", "token": refresh})
			_ = cl.c.Write(context.Background(), websocket.MessageText, b)
		})
		wg.Go(func() {
			if err := e.srv.Revoke(context.Background(), r); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if !membership {
			wantClosed4001(t, cl, "session revoked")
			continue
		}
		// Whatever the order: the org subscription ended forbidden and
		// the refresh was answered (its welcome may name the org when it
		// won the race; the revocation's re-check then follows).
		ended, welcomed := false, false
		for !ended || !welcomed {
			m := cl.next()
			switch {
			case m.Type == "welcome":
				welcomed = true
			case m.Type == "unsubscribed" && m.Sub == "t" && (m.Reason == wire.ReasonForbidden || m.Reason == wire.ReasonOrgChanged):
				ended = true
			default:
				t.Fatalf("iteration %d: unexpected %s %+v", i, m.Type, m)
			}
		}
		wantForbidden(t, cl, fmt.Sprintf("again%d", i))
		cl.c.Close(websocket.StatusNormalClosure, "")
	}
}

// TestRevocationReachesOtherInstance: two gateways on one Firestore, each
// with its own Store kept in sync through the revocations collection. A
// webhook delivered to one ends the session on the other, and the other
// refuses the token at its handshake.
func TestRevocationReachesOtherInstance(t *testing.T) {
	src := sharedSource(t)
	coll := uniq("revocations")
	instance := func() envOpts {
		store, err := revocation.NewStore(revocation.Config{TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		sync, err := revocation.NewSync(src.Client(), store, revocation.SyncConfig{Collection: coll, SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = sync.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		<-sync.Synced()
		return envOpts{revocations: store, publisher: sync}
	}
	a := buildEnv(t, src, instance())
	b := buildEnv(t, src, instance())
	// Each test gateway has its own dev issuer: the session is the same.
	user := uniq("u")
	sid := "sess_" + user
	tokB := b.token(authz.MintOptions{UserID: user, SessionID: sid})
	onB := b.connect(tokB)
	hook := webhookServer(t, a)
	if code := postWebhook(t, hook, uniq("msg"), `{"type":"session.revoked","data":{"id":"`+sid+`"}}`); code != 204 {
		t.Fatalf("webhook status %d", code)
	}
	wantClosed4001(t, onB, "session revoked")
	wantClosed4001(t, b.dialToken(tokB), "session revoked")
	if _, ok := b.srv.Revocations().Session(user, sid, time.Now().Add(-time.Second)); !ok {
		t.Fatal("instance b does not remember the revocation")
	}
}
