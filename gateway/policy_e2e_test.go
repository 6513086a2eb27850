package gateway_test

import (
	"testing"

	"github.com/firegate/firegate/wire"

	"github.com/firegate/firegate/authz"
)

func TestRoleReadingFilterSharesTwoFeeds(t *testing.T) {
	e := newEnv(t, envOpts{})
	org := uniq("org")
	e.put("tasks/"+org+"_pub", map[string]any{"org_id": org, "visibility": "public"})
	e.put("tasks/"+org+"_priv", map[string]any{"org_id": org, "visibility": "private"})
	var members, admins []*client
	for i := 0; i < 5; i++ {
		cl := e.connect(e.token(authz.MintOptions{UserID: uniq("m"), OrgID: org, OrgRole: "org:member"}))
		_, docs, _ := cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
		if ids := docIDs(docs); len(ids) != 1 || !ids[org+"_pub"] {
			t.Fatalf("member sees %v", ids)
		}
		members = append(members, cl)
	}
	for i := 0; i < 3; i++ {
		cl := e.connect(e.token(authz.MintOptions{UserID: uniq("a"), OrgID: org, OrgRole: "org:admin"}))
		_, docs, _ := cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
		if ids := docIDs(docs); len(ids) != 2 {
			t.Fatalf("admin sees %v", ids)
		}
		admins = append(admins, cl)
	}
	if n := e.hub.FeedCount(); n != 2 {
		t.Fatalf("%d Feeds for 5 members and 3 admins of one org, want 2", n)
	}
	if n := e.hub.ListenersStarted(); n != 2 {
		t.Fatalf("%d listeners, want 2", n)
	}

	// Filter transitions: public → private is removed for members, modified
	// for admins; back to public is added for members.
	e.put("tasks/"+org+"_pub", map[string]any{"org_id": org, "visibility": "private"})
	for _, cl := range members {
		if m := cl.expect("changes"); m.Changes[0].Kind != "removed" || m.Changes[0].ID != org+"_pub" {
			t.Fatalf("member got %+v", m)
		}
	}
	for _, cl := range admins {
		if m := cl.expect("changes"); m.Changes[0].Kind != "modified" {
			t.Fatalf("admin got %+v", m)
		}
	}
	e.put("tasks/"+org+"_pub", map[string]any{"org_id": org, "visibility": "public"})
	for _, cl := range members {
		if m := cl.expect("changes"); m.Changes[0].Kind != "added" {
			t.Fatalf("member got %+v", m)
		}
	}
	// A private doc changing stays invisible to members.
	e.put("tasks/"+org+"_priv", map[string]any{"org_id": org, "visibility": "private", "x": 1})
	for _, cl := range admins {
		cl.expect("changes")
	}
	members[0].quiet(300e6)
}

func TestRoleChangeOnRefreshMovesFeed(t *testing.T) {
	e := newEnv(t, envOpts{})
	org, user := uniq("org"), uniq("u")
	e.put("tasks/"+org+"_pub", map[string]any{"org_id": org, "visibility": "public"})
	e.put("tasks/"+org+"_priv", map[string]any{"org_id": org, "visibility": "private"})
	cl := e.connect(e.token(authz.MintOptions{UserID: user, OrgID: org, OrgRole: "org:admin"}))
	first, docs, _ := cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	if len(docs) != 2 {
		t.Fatalf("admin snapshot %v", docIDs(docs))
	}
	// Demoted on refresh: the subscription moves to the members' Feed —
	// a new epoch (resumed: the client keeps its state) and exactly the
	// difference: the private document is removed.
	cl.send(map[string]any{"type": "auth", "token": e.token(authz.MintOptions{UserID: user, OrgID: org, OrgRole: "org:member"})})
	// The welcome and the move's frames may interleave; the move's own
	// frames come in order: subscribed, then the diff.
	var sub, snap wireMsg
	for snap.Type == "" || !sawWelcome(&sub) {
		m := cl.next()
		switch m.Type {
		case "welcome":
			sub.welcome = true
		case "subscribed":
			sub.ServerMessage = m
		case "changes":
			if sub.Type == "" {
				t.Fatal("diff before subscribed")
			}
			snap.ServerMessage = m
		default:
			t.Fatalf("unexpected %+v", m)
		}
	}
	if sub.ID != "s" || sub.Epoch == first.Epoch || !sub.Resumed {
		t.Fatalf("resubscribed %+v", sub)
	}
	if len(snap.Changes) != 1 || snap.Changes[0].Kind != "removed" || snap.Changes[0].ID != org+"_priv" {
		t.Fatalf("demotion diff %+v", snap.Changes)
	}
	// Promoted again: the private document is added back; demoted again:
	// removed. Each refresh brings subscribed, a diff and a welcome.
	for _, step := range []struct{ role, kind string }{{"org:admin", "added"}, {"org:member", "removed"}} {
		cl.send(map[string]any{"type": "auth", "token": e.token(authz.MintOptions{UserID: user, OrgID: org, OrgRole: step.role})})
		var diff wire.ServerMessage
		welcomed := false
		for diff.Type == "" || !welcomed {
			switch m := cl.next(); m.Type {
			case "changes":
				diff = m
			case "welcome":
				welcomed = true
			}
		}
		if len(diff.Changes) != 1 || diff.Changes[0].Kind != step.kind || diff.Changes[0].ID != org+"_priv" {
			t.Fatalf("%s diff %+v", step.role, diff.Changes)
		}
	}
	e.put("tasks/"+org+"_priv", map[string]any{"org_id": org, "visibility": "private", "y": 2})
	e.put("tasks/"+org+"_pub", map[string]any{"org_id": org, "visibility": "public", "y": 2})
	if m := cl.expect("changes"); m.Changes[0].ID != org+"_pub" {
		t.Fatalf("got %+v", m)
	}
}

func TestPolicyReloadEndsNoLongerAllowed(t *testing.T) {
	e := newEnv(t, envOpts{})
	org := uniq("org")
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org, OrgPermissions: []string{"org:invoices:read"}}))
	cl.subscribe(map[string]any{"id": "inv", "collection": "invoices"})
	cl.subscribe(map[string]any{"id": "t", "collection": "tasks"})
	pol, err := authz.ParsePolicy([]byte(`
collections:
  - path: tasks
    scope: org
  - path: invoices
    scope: org
    allow: "'org:invoices:admin' in auth.org_permissions"
`))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetPolicy(pol)
	// Order between the two subscriptions is not defined; within each it is.
	var gone, moved, snap bool
	for !(gone && moved && snap) {
		m := cl.next()
		switch {
		case m.Type == "unsubscribed" && m.Sub == "inv" && m.Reason == "forbidden":
			gone = true
		case m.Type == "subscribed" && m.ID == "t":
			moved = true
		case m.Type == "changes" && m.Sub == "t" && moved:
			snap = true
		default:
			t.Fatalf("unexpected %+v", m)
		}
	}
	// A permission-gated collection refuses callers without it.
	c2 := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
	c2.send(map[string]any{"type": "subscribe", "id": "inv", "collection": "invoices"})
	if m := c2.expect("error"); m.Code != "forbidden" {
		t.Fatalf("got %+v", m)
	}
}

type wireMsg struct {
	wire.ServerMessage
	welcome bool
}

func sawWelcome(m *wireMsg) bool { return m.welcome }
