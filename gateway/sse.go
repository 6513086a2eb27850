package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

// handleSSE serves GET /v1/sse: one subscription as Server-Sent Events,
// for clients that cannot keep a WebSocket. The query string carries the
// subscribe request (collection or doc, where and order_by as JSON
// arrays, limit, id); the token comes from `Authorization: Bearer` (or the __session
// cookie with an allowed Origin); `Last-Event-ID: <epoch>:<seq>` resumes.
// Every protocol message is one `data:` event; `changes` and the final
// snapshot chunk carry `id: <epoch>:<seq>`. The stream ends with an
// `event: close` whose data is {"code","reason"} (the WebSocket close code
// the same condition would have used). Refusals before the stream starts
// are HTTP errors with a JSON body {"code","message"}. Same limits,
// metrics and policy as WebSockets; a token cannot be refreshed in-band,
// so the stream ends 4001 at expiry: reconnect with a fresh token and
// Last-Event-ID.
func (s *Server) handleSSE(w http.ResponseWriter, r *http.Request) {
	start := s.clock.Now()
	if s.draining.Load() {
		s.m.Handshakes[metrics.HandshakeError].Inc()
		s.refuseJSON(w, http.StatusServiceUnavailable, time.Second, wire.CodeUnavailable, "server is draining; reconnect to another instance")
		return
	}
	ip := s.clientIP(r)
	if ok, retry := s.handshakes.take(ip, 1); !ok {
		s.m.Handshakes[metrics.HandshakeRateLimited].Inc()
		s.m.RateLimited[metrics.LimitHandshake].Inc()
		s.refuseJSON(w, http.StatusTooManyRequests, retry, wire.CodeRateLimited, "handshake limit: too many connections from this address")
		return
	}
	if ok, retry := s.authFails.available(ip); !ok {
		s.m.Handshakes[metrics.HandshakeRateLimited].Inc()
		s.m.RateLimited[metrics.LimitAuthFailures].Inc()
		s.refuseJSON(w, http.StatusTooManyRequests, retry, wire.CodeRateLimited, "auth_failures limit: too many failed authentications from this address")
		return
	}
	origin := r.Header.Get("Origin")
	if origin != "" && !s.origins.Allowed(origin) {
		s.m.Handshakes[metrics.HandshakeForbiddenOrigin].Inc()
		s.refuseJSON(w, http.StatusForbidden, 0, wire.CodeForbidden, "origin not allowed")
		return
	}
	m, err := sseRequest(r)
	if err != nil {
		s.m.Handshakes[metrics.HandshakeError].Inc()
		s.m.ClientMessages[metrics.ClientInvalid].Inc()
		s.refuseJSON(w, http.StatusBadRequest, 0, wire.CodeBadRequest, err.Error())
		return
	}
	token := tokenFrom(r, origin != "")
	p, err := s.verifier.Verify(r.Context(), token)
	if err != nil {
		reason := authz.ReasonOf(err)
		if token == "" {
			reason = authz.ReasonMissing
		}
		s.m.AuthFailures[authFailOf(reason)].Inc()
		s.m.Handshakes[metrics.HandshakeUnauthorized].Inc()
		s.authFails.take(ip, 1)
		s.refuseJSON(w, http.StatusUnauthorized, 0, wire.CodeUnauthorized, closeReasonFor(reason))
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	s.m.ClientMessages[metrics.ClientSubscribe].Inc()
	c := s.newConn(nil, &sseTransport{w: w, rc: rc, epochs: map[*subscription]string{}}, ip, start)
	c.cancel()
	c.ctx, c.cancel = context.WithCancel(r.Context())
	c.serveSSE(p, m)
}

func (s *Server) refuseJSON(w http.ResponseWriter, status int, retry time.Duration, code, msg string) {
	if retry > 0 {
		w.Header().Set("Retry-After", retryAfterHeader(retry))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"code": code, "message": msg})
	_, _ = w.Write(append(b, '\n'))
}

// sseRequest turns the query string into a checked subscribe message.
func sseRequest(r *http.Request) (wire.ClientMessage, error) {
	q := r.URL.Query()
	req := map[string]any{"type": wire.TypeSubscribe, "id": q.Get("id"), "collection": q.Get("collection")}
	if d := q.Get("doc"); d != "" {
		req["doc"] = d
	}
	if req["id"] == "" {
		req["id"] = "sse"
	}
	for _, k := range []string{"where", "order_by"} {
		if v := q.Get(k); v != "" {
			req[k] = json.RawMessage(v)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return wire.ClientMessage{}, errors.New("limit must be an integer")
		}
		req["limit"] = n
	}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = q.Get("last_event_id")
	}
	if last != "" {
		epoch, seq, ok := strings.Cut(last, ":")
		n, err := strconv.ParseUint(seq, 10, 64)
		if !ok || err != nil || epoch == "" {
			return wire.ClientMessage{}, errors.New("Last-Event-ID must be <epoch>:<seq>")
		}
		req["resume"] = wire.Resume{Epoch: epoch, Seq: n}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return wire.ClientMessage{}, errors.New("where and order_by must be JSON arrays")
	}
	return wire.DecodeClient(b)
}

// serveSSE runs an SSE connection: one subscription, no client messages.
func (c *conn) serveSSE(p *authz.Principal, m wire.ClientMessage) {
	defer c.open()()
	if c.acceptFirst(p) {
		c.subscribe(m)
	}
	<-c.ctx.Done()
	c.setWhy(metrics.DisconnectClient)
}

// sseTransport writes protocol messages as SSE events. Only the writer
// goroutine uses it; epochs (subscription → Feed epoch, learnt from the
// `subscribed` frame) is the writer's.
type sseTransport struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	buf    []byte
	epochs map[*subscription]string
}

func (t *sseTransport) write(_ context.Context, e *entry, b []byte) error {
	t.buf = t.buf[:0]
	if e.msg != nil {
		switch e.msg.Frame.Type {
		case wire.TypeSubscribed:
			var sub struct {
				Epoch string `json:"epoch"`
			}
			if json.Unmarshal(b, &sub) == nil {
				t.epochs[e.sub] = sub.Epoch
			}
		case wire.TypeChanges, wire.TypeSnapshot:
			if e.msg.Frame.FinalChunk() {
				t.buf = append(t.buf, "id: "...)
				t.buf = append(t.buf, t.epochs[e.sub]...)
				t.buf = append(t.buf, ':')
				t.buf = strconv.AppendUint(t.buf, e.msg.Seq, 10)
				t.buf = append(t.buf, '\n')
			}
		}
	}
	t.buf = append(t.buf, "data: "...)
	t.buf = append(t.buf, b...)
	t.buf = append(t.buf, "\n\n"...)
	_, err := t.w.Write(t.buf)
	return err
}

func (t *sseTransport) begin(timeout time.Duration) {
	_ = t.rc.SetWriteDeadline(time.Now().Add(timeout))
}

func (t *sseTransport) idle() {}

func (t *sseTransport) flush() error {
	err := t.rc.Flush()
	_ = t.rc.SetWriteDeadline(time.Time{})
	return err
}

func (t *sseTransport) close(code int, reason string) {
	b, _ := json.Marshal(map[string]any{"code": code, "reason": reason})
	_ = t.rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = t.w.Write(append(append([]byte("event: close\ndata: "), b...), "\n\n"...))
	_ = t.rc.Flush()
}

func (t *sseTransport) closeNow() {}
