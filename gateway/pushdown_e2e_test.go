package gateway_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/internal/testkit"
	"github.com/firegate/firegate/wire"
)

// pushPolicy's tasks filter pushes down for members (visibility !=
// 'private') and is true for admins.
const pushPolicy = `
collections:
  - path: tasks
    scope: org
    filter: "doc.visibility != 'private' || auth.org_role == 'org:admin'"
  - path: invoices
    scope: org
    allow: "'org:invoices:read' in auth.org_permissions"
  - path: gtasks
    scope: org
    filter: "!has(doc.visibility) || doc.visibility != 'private'"
`

func docNames(docs []wire.Doc) []string {
	var out []string
	for _, d := range docs {
		out = append(out, d.ID)
	}
	return out
}

// TestLimitOracleClosed is the attack of a member who binary-searches a
// hidden document through limit and order_by: with the policy filter
// pushed down, the same query answers the same whether or not a hidden
// "bob" exists.
func TestLimitOracleClosed(t *testing.T) {
	e := newEnv(t, envOpts{policy: pushPolicy})
	withBob, without := uniq("org"), uniq("org")
	for _, org := range []string{withBob, without} {
		e.put("tasks/"+org+"_zed", map[string]any{"org_id": org, "name": "zed", "visibility": "public"})
	}
	e.put("tasks/"+withBob+"_bob", map[string]any{"org_id": withBob, "name": "bob", "visibility": "private"})
	query := func(org string) []string {
		cl := e.connect(e.token(authz.MintOptions{UserID: uniq("m"), OrgID: org, OrgRole: "org:member"}))
		_, docs, _ := cl.subscribe(map[string]any{"id": "q", "collection": "tasks",
			"where":    []map[string]any{{"field": "name", "op": "in", "value": []string{"bob", "zed"}}},
			"order_by": []map[string]any{{"field": "name"}}, "limit": 1})
		return docNames(docs)
	}
	a, b := query(withBob), query(without)
	if len(a) != 1 || len(b) != 1 || !strings.HasSuffix(a[0], "_zed") || !strings.HasSuffix(b[0], "_zed") {
		t.Fatalf("with a hidden bob: %v; without: %v; want [zed] both times", a, b)
	}
	if n := e.counter("firegate_policy_filters_total", map[string]string{"where": "pushed_down"}); n != 2 {
		t.Fatalf("policy_filters_total{where=pushed_down} = %v, want 2", n)
	}
}

// TestLimitCountsVisibleOnly: limit N returns N visible documents even when
// hidden ones sort first, and stays exact as documents change.
func TestLimitCountsVisibleOnly(t *testing.T) {
	e := newEnv(t, envOpts{policy: pushPolicy})
	org := uniq("org")
	for i, vis := range []string{"private", "private", "private", "public", "public", "public"} {
		e.put("tasks/"+org+"_"+string(rune('a'+i)), map[string]any{"org_id": org, "name": string(rune('a' + i)), "visibility": vis})
	}
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("m"), OrgID: org, OrgRole: "org:member"}))
	_, docs, _ := cl.subscribe(map[string]any{"id": "q", "collection": "tasks", "order_by": []map[string]any{{"field": "name"}}, "limit": 2})
	if got := docNames(docs); len(got) != 2 || got[0] != org+"_d" || got[1] != org+"_e" {
		t.Fatalf("limit 2 gave %v, want the first two public documents [d e]", got)
	}
	// A new private document that sorts first changes nothing for the
	// member; a public one does.
	e.put("tasks/"+org+"_0", map[string]any{"org_id": org, "name": "0", "visibility": "private"})
	e.put("tasks/"+org+"_1", map[string]any{"org_id": org, "name": "1", "visibility": "public"})
	m := cl.expect("changes")
	kinds := map[string]string{}
	for _, c := range m.Changes {
		kinds[c.ID] = c.Kind
	}
	if len(kinds) != 2 || kinds[org+"_1"] != "added" || kinds[org+"_e"] != "removed" {
		t.Fatalf("changes %+v, want 1 added and e removed", m.Changes)
	}
}

