package webhooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firegate/firegate/revocation"
)

const (
	testSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	otherSecret = "whsec_dGhpcyBpcyBhIGRpZmZlcmVudCBzZWNyZXQ="
)

// t0 is the injected clock's time: whole seconds, as svix-timestamp is.
var t0 = time.Unix(1_750_000_000, 0)

// recorder is a recording fake Revoker, safe for concurrent use.
type recorder struct {
	mu     sync.Mutex
	calls  []string
	fail   error     // Revoke's answer when set
	wantAt time.Time // when set, Revoke checks the revocation's time
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}
func (r *recorder) Revoke(_ context.Context, rv revocation.Revocation) error {
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		return fail
	}
	if !rv.At.Equal(r.wantAt) && !r.wantAt.IsZero() {
		return fmt.Errorf("revocation time %v, want the handler's clock %v", rv.At, r.wantAt)
	}
	r.add(fmt.Sprintf("Revoke(%s,%s,%s)", rv.Kind, rv.ID, rv.OrgID))
	return nil
}
func (r *recorder) UpdateMembership(u, o, role string, perms []string) {
	r.add(fmt.Sprintf("UpdateMembership(%s,%s,%s,%q)", u, o, role, perms))
}
func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// events records OnEvent calls, safe for concurrent use.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) on(eventType, result string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, eventType+":"+result)
}
func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

// fixture is a handler with an adjustable clock, a recorder and OnEvent log.
type fixture struct {
	h   http.Handler
	rec *recorder
	ev  *events
	mu  sync.Mutex
	now time.Time
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	f := &fixture{rec: &recorder{wantAt: t0}, ev: &events{}, now: t0}
	if cfg.Secret == "" {
		cfg.Secret = testSecret
	}
	cfg.Clock = func() time.Time {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.now
	}
	cfg.OnEvent = f.ev.on
	h, err := NewHandler(cfg, f.rec)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	f.h = h
	return f
}

func (f *fixture) setNow(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
}

// signed builds a POST signed with secret.
func signed(t testing.TB, secret, id string, ts time.Time, body []byte) *http.Request {
	t.Helper()
	sig, err := Sign(secret, id, ts, body)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return request(id, strconv.FormatInt(ts.Unix(), 10), sig, body)
}

func request(id, ts, sig string, body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/v1/webhooks/clerk", bytes.NewReader(body))
	if id != "" {
		req.Header.Set("svix-id", id)
	}
	if ts != "" {
		req.Header.Set("svix-timestamp", ts)
	}
	if sig != "" {
		req.Header.Set("svix-signature", sig)
	}
	return req
}

func (f *fixture) do(req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w
}

func expect(t *testing.T, w *httptest.ResponseRecorder, status int, body string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d (body %q)", w.Code, status, w.Body.String())
	}
	if got := strings.TrimSpace(w.Body.String()); got != body {
		t.Fatalf("body = %q, want %q", got, body)
	}
}

const revokedBody = `{"type":"session.revoked","data":{"id":"sess_1","user_id":"user_1"}}`

func TestSignKnownVector(t *testing.T) {
	// The test vector of Svix's own libraries.
	got, err := Sign(testSecret, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!"} {
		if _, err := Sign(bad, "m", t0, nil); err == nil {
			t.Errorf("Sign(%q) succeeded, want error", bad)
		}
	}
}

