package gateway

// This file maps the protocol's and authz's names onto the typed metric
// label constants (metrics/labels.go), so every counter is indexed by a
// constant the compiler checks.

import (
	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/metrics"
	"github.com/firegate/firegate/wire"
)

// sentTypeOf is the messages_sent_total label of a server message type.
func sentTypeOf(typ string) metrics.SentType {
	switch typ {
	case wire.TypeWelcome:
		return metrics.SentWelcome
	case wire.TypeSubscribed:
		return metrics.SentSubscribed
	case wire.TypeSnapshot:
		return metrics.SentSnapshot
	case wire.TypeChanges:
		return metrics.SentChanges
	case wire.TypeUnsubscribed:
		return metrics.SentUnsubscribed
	case wire.TypeAuthExpiring:
		return metrics.SentAuthExpiring
	case wire.TypePong:
		return metrics.SentPong
	case wire.TypeWritten:
		return metrics.SentWritten
	}
	return metrics.SentError
}

// clientTypeOf is the client_messages_total label of a decoded client
// message type; anything unknown counts as invalid.
func clientTypeOf(typ string) metrics.ClientType {
	switch typ {
	case wire.TypeAuth:
		return metrics.ClientAuth
	case wire.TypeSubscribe:
		return metrics.ClientSubscribe
	case wire.TypeUnsubscribe:
		return metrics.ClientUnsubscribe
	case wire.TypePing:
		return metrics.ClientPing
	case wire.TypeWrite:
		return metrics.ClientWrite
	}
	return metrics.ClientInvalid
}

// authFailOf is the auth_failures_total label of an authz failure reason.
func authFailOf(reason string) metrics.AuthFailReason {
	switch reason {
	case authz.ReasonMissing:
		return metrics.AuthMissing
	case authz.ReasonExpired:
		return metrics.AuthExpired
	case authz.ReasonNotYetValid:
		return metrics.AuthNotYetValid
	case authz.ReasonBadSignature:
		return metrics.AuthBadSignature
	case authz.ReasonUnknownKID:
		return metrics.AuthUnknownKid
	case authz.ReasonBadIssuer:
		return metrics.AuthBadIssuer
	case authz.ReasonBadAzp:
		return metrics.AuthBadAzp
	case authz.ReasonBadAlg:
		return metrics.AuthBadAlg
	}
	return metrics.AuthMalformed
}