// TestLimitRefusedWhenFilterStaysInGateway: a residual Firestore cannot
// express (!has) keeps filtering in the gateway, and a limit, which would
// count hidden documents, is refused naming why. Without limit the
// subscription works; an admin's residual is true, so its limit is fine.
func TestLimitRefusedWhenFilterStaysInGateway(t *testing.T) {
	e := newEnv(t, envOpts{policy: pushPolicy})
	org := uniq("org")
	e.put("gtasks/"+org+"_a", map[string]any{"org_id": org, "visibility": "private"})
	e.put("gtasks/"+org+"_b", map[string]any{"org_id": org})
	member := e.connect(e.token(authz.MintOptions{UserID: uniq("m"), OrgID: org, OrgRole: "org:member"}))
	member.send(map[string]any{"type": "subscribe", "id": "l", "collection": "gtasks", "limit": 1})
	m := member.expect("error")
	if m.ID != "l" || m.Code != "bad_request" || !strings.Contains(m.Message, "!has") || !strings.Contains(m.Message, "limit") {
		t.Fatalf("got %+v, want bad_request naming the !has filter", m)
	}
	_, docs, _ := member.subscribe(map[string]any{"id": "all", "collection": "gtasks"})
	if got := docNames(docs); len(got) != 1 || got[0] != org+"_b" {
		t.Fatalf("without limit: %v, want [b]", got)
	}
	if n := e.counter("firegate_policy_filters_total", map[string]string{"where": "gateway"}); n != 1 {
		t.Fatalf("policy_filters_total{where=gateway} = %v, want 1", n)
	}
}

