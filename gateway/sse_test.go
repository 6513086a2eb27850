package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/wire"
)

type sseEvent struct {
	id, event string
	msg       wire.ServerMessage
	data      string
}

type sseClient struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

func (e *env) sse(tok, query, lastID string) (*sseClient, *http.Response) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/v1/sse?"+query, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		cancel()
		return nil, resp
	}
	c := &sseClient{t: e.t, resp: resp, events: make(chan sseEvent, 1024), cancel: cancel}
	e.t.Cleanup(func() { cancel(); resp.Body.Close() })
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" {
					_ = json.Unmarshal([]byte(ev.data), &ev.msg)
					c.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return c, resp
}

func (c *sseClient) next(typ string) sseEvent {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatalf("stream ended waiting for %s", typ)
		}
		if ev.msg.Type != typ {
			c.t.Fatalf("got %s (%s), want %s", ev.msg.Type, ev.data, typ)
		}
		return ev
	case <-time.After(waitFor):
		c.t.Fatalf("no %s event", typ)
	}
	return sseEvent{}
}

func TestSSEStreamAndResume(t *testing.T) {
	e := newEnv(t, envOpts{})
	org := uniq("org")
	e.put("tasks/"+org+"_1", map[string]any{"org_id": org, "n": 1})
	tok := e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org})
	q := url.Values{"collection": {"tasks"}, "where": {`[{"field":"n","op":">=","value":0}]`}}.Encode()
	c, _ := e.sse(tok, q, "")
	if w := c.next("welcome"); w.msg.OrgID != org {
		t.Fatalf("welcome %s", w.data)
	}
	sub := c.next("subscribed")
	snap := c.next("snapshot")
	if !snap.msg.Final || len(snap.msg.Docs) != 1 || snap.id != sub.msg.Epoch+":0" {
		t.Fatalf("snapshot id %q data %s", snap.id, snap.data)
	}
	e.put("tasks/"+org+"_2", map[string]any{"org_id": org, "n": 2})
	ch := c.next("changes")
	if ch.id != sub.msg.Epoch+":1" || ch.msg.Changes[0].ID != org+"_2" {
		t.Fatalf("changes id %q data %s", ch.id, ch.data)
	}
	c.cancel()
	e.awaitConnCount(0)

	// Changes while away; Last-Event-ID resumes with the net change.
	e.del("tasks/" + org + "_1")
	e.put("tasks/"+org+"_3", map[string]any{"org_id": org, "n": 3})
	r, _ := e.sse(tok, q, ch.id)
	r.next("welcome")
	if s := r.next("subscribed"); !s.msg.Resumed || s.msg.Epoch != sub.msg.Epoch {
		t.Fatalf("resume answered %s", s.data)
	}
	got := map[string]string{}
	for len(got) < 2 {
		m := r.next("changes")
		for _, c := range m.msg.Changes {
			got[c.ID] = c.Kind
		}
	}
	if got[org+"_1"] != "removed" || got[org+"_3"] != "added" {
		t.Fatalf("net change %v", got)
	}
}

func TestSSERefusals(t *testing.T) {
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{})
	tok := e.token(authz.MintOptions{UserID: uniq("u"), OrgID: uniq("org")})
	for name, tc := range map[string]struct {
		tok, query, lastID string
		status             int
		code               string
	}{
		"no token":      {"", "collection=tasks", "", 401, "unauthorized"},
		"bad token":     {"garbage", "collection=tasks", "", 401, "unauthorized"},
		"bad where":     {tok, "collection=tasks&where=%7B", "", 400, "bad_request"},
		"no collection": {tok, "", "", 400, "bad_request"},
		"bad event id":  {tok, "collection=tasks", "nocolon", 400, "bad_request"},
	} {
		t.Run(name, func(t *testing.T) {
			c, resp := e.sse(tc.tok, tc.query, tc.lastID)
			if c != nil {
				t.Fatal("stream opened")
			}
			body, _ := io.ReadAll(resp.Body)
			var m map[string]string
			if resp.StatusCode != tc.status || json.Unmarshal(body, &m) != nil || m["code"] != tc.code {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
	// A forbidden collection is an error event on the stream, like a
	// refused WebSocket subscribe.
	c, _ := e.sse(tok, "collection=secrets", "")
	c.next("welcome")
	if m := c.next("error"); m.msg.Code != "forbidden" {
		t.Fatalf("got %s", m.data)
	}
}

// TestSSEExpiryEndsStream: a token that lives less than the expiry
// warning is warned at once, after the welcome (the protocol's first
// message), and the stream ends with a 4001 close event at expiry. The
// injected clock fires the warning inside the gateway's AfterFunc, the
// order a busy machine can produce with real timers.
func TestSSEExpiryEndsStream(t *testing.T) {
	clock := newEagerClock()
	t.Parallel()
	e, _ := newFakeEnv(t, envOpts{leeway: 100 * time.Millisecond, clock: clock})
	clock.CatchUp()
	// (exp has whole-second precision: the TTL leaves a second of margin.)
	tok := e.token(authz.MintOptions{UserID: uniq("u"), TTL: 3 * time.Second})
	c, _ := e.sse(tok, "collection=notes", "")
	c.next("welcome")
	seen := map[string]bool{}
	for !seen["snapshot"] {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("stream ended after %v", seen)
			}
			if ev.event == "close" {
				t.Fatalf("closed %s before expiry (seen %v)", ev.data, seen)
			}
			seen[ev.msg.Type] = true
		case <-time.After(waitFor):
			t.Fatalf("no snapshot within %v (seen %v)", waitFor, seen)
		}
	}
	if !seen["auth_expiring"] || !seen["subscribed"] {
		t.Fatalf("before the snapshot: %v, want auth_expiring and subscribed", seen)
	}
	clock.Advance(4 * time.Second)
	select {
	case ev, ok := <-c.events:
		if !ok || ev.event != "close" || !strings.Contains(ev.data, `"code":4001`) {
			t.Fatalf("after expiry got event %q %s (stream open: %v), want a 4001 close", ev.event, ev.data, ok)
		}
	case <-time.After(waitFor):
		t.Fatalf("no close event within %v of expiry", waitFor)
	}
	if ev, ok := <-c.events; ok {
		t.Fatalf("event %q %s after the close", ev.event, ev.data)
	}
}
