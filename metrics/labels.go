package metrics

// Label values of the labelled families, as typed constants. Each family's
// values are indexes into a fixed array of children resolved once in New,
// so a misspelt label value is a compile error rather than a nil-map panic
// at run time, and recording is one array index and one atomic add.
//
// The label strings are the ones documented in docs/protocol.md and
// docs/architecture.md; checkLabels (called by New) verifies at start-up
// that every constant has a distinct, non-empty label value.

// HandshakeResult labels handshakes_total{result}.
type HandshakeResult uint8

const (
	HandshakeOK HandshakeResult = iota
	HandshakeUnauthorized
	HandshakeForbiddenOrigin
	HandshakeRateLimited
	HandshakeError
	numHandshakeResults
)

// AuthFailReason labels auth_failures_total{reason}.
type AuthFailReason uint8

const (
	AuthMissing AuthFailReason = iota
	AuthMalformed
	AuthExpired
	AuthNotYetValid
	AuthBadSignature
	AuthUnknownKid
	AuthBadIssuer
	AuthBadAzp
	AuthBadAlg
	AuthRevoked // a verified token covered by a revocation (session, user)
	numAuthFailReasons
)

// DisconnectReason labels disconnects_total{reason}.
type DisconnectReason uint8

const (
	DisconnectClient DisconnectReason = iota
	DisconnectAuthExpired
	DisconnectAuthInvalid
	DisconnectUserChanged
	DisconnectRateLimited
	DisconnectSlowConsumer
	DisconnectTooBig
	DisconnectDrain
	DisconnectError
	numDisconnectReasons
)

// SentType labels messages_sent_total{type}.
type SentType uint8

const (
	SentWelcome SentType = iota
	SentSubscribed
	SentSnapshot
	SentChanges
	SentUnsubscribed
	SentError
	SentAuthExpiring
	SentPong
	SentWritten
	numSentTypes
)

// ClientType labels client_messages_total{type}.
type ClientType uint8

const (
	ClientAuth ClientType = iota
	ClientSubscribe
	ClientUnsubscribe
	ClientPing
	ClientInvalid
	ClientWrite
	numClientTypes
)

// OverflowAction labels send_queue_overflows_total{action}.
type OverflowAction uint8

const (
	OverflowCatchup OverflowAction = iota
	OverflowDisconnect
	numOverflowActions
)

// Limit labels rate_limited_total{limit}.
type Limit uint8

const (
	LimitHandshake Limit = iota
	LimitAuthFailures
	LimitConnectionsPerUser
	LimitMessages
	LimitSubscriptions
	LimitFeedsPerOrg
	LimitFeeds
	LimitFeedBytesPerOrg  // the per-org budget of Feed result bytes
	LimitFeedSharePerUser // one user's share of its org's Feeds
	LimitRevocations      // a revocation evicted before its expiry (store full)
	LimitWritesPerConn
	LimitWritesPerUser
	numLimits
)

// WriteOp labels writes_total{op}.
type WriteOp uint8

const (
	WriteCreate WriteOp = iota
	WriteSet
	WriteUpdate
	WriteDelete
	numWriteOps
)

// WriteResult labels writes_total{result}: ok, the error code of the
// operation that failed, or not_applied for the other operations of a
// batch that failed as a whole.
type WriteResult uint8

const (
	WriteOK WriteResult = iota
	WriteForbidden
	WriteBadRequest
	WriteNotFound
	WriteAlreadyExists
	WriteFailedPrecondition
	WriteRateLimited
	WriteUnavailable
	WriteNotApplied
	numWriteResults
)

// FilterWhere labels policy_filters_total{where}: where a subscription's
// policy filter runs.
type FilterWhere uint8

const (
	FilterPushedDown FilterWhere = iota
	FilterGateway
	numFilterWheres
)