// TestPolicyReloadReachesFeeds is the attack of a reload that tightens a
// filter: subscribers attached, a lingering Feed, and new subscribers
// must never see the newly hidden document; loosening adds it back.
// Writes retry: the emulator may fail one with "call already cancelled"
// while the Listen streams of retired Feeds end.
func TestPolicyReloadReachesFeeds(t *testing.T) {
	open := `
collections:
  - path: tasks
    scope: org
`
	e := newEnv(t, envOpts{policy: open})
	org := uniq("org")
	pub, priv, team := org+"_pub", org+"_priv", org+"_team"
	putRetrying(t, e.fs, "tasks/"+pub, map[string]any{"org_id": org, "visibility": "public", "status": "open"})
	putRetrying(t, e.fs, "tasks/"+priv, map[string]any{"org_id": org, "visibility": "private", "status": "open"})
	putRetrying(t, e.fs, "tasks/"+team, map[string]any{"org_id": org, "visibility": "team", "status": "open"})
	memberTok := func() string {
		return e.token(authz.MintOptions{UserID: uniq("m"), OrgID: org, OrgRole: "org:member"})
	}
	member := e.connect(memberTok())
	if _, docs, _ := member.subscribe(map[string]any{"id": "s", "collection": "tasks"}); len(docs) != 3 {
		t.Fatalf("open policy: %v", docNames(docs))
	}
	admin := e.connect(e.token(authz.MintOptions{UserID: uniq("a"), OrgID: org, OrgRole: "org:admin"}))
	admin.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	// A lingering Feed of the open policy: a query whose last subscriber left.
	lingerer := e.connect(memberTok())
	lingerer.subscribe(map[string]any{"id": "o", "collection": "tasks", "where": []map[string]any{{"field": "status", "op": "==", "value": "open"}}})
	lingerer.send(map[string]any{"type": "unsubscribe", "id": "o"})
	lingerer.expect("unsubscribed")
	if n := e.hub.FeedCount(); n != 2 {
		t.Fatalf("%d Feeds before the reload, want 2 (one live, one lingering)", n)
	}

	reload := func(src string) {
		t.Helper()
		pol, err := authz.ParsePolicy([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		e.srv.SetPolicy(pol)
	}
	// moved reads the re-subscription a reload causes: subscribed
	// (resumed: the client keeps its state), then the exact diff.
	moved := func(cl *client) map[string]string {
		t.Helper()
		if m := cl.expect("subscribed"); !m.Resumed || m.ID != "s" {
			t.Fatalf("after the reload: %+v", m)
		}
		m := cl.expect("changes")
		out := map[string]string{}
		for _, c := range m.Changes {
			out[c.ID] = c.Kind
		}
		return out
	}

	// Add a filter: the member loses the private document, the admin (whose
	// rule changed too) keeps everything.
	reload(`
collections:
  - path: tasks
    scope: org
    filter: "doc.visibility != 'private' || auth.org_role == 'org:admin'"
`)
	if d := moved(member); len(d) != 1 || d[priv] != "removed" {
		t.Fatalf("member diff %v, want %s removed", d, priv)
	}
	if d := moved(admin); len(d) != 0 {
		t.Fatalf("admin diff %v, want none", d)
	}
	// The open policy's Feeds are gone: the old one of the subscribers and
	// the lingering one, closed at once rather than after their linger.
	testkit.CheckFor(t, waitFor, pollEvery, func() error {
		if n := e.hub.FeedCount(); n != 2 {
			return fmt.Errorf("%d Feeds after the reload, want 2: the open policy's Feeds (one left by its subscribers, one lingering) must close", n)
		}
		return nil
	})
	newcomer := e.connect(memberTok())
	_, docs, _ := newcomer.subscribe(map[string]any{"id": "o", "collection": "tasks", "where": []map[string]any{{"field": "status", "op": "==", "value": "open"}}})
	if ids := docIDs(docs); len(ids) != 2 || ids[priv] {
		t.Fatalf("new subscriber after the reload sees %v", ids)
	}
	// Updates of the hidden document reach the admin only.
	putRetrying(t, e.fs, "tasks/"+priv, map[string]any{"org_id": org, "visibility": "private", "status": "open", "v": 2})
	if m := admin.expect("changes"); m.Changes[0].ID != priv {
		t.Fatalf("admin got %+v", m)
	}

	// Tighten: only public documents for members.
	reload(`
collections:
  - path: tasks
    scope: org
    filter: "doc.visibility == 'public' || auth.org_role == 'org:admin'"
`)
	if d := moved(member); len(d) != 1 || d[team] != "removed" {
		t.Fatalf("member diff after tightening %v, want %s removed", d, team)
	}
	moved(admin)
	if m := newcomer.expect("subscribed"); !m.Resumed {
		t.Fatalf("newcomer %+v", m)
	}
	if m := newcomer.expect("changes"); len(m.Changes) != 1 || m.Changes[0].ID != team || m.Changes[0].Kind != "removed" {
		t.Fatalf("newcomer diff %+v", m.Changes)
	}
	putRetrying(t, e.fs, "tasks/"+team, map[string]any{"org_id": org, "visibility": "team", "status": "open", "v": 2})
	admin.expect("changes")

	// Loosen: no filter at all; the member gets both back.
	reload(open)
	if d := moved(member); len(d) != 2 || d[priv] != "added" || d[team] != "added" {
		t.Fatalf("member diff after loosening %v", d)
	}
	moved(admin)
	// Nothing else arrived for the member meanwhile: the hidden updates
	// never reached it.
	member.quiet(300e6)
}

// TestDocSubscription: a document subscription sees its document exactly
// while the policy lets the caller see it; hidden, out of scope and
// missing look the same.
func TestDocSubscription(t *testing.T) {
	e := newEnv(t, envOpts{policy: pushPolicy})
	org, other := uniq("org"), uniq("org")
	e.put("tasks/"+org+"_pub", map[string]any{"org_id": org, "visibility": "public"})
	e.put("tasks/"+org+"_priv", map[string]any{"org_id": org, "visibility": "private"})
	e.put("tasks/"+other+"_x", map[string]any{"org_id": other, "visibility": "public"})
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("m"), OrgID: org, OrgRole: "org:member"}))

	_, docs, _ := cl.subscribe(map[string]any{"id": "pub", "doc": "tasks/" + org + "_pub"})
	if len(docs) != 1 || docs[0].ID != org+"_pub" || docs[0].Path != "tasks/"+org+"_pub" {
		t.Fatalf("visible document: %+v", docs)
	}
	for _, id := range []string{org + "_priv", other + "_x", org + "_missing"} {
		sub, docs, seq := cl.subscribe(map[string]any{"id": id, "doc": "tasks/" + id})
		if len(docs) != 0 || seq != 0 || sub.Resumed {
			t.Fatalf("%s: %+v %v seq %d, want an empty snapshot like a missing document", id, sub, docs, seq)
		}
	}
	// Appears, changes, becomes hidden, becomes visible, is deleted.
	missing := org + "_missing"
	steps := []struct {
		data map[string]any
		kind string
	}{
		{map[string]any{"org_id": org, "visibility": "public"}, "added"},
		{map[string]any{"org_id": org, "visibility": "public", "v": 2}, "modified"},
		{map[string]any{"org_id": org, "visibility": "private"}, "removed"},
		{map[string]any{"org_id": org, "visibility": "team"}, "added"},
		{map[string]any{"org_id": other, "visibility": "team"}, "removed"},
	}
	for i, s := range steps {
		e.put("tasks/"+missing, s.data)
		m := cl.expect("changes")
		if m.Sub != missing || len(m.Changes) != 1 || m.Changes[0].Kind != s.kind || m.Changes[0].ID != missing {
			t.Fatalf("step %d: %+v, want %s", i, m, s.kind)
		}
	}
	e.del("tasks/" + org + "_pub")
	if m := cl.expect("changes"); m.Sub != "pub" || m.Changes[0].Kind != "removed" {
		t.Fatalf("delete: %+v", m)
	}
	// The hidden and the out-of-scope documents never produced anything.
	e.put("tasks/"+org+"_priv", map[string]any{"org_id": org, "visibility": "private", "v": 3})
	e.put("tasks/"+other+"_x", map[string]any{"org_id": other, "visibility": "public", "v": 3})
	cl.quiet(300e6)

	// A collection the caller may not read refuses its documents as it
	// refuses the collection.
	cl.send(map[string]any{"type": "subscribe", "id": "inv", "doc": "invoices/" + org + "_1"})
	if m := cl.expect("error"); m.ID != "inv" || m.Code != "forbidden" {
		t.Fatalf("got %+v", m)
	}
	cl.send(map[string]any{"type": "subscribe", "id": "bad", "doc": "tasks/a", "limit": 1})
	if m := cl.expect("error"); m.Code != "bad_request" {
		t.Fatalf("got %+v", m)
	}
}