func TestNewHandlerValidation(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		nilRev  bool
		wantErr bool
	}{
		{"valid zero defaults", Config{Secret: testSecret}, false, false},
		{"missing secret", Config{}, false, true},
		{"no whsec_ prefix", Config{Secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, false, true},
		{"clerk secret key by mistake", Config{Secret: "sk_test_abc"}, false, true},
		{"bad base64", Config{Secret: "whsec_not*base64"}, false, true},
		{"empty key", Config{Secret: "whsec_"}, false, true},
		{"negative tolerance", Config{Secret: testSecret, Tolerance: -time.Second}, false, true},
		{"negative cache size", Config{Secret: testSecret, ReplayCacheSize: -1}, false, true},
		{"nil revoker", Config{Secret: testSecret}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Revoker = &recorder{}
			if tc.nilRev {
				r = nil
			}
			h, err := NewHandler(tc.cfg, r)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && h == nil {
				t.Fatal("nil handler without error")
			}
			if err != nil && strings.Contains(err.Error(), "MfKQ9r8G") {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
	// Defaults: zero tolerance means 5 min, zero cache means 10k, nil clock is time.Now.
	h, err := NewHandler(Config{Secret: testSecret}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	hh := h.(*handler)
	if hh.tolerance != DefaultTolerance || len(hh.seen.ring) != DefaultReplayCacheSize || hh.clock == nil {
		t.Fatalf("defaults: tolerance %v, cache %d", hh.tolerance, len(hh.seen.ring))
	}
	// A real-clock request goes through with the defaults.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, signed(t, testSecret, "msg_now", time.Now(), []byte(revokedBody)))
	expect(t, w, http.StatusNoContent, "")
}

func TestEvents(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		status    int
		wantCalls []string
		wantEvent string
	}{
		{"session.revoked", revokedBody, 204, []string{"Revoke(session,sess_1,)"}, "session.revoked:ok"},
		{"session.ended", `{"type":"session.ended","data":{"id":"sess_2","user_id":"user_1"}}`, 204,
			[]string{"Revoke(session,sess_2,)"}, "session.ended:ok"},
		{"session.removed", `{"type":"session.removed","data":{"id":"sess_3","user_id":"user_1","status":"removed"}}`, 204,
			[]string{"Revoke(session,sess_3,)"}, "session.removed:ok"},
		{"user.deleted", `{"type":"user.deleted","data":{"id":"user_9","deleted":true,"object":"user"},"object":"event"}`, 204,
			[]string{"Revoke(user,user_9,)"}, "user.deleted:ok"},
		{"membership deleted",
			`{"type":"organizationMembership.deleted","data":{"id":"orgmem_1","organization":{"id":"org_7","slug":"acme"},"public_user_data":{"user_id":"user_3","identifier":"a@b.c"},"role":"org:member"}}`,
			204, []string{"Revoke(membership,user_3,org_7)"}, "organizationMembership.deleted:ok"},
		{"membership updated",
			`{"type":"organizationMembership.updated","data":{"organization":{"id":"org_7"},"public_user_data":{"user_id":"user_3"},"role":"org:admin","permissions":["org:sys_memberships:manage","org:invoices:read"]}}`,
			204, []string{`UpdateMembership(user_3,org_7,org:admin,["org:sys_memberships:manage" "org:invoices:read"])`}, "organizationMembership.updated:ok"},
		{"membership updated without permissions",
			`{"type":"organizationMembership.updated","data":{"organization":{"id":"org_7"},"public_user_data":{"user_id":"user_3"},"role":"org:member"}}`,
			204, []string{`UpdateMembership(user_3,org_7,org:member,[])`}, "organizationMembership.updated:ok"},
		{"organization.deleted", `{"type":"organization.deleted","data":{"id":"org_8","deleted":true,"object":"organization"}}`, 204,
			[]string{"Revoke(org,org_8,)"}, "organization.deleted:ok"},
		{"organization.deleted without id", `{"type":"organization.deleted","data":{"deleted":true}}`, 400, nil, "organization.deleted:malformed"},
		{"id past the limit", `{"type":"user.deleted","data":{"id":"` + strings.Repeat("u", revocation.MaxIDBytes+1) + `"}}`, 400, nil, "user.deleted:malformed"},
		{"unknown type ignored", `{"type":"user.created","data":{"id":"user_1"}}`, 204, nil, "other:ignored"},
		{"unknown type without data ignored", `{"type":"email.created"}`, 204, nil, "other:ignored"},
		// Known types without the ids they need are malformed, and nothing is revoked.
		{"session without id", `{"type":"session.revoked","data":{"user_id":"user_1"}}`, 400, nil, "session.revoked:malformed"},
		{"session data not an object", `{"type":"session.ended","data":"sess_1"}`, 400, nil, "session.ended:malformed"},
		{"user.deleted without id", `{"type":"user.deleted","data":{"deleted":true}}`, 400, nil, "user.deleted:malformed"},
		{"membership without org", `{"type":"organizationMembership.deleted","data":{"public_user_data":{"user_id":"user_3"}}}`, 400, nil, "organizationMembership.deleted:malformed"},
		{"membership without user", `{"type":"organizationMembership.deleted","data":{"organization":{"id":"org_7"}}}`, 400, nil, "organizationMembership.deleted:malformed"},
		{"membership updated without role", `{"type":"organizationMembership.updated","data":{"organization":{"id":"org_7"},"public_user_data":{"user_id":"user_3"}}}`, 400, nil, "organizationMembership.updated:malformed"},
		{"membership permissions wrong type", `{"type":"organizationMembership.updated","data":{"organization":{"id":"org_7"},"public_user_data":{"user_id":"user_3"},"role":"org:admin","permissions":"all"}}`, 400, nil, "organizationMembership.updated:malformed"},
		{"malformed JSON", `{"type":"session.revoked","data":`, 400, nil, "unknown:malformed"},
		{"JSON array", `[1,2]`, 400, nil, "unknown:malformed"},
		{"no type", `{"data":{"id":"sess_1"}}`, 400, nil, "unknown:malformed"},
		{"empty body", ``, 400, nil, "unknown:malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			w := f.do(signed(t, testSecret, "msg_1", t0, []byte(tc.body)))
			want := ""
			if tc.status == 400 {
				want = "malformed event"
			}
			expect(t, w, tc.status, want)
			if got := f.rec.got(); !slices.Equal(got, tc.wantCalls) {
				t.Fatalf("calls = %q, want %q", got, tc.wantCalls)
			}
			if got := f.ev.list(); !slices.Equal(got, []string{tc.wantEvent}) {
				t.Fatalf("OnEvent = %q, want [%q]", got, tc.wantEvent)
			}
		})
	}
}

func TestBadSignatures(t *testing.T) {
	body := []byte(revokedBody)
	ts := strconv.FormatInt(t0.Unix(), 10)
	valid, _ := Sign(testSecret, "msg_1", t0, body)
	validSig := strings.TrimPrefix(valid, "v1,")
	byOther, _ := Sign(otherSecret, "msg_1", t0, body)
	otherBody, _ := Sign(testSecret, "msg_1", t0, []byte(`{"type":"user.deleted","data":{"id":"user_1"}}`))
	otherID, _ := Sign(testSecret, "msg_2", t0, body)
	otherTS, _ := Sign(testSecret, "msg_1", t0.Add(time.Second), body)
	forged := "v1," + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xAB}, 32))
	tests := []struct{ name, sig string }{
		{"forged", forged},
		{"signed by another secret", byOther},
		{"signature of another body", otherBody},
		{"signature of another id", otherID},
		{"signature of another timestamp", otherTS},
		{"wrong version", "v2," + validSig},
		{"v1a only", "v1a," + validSig},
		{"no version", validSig},
		{"truncated", valid[:len(valid)-4]},
		{"raw base64 url alphabet", "v1," + strings.NewReplacer("+", "-", "/", "_").Replace(validSig) + "x"},
		{"too long", "v1," + validSig + validSig},
		{"garbage", "v1,%%%% v1, ,, v1,,"},
		{"several forged", forged + " " + byOther + " " + otherBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			w := f.do(request("msg_1", ts, tc.sig, body))
			expect(t, w, http.StatusUnauthorized, "invalid signature")
			if strings.Contains(w.Body.String(), validSig) {
				t.Fatal("response leaks the expected signature")
			}
			if got := f.rec.got(); len(got) != 0 {
				t.Fatalf("Revoker called: %q", got)
			}
			if got := f.ev.list(); !slices.Equal(got, []string{"unknown:bad_signature"}) {
				t.Fatalf("OnEvent = %q", got)
			}
		})
	}
}

