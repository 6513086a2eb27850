package gateway_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/webhooks"
	"github.com/firegate/firegate/wire"
)

const testWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func postWebhook(t *testing.T, url, id, body string) int {
	t.Helper()
	ts := time.Now()
	sig, err := webhooks.Sign(testWebhookSecret, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", url, bytes.NewBufferString(body))
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestClerkWebhooksRevokeLiveConnections(t *testing.T) {
	e := newEnv(t, envOpts{})
	wh, err := webhooks.NewHandler(webhooks.Config{Secret: testWebhookSecret}, e.srv)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(wh)
	t.Cleanup(hs.Close)

	org, user := uniq("org"), uniq("u")
	victim := e.connect(e.token(authz.MintOptions{UserID: user, SessionID: "sess_" + user, OrgID: org}))
	bystander := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
	if code := postWebhook(t, hs.URL, "msg_1", `{"type":"session.revoked","data":{"id":"sess_`+user+`","user_id":"`+user+`"}}`); code != 204 {
		t.Fatalf("webhook status %d", code)
	}
	if code, reason := victim.closed(); code != wire.CloseUnauthenticated {
		t.Fatalf("revoked session close %d %q", code, reason)
	}
	bystander.send(map[string]any{"type": "ping", "id": "x"})
	bystander.expect("pong")

	// Membership deleted: org-scoped subscriptions end, user-scoped stay.
	member := uniq("u")
	cl := e.connect(e.token(authz.MintOptions{UserID: member, OrgID: org}))
	cl.subscribe(map[string]any{"id": "t", "collection": "tasks"})
	cl.subscribe(map[string]any{"id": "n", "collection": "notes"})
	body := `{"type":"organizationMembership.deleted","data":{"organization":{"id":"` + org + `"},"public_user_data":{"user_id":"` + member + `"}}}`
	if code := postWebhook(t, hs.URL, "msg_2", body); code != 204 {
		t.Fatalf("webhook status %d", code)
	}
	if m := cl.expect("unsubscribed"); m.Sub != "t" || m.Reason != "forbidden" {
		t.Fatalf("got %+v", m)
	}
	cl.send(map[string]any{"type": "subscribe", "id": "t2", "collection": "tasks"})
	if m := cl.expect("error"); m.Code != "forbidden" {
		t.Fatalf("resubscribe after removal: %+v", m)
	}
	// A forged delivery changes nothing.
	req, _ := http.NewRequest("POST", hs.URL, bytes.NewBufferString(`{"type":"user.deleted","data":{"id":"`+member+`"}}`))
	req.Header.Set("svix-id", "msg_3")
	req.Header.Set("svix-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set("svix-signature", "v1,AAAA")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("forged webhook: %v %v", err, resp)
	}
	cl.send(map[string]any{"type": "ping", "id": "still"})
	cl.expect("pong")
}