// TestDocSubscriptionResume: a document subscription resumes like a query.
func TestDocSubscriptionResume(t *testing.T) {
	e := newEnv(t, envOpts{policy: pushPolicy})
	org := uniq("org")
	path := "tasks/" + org + "_t"
	e.put(path, map[string]any{"org_id": org, "visibility": "public"})
	tok := e.token(authz.MintOptions{UserID: uniq("m"), OrgID: org, OrgRole: "org:member"})
	a := e.connect(tok)
	sub, _, seq := a.subscribe(map[string]any{"id": "d", "doc": path})
	// Another subscriber keeps the Feed alive while the first is away.
	b := e.connect(tok)
	b.subscribe(map[string]any{"id": "d", "doc": path})
	a.send(map[string]any{"type": "unsubscribe", "id": "d"})
	a.expect("unsubscribed")
	e.put(path, map[string]any{"org_id": org, "visibility": "public", "v": 2})
	b.expect("changes")
	a.send(map[string]any{"type": "subscribe", "id": "d", "doc": path, "resume": map[string]any{"epoch": sub.Epoch, "seq": seq}})
	if m := a.expect("subscribed"); !m.Resumed || m.Epoch != sub.Epoch {
		t.Fatalf("resume: %+v", m)
	}
	if m := a.expect("changes"); len(m.Changes) != 1 || m.Changes[0].Kind != "modified" || m.Seq <= seq {
		t.Fatalf("resume changes %+v", m)
	}
}

// TestSSEDocSubscription: ?doc= subscribes to one document over SSE, under
// the same policy (a hidden document is an empty snapshot).
func TestSSEDocSubscription(t *testing.T) {
	e := newEnv(t, envOpts{policy: pushPolicy})
	org := uniq("org")
	e.put("tasks/"+org+"_pub", map[string]any{"org_id": org, "visibility": "public"})
	e.put("tasks/"+org+"_priv", map[string]any{"org_id": org, "visibility": "private"})
	tok := e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org, OrgRole: "org:member"})
	for id, n := range map[string]int{org + "_pub": 1, org + "_priv": 0} {
		c, _ := e.sse(tok, "doc=tasks/"+id, "")
		c.next("welcome")
		c.next("subscribed")
		if s := c.next("snapshot"); len(s.msg.Docs) != n {
			t.Fatalf("%s: snapshot %s, want %d documents", id, s.data, n)
		}
	}
}

// TestMaxLimitDoesNotCountHiddenDocuments is the oracle of a rule's
// max_limit: when the policy filter runs only in the gateway, a Firestore
// limit of max_limit would let hidden documents that sort first push
// visible ones out of the result (so whether a visible document shows
// tells how many hidden ones exist). No Firestore limit applies then: the
// visible document arrives however many hidden ones precede it.
func TestMaxLimitDoesNotCountHiddenDocuments(t *testing.T) {
	pol := `
collections:
  - path: gtasks
    scope: org
    max_limit: 2
    filter: "!has(doc.visibility) || doc.visibility != 'private'"
`
	e := newEnv(t, envOpts{policy: pol})
	org := uniq("org")
	// Document ids sort the result: two hidden ones first, then a visible one.
	e.put("gtasks/"+org+"_a", map[string]any{"org_id": org, "visibility": "private"})
	e.put("gtasks/"+org+"_b", map[string]any{"org_id": org, "visibility": "private"})
	e.put("gtasks/"+org+"_c", map[string]any{"org_id": org})
	member := e.connect(e.token(authz.MintOptions{UserID: uniq("m"), OrgID: org, OrgRole: "org:member"}))
	_, docs, _ := member.subscribe(map[string]any{"id": "all", "collection": "gtasks"})
	if got := docNames(docs); len(got) != 1 || got[0] != org+"_c" {
		t.Fatalf("got %v, want [%s_c]: the rule's max_limit counted hidden documents", got, org)
	}
}