func TestMultipleSignatures(t *testing.T) {
	body := []byte(revokedBody)
	valid, _ := Sign(testSecret, "msg_1", t0, body)
	byOther, _ := Sign(otherSecret, "msg_1", t0, body)
	forged := "v1," + base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct{ name, sig string }{
		{"valid first", valid + " " + forged},
		{"valid last", forged + " " + byOther + " " + valid},
		{"rotation: old and new secret", byOther + " " + valid},
		{"other versions mixed in", "v1a,abc " + valid + " v2,xyz"},
		{"extra whitespace", "  " + forged + "   " + valid + "  "},
		{"garbage entries around", "junk ,, v1 v1, " + valid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			w := f.do(request("msg_1", strconv.FormatInt(t0.Unix(), 10), tc.sig, body))
			expect(t, w, http.StatusNoContent, "")
			if got := f.rec.got(); !slices.Equal(got, []string{"Revoke(session,sess_1,)"}) {
				t.Fatalf("calls = %q", got)
			}
		})
	}
}

func TestTimestampWindow(t *testing.T) {
	tests := []struct {
		name      string
		tolerance time.Duration
		offset    time.Duration // message timestamp minus clock
		wantOK    bool
	}{
		{"now", 0, 0, true},
		{"past at default edge", 0, -5 * time.Minute, true},
		{"past beyond default edge", 0, -5*time.Minute - time.Second, false},
		{"future at default edge", 0, 5 * time.Minute, true},
		{"future beyond default edge", 0, 5*time.Minute + time.Second, false},
		{"far past", 0, -24 * time.Hour, false},
		{"far future", 0, 24 * time.Hour, false},
		{"past at custom edge", 30 * time.Second, -30 * time.Second, true},
		{"past beyond custom edge", 30 * time.Second, -31 * time.Second, false},
		{"future at custom edge", 30 * time.Second, 30 * time.Second, true},
		{"future beyond custom edge", 30 * time.Second, 31 * time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{Tolerance: tc.tolerance})
			w := f.do(signed(t, testSecret, "msg_1", t0.Add(tc.offset), []byte(revokedBody)))
			if tc.wantOK {
				expect(t, w, http.StatusNoContent, "")
				if len(f.rec.got()) != 1 {
					t.Fatalf("calls = %q", f.rec.got())
				}
				return
			}
			expect(t, w, http.StatusUnauthorized, "stale timestamp")
			if got := f.rec.got(); len(got) != 0 {
				t.Fatalf("Revoker called: %q", got)
			}
			if got := f.ev.list(); !slices.Equal(got, []string{"unknown:stale"}) {
				t.Fatalf("OnEvent = %q", got)
			}
		})
	}
	// Sub-second clock: 5 min 0.5 s after the timestamp is past the edge.
	f := newFixture(t, Config{})
	f.setNow(t0.Add(5*time.Minute + 500*time.Millisecond))
	expect(t, f.do(signed(t, testSecret, "msg_1", t0, []byte(revokedBody))), http.StatusUnauthorized, "stale timestamp")
}

