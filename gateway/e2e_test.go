package gateway_test

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/wire"
)

func TestHappyPathSnapshotAndChanges(t *testing.T) {
	e := newEnv(t, envOpts{})
	org := uniq("org")
	e.put("tasks/"+org+"_a", map[string]any{"org_id": org, "title": "a", "visibility": "public"})
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("user"), OrgID: org, OrgRole: "org:member"}))
	sub, docs, seq := cl.subscribe(map[string]any{"id": "s1", "collection": "tasks"})
	if sub.ID != "s1" || sub.Epoch == "" || sub.Resumed {
		t.Fatalf("subscribed = %+v", sub)
	}
	if len(docs) != 1 || docs[0].ID != org+"_a" || docs[0].Path != "tasks/"+org+"_a" || docs[0].UpdateTime == "" {
		t.Fatalf("snapshot docs = %+v", docs)
	}

	e.put("tasks/"+org+"_b", map[string]any{"org_id": org, "title": "b", "n": 7})
	m := cl.expect("changes")
	if m.Sub != "s1" || m.Seq != seq+1 || m.ReadTime == "" || len(m.Changes) != 1 {
		t.Fatalf("changes = %+v (snapshot seq %d)", m, seq)
	}
	if c := m.Changes[0]; c.Kind != "added" || c.ID != org+"_b" || !strings.Contains(string(c.Data), `"n":7`) {
		t.Fatalf("added = %+v", c)
	}

	e.put("tasks/"+org+"_b", map[string]any{"org_id": org, "title": "b2"})
	m = cl.expect("changes")
	if m.Seq != seq+2 || m.Changes[0].Kind != "modified" || !strings.Contains(string(m.Changes[0].Data), `"title":"b2"`) {
		t.Fatalf("modified = %+v", m)
	}

	e.del("tasks/" + org + "_b")
	m = cl.expect("changes")
	c := m.Changes[0]
	if m.Seq != seq+3 || c.Kind != "removed" || c.Data != nil || c.UpdateTime != "" {
		t.Fatalf("removed = %+v", m)
	}
	// removed carries no data key at all.
	cl.send(map[string]any{"type": "ping", "id": "p1"})
	if p := cl.expect("pong"); p.ID != "p1" {
		t.Fatalf("pong = %+v", p)
	}
	cl.send(map[string]any{"type": "unsubscribe", "id": "s1"})
	if u := cl.expect("unsubscribed"); u.Sub != "s1" || u.Reason != "client" {
		t.Fatalf("unsubscribed = %+v", u)
	}
}

func TestRemovedHasNoDataKey(t *testing.T) {
	e := newEnv(t, envOpts{})
	org := uniq("org")
	e.put("tasks/"+org+"_x", map[string]any{"org_id": org})
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("user"), OrgID: org}))
	cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	e.del("tasks/" + org + "_x")
	select {
	case <-cl.msgs:
	case <-time.After(waitFor):
		t.Fatal("no change")
	}
	raw := <-cl.raw
	if strings.Contains(string(raw), `"data"`) || !strings.Contains(string(raw), `"kind":"removed"`) {
		t.Fatalf("removed frame = %s", raw)
	}
}

