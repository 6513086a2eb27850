// Package wire holds the Firegate protocol v1 message types, close codes and
// error codes. It is a leaf package: the server, the load tester and any Go
// client import it without pulling in the gateway.
//
// Every frame is one JSON object in a WebSocket text frame. See
// docs/protocol.md for the full reference.
package wire

import (
	"encoding/json"
	"time"
)

// Subprotocol is the WebSocket subprotocol a client must offer.
const Subprotocol = "firegate.v1"

// BearerPrefix marks a token carried in the subprotocol list
// (`Sec-WebSocket-Protocol: firegate.v1, bearer.<jwt>`).
const BearerPrefix = "bearer."

// SessionCookie is the cookie Clerk sets in browsers; Firegate accepts it
// only from an allowed Origin.
const SessionCookie = "__session"

// Close codes used by the server.
const (
	CloseNormal          = 1000
	ClosePolicyViolation = 1008 // bad origin or policy violation
	CloseTooBig          = 1009 // inbound frame over the limit
	CloseInternal        = 1011
	CloseServiceRestart  = 1012 // drain
	CloseUnauthenticated = 4001 // missing, invalid or expired token
	CloseUserChanged     = 4003 // refresh named another user
	CloseRateLimited     = 4008
	CloseTooSlow         = 4009 // slow consumer
)

// Client message types.
const (
	TypeAuth        = "auth"
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypePing        = "ping"
)

// Server message types.
const (
	TypeWelcome      = "welcome"
	TypeSubscribed   = "subscribed"
	TypeSnapshot     = "snapshot"
	TypeChanges      = "changes"
	TypeUnsubscribed = "unsubscribed"
	TypeError        = "error"
	TypeAuthExpiring = "auth_expiring"
	TypePong         = "pong"
)

// Error codes carried by an `error` message.
const (
	CodeBadRequest    = "bad_request"
	CodeUnauthorized  = "unauthorized"
	CodeForbidden     = "forbidden"
	CodeNotFound      = "not_found"
	CodeRateLimited   = "rate_limited"
	CodeLimitExceeded = "limit_exceeded"
	CodeUnavailable   = "unavailable"
	CodeInternal      = "internal"
)

// Reasons carried by an `unsubscribed` message.
const (
	ReasonClient        = "client"
	ReasonForbidden     = "forbidden"
	ReasonOrgChanged    = "org_changed"
	ReasonUpstreamError = "upstream_error"
)

// Change kinds.
const (
	KindAdded    = "added"
	KindModified = "modified"
	KindRemoved  = "removed"
)

// Filter operators accepted in `where`.
var Ops = []string{"==", "!=", "<", "<=", ">", ">=", "in", "not-in", "array-contains", "array-contains-any"}

// Filter is one `where` clause of a subscribe.
type Filter struct {
	Field string `json:"field"`
	Op    string `json:"op"`
	Value any    `json:"value"`
}

// Order is one `order_by` clause; Direction is "asc" (default) or "desc".
type Order struct {
	Field     string `json:"field"`
	Direction string `json:"direction,omitempty"`
}

// Resume asks for the changes after Seq of the Feed with this Epoch.
type Resume struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// ClientMessage is any message a client sends; Type says which fields apply.
type ClientMessage struct {
	Type       string `json:"type"`
	ID         string `json:"id,omitempty"`
	Token      string `json:"token,omitempty"`
	Collection string `json:"collection,omitempty"`
	// Doc is a document path ("tasks/t1"); a subscribe names either a
	// collection or a doc (then without where, order_by and limit).
	Doc     string   `json:"doc,omitempty"`
	Where   []Filter `json:"where,omitempty"`
	OrderBy []Order  `json:"order_by,omitempty"`
	Limit   int      `json:"limit,omitempty"`
	Resume  *Resume  `json:"resume,omitempty"`
	// Write is the decoded `write` (type "write" only).
	Write *WriteRequest `json:"-"`
}

