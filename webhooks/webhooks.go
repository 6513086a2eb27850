// Package webhooks receives Clerk's webhooks (delivered through Svix),
// verifies their Svix signatures and turns the events that matter to the
// gateway — ended sessions, deleted users, deleted or changed organization
// memberships — into calls on a Revoker.
//
// Verification follows Svix's documented scheme: the headers svix-id,
// svix-timestamp (unix seconds) and svix-signature (a space-separated list of
// "v1,<base64 HMAC-SHA256>"); the signed content is
// "${svix_id}.${svix_timestamp}.${body}"; the key is the base64-decoded part
// of the "whsec_..." secret. A message is accepted when any v1 entry matches
// (constant-time), its timestamp is within the tolerance of the clock, and
// its svix-id has not been accepted before within that window.
//
// Webhooks are best-effort: token expiry remains the backstop.
package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/firegate/firegate/revocation"
)

// Revoker is what the gateway does on Clerk's events. Implementations must be
// safe for concurrent use and must not block long (they run on the webhook
// request's goroutine, before the response is written).
type Revoker interface {
	// Revoke records r (on every instance) and ends what it covers:
	// session.ended/removed/revoked (KindSession), user.deleted (KindUser),
	// organizationMembership.deleted (KindMembership) and
	// organization.deleted (KindOrg). An error means r may not have been
	// recorded: the handler answers 503 so that Svix delivers it again.
	Revoke(ctx context.Context, r revocation.Revocation) error
	// UpdateMembership re-checks that user's subscriptions in that org
	// against the new role and permissions (organizationMembership.updated).
	UpdateMembership(userID, orgID, role string, permissions []string)
}

// Defaults and limits.
const (
	// DefaultTolerance is the replay window: a timestamp further than this
	// from the clock, in either direction, is rejected as stale.
	DefaultTolerance = 5 * time.Minute
	// DefaultReplayCacheSize bounds how many accepted svix-ids are remembered.
	DefaultReplayCacheSize = 10_000
	// MaxBodyBytes is the largest body accepted; a larger one gets 413.
	MaxBodyBytes = 1 << 20
	// MaxIDBytes is the longest svix-id accepted (Svix ids are ~31 bytes);
	// a longer one is malformed. It bounds the replay cache's memory.
	MaxIDBytes = 256
)

// Results are the values OnEvent's result takes.
var Results = []string{ResultOK, ResultBadSignature, ResultStale, ResultReplayed, ResultMalformed, ResultIgnored, ResultFailed}

// Result values passed to Config.OnEvent.
const (
	ResultOK           = "ok"
	ResultBadSignature = "bad_signature"
	ResultStale        = "stale"
	ResultReplayed     = "replayed"
	ResultMalformed    = "malformed"
	ResultIgnored      = "ignored"
	ResultFailed       = "failed" // the Revoker could not record it; 503, Svix retries
)

// Event types the handler acts on.
const (
	EventSessionEnded       = "session.ended"
	EventSessionRemoved     = "session.removed"
	EventSessionRevoked     = "session.revoked"
	EventUserDeleted        = "user.deleted"
	EventMembershipDeleted  = "organizationMembership.deleted"
	EventMembershipUpdated  = "organizationMembership.updated"
	EventOrgDeleted         = "organization.deleted"
	EventTypeUnknown        = "unknown" // not verified yet, or no parsable type
	EventTypeOther          = "other"   // authentic, but a type the gateway ignores
	defaultResponseMIMEType = "text/plain; charset=utf-8"
)

// EventTypes are the values OnEvent's eventType takes: a bounded set, so it
// is safe as a metric label.
var EventTypes = []string{
	EventSessionEnded, EventSessionRemoved, EventSessionRevoked, EventUserDeleted,
	EventMembershipDeleted, EventMembershipUpdated, EventOrgDeleted, EventTypeUnknown, EventTypeOther,
}

