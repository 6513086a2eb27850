// Package authz turns a Clerk session token into a Principal (verification
// through clerk-sdk-go/v2/jwt with a key cache), and a Principal plus a
// subscribe request into a Decision under the policy file (scope, CEL allow
// and filter rules). It imports only the wire package.
package authz

import (
	"errors"
	"fmt"
	"time"
)

// Principal is a verified caller. It is immutable once built; share it freely.
type Principal struct {
	UserID         string
	SessionID      string
	OrgID          string // empty when the session has no active org
	OrgSlug        string
	OrgRole        string // "org:admin", also for v2 tokens ("rol":"admin")
	OrgPermissions []string
	// Claims holds every claim of the token (custom claims included), as
	// decoded JSON (map[string]any, []any, string, float64, bool, nil).
	Claims map[string]any
	Azp    string
	// IssuedAt is the token's iat (always set by Verify): revocations
	// refuse tokens issued at or before them, and a refresh never accepts
	// a token issued before the one in force.
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Reasons for an authentication failure; they match the
// firegate_auth_failures_total label values.
const (
	ReasonMissing      = "missing"
	ReasonMalformed    = "malformed"
	ReasonExpired      = "expired"
	ReasonNotYetValid  = "not_yet_valid"
	ReasonBadSignature = "bad_signature"
	ReasonUnknownKID   = "unknown_kid"
	ReasonBadIssuer    = "bad_issuer"
	ReasonBadAzp       = "bad_azp"
	ReasonBadAlg       = "bad_alg"
)

// AuthError is a token that does not authenticate. Reason is one of the
// Reason constants; the message never contains the token.
type AuthError struct {
	Reason string
	Err    error
}

func (e *AuthError) Error() string {
	if e.Err == nil {
		return "token rejected: " + e.Reason
	}
	return fmt.Sprintf("token rejected: %s: %v", e.Reason, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// ReasonOf returns the AuthError reason of err, or "malformed".
func ReasonOf(err error) string {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return ReasonMalformed
}

// Deny codes, matching the wire error codes.
const (
	DenyForbidden  = "forbidden"
	DenyBadRequest = "bad_request"
)

// DenyError refuses a subscription. Code is "forbidden" (anything the
// policy does not allow, unknown collections included) or "bad_request" (a
// query Firestore would reject); Msg is safe to send to the client.
type DenyError struct {
	Code string
	Msg  string
}

func (e *DenyError) Error() string { return e.Code + ": " + e.Msg }