func TestOrganizationIsolation(t *testing.T) {
	e := newEnv(t, envOpts{})
	orgA, orgB := uniq("orgA"), uniq("orgB")
	e.put("tasks/"+orgA+"_1", map[string]any{"org_id": orgA, "title": "secret A"})
	e.put("tasks/"+orgB+"_1", map[string]any{"org_id": orgB, "title": "B"})
	b := e.connect(e.token(authz.MintOptions{UserID: uniq("bob"), OrgID: orgB, OrgRole: "org:admin"}))
	_, docs, _ := b.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	if ids := docIDs(docs); len(ids) != 1 || !ids[orgB+"_1"] {
		t.Fatalf("org B snapshot = %v", ids)
	}
	// Crafted filters naming org A are refused, never answered with data.
	for i, where := range []any{
		[]any{map[string]any{"field": "org_id", "op": "==", "value": orgA}},
		[]any{map[string]any{"field": "org_id", "op": "in", "value": []any{orgA, orgB}}},
		[]any{map[string]any{"field": "org_id", "op": "!=", "value": orgB}},
	} {
		id := "x" + string(rune('0'+i))
		b.send(map[string]any{"type": "subscribe", "id": id, "collection": "tasks", "where": where})
		if m := b.expect("error"); m.ID != id || m.Code != "forbidden" {
			t.Fatalf("crafted filter %d answered %+v", i, m)
		}
	}
	// Org A writes: org B's subscriber sees nothing of them.
	e.put("tasks/"+orgA+"_2", map[string]any{"org_id": orgA, "title": "secret A2"})
	// A document moving from B to A is removed for B, and nothing more of it.
	e.put("tasks/"+orgB+"_1", map[string]any{"org_id": orgA, "title": "moved"})
	m := b.expect("changes")
	if len(m.Changes) != 1 || m.Changes[0].Kind != "removed" || m.Changes[0].ID != orgB+"_1" {
		t.Fatalf("move out = %+v", m)
	}
	e.put("tasks/"+orgB+"_1", map[string]any{"org_id": orgA, "title": "moved again"})
	b.quiet(500 * time.Millisecond)
}

func TestNoActiveOrgRefusedOrgScope(t *testing.T) {
	e := newEnv(t, envOpts{})
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("user")}))
	cl.send(map[string]any{"type": "subscribe", "id": "s", "collection": "tasks"})
	if m := cl.expect("error"); m.ID != "s" || m.Code != "forbidden" {
		t.Fatalf("got %+v", m)
	}
	// Unknown collections are forbidden too, never not_found.
	cl.send(map[string]any{"type": "subscribe", "id": "u", "collection": "secrets"})
	if m := cl.expect("error"); m.ID != "u" || m.Code != "forbidden" {
		t.Fatalf("got %+v", m)
	}
}

func TestUserScope(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, bob := uniq("alice"), uniq("bob")
	e.put("notes/"+alice+"_1", map[string]any{"owner_id": alice, "text": "mine"})
	e.put("notes/"+bob+"_1", map[string]any{"owner_id": bob, "text": "bob's"})
	cl := e.connect(e.token(authz.MintOptions{UserID: alice}))
	_, docs, _ := cl.subscribe(map[string]any{"id": "n", "collection": "notes"})
	if ids := docIDs(docs); len(ids) != 1 || !ids[alice+"_1"] {
		t.Fatalf("notes = %v", ids)
	}
	e.put("notes/"+bob+"_2", map[string]any{"owner_id": bob})
	e.put("notes/"+alice+"_2", map[string]any{"owner_id": alice})
	m := cl.expect("changes")
	if m.Changes[0].ID != alice+"_2" {
		t.Fatalf("got %+v", m)
	}
	cl.send(map[string]any{"type": "subscribe", "id": "x", "collection": "notes", "where": []any{map[string]any{"field": "owner_id", "op": "==", "value": bob}}})
	if m := cl.expect("error"); m.Code != "forbidden" {
		t.Fatalf("got %+v", m)
	}
}