// Config configures NewHandler. The zero value of every field but Secret is a
// safe default.
type Config struct {
	// Secret is the endpoint's signing secret, CLERK_WEBHOOK_SECRET
	// ("whsec_<base64>"). Required.
	Secret string
	// Tolerance is the replay window on svix-timestamp, in both directions.
	// 0 means DefaultTolerance; negative is an error.
	Tolerance time.Duration
	// ReplayCacheSize bounds how many accepted svix-ids are remembered to
	// refuse replays; when full, the oldest is forgotten. 0 means
	// DefaultReplayCacheSize; negative is an error.
	ReplayCacheSize int
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Logger receives one line per rejected or handled request; nil discards.
	// Secrets and signatures are never logged.
	Logger *slog.Logger
	// OnEvent, if set, is called exactly once per POST request, after the
	// outcome is known, with eventType one of EventTypes (EventTypeUnknown
	// until the signature is verified and a type is parsed) and result one
	// of Results. It must be safe for concurrent use and fast (a metrics
	// counter).
	OnEvent func(eventType, result string)
}

// handler is the http.Handler NewHandler returns. All fields are set at
// construction and read-only afterwards, except seen, which locks itself.
type handler struct {
	key       []byte
	tolerance time.Duration
	clock     func() time.Time
	log       *slog.Logger
	onEvent   func(eventType, result string)
	revoker   Revoker
	seen      *seenIDs
}

// NewHandler returns the handler for Clerk's webhook endpoint. It answers
// POST only (405 otherwise); 204 on success, on ignored event types and on a
// repeated delivery of a message already accepted (Svix retries a delivery
// whose answer it did not see; it is not acted on again); 409 while the same
// message is being handled by another request; 400 for missing headers or a
// malformed body; 413 for a body over MaxBodyBytes; 401 for a bad signature
// or a stale timestamp; 503 when the Revoker could not record the
// revocation (the message is then forgotten, so Svix's retry is handled
// afresh). Response bodies carry only a short reason. The handler is safe
// for concurrent use.
func NewHandler(cfg Config, r Revoker) (http.Handler, error) {
	if r == nil {
		return nil, errors.New("failed to create webhook handler: nil Revoker")
	}
	if cfg.Secret == "" {
		return nil, errors.New("failed to create webhook handler: a signing secret (CLERK_WEBHOOK_SECRET) is required")
	}
	key, err := decodeSecret(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("failed to create webhook handler: %w", err)
	}
	if cfg.Tolerance < 0 {
		return nil, fmt.Errorf("failed to create webhook handler: negative tolerance %v", cfg.Tolerance)
	}
	if cfg.ReplayCacheSize < 0 {
		return nil, fmt.Errorf("failed to create webhook handler: negative replay cache size %d", cfg.ReplayCacheSize)
	}
	h := &handler{
		key:       key,
		tolerance: cfg.Tolerance,
		clock:     cfg.Clock,
		log:       cfg.Logger,
		onEvent:   cfg.OnEvent,
		revoker:   r,
	}
	if h.tolerance == 0 {
		h.tolerance = DefaultTolerance
	}
	if h.clock == nil {
		h.clock = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.onEvent == nil {
		h.onEvent = func(string, string) {}
	}
	size := cfg.ReplayCacheSize
	if size == 0 {
		size = DefaultReplayCacheSize
	}
	h.seen = newSeenIDs(size)
	return h, nil
}

// envelope is the part of every Clerk event the handler reads.
type envelope struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// sessionData is data of session.* and user.deleted events (id only).
type sessionData struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
}

