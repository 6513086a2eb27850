// Package subscriptions owns the Hub (the registry of Feeds), the Feeds (one
// upstream listener each, shared by every subscriber with the same key), the
// fan-out of encoded frames, de-duplication, the replay buffer used for resume
// and slow-consumer catch-up, and the Source interface with its Firestore
// implementation. It never imports the gateway. docs/architecture.md
// draws where it sits in the data flow and states the lock order.
package subscriptions

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/firegate/firegate/wire"
)

// Query is a normalized collection query: filters sorted, values normalized,
// directions explicit. It names a collection path relative to the database
// ("tasks", "projects/p1/tasks"). The scope filter is one of Filters once
// the gateway has added it.
type Query struct {
	Collection string
	// Doc, when not empty, confines the query to the one document
	// Collection/Doc (a document subscription).
	Doc     string
	Filters []wire.Filter
	// Or, when not empty, is a disjunction ANDed with Filters: a document
	// matches when it matches every filter of at least one element (the
	// policy's pushed-down filter; see Plan). Never a single element.
	Or      [][]wire.Filter
	OrderBy []wire.Order
	Limit   int
}

// Document is one Firestore document as the Feed sees it. Data holds plain
// JSON-compatible values only (the value mapping of docs/protocol.md): string, bool,
// int64, float64, nil, []any, map[string]any. Times are RFC 3339 strings,
// bytes standard base64, references database-relative paths, geo points
// {"latitude","longitude"} maps.
type Document struct {
	ID         string
	Path       string
	Data       map[string]any
	UpdateTime time.Time
}

// ChangeKind says what happened to a document in one upstream snapshot.
type ChangeKind uint8

const (
	Added ChangeKind = iota + 1
	Modified
	Removed
)

// Change is one upstream document change. For Removed, Doc carries ID and
// Path only.
type Change struct {
	Kind ChangeKind
	Doc  Document
}

// Snapshot is one upstream snapshot, delivered in order from one goroutine.
type Snapshot struct {
	// Reset is set on the first snapshot of every listener (including a
	// rebuilt one): Docs then holds the whole current result, which replaces
	// what the Feed held; Changes is empty.
	Reset bool
	Docs  []Document
	// Changes since the previous snapshot of the same listener (!Reset).
	Changes []Change
	// ReadTime is Firestore's read time of the snapshot.
	ReadTime time.Time
	// ReceivedAt is when the gateway received it (for fan-out latency).
	ReceivedAt time.Time

	// Fleet mode only (FleetSource); zero values elsewhere.
	//
	// Seq, when non-zero, is the Feed's seq after this snapshot as the
	// fleet owner numbered it: a mirror's first Reset starts the Feed at
	// Seq (with History as its replay buffer), and a later snapshot's
	// `changes` message carries Seq instead of the next seq. A Seq below
	// the next seq is dropped; one above it restarts the replay buffer.
	Seq     uint64
	History []HistoryEntry
	// Published, when set, is called under the Feed's lock after the Feed
	// applied this snapshot and fanned out a `changes` message, with its
	// seq, read time and visible changes (Data is immutable; the slice is
	// reused after the call). It must not block.
	Published func(seq uint64, readTime time.Time, changes []wire.Change)
}

// Source opens upstream listeners. Implementations must be safe for
// concurrent use.
type Source interface {
	// Listen runs one listener for q until ctx is cancelled (it then returns
	// ctx.Err()) or the listener fails (it returns an *UpstreamError). It
	// calls emit from a single goroutine, in order; emit must not retain
	// the Snapshot after it returns. The first snapshot has Reset set.
	Listen(ctx context.Context, q Query, emit func(*Snapshot)) error
}

// UpstreamError is a listener failure with its gRPC status code.
// Permanent errors (FailedPrecondition such as a missing index,
// PermissionDenied, InvalidArgument, NotFound, Unimplemented) end the
// Feed's subscriptions with reason upstream_error; other codes are retried
// with backoff.
type UpstreamError struct {
	Code    codes.Code
	Message string // Firestore's message, kept whole (a missing index keeps its link)
}

func (e *UpstreamError) Error() string {
	return fmt.Sprintf("firestore listener failed: %s: %s", e.Code, e.Message)
}

// Permanent reports whether retrying cannot help.
func (e *UpstreamError) Permanent() bool {
	switch e.Code {
	case codes.FailedPrecondition, codes.PermissionDenied, codes.InvalidArgument,
		codes.NotFound, codes.Unimplemented, codes.Unauthenticated, codes.OutOfRange:
		return true
	}
	return false
}

// FeedSpec describes the Feed a subscription wants. Equal Keys share one
// Feed and so one upstream listener.
type FeedSpec struct {
	// Query is what the listener runs, scope filter included.
	Query Query
	// Key identifies the Feed: the normalized query (scope filter and
	// pushed-down policy filter included), the policy rule's fingerprint
	// and the residual key of the policy filter. Built by Plan.
	Key string
	// Rule is the fingerprint of the policy rule the Feed was planned
	// under; Hub.Retire closes Feeds of rules a reload replaced.
	Rule string
	// Tenant is the org (or, for user scope, user) id; used only for the
	// per-tenant Feed limit, never as a metric label.
	Tenant string
	// User is the user charged for a new Feed against the per-user share of
	// its tenant's Feeds (HubConfig.MaxFeedSharePerUser); empty: not
	// charged (user-scoped Feeds, whose tenant is the user). The Feed stays
	// charged to the user who opened it while it lives.
	User string
	// Filter is the per-document policy filter; nil admits every document.
	// It is called under the Feed's lock, once per change per Feed, and must
	// not block. A document for which it returns false is not visible.
	Filter func(id, path string, data map[string]any) bool
}

// Message is one frame for one subscription, shared by every subscriber of
// a Feed: only the subscription id differs and is spliced in by the writer.
// Messages are immutable once delivered.
type Message struct {
	Frame *wire.Frame
	// Seq is the Feed seq the message brings the subscriber to (0 for
	// `subscribed`).
	Seq uint64
	// ReceivedAt is when the upstream snapshot behind a live `changes`
	// reached the gateway; zero for snapshots, catch-ups and control frames.
	ReceivedAt time.Time
	// End marks the last message of a subscription the Feed ended
	// (upstream error); the subscriber has already been detached.
	End bool
}

// Size is the encoded size without the subscription id.
func (m *Message) Size() int { return len(m.Frame.Head) + len(m.Frame.Tail) }

// Subscriber receives a subscription's messages. Deliver is called with the
// Feed's lock held: it must not block and must not call back into the Hub.
// Calls for one subscription never overlap. catchUp is true for the first
// message of a snapshot or catch-up that follows a Subscribe or a CatchUp
// call: a subscriber that was lagging may resume accepting live messages
// from that point on.
type Subscriber interface {
	Deliver(m *Message, catchUp bool)
}
