package gateway

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

func newTestSub(q *sendQueue, id string) *subscription {
	c := &conn{q: q}
	return &subscription{id: id, quoted: wire.QuoteID(id), c: c, takenSeq: noSeq}
}

func liveMsg(seq uint64) *subscriptions.Message {
	return &subscriptions.Message{Frame: wire.ChangesFrame(seq, time.Unix(1, 0), []wire.Change{{Kind: "added", ID: "d", Path: "t/d", Data: []byte(`{"a":1}`)}}), Seq: seq, ReceivedAt: time.Unix(2, 0)}
}

func TestQueuePushTakeDoesNotAllocate(t *testing.T) {
	q := newSendQueue(64, 1<<20, func(metrics.OverflowAction) {})
	s := newTestSub(q, "s1")
	m := liveMsg(1)
	// Warm the two slices up.
	for i := 0; i < 8; i++ {
		q.pushMsg(s, m, false)
	}
	q.take()
	q.take()
	allocs := testing.AllocsPerRun(1000, func() {
		for i := 0; i < 8; i++ {
			q.pushMsg(s, m, false)
		}
		b, _, _, _ := q.take()
		q.release(b)
	})
	if allocs != 0 {
		t.Fatalf("push+take allocates %v per run", allocs)
	}
}

func TestQueueOverflowDropsDataKeepsControlAndCatchesUp(t *testing.T) {
	var actions []metrics.OverflowAction
	q := newSendQueue(3, 1<<20, func(a metrics.OverflowAction) { actions = append(actions, a) })
	a, b := newTestSub(q, "a"), newTestSub(q, "b")
	sub := &subscriptions.Message{Frame: wire.SubscribedFrame("e", false)}
	q.pushMsg(a, sub, true)
	q.pushCtrl(metrics.SentPong, []byte(`{"type":"pong"}`))
	q.pushMsg(a, liveMsg(1), false)
	// The writer took nothing yet; a's seq 1 is queued. b's live message
	// finds the queue full (3 items).
	q.pushMsg(b, liveMsg(7), false)
	if len(actions) != 1 || actions[0] != metrics.OverflowCatchup {
		t.Fatalf("actions %v", actions)
	}
	batch, cr, catchUp, _ := q.take()
	if cr != nil || catchUp != nil {
		t.Fatalf("unexpected close %v or catch-up %v before drain", cr, catchUp)
	}
	if len(batch) != 2 || batch[0].msg != sub || batch[1].typ != metrics.SentPong {
		t.Fatalf("kept %d entries: %+v", len(batch), batch)
	}
	// Lagging subscriptions drop live messages until their catch-up.
	q.pushMsg(a, liveMsg(2), false)
	if len(q.items) != 0 {
		t.Fatal("live message queued for a lagging subscription")
	}
	_, _, catchUp, _ = q.take()
	if len(catchUp) != 2 {
		t.Fatalf("catch-up for %d subscriptions, want 2", len(catchUp))
	}
	for _, s := range catchUp {
		if s.catchUpFrom != noSeq {
			t.Fatalf("%s catches up from %d; nothing complete was sent, so a snapshot is due", s.id, s.catchUpFrom)
		}
	}
	// The catch-up message clears lagging; live messages flow again.
	q.pushMsg(a, liveMsg(3), true)
	q.pushMsg(a, liveMsg(4), false)
	if len(q.items) != 2 {
		t.Fatalf("%d queued after catch-up", len(q.items))
	}
	batch, _, _, _ = q.take()
	if a.takenSeq != 4 {
		t.Fatalf("takenSeq %d", a.takenSeq)
	}
	q.release(batch)
}

func TestQueueHardCapDisconnects(t *testing.T) {
	var actions []metrics.OverflowAction
	q := newSendQueue(2, 1<<20, func(a metrics.OverflowAction) { actions = append(actions, a) })
	for i := 0; i <= 8; i++ { // 4x the bound is allowed; one more is not
		q.pushCtrl(metrics.SentPong, []byte(`{"type":"pong"}`))
	}
	_, cr, _, _ := q.take()
	if cr == nil || cr.code != wire.CloseTooSlow || cr.why != metrics.DisconnectSlowConsumer {
		t.Fatalf("close request %+v", cr)
	}
	if actions[len(actions)-1] != metrics.OverflowDisconnect {
		t.Fatalf("actions %v", actions)
	}
}

func TestKeyedLimiterBoundedUnderSpraying(t *testing.T) {
	now := time.Unix(0, 0)
	k := newKeyedLimiter(1, 2, 64, func() time.Time { return now })
	for i := 0; i < 10_000; i++ {
		k.take(string(rune(i))+"-ip", 1)
	}
	if n := k.size(); n > 64 {
		t.Fatalf("tracking %d keys, bound 64", n)
	}
	// Idle keys are evicted once they would have refilled.
	now = now.Add(time.Hour)
	k.sweep()
	if n := k.size(); n != 0 {
		t.Fatalf("%d keys after sweep", n)
	}
	// At and past the edge for one key.
	if ok, _ := k.take("x", 1); !ok {
		t.Fatal("first token refused")
	}
	if ok, _ := k.take("x", 1); !ok {
		t.Fatal("burst token refused")
	}
	if ok, retry := k.take("x", 1); ok || retry <= 0 {
		t.Fatalf("past the burst: ok=%v retry=%v", ok, retry)
	}
}

func TestOriginMatching(t *testing.T) {
	m, err := newOriginMatcher([]string{"https://app.example.com", "https://*.example.org", "http://127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"https://app.example.com":      true,
		"https://APP.example.com":      true,
		"https://app.example.com:443":  true,
		"http://app.example.com":       false,
		"https://evil.com":             false,
		"https://app.example.com.evil": false,
		"https://a.example.org":        true,
		"https://a.b.example.org":      false,
		"https://example.org":          false,
		"http://127.0.0.1:8080":        true,
		"http://127.0.0.1:8081":        false,
		"null":                         false,
		"":                             false,
	} {
		if got := m.Allowed(origin); got != want {
			t.Errorf("%q: %v, want %v", origin, got, want)
		}
	}
	for _, bad := range []string{"app.example.com", "ftp://x", "https://x/path", "https://"} {
		if _, err := parseOriginPattern(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func FuzzOriginAllowed(f *testing.F) {
	m, _ := newOriginMatcher([]string{"https://*.example.org", "http://127.0.0.1:8080"})
	for _, s := range []string{"https://a.example.org", "http://127.0.0.1:8080", "null", "https://[::1]:80", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, origin string) {
		_ = m.Allowed(origin)
		_, _ = parseOriginPattern(origin)
	})
}

func TestConnLogsAreRateLimited(t *testing.T) {
	var buf strings.Builder
	l := slog.New(slog.NewJSONHandler(&buf, nil))
	ll := newLogLimiter()
	for i := 0; i < connLogBurst+50; i++ {
		ll.log(l, slog.LevelInfo, "authentication failed")
	}
	if n := strings.Count(buf.String(), "\n"); n != connLogBurst {
		t.Fatalf("%d lines logged, want the burst %d", n, connLogBurst)
	}
	if ll.suppressed.Load() != 50 {
		t.Fatalf("suppressed %d", ll.suppressed.Load())
	}
}