func TestTokenTransports(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{cfg: gatewayCfgShortAuth()})
	org := uniq("org")
	tok := e.token(authz.MintOptions{UserID: uniq("user"), OrgID: org})
	cases := []struct {
		name    string
		opts    dialOpts
		welcome bool
	}{
		{"authorization header", dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}}, true},
		{"bearer subprotocol", dialOpts{subprotocols: []string{wire.Subprotocol, wire.BearerPrefix + tok}}, true},
		{"cookie with allowed origin", dialOpts{header: http.Header{"Origin": {testOrigin}, "Cookie": {"__session=" + tok}}}, true},
		{"cookie without origin is ignored", dialOpts{header: http.Header{"Cookie": {"__session=" + tok}}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl, resp, err := e.dial(tc.opts)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if resp.Header.Get("Sec-WebSocket-Protocol") != wire.Subprotocol {
				t.Fatalf("selected subprotocol %q", resp.Header.Get("Sec-WebSocket-Protocol"))
			}
			if tc.welcome {
				if w := cl.expect("welcome"); w.OrgID != org {
					t.Fatalf("welcome = %+v", w)
				}
				return
			}
			// Not authenticated: a subscribe is refused, then the auth
			// deadline closes the connection 4001.
			cl.send(map[string]any{"type": "subscribe", "id": "s", "collection": "tasks"})
			if m := cl.expect("error"); m.Code != "unauthorized" {
				t.Fatalf("got %+v", m)
			}
			if code, _ := cl.closed(); code != wire.CloseUnauthenticated {
				t.Fatalf("close code %d", code)
			}
		})
	}
	t.Run("first auth message", func(t *testing.T) {
		cl, _, err := e.dial(dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		cl.send(map[string]any{"type": "ping", "id": "early"})
		if m := cl.expect("pong"); m.ID != "early" {
			t.Fatalf("got %+v", m)
		}
		cl.send(map[string]any{"type": "auth", "token": tok})
		if w := cl.expect("welcome"); w.OrgID != org || w.ExpiresAt == "" || w.SessionID == "" {
			t.Fatalf("welcome = %+v", w)
		}
	})
}

func TestBadOriginRefused(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{})
	tok := e.token(authz.MintOptions{UserID: uniq("user")})
	_, resp, err := e.dial(dialOpts{header: http.Header{"Origin": {"https://evil.example"}, "Authorization": {"Bearer " + tok}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("err=%v resp=%v", err, resp)
	}
	// A wildcard label matches exactly one label.
	if _, _, err := e.dial(dialOpts{header: http.Header{"Origin": {"https://a.example.test"}, "Authorization": {"Bearer " + tok}}}); err != nil {
		t.Fatalf("wildcard origin refused: %v", err)
	}
	if _, resp, err := e.dial(dialOpts{header: http.Header{"Origin": {"https://a.b.example.test"}}}); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("two labels for one * accepted")
	}
	if v := e.counter("firegate_handshakes_total", map[string]string{"result": "forbidden_origin"}); v != 2 {
		t.Fatalf("forbidden_origin = %v", v)
	}
}

func TestBadTokensClosed4001(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{})
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	user := uniq("user")
	wrongKey, err := e.issuer.MintWithKey(other, authz.MintOptions{UserID: user, Azp: testOrigin})
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer, err := authz.NewDevIssuer("https://other.example.test")
	if err != nil {
		t.Fatal(err)
	}
	wrongIss, _ := otherIssuer.Mint(authz.MintOptions{UserID: user, Azp: testOrigin, KeyID: ""})
	cases := []struct {
		name, token, reason string
	}{
		{"expired", e.token(authz.MintOptions{UserID: user, TTL: -time.Minute}), "expired"},
		{"wrong key same kid", wrongKey, "bad_signature"},
		{"alg none", e.token(authz.MintOptions{UserID: user, Alg: "none"}), "bad_alg"},
		{"wrong issuer", wrongIss, ""},
		{"wrong azp", e.token(authz.MintOptions{UserID: user, Azp: "https://evil.example"}), "bad_azp"},
		{"garbage", "not.a.jwt", "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.counter("firegate_auth_failures_total", map[string]string{"reason": tc.reason})
			cl, _, err := e.dial(dialOpts{header: http.Header{"Authorization": {"Bearer " + tc.token}}})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			// Never welcomed: the first thing is the close.
			select {
			case m := <-cl.msgs:
				t.Fatalf("got %s before the close", m.Type)
			case <-cl.done:
			case <-time.After(waitFor):
				t.Fatal("not closed")
			}
			if code, _ := cl.closed(); code != wire.CloseUnauthenticated {
				t.Fatalf("close code %d, want 4001", code)
			}
			if tc.reason != "" {
				if after := e.counter("firegate_auth_failures_total", map[string]string{"reason": tc.reason}); after != before+1 {
					t.Fatalf("auth_failures{%s} %v → %v", tc.reason, before, after)
				}
			}
		})
	}
}