// TestReplay: a repeated delivery of an accepted message (Svix's retry, or
// an attacker's replay) answers 204 and is not acted on again.
func TestReplay(t *testing.T) {
	body := []byte(revokedBody)
	f := newFixture(t, Config{})
	expect(t, f.do(signed(t, testSecret, "msg_1", t0, body)), 204, "")

	// The identical request again: Svix retrying a delivery whose answer
	// it missed must not see a failure (it would keep retrying).
	expect(t, f.do(signed(t, testSecret, "msg_1", t0, body)), 204, "")
	// A fresh timestamp and a valid signature, but the same id.
	f.setNow(t0.Add(time.Minute))
	f.rec.wantAt = time.Time{}
	expect(t, f.do(signed(t, testSecret, "msg_1", t0.Add(time.Minute), body)), 204, "")
	// A different id is a different message.
	expect(t, f.do(signed(t, testSecret, "msg_2", t0.Add(time.Minute), body)), 204, "")

	// Past the window, the timestamp check refuses the replay by itself.
	f.setNow(t0.Add(5*time.Minute + time.Second))
	expect(t, f.do(signed(t, testSecret, "msg_1", t0, body)), 401, "stale timestamp")

	if got := f.rec.got(); !slices.Equal(got, []string{"Revoke(session,sess_1,)", "Revoke(session,sess_1,)"}) {
		t.Fatalf("calls = %q", got)
	}
	want := []string{"session.revoked:ok", "unknown:replayed", "unknown:replayed", "session.revoked:ok", "unknown:stale"}
	if got := f.ev.list(); !slices.Equal(got, want) {
		t.Fatalf("OnEvent = %q, want %q", got, want)
	}
}

