package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
	"github.com/firegate/firegate/writes"
)

// This file holds writes: the `write` message on a connection and
// POST /v1/write, their rate limits (per connection and per user), the
// writes_total and write_latency_seconds metrics and one audit log line
// per operation. Checking and committing is package writes' job.
//
// Contract: conn.write runs on the read loop (writes of one connection are
// applied in order, one at a time); handleWrite runs on its HTTP request's
// goroutine. The per-user limiter is shared and safe for concurrent use;
// the per-connection limiter belongs to the read loop.

// MaxWriteBodyBytes bounds a POST /v1/write body: Firestore's request
// limit (10 MiB). On a socket, writes are bounded by MaxMessageBytes.
const MaxWriteBodyBytes = 10 << 20

// writeTimeout bounds one write (transaction retries included).
const writeTimeout = 30 * time.Second

// writeOutcome is the answer to one write request, for both transports.
type writeOutcome struct {
	written *wire.Written
	err     *writes.Error
	retry   time.Duration // rate_limited: when to retry
}

// write handles a `write` message (authenticated, decoded).
func (c *conn) write(m wire.ClientMessage) {
	s := c.s
	start := s.clock.Now()
	p := c.principal.Load()
	if c.writeLimiter == nil {
		c.writeLimiter = rate.NewLimiter(s.cfg.Limits.WritesPerConn, s.cfg.Limits.WriteBurstPerConn)
	}
	var out writeOutcome
	if ok, retry := takeLimiter(c.writeLimiter, start); !ok {
		s.m.RateLimited[metrics.LimitWritesPerConn].Inc()
		out = writeOutcome{err: &writes.Error{Code: wire.CodeRateLimited, Index: -1,
			Msg: fmt.Sprintf("writes_per_conn limit: at most %v writes per second per connection", float64(s.cfg.Limits.WritesPerConn))}, retry: retry}
	} else {
		out = s.applyWrite(c.ctx, p, *m.Write, start)
	}
	s.finishWrite(p, *m.Write, out, start, "socket")
	if out.err != nil {
		c.sendCtrl(wire.TypeError, writeErrorMsg(m.ID, out))
		return
	}
	c.sendCtrl(wire.TypeWritten, out.written)
}

// sendWriteDecodeError answers a malformed `write` with the index of the
// operation at fault.
func (c *conn) sendWriteDecodeError(id string, we *wire.WriteDecodeError) {
	out := writeOutcome{err: &writes.Error{Code: wire.CodeBadRequest, Index: we.Index, Msg: we.Msg}}
	c.sendCtrl(wire.TypeError, writeErrorMsg(id, out))
}