func TestRefreshKeepsConnectionAndExpiryCloses(t *testing.T) {
	// The eager clock fires a warning due at once inside AfterFunc: the
	// welcome must still come first.
	clock := newEagerClock()
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{leeway: 200 * time.Millisecond, clock: clock})
	user, org := uniq("user"), uniq("org")

	// Without refresh: closed 4001 after expiry (plus leeway).
	clock.CatchUp()
	// (exp has whole-second precision: TTLs leave a second of margin.)
	c2 := e.connect(e.token(authz.MintOptions{UserID: user, OrgID: org, TTL: 3 * time.Second}))
	clock.Advance(0)
	c2.expect("auth_expiring")
	clock.Advance(4 * time.Second)
	if code, reason := c2.closed(); code != wire.CloseUnauthenticated || !strings.Contains(reason, "expired") {
		t.Fatalf("close %d %q", code, reason)
	}
	e.awaitCounter("firegate_disconnects_total", map[string]string{"reason": "auth_expired"}, 1)

	// With a refresh the connection lives past the first token's expiry.
	clock.CatchUp()
	cl := e.connect(e.token(authz.MintOptions{UserID: user, OrgID: org, TTL: 8 * time.Second}))
	// A token living less than the warning window is warned at once.
	clock.Advance(0)
	cl.expect("auth_expiring")
	cl.send(map[string]any{"type": "auth", "token": e.token(authz.MintOptions{UserID: user, OrgID: org, TTL: time.Hour})})
	w := cl.expect("welcome")
	exp, _ := time.Parse(time.RFC3339, w.ExpiresAt)
	if time.Until(exp) < 50*time.Minute {
		t.Fatalf("refreshed expiry %v", w.ExpiresAt)
	}
	clock.Advance(9 * time.Second)
	cl.send(map[string]any{"type": "ping", "id": "alive"})
	cl.expect("pong")
}

func TestOrgSwitchAndUserSwitch(t *testing.T) {
	e := newEnv(t, envOpts{})
	user, orgA, orgB := uniq("dave"), uniq("orgA"), uniq("orgB")
	e.put("tasks/"+orgA+"_1", map[string]any{"org_id": orgA})
	e.put("notes/"+user+"_1", map[string]any{"owner_id": user})
	cl := e.connect(e.token(authz.MintOptions{UserID: user, OrgID: orgA}))
	cl.subscribe(map[string]any{"id": "t", "collection": "tasks"})
	cl.subscribe(map[string]any{"id": "n", "collection": "notes"})
	cl.send(map[string]any{"type": "auth", "token": e.token(authz.MintOptions{UserID: user, OrgID: orgB})})
	u := cl.expect("unsubscribed")
	if u.Sub != "t" || u.Reason != "org_changed" {
		t.Fatalf("got %+v", u)
	}
	if w := cl.expect("welcome"); w.OrgID != orgB {
		t.Fatalf("welcome %+v", w)
	}
	// Nothing of the old org after the refresh was acknowledged; the user
	// scoped subscription lives on.
	e.put("tasks/"+orgA+"_2", map[string]any{"org_id": orgA})
	e.put("notes/"+user+"_2", map[string]any{"owner_id": user})
	m := cl.expect("changes")
	if m.Sub != "n" {
		t.Fatalf("got %+v", m)
	}
	// Another user on refresh: 4003.
	cl.send(map[string]any{"type": "auth", "token": e.token(authz.MintOptions{UserID: uniq("mallory"), OrgID: orgB})})
	if code, _ := cl.closed(); code != wire.CloseUserChanged {
		t.Fatalf("close code %d, want 4003", code)
	}
}