// TestRevokerFailureIsRetried: when the revocation cannot be recorded the
// handler answers 503 and forgets the message, so Svix's retry is handled
// afresh (not answered "already processed" while nothing was recorded).
func TestRevokerFailureIsRetried(t *testing.T) {
	body := []byte(revokedBody)
	f := newFixture(t, Config{})
	f.rec.fail = errors.New("firestore unavailable")
	expect(t, f.do(signed(t, testSecret, "msg_1", t0, body)), 503, "revocation not recorded; retry")
	f.rec.mu.Lock()
	f.rec.fail = nil
	f.rec.mu.Unlock()
	expect(t, f.do(signed(t, testSecret, "msg_1", t0, body)), 204, "")
	if got := f.rec.got(); !slices.Equal(got, []string{"Revoke(session,sess_1,)"}) {
		t.Fatalf("calls = %q", got)
	}
	want := []string{"session.revoked:failed", "session.revoked:ok"}
	if got := f.ev.list(); !slices.Equal(got, want) {
		t.Fatalf("OnEvent = %q, want %q", got, want)
	}
	// A malformed authentic event is forgotten too: its retry is refused
	// the same way, not answered "already processed".
	bad := []byte(`{"type":"user.deleted","data":{}}`)
	expect(t, f.do(signed(t, testSecret, "msg_2", t0, bad)), 400, "malformed event")
	expect(t, f.do(signed(t, testSecret, "msg_2", t0, bad)), 400, "malformed event")
}

func TestForgeryDoesNotPoisonReplayCache(t *testing.T) {
	f := newFixture(t, Config{})
	body := []byte(revokedBody)
	forged, _ := Sign(otherSecret, "msg_1", t0, body)
	expect(t, f.do(request("msg_1", strconv.FormatInt(t0.Unix(), 10), forged, body)), 401, "invalid signature")
	// Stale but authentic: not remembered either.
	expect(t, f.do(signed(t, testSecret, "msg_1", t0.Add(-time.Hour), body)), 401, "stale timestamp")
	if n := f.h.(*handler).seen.len(); n != 0 {
		t.Fatalf("replay cache holds %d ids after rejected requests", n)
	}
	expect(t, f.do(signed(t, testSecret, "msg_1", t0, body)), 204, "")
}

func TestReplayCacheBound(t *testing.T) {
	body := []byte(revokedBody)
	f := newFixture(t, Config{ReplayCacheSize: 2})
	seen := f.h.(*handler).seen
	calls := func() int { return len(f.rec.got()) }
	expect(t, f.do(signed(t, testSecret, "a", t0, body)), 204, "")
	expect(t, f.do(signed(t, testSecret, "b", t0, body)), 204, "")
	// At the edge: full, both still remembered (repeats are not acted on).
	expect(t, f.do(signed(t, testSecret, "a", t0, body)), 204, "")
	expect(t, f.do(signed(t, testSecret, "b", t0, body)), 204, "")
	if n := seen.len(); n != 2 || calls() != 2 {
		t.Fatalf("cache holds %d, calls %d; want 2 and 2", n, calls())
	}
	// Past the edge: c evicts the oldest (a); memory stays bounded.
	expect(t, f.do(signed(t, testSecret, "c", t0, body)), 204, "")
	if n := seen.len(); n != 2 {
		t.Fatalf("cache holds %d, want 2", n)
	}
	expect(t, f.do(signed(t, testSecret, "b", t0, body)), 204, "")
	expect(t, f.do(signed(t, testSecret, "c", t0, body)), 204, "")
	if calls() != 3 {
		t.Fatalf("calls = %d, want 3", calls())
	}
	// The evicted id is forgotten: that is the documented price of the bound.
	expect(t, f.do(signed(t, testSecret, "a", t0, body)), 204, "")
	if calls() != 4 {
		t.Fatalf("calls = %d, want 4 (the evicted id acted on again)", calls())
	}

	// Expired ids are pruned: once the window has passed, a new message
	// leaves only itself in the cache.
	f.setNow(t0.Add(5*time.Minute + time.Second))
	f.rec.wantAt = time.Time{}
	expect(t, f.do(signed(t, testSecret, "d", t0.Add(5*time.Minute), body)), 204, "")
	if n := seen.len(); n != 1 {
		t.Fatalf("cache holds %d after expiry, want 1", n)
	}
}