// Welcome answers the first auth and every refresh.
type Welcome struct {
	Type      string    `json:"type"` // "welcome"
	UserID    string    `json:"user_id"`
	OrgID     string    `json:"org_id,omitempty"`
	SessionID string    `json:"session_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Subscribed confirms a subscription; data follows in snapshot or changes.
type Subscribed struct {
	Type    string `json:"type"` // "subscribed"
	ID      string `json:"id"`
	Epoch   string `json:"epoch"`
	Resumed bool   `json:"resumed"`
}

// Doc is one document in a snapshot.
type Doc struct {
	ID         string          `json:"id"`
	Path       string          `json:"path"`
	Data       json.RawMessage `json:"data"`
	UpdateTime string          `json:"update_time"`
}

// Snapshot carries (a chunk of) the whole current result of a subscription.
type Snapshot struct {
	Type  string `json:"type"` // "snapshot"
	Sub   string `json:"sub"`
	Seq   uint64 `json:"seq"`
	Docs  []Doc  `json:"docs"`
	Final bool   `json:"final"`
}

// Change is one document change; Data and UpdateTime are absent for removed.
type Change struct {
	Kind       string          `json:"kind"`
	ID         string          `json:"id"`
	Path       string          `json:"path"`
	Data       json.RawMessage `json:"data,omitempty"`
	UpdateTime string          `json:"update_time,omitempty"`
}

// Changes carries the changes of one upstream snapshot (or a catch-up).
type Changes struct {
	Type     string   `json:"type"` // "changes"
	Sub      string   `json:"sub"`
	Seq      uint64   `json:"seq"`
	ReadTime string   `json:"read_time,omitempty"`
	Changes  []Change `json:"changes"`
}

// Unsubscribed ends a subscription from the server side.
type Unsubscribed struct {
	Type    string `json:"type"` // "unsubscribed"
	Sub     string `json:"sub"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// Error refuses a request; ID is the request's id (a subscription id for a
// refused subscribe) when it had one.
type Error struct {
	Type         string `json:"type"` // "error"
	ID           string `json:"id,omitempty"`
	Code         string `json:"code"`
	Message      string `json:"message"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// AuthExpiring warns that the token expires soon; send a fresh `auth`.
type AuthExpiring struct {
	Type      string    `json:"type"` // "auth_expiring"
	ExpiresAt time.Time `json:"expires_at"`
}

// Pong answers ping.
type Pong struct {
	Type string `json:"type"` // "pong"
	ID   string `json:"id,omitempty"`
}

// ServerMessage is a loose decoding of any server message, for clients and
// the load tester.
type ServerMessage struct {
	Type         string   `json:"type"`
	ID           string   `json:"id,omitempty"`
	Sub          string   `json:"sub,omitempty"`
	UserID       string   `json:"user_id,omitempty"`
	OrgID        string   `json:"org_id,omitempty"`
	SessionID    string   `json:"session_id,omitempty"`
	ExpiresAt    string   `json:"expires_at,omitempty"`
	Epoch        string   `json:"epoch,omitempty"`
	Resumed      bool     `json:"resumed,omitempty"`
	Seq          uint64   `json:"seq,omitempty"`
	ReadTime     string   `json:"read_time,omitempty"`
	Docs         []Doc    `json:"docs,omitempty"`
	Final        bool     `json:"final,omitempty"`
	Changes      []Change `json:"changes,omitempty"`
	Reason       string   `json:"reason,omitempty"`
	Code         string   `json:"code,omitempty"`
	Message      string   `json:"message,omitempty"`
	RetryAfterMS int64    `json:"retry_after_ms,omitempty"`
	// Index is a write error's operation index; CommitTime and Results
	// are a `written` answer's.
	Index      *int          `json:"index,omitempty"`
	CommitTime string        `json:"commit_time,omitempty"`
	Results    []WriteResult `json:"results,omitempty"`
	Received   time.Time     `json:"-"`
}