func TestSharedListenerLingersThenCloses(t *testing.T) {
	// The Hub's linger runs on a fake clock: the Feed outlives its last
	// subscriber until the test moves the clock past the linger.
	const linger = 700 * time.Millisecond
	hubClock := newFakeClock()
	hub := hubCfgLinger(linger)
	hub.Clock = hubClock
	e := newEnv(t, envOpts{hub: hub})
	org := uniq("org")
	e.put("tasks/"+org+"_1", map[string]any{"org_id": org})
	const n = 12
	var clients []*client
	for i := 0; i < n; i++ {
		cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
		cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
		clients = append(clients, cl)
	}
	if got := e.hub.ListenersStarted(); got != 1 {
		t.Fatalf("listeners started = %d for %d identical subscriptions", got, n)
	}
	e.put("tasks/"+org+"_2", map[string]any{"org_id": org})
	for _, cl := range clients {
		if m := cl.expect("changes"); m.Changes[0].ID != org+"_2" {
			t.Fatalf("got %+v", m)
		}
	}
	for _, cl := range clients {
		cl.c.Close(websocket.StatusNormalClosure, "bye")
	}
	// Lingering: still one Feed right after the last leaves; a resubscribe
	// in the window starts no new listener.
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
	cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	if got := e.hub.ListenersStarted(); got != 1 {
		t.Fatalf("listeners after warm resubscribe = %d", got)
	}
	cl.c.Close(websocket.StatusNormalClosure, "bye")
	// Once the subscriber has left, a linger later the Feed is gone. (Each
	// look moves the clock by a linger: the first after the Feed armed its
	// timer fires it.)
	testkit.CheckFor(t, waitFor, pollEvery, func() error {
		hubClock.Advance(linger)
		if n := e.hub.FeedCount(); n != 0 {
			return fmt.Errorf("%d feeds open after the linger", n)
		}
		return nil
	})
	if v := e.counter("firegate_feeds_active", nil); v != 0 {
		t.Fatalf("feeds_active = %v", v)
	}
}

func TestMalformedFramesAndOversize(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{cfg: gatewayCfgMaxBytes(1024)})
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: uniq("org")}))
	for _, raw := range []string{
		`not json`,
		`{"type":"subscribe"}`,
		`{"type":"subscribe","id":"s","collection":"tasks","where":[{"field":"a","op":"~","value":1}]}`,
		`{"type":"warp"}`,
		`[1,2]`,
		`{"type":"subscribe","id":"s","collection":"tasks","limit":"ten"}`,
	} {
		cl.sendRaw([]byte(raw))
		if m := cl.expect("error"); m.Code != "bad_request" || m.Message == "" {
			t.Fatalf("%s → %+v", raw, m)
		}
	}
	cl.send(map[string]any{"type": "ping", "id": "still"})
	cl.expect("pong")
	// At the limit: accepted.
	pad := strings.Repeat("x", 1024-len(`{"type":"ping","id":"`)-len(`"}`))
	cl.sendRaw([]byte(`{"type":"ping","id":"` + pad[:100] + `"}`))
	cl.expect("pong")
	atLimit := `{"type":"ping","id":"p","pad":"` + strings.Repeat("y", 1024-len(`{"type":"ping","id":"p","pad":""}`)) + `"}`
	if len(atLimit) != 1024 {
		t.Fatalf("len %d", len(atLimit))
	}
	cl.sendRaw([]byte(atLimit))
	cl.expect("pong")
	// One byte past: 1009.
	cl.sendRaw([]byte(atLimit[:len(atLimit)-2] + `y"}`))
	if code, _ := cl.closed(); code != websocket.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	e.awaitCounter("firegate_disconnects_total", map[string]string{"reason": "too_big"}, 1)
}