func TestMalformedRequests(t *testing.T) {
	body := []byte(revokedBody)
	ts := strconv.FormatInt(t0.Unix(), 10)
	sig, _ := Sign(testSecret, "msg_1", t0, body)
	longID := strings.Repeat("m", MaxIDBytes)
	longSig, _ := Sign(testSecret, longID, t0, body)
	tooLongID := longID + "m"
	tooLongSig, _ := Sign(testSecret, tooLongID, t0, body)
	tests := []struct {
		name, id, ts, sig string
		status            int
		reason            string
	}{
		{"missing svix-id", "", ts, sig, 400, "missing svix headers"},
		{"missing svix-timestamp", "msg_1", "", sig, 400, "missing svix headers"},
		{"missing svix-signature", "msg_1", ts, "", 400, "missing svix headers"},
		{"no headers", "", "", "", 400, "missing svix headers"},
		{"timestamp not a number", "msg_1", "yesterday", sig, 400, "bad svix-timestamp"},
		{"timestamp fractional", "msg_1", ts + ".5", sig, 400, "bad svix-timestamp"},
		{"timestamp overflow", "msg_1", "99999999999999999999", sig, 400, "bad svix-timestamp"},
		{"id at limit", longID, ts, longSig, 204, ""},
		{"id past limit", tooLongID, ts, tooLongSig, 400, "svix-id too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			expect(t, f.do(request(tc.id, tc.ts, tc.sig, body)), tc.status, tc.reason)
			if tc.status != 204 {
				if got := f.rec.got(); len(got) != 0 {
					t.Fatalf("Revoker called: %q", got)
				}
				if got := f.ev.list(); !slices.Equal(got, []string{"unknown:malformed"}) {
					t.Fatalf("OnEvent = %q", got)
				}
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	base := `{"type":"session.revoked","data":{"id":"sess_1"}}`
	tests := []struct {
		name   string
		size   int
		status int
	}{
		{"at limit", MaxBodyBytes, 204},
		{"past limit", MaxBodyBytes + 1, 413},
		{"far past limit", 4 * MaxBodyBytes, 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(base + strings.Repeat(" ", tc.size-len(base)))
			f := newFixture(t, Config{})
			w := f.do(signed(t, testSecret, "msg_1", t0, body))
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d", w.Code, tc.status)
			}
			wantCalls := 0
			if tc.status == 204 {
				wantCalls = 1
			}
			if got := f.rec.got(); len(got) != wantCalls {
				t.Fatalf("calls = %q", got)
			}
		})
	}
}

func TestMethods(t *testing.T) {
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		t.Run(m, func(t *testing.T) {
			f := newFixture(t, Config{})
			req := signed(t, testSecret, "msg_1", t0, []byte(revokedBody))
			req.Method = m
			w := f.do(req)
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodPost {
				t.Fatalf("status %d Allow %q, want 405 POST", w.Code, w.Header().Get("Allow"))
			}
			if len(f.rec.got()) != 0 || len(f.ev.list()) != 0 {
				t.Fatalf("calls %q events %q", f.rec.got(), f.ev.list())
			}
		})
	}
}

// TestConcurrentReplay: many goroutines deliver the same message at once over
// a real server; it is acted on exactly once, and every other answer is
// either 204 (already processed) or 409 (being processed).
func TestConcurrentReplay(t *testing.T) {
	f := newFixture(t, Config{})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	body := []byte(revokedBody)
	sig, _ := Sign(testSecret, "msg_1", t0, body)
	const n = 16
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
			req.Header.Set("svix-id", "msg_1")
			req.Header.Set("svix-timestamp", strconv.FormatInt(t0.Unix(), 10))
			req.Header.Set("svix-signature", sig)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[204] < 1 || count[204]+count[409] != n {
		t.Fatalf("status counts = %v, want only 204 and 409, at least one 204", count)
	}
	if got := f.rec.got(); len(got) != 1 {
		t.Fatalf("calls = %q", got)
	}
}