// membershipData is data of organizationMembership.* events.
type membershipData struct {
	Organization struct {
		ID string `json:"id"`
	} `json:"organization"`
	PublicUserData struct {
		UserID string `json:"user_id"`
	} `json:"public_user_data"`
	Role        string   `json:"role"`
	Permissions []string `json:"permissions"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		reply(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	msgID := req.Header.Get("svix-id")
	tsRaw := req.Header.Get("svix-timestamp")
	sigHeader := req.Header.Get("svix-signature")
	if msgID == "" || tsRaw == "" || sigHeader == "" {
		h.reject(w, http.StatusBadRequest, EventTypeUnknown, ResultMalformed, "missing svix headers", msgID)
		return
	}
	if len(msgID) > MaxIDBytes {
		h.reject(w, http.StatusBadRequest, EventTypeUnknown, ResultMalformed, "svix-id too long", msgID)
		return
	}
	ts, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil {
		h.reject(w, http.StatusBadRequest, EventTypeUnknown, ResultMalformed, "bad svix-timestamp", msgID)
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxBodyBytes))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			h.reject(w, http.StatusRequestEntityTooLarge, EventTypeUnknown, ResultMalformed, "body too large", msgID)
			return
		}
		h.reject(w, http.StatusBadRequest, EventTypeUnknown, ResultMalformed, "cannot read body", msgID)
		return
	}

	// Authenticity first: nothing unauthenticated reaches the replay cache
	// (so forgeries cannot evict or pre-empt real ids), and "stale" and
	// "replayed" are only ever reported for messages Svix really signed.
	if !validSignature(mac(h.key, msgID, tsRaw, body), sigHeader) {
		h.reject(w, http.StatusUnauthorized, EventTypeUnknown, ResultBadSignature, "invalid signature", msgID)
		return
	}
	now := h.clock()
	sent := time.Unix(ts, 0)
	if now.Sub(sent) > h.tolerance || sent.Sub(now) > h.tolerance {
		h.reject(w, http.StatusUnauthorized, EventTypeUnknown, ResultStale, "stale timestamp", msgID)
		return
	}
	// After sent+tolerance the timestamp check refuses a replay by itself.
	switch h.seen.begin(msgID, sent.Add(h.tolerance), now) {
	case seenDone:
		// A retry of a delivery already accepted (or a replay, which is
		// just as harmless): answer success without acting again.
		h.log.Info("webhook already processed", "svix_id", msgID)
		h.onEvent(EventTypeUnknown, ResultReplayed)
		w.WriteHeader(http.StatusNoContent)
		return
	case seenInProgress:
		h.reject(w, http.StatusConflict, EventTypeUnknown, ResultReplayed, "delivery in progress", msgID)
		return
	}
	ev, err := ParseEvent(body, now)
	if err != nil {
		h.seen.forget(msgID)
		h.log.Warn("webhook rejected", "svix_id", msgID, "event", ev.Label, "reason", err.Error())
		h.onEvent(ev.Label, ResultMalformed)
		reply(w, http.StatusBadRequest, "malformed event")
		return
	}
	switch {
	case ev.Revocation != nil:
		r := *ev.Revocation
		h.log.Info("webhook: revoking", "svix_id", msgID, "event", ev.Label, "kind", string(r.Kind), "id", r.ID, "org_id", r.OrgID)
		if err := h.revoker.Revoke(req.Context(), r); err != nil {
			h.seen.forget(msgID)
			h.log.Error("webhook: failed to record revocation; Svix will retry", "svix_id", msgID, "event", ev.Label, "err", err)
			h.onEvent(ev.Label, ResultFailed)
			reply(w, http.StatusServiceUnavailable, "revocation not recorded; retry")
			return
		}
	case ev.Update != nil:
		u := ev.Update
		h.log.Info("webhook: updating membership", "svix_id", msgID, "event", ev.Label, "user_id", u.UserID, "org_id", u.OrgID, "role", u.Role)
		h.revoker.UpdateMembership(u.UserID, u.OrgID, u.Role, u.Permissions)
	default:
		h.seen.finish(msgID)
		h.log.Debug("webhook ignored", "svix_id", msgID, "event", ev.Type)
		h.onEvent(ev.Label, ResultIgnored)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h.seen.finish(msgID)
	h.onEvent(ev.Label, ResultOK)
	w.WriteHeader(http.StatusNoContent)
}

// Event is what ParseEvent finds in a Clerk event.
type Event struct {
	// Type is the event's type as sent; Label is its metric label (one of
	// EventTypes: EventTypeOther for types the gateway ignores,
	// EventTypeUnknown when there is no parsable type).
	Type, Label string
	// Revocation is set for the revoking types, with At = the time given
	// to ParseEvent (when the gateway learnt of it).
	Revocation *revocation.Revocation
	// Update is set for organizationMembership.updated.
	Update *MembershipUpdate
}

// MembershipUpdate is a changed role or permission set.
type MembershipUpdate struct {
	UserID, OrgID, Role string
	Permissions         []string
}

// ErrMalformed is the cause of every ParseEvent error.
var ErrMalformed = errors.New("malformed event")

// ParseEvent decodes a Clerk event body. An authentic event of a type the
// gateway ignores is not an error (Label EventTypeOther, nothing set); a
// revoking or updating type without the ids it needs, or a body that is
// not an event, is an error wrapping ErrMalformed (Label still says which
// type, when known).
func ParseEvent(body []byte, at time.Time) (Event, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil || env.Type == "" {
		return Event{Label: EventTypeUnknown}, fmt.Errorf("%w: not a JSON object with a type", ErrMalformed)
	}
	ev := Event{Type: env.Type, Label: env.Type}
	rev := func(kind revocation.Kind, id, org string) (Event, error) {
		r := revocation.Revocation{Kind: kind, ID: id, OrgID: org, At: at}
		if err := r.Validate(); err != nil {
			return ev, fmt.Errorf("%w: %s: %w", ErrMalformed, env.Type, err)
		}
		ev.Revocation = &r
		return ev, nil
	}
	switch env.Type {
	case EventSessionEnded, EventSessionRemoved, EventSessionRevoked:
		var d sessionData
		if err := json.Unmarshal(env.Data, &d); err != nil || d.ID == "" {
			return ev, fmt.Errorf("%w: session event without data.id", ErrMalformed)
		}
		return rev(revocation.KindSession, d.ID, "")
	case EventUserDeleted, EventOrgDeleted:
		var d sessionData
		if err := json.Unmarshal(env.Data, &d); err != nil || d.ID == "" {
			return ev, fmt.Errorf("%w: %s without data.id", ErrMalformed, env.Type)
		}
		if env.Type == EventOrgDeleted {
			return rev(revocation.KindOrg, d.ID, "")
		}
		return rev(revocation.KindUser, d.ID, "")
	case EventMembershipDeleted, EventMembershipUpdated:
		var d membershipData
		if err := json.Unmarshal(env.Data, &d); err != nil || d.Organization.ID == "" || d.PublicUserData.UserID == "" {
			return ev, fmt.Errorf("%w: membership event without data.organization.id or data.public_user_data.user_id", ErrMalformed)
		}
		userID, orgID := d.PublicUserData.UserID, d.Organization.ID
		if env.Type == EventMembershipDeleted {
			return rev(revocation.KindMembership, userID, orgID)
		}
		if d.Role == "" {
			return ev, fmt.Errorf("%w: organizationMembership.updated without data.role", ErrMalformed)
		}
		perms := d.Permissions
		if perms == nil {
			perms = []string{}
		}
		ev.Update = &MembershipUpdate{UserID: userID, OrgID: orgID, Role: d.Role, Permissions: perms}
		return ev, nil
	}
	ev.Label = EventTypeOther
	return ev, nil
}

// reject logs and answers a refused request with a short reason.
func (h *handler) reject(w http.ResponseWriter, status int, eventType, result, reason, msgID string) {
	if len(msgID) > MaxIDBytes {
		msgID = msgID[:MaxIDBytes] // unauthenticated input: bound what reaches the log
	}
	h.log.Warn("webhook rejected", "svix_id", msgID, "result", result, "reason", reason)
	h.onEvent(eventType, result)
	reply(w, status, reason)
}

func reply(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", defaultResponseMIMEType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reason+"\n")
}