// takeLimiter takes one token or reports when one will be available.
func takeLimiter(l *rate.Limiter, now time.Time) (bool, time.Duration) {
	r := l.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// applyWrite applies the per-user limit, then the write.
func (s *Server) applyWrite(ctx context.Context, p *authz.Principal, req wire.WriteRequest, now time.Time) writeOutcome {
	if ok, retry := s.userWrites.take(p.UserID, 1); !ok {
		s.m.RateLimited[metrics.LimitWritesPerUser].Inc()
		return writeOutcome{err: &writes.Error{Code: wire.CodeRateLimited, Index: -1,
			Msg: fmt.Sprintf("writes_per_user limit: at most %v writes per second per user", float64(s.cfg.Limits.WritesPerUser))}, retry: retry}
	}
	if s.writer == nil {
		return writeOutcome{err: &writes.Error{Code: wire.CodeUnavailable, Index: -1, Msg: "writes are not enabled on this gateway"}}
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	res, err := s.writer.Apply(ctx, s.policy.Load(), p, req)
	if err != nil {
		var we *writes.Error
		if !errors.As(err, &we) {
			we = &writes.Error{Code: wire.CodeUnavailable, Index: -1, Msg: "the write failed; nothing was written", Err: err}
		}
		if we.Err != nil && we.Code == wire.CodeUnavailable {
			s.connLogs.log(s.log, slog.LevelWarn, "write failed", "err", we.Err)
		}
		out := writeOutcome{err: we}
		if we.Code == wire.CodeUnavailable {
			out.retry = time.Second
		}
		return out
	}
	return writeOutcome{written: &res.Written}
}

// finishWrite records metrics and the audit log: one line per operation
// (user, org, session, path, op, result; never document data).
func (s *Server) finishWrite(p *authz.Principal, req wire.WriteRequest, out writeOutcome, start time.Time, via string) {
	s.m.WriteLatency.Observe(s.clock.Now().Sub(start).Seconds())
	for i, op := range req.Ops {
		res := metrics.WriteOK
		path := op.Path
		if out.err != nil {
			res = metrics.WriteNotApplied
			if out.err.Index == i || out.err.Index < 0 {
				res = writeResultOf(out.err.Code)
			}
		} else if i < len(out.written.Results) {
			path = out.written.Results[i].Path
		}
		s.m.Writes[writeOpOf(op.Op)][res].Inc()
		s.log.Info("write", "user", p.UserID, "org", p.OrgID, "session", p.SessionID, "via", via,
			"write_id", req.ID, "index", i, "path", path, "op", op.Op, "result", res.String())
	}
}

func writeOpOf(op string) metrics.WriteOp {
	switch op {
	case wire.OpCreate:
		return metrics.WriteCreate
	case wire.OpSet:
		return metrics.WriteSet
	case wire.OpUpdate:
		return metrics.WriteUpdate
	}
	return metrics.WriteDelete
}

func writeResultOf(code string) metrics.WriteResult {
	switch code {
	case wire.CodeForbidden:
		return metrics.WriteForbidden
	case wire.CodeBadRequest:
		return metrics.WriteBadRequest
	case wire.CodeNotFound:
		return metrics.WriteNotFound
	case wire.CodeAlreadyExists:
		return metrics.WriteAlreadyExists
	case wire.CodeFailedPrecondition:
		return metrics.WriteFailedPrecondition
	case wire.CodeRateLimited:
		return metrics.WriteRateLimited
	}
	return metrics.WriteUnavailable
}

func writeErrorMsg(id string, out writeOutcome) wire.WriteError {
	e := wire.WriteError{Type: wire.TypeError, ID: id, Code: out.err.Code, Message: out.err.Msg}
	if out.err.Index >= 0 {
		i := out.err.Index
		e.Index = &i
	}
	if out.retry > 0 {
		e.RetryAfterMS = max(out.retry.Milliseconds(), 1)
	}
	return e
}

// writeStatus is the HTTP status of a write error code.
func writeStatus(code string) int {
	switch code {
	case wire.CodeForbidden:
		return http.StatusForbidden
	case wire.CodeBadRequest:
		return http.StatusBadRequest
	case wire.CodeNotFound:
		return http.StatusNotFound
	case wire.CodeAlreadyExists:
		return http.StatusConflict
	case wire.CodeFailedPrecondition:
		return http.StatusPreconditionFailed
	case wire.CodeRateLimited:
		return http.StatusTooManyRequests
	case wire.CodeUnauthorized:
		return http.StatusUnauthorized
	}
	return http.StatusServiceUnavailable
}

// writeHTTPError answers a refused POST /v1/write.
func writeHTTPError(w http.ResponseWriter, code string, index int, msg string, retry time.Duration) {
	body := wire.HTTPWriteError{Error: wire.HTTPWriteErrorBody{Code: code, Message: msg}}
	if index >= 0 {
		body.Error.Index = &index
	}
	if retry > 0 {
		w.Header().Set("Retry-After", retryAfterHeader(retry))
	}
	if code == wire.CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="firegate"`)
	}
	writeJSON(w, writeStatus(code), body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// corsHeaders lets an allowed browser origin call POST /v1/write.
func corsHeaders(w http.ResponseWriter, origin string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Retry-After")
}

// handleWritePreflight answers a CORS preflight from an allowed origin.
func (s *Server) handleWritePreflight(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" || !s.origins.Allowed(origin) {
		writeHTTPError(w, wire.CodeForbidden, -1, "origin not allowed", 0)
		return
	}
	corsHeaders(w, origin)
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// handleWrite serves POST /v1/write: the body of a `write` without type,
// a token in `Authorization: Bearer`, the socket's Origin and azp rules.
func (s *Server) handleWrite(w http.ResponseWriter, r *http.Request) {
	start := s.clock.Now()
	if s.draining.Load() {
		writeHTTPError(w, wire.CodeUnavailable, -1, "server is draining; retry on another instance", time.Second)
		return
	}
	ip := s.clientIP(r)
	if ok, retry := s.authFails.available(ip); !ok {
		s.m.RateLimited[metrics.LimitAuthFailures].Inc()
		writeHTTPError(w, wire.CodeRateLimited, -1, "auth_failures limit: too many failed authentications from this address", retry)
		return
	}
	origin := r.Header.Get("Origin")
	if origin != "" {
		if !s.origins.Allowed(origin) {
			writeHTTPError(w, wire.CodeForbidden, -1, "origin not allowed", 0)
			return
		}
		corsHeaders(w, origin)
	}
	token := ""
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			token = strings.TrimSpace(tok)
		}
	}
	if token == "" {
		s.m.AuthFailures[metrics.AuthMissing].Inc()
		s.authFails.take(ip, 1)
		writeHTTPError(w, wire.CodeUnauthorized, -1, "missing token: send Authorization: Bearer <Clerk session token>", 0)
		return
	}
	p, err := s.verifier.Verify(r.Context(), token)
	if err != nil {
		reason := authz.ReasonOf(err)
		s.m.AuthFailures[authFailOf(reason)].Inc()
		s.authFails.take(ip, 1)
		writeHTTPError(w, wire.CodeUnauthorized, -1, closeReasonFor(reason), 0)
		return
	}
	// Webhook revocations apply as on the socket: a revoked session or
	// user is refused, a revoked membership or org writes without its org.
	p, ok := s.checkRevoked(p)
	if !ok {
		s.m.AuthFailures[metrics.AuthRevoked].Inc()
		writeHTTPError(w, wire.CodeUnauthorized, -1, "token revoked", 0)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWriteBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, wire.HTTPWriteError{Error: wire.HTTPWriteErrorBody{Code: wire.CodeBadRequest,
				Message: fmt.Sprintf("body larger than %d bytes", MaxWriteBodyBytes)}})
			return
		}
		writeHTTPError(w, wire.CodeBadRequest, -1, "failed to read the body", 0)
		return
	}
	req, err := wire.DecodeWrite(body)
	if err != nil {
		var we *wire.WriteDecodeError
		if errors.As(err, &we) {
			writeHTTPError(w, wire.CodeBadRequest, we.Index, we.Msg, 0)
			return
		}
		writeHTTPError(w, wire.CodeBadRequest, -1, err.Error(), 0)
		return
	}
	out := s.applyWrite(r.Context(), p, req, start)
	s.finishWrite(p, req, out, start, "http")
	if out.err != nil {
		writeHTTPError(w, out.err.Code, out.err.Index, out.err.Msg, out.retry)
		return
	}
	writeJSON(w, http.StatusOK, out.written)
}