// FuzzHandler feeds arbitrary headers and bodies, optionally with a valid
// signature so that the JSON parsing is reached. The handler never panics,
// answers only the documented statuses, and without a valid signature never
// calls the Revoker.
func FuzzHandler(f *testing.F) {
	ts := strconv.FormatInt(t0.Unix(), 10)
	f.Add("msg_1", ts, "v1,abc", []byte(revokedBody), true)
	f.Add("msg_1", ts, "v1,abc", []byte(revokedBody), false)
	f.Add("msg_1", ts, "", []byte(`{"type":"organizationMembership.updated","data":{"organization":{"id":"o"},"public_user_data":{"user_id":"u"},"role":"r","permissions":["a",1]}}`), true)
	f.Add("msg_1", ts, "", []byte(`{"type":"organizationMembership.deleted","data":{"organization":null}}`), true)
	f.Add("msg_1", ts, "", []byte(`{"type":"user.deleted","data":[]}`), true)
	f.Add("m", "-1", "v1,", []byte(`{`), true)
	f.Add("", "", "", []byte(nil), false)
	f.Add("msg", "1e9", "v1,"+strings.Repeat("A", 44), []byte(`null`), false)
	f.Fuzz(func(t *testing.T, id, tsRaw, sig string, body []byte, sign bool) {
		rec := &recorder{}
		h, err := NewHandler(Config{Secret: testSecret, ReplayCacheSize: 4, Clock: func() time.Time { return t0 }}, rec)
		if err != nil {
			t.Fatal(err)
		}
		if sign {
			key, _ := decodeSecret(testSecret)
			sig = sig + " v1," + base64.StdEncoding.EncodeToString(mac(key, id, tsRaw, body))
		}
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		// Header values that net/http could not carry are dropped, as a real server would.
		for k, v := range map[string]string{"svix-id": id, "svix-timestamp": tsRaw, "svix-signature": sig} {
			if validHeaderValue(v) {
				req.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case 204, 400, 401, 409, 413:
		default:
			t.Fatalf("unexpected status %d", w.Code)
		}
		if !sign && len(rec.got()) != 0 {
			t.Fatalf("unsigned request reached the Revoker: %q", rec.got())
		}
		if w.Code != 204 && len(rec.got()) != 0 {
			t.Fatalf("rejected request (%d) reached the Revoker: %q", w.Code, rec.got())
		}
	})
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// FuzzValidSignature: the signature-header parser never panics and accepts
// exactly when an entry is "v1," followed by the expected MAC's encoding.
func FuzzValidSignature(f *testing.F) {
	expected := bytes.Repeat([]byte{7}, 32)
	good := "v1," + base64.StdEncoding.EncodeToString(expected)
	f.Add(good)
	f.Add("v1,x " + good)
	f.Add("v1a," + good[3:])
	f.Add("v1," + good[3:] + "==")
	f.Add(strings.Repeat("v1,", 100))
	f.Fuzz(func(t *testing.T, header string) {
		got := validSignature(expected, header)
		want := slices.Contains(strings.Fields(header), good)
		if got != want {
			t.Fatalf("validSignature(%q) = %v, want %v", header, got, want)
		}
	})
}

// FuzzParseEvent: any body either parses into at most one action whose ids
// are valid, or is refused with ErrMalformed; a revoking event's time is
// the one given.
func FuzzParseEvent(f *testing.F) {
	for _, b := range []string{
		revokedBody,
		`{"type":"user.deleted","data":{"id":"user_1"}}`,
		`{"type":"organization.deleted","data":{"id":"org_1"}}`,
		`{"type":"organizationMembership.deleted","data":{"organization":{"id":"o"},"public_user_data":{"user_id":"u"}}}`,
		`{"type":"organizationMembership.updated","data":{"organization":{"id":"o"},"public_user_data":{"user_id":"u"},"role":"r","permissions":["p"]}}`,
		`{"type":"user.created","data":{}}`,
		`{"type":"session.ended","data":null}`,
		`[]`, `{`, ``,
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseEvent(body, t0)
		if !slices.Contains(EventTypes, ev.Label) {
			t.Fatalf("label %q is not one of EventTypes", ev.Label)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			if ev.Revocation != nil || ev.Update != nil {
				t.Fatalf("refused event carries an action: %+v", ev)
			}
			return
		}
		if ev.Revocation != nil && ev.Update != nil {
			t.Fatalf("two actions: %+v", ev)
		}
		if r := ev.Revocation; r != nil {
			if r.Validate() != nil || !r.At.Equal(t0) {
				t.Fatalf("revocation %+v invalid or not at the given time", r)
			}
		}
		if u := ev.Update; u != nil && (u.UserID == "" || u.OrgID == "" || u.Role == "") {
			t.Fatalf("update without ids: %+v", u)
		}
	})
}