// The label value of each constant, indexed by the constant.
var (
	handshakeResultNames = [numHandshakeResults]string{"ok", "unauthorized", "forbidden_origin", "rate_limited", "error"}
	authFailReasonNames  = [numAuthFailReasons]string{"missing", "malformed", "expired", "not_yet_valid", "bad_signature", "unknown_kid", "bad_issuer", "bad_azp", "bad_alg", "revoked"}
	disconnectNames      = [numDisconnectReasons]string{"client", "auth_expired", "auth_invalid", "user_changed", "rate_limited", "slow_consumer", "too_big", "drain", "error"}
	sentTypeNames        = [numSentTypes]string{"welcome", "subscribed", "snapshot", "changes", "unsubscribed", "error", "auth_expiring", "pong", "written"}
	clientTypeNames      = [numClientTypes]string{"auth", "subscribe", "unsubscribe", "ping", "invalid", "write"}
	overflowActionNames  = [numOverflowActions]string{"catchup", "disconnect"}
	limitNames           = [numLimits]string{"handshake", "auth_failures", "connections_per_user", "messages", "subscriptions", "feeds_per_org", "feeds", "feed_bytes_per_org", "feed_share_per_user", "revocations", "writes_per_conn", "writes_per_user"}
	writeOpNames         = [numWriteOps]string{"create", "set", "update", "delete"}
	writeResultNames     = [numWriteResults]string{"ok", "forbidden", "bad_request", "not_found", "already_exists", "failed_precondition", "rate_limited", "unavailable", "not_applied"}
	filterWhereNames     = [numFilterWheres]string{"pushed_down", "gateway"}
)

func (v HandshakeResult) String() string  { return handshakeResultNames[v] }
func (v AuthFailReason) String() string   { return authFailReasonNames[v] }
func (v DisconnectReason) String() string { return disconnectNames[v] }
func (v SentType) String() string         { return sentTypeNames[v] }
func (v ClientType) String() string       { return clientTypeNames[v] }
func (v OverflowAction) String() string   { return overflowActionNames[v] }
func (v Limit) String() string            { return limitNames[v] }
func (v WriteOp) String() string          { return writeOpNames[v] }
func (v WriteResult) String() string      { return writeResultNames[v] }
func (v FilterWhere) String() string      { return filterWhereNames[v] }

// Label value lists, in constant order (what /metrics shows at zero).
var (
	HandshakeResults  = handshakeResultNames[:]
	AuthFailReasons   = authFailReasonNames[:]
	DisconnectReasons = disconnectNames[:]
	SentTypes         = sentTypeNames[:]
	ClientTypes       = clientTypeNames[:]
	OverflowActions   = overflowActionNames[:]
	Limits            = limitNames[:]
	WriteOps          = writeOpNames[:]
	WriteResults      = writeResultNames[:]
	FilterWheres      = filterWhereNames[:]
)

// labelFamilies names every family's value list for checkLabels.
var labelFamilies = map[string][]string{
	"handshakes_total":           HandshakeResults,
	"auth_failures_total":        AuthFailReasons,
	"disconnects_total":          DisconnectReasons,
	"messages_sent_total":        SentTypes,
	"client_messages_total":      ClientTypes,
	"send_queue_overflows_total": OverflowActions,
	"rate_limited_total":         Limits,
	"fleet_feeds":                FleetRoles,
	"fleet_lease_changes_total":  LeaseChanges,
	"writes_total{op}":           WriteOps,
	"writes_total{result}":       WriteResults,
	"policy_filters_total":       FilterWheres,
}

// checkLabels reports the first family whose label values are empty or
// repeated; New panics on it (a programming error caught at start-up and by
// every test that builds Metrics).
func checkLabels() error {
	for fam, vals := range labelFamilies {
		seen := make(map[string]bool, len(vals))
		for i, v := range vals {
			if v == "" {
				return &labelError{family: fam, index: i, why: "empty label value"}
			}
			if seen[v] {
				return &labelError{family: fam, index: i, why: "label value " + v + " repeated"}
			}
			seen[v] = true
		}
	}
	return nil
}

type labelError struct {
	family string
	index  int
	why    string
}

func (e *labelError) Error() string {
	return "metrics: " + e.family + ": constant " + itoa(e.index) + ": " + e.why
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}
