// Package writes owns Firegate's document writes: it checks a batch of
// operations against the policy (the gateway's scope rules first, then the
// rule's create/update/delete expressions) and commits it atomically in
// one Firestore transaction, with preconditions, transforms, generated
// ids, Firestore's batch and document size limits, and idempotency keys
// recorded in Firestore in the same transaction.
//
// It knows nothing of sockets or HTTP: the gateway decodes a write (wire),
// calls Writer.Apply and answers with its result or its *Error.
package writes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/subscriptions"
	"github.com/firegate/firegate/wire"
)

// DefaultIdempotencyWindow is how long an idempotency key is remembered
// when Config gives none.
const DefaultIdempotencyWindow = 24 * time.Hour

// RecordCollection is the Firestore collection holding idempotency
// records. Clients can never read or write it: its id starts with
// authz.ReservedPrefix, which no policy rule matches.
const RecordCollection = "_firegate_writes"

// MaxDocumentBytes is Firestore's document size limit (1 MiB), computed as
// Firestore computes storage size.
const MaxDocumentBytes = 1 << 20

// Config configures a Writer.
type Config struct {
	// Client is the Firestore client (required).
	Client *firestore.Client
	// IdempotencyWindow is how long an idempotency key is remembered;
	// 0 → DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration
	// Now is the clock for idempotency expiry and for how request.doc
	// shows a server_timestamp; nil → time.Now.
	Now func() time.Time
	// Logger reports failures that do not fail a write (nil → discard).
	Logger *slog.Logger
}

// Writer applies writes. It is safe for concurrent use; it holds no
// mutable state of its own (Firestore serializes what must be).
type Writer struct {
	fs     *firestore.Client
	window time.Duration
	now    func() time.Time
	log    *slog.Logger
}

// New checks cfg and builds a Writer.
func New(cfg Config) (*Writer, error) {
	if cfg.Client == nil {
		return nil, errors.New("writes: a Firestore client is required")
	}
	if cfg.IdempotencyWindow < 0 {
		return nil, errors.New("writes: the idempotency window must not be negative")
	}
	w := &Writer{fs: cfg.Client, window: cfg.IdempotencyWindow, now: cfg.Now, log: cfg.Logger}
	if w.window == 0 {
		w.window = DefaultIdempotencyWindow
	}
	if w.now == nil {
		w.now = time.Now
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	return w, nil
}

// Error is a refused or failed write; nothing of the batch was written.
// Code is a wire error code; Index the failing operation, or -1 when the
// whole request failed. Msg is safe to send to the client; Err is the
// underlying cause, for logs only.
type Error struct {
	Code  string
	Index int
	Msg   string
	Err   error
}

func (e *Error) Error() string {
	s := e.Code + ": " + e.Msg
	if e.Index >= 0 {
		s = fmt.Sprintf("ops[%d]: %s", e.Index, s)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func opErr(code string, i int, format string, args ...any) *Error {
	return &Error{Code: code, Index: i, Msg: fmt.Sprintf(format, args...)}
}

// Result is a committed (or replayed) write.
type Result struct {
	Written wire.Written
	// Replayed is true when the idempotency key matched an earlier write
	// and nothing was written now.
	Replayed bool
}

// plannedOp is one operation with its resolved document.
type plannedOp struct {
	op     *wire.WriteOp
	ref    *firestore.DocumentRef
	path   string // database-relative document path
	target *authz.WriteTarget
	data   map[string]any // create/set data, stamped (a copy)
	merge  [][]string
}

// Apply checks req for pr under pol and commits it atomically. It returns
// the `written` answer, or an *Error (nothing written). With an
// idempotency key, the same key from the same user in the same active
// organization within the window returns the first answer and writes
// nothing.
func (w *Writer) Apply(ctx context.Context, pol *authz.Policy, pr *authz.Principal, req wire.WriteRequest) (*Result, error) {
	if len(req.Ops) == 0 || len(req.Ops) > wire.MaxWriteOps {
		return nil, opErr(wire.CodeBadRequest, -1, "a write has 1 to %d operations", wire.MaxWriteOps)
	}
	plans, err := w.plan(pol, pr, req)
	if err != nil {
		return nil, err
	}
	var rec *firestore.DocumentRef
	if req.IdempotencyKey != "" {
		rec = w.fs.Collection(RecordCollection).Doc(recordID(pr.UserID, pr.OrgID, req.IdempotencyKey))
	}
	var resp firestore.CommitResponse
	var replay *Result
	err = w.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		replay = nil
		refs := make([]*firestore.DocumentRef, 0, len(plans)+1)
		for _, p := range plans {
			refs = append(refs, p.ref)
		}
		if rec != nil {
			refs = append(refs, rec)
		}
		snaps, err := tx.GetAll(refs)
		if err != nil {
			return err
		}
		now := w.now()
		if rec != nil {
			if r, ok := decodeRecord(snaps[len(plans)], pr.UserID, pr.OrgID, now); ok {
				replay = r
				return nil
			}
		}
		for i, p := range plans {
			if err := w.stage(tx, i, p, snaps[i], now); err != nil {
				return err
			}
		}
		if rec != nil {
			paths := make([]string, len(plans))
			for i, p := range plans {
				paths[i] = p.path
			}
			if err := tx.Set(rec, map[string]any{
				"user_id":    pr.UserID,
				"org_id":     pr.OrgID,
				"paths":      paths,
				"expires_at": now.Add(w.window),
			}); err != nil {
				return err
			}
		}
		return nil
	}, firestore.WithCommitResponseTo(&resp))
	if err != nil {
		var we *Error
		if errors.As(err, &we) {
			return nil, we
		}
		return nil, commitError(err)
	}
	if replay != nil {
		replay.Written.ID = req.ID
		return replay, nil
	}
	res := &Result{Written: wire.Written{Type: wire.TypeWritten, ID: req.ID, CommitTime: formatTime(resp.CommitTime())}}
	wrs, err := resp.WriteResults()
	if err != nil {
		return nil, commitError(err)
	}
	res.Written.Results = make([]wire.WriteResult, len(plans))
	for i, p := range plans {
		ut := resp.CommitTime()
		if i < len(wrs) && !wrs[i].UpdateTime.IsZero() && p.op.Op != wire.OpDelete {
			ut = wrs[i].UpdateTime
		}
		res.Written.Results[i] = wire.WriteResult{Path: p.path, UpdateTime: formatTime(ut)}
	}
	if rec != nil {
		// Remember the exact answer (a write that changed nothing keeps
		// the document's older update_time). A failure here only makes a
		// replay fall back to the commit time for every result.
		if _, err := rec.Update(context.WithoutCancel(ctx), []firestore.Update{
			{Path: "commit_time", Value: resp.CommitTime()},
			{Path: "update_times", Value: updateTimes(res.Written.Results)},
		}); err != nil {
			w.log.Warn("failed to record the answer of an idempotent write", "err", err)
		}
	}
	return res, nil
}

// plan resolves every operation's document and rule before the
// transaction (a generated id is chosen once, so a retried transaction
// writes the same document).
func (w *Writer) plan(pol *authz.Policy, pr *authz.Principal, req wire.WriteRequest) ([]*plannedOp, error) {
	plans := make([]*plannedOp, len(req.Ops))
	seen := make(map[string]int, len(req.Ops))
	for i := range req.Ops {
		op := &req.Ops[i]
		p := &plannedOp{op: op}
		if op.IsCollectionPath() {
			if op.Op != wire.OpCreate {
				return nil, opErr(wire.CodeBadRequest, i, "only create takes a collection path")
			}
			p.ref = w.fs.Collection(op.Path).NewDoc()
			p.path = op.Path + "/" + p.ref.ID
		} else {
			p.ref = w.fs.Doc(op.Path)
			p.path = op.Path
		}
		if p.ref == nil {
			return nil, opErr(wire.CodeBadRequest, i, "invalid document path")
		}
		if j, dup := seen[p.path]; dup {
			return nil, opErr(wire.CodeBadRequest, i, "ops[%d] already writes %s; one operation per document per write", j, p.path)
		}
		seen[p.path] = i
		t, err := pol.WriteTarget(pr, p.path)
		if err != nil {
			var de *authz.DenyError
			if errors.As(err, &de) {
				return nil, &Error{Code: de.Code, Index: i, Msg: de.Msg}
			}
			return nil, &Error{Code: wire.CodeForbidden, Index: i, Msg: "not allowed to write this document", Err: err}
		}
		p.target = t
		if op.Data != nil {
			p.data = copyMap(op.Data)
		}
		p.merge = op.Merge
		plans[i] = p
	}
	return plans, nil
}

// stage checks one operation against its stored document and queues it on
// tx. Order: scope rules and the rule's expression, then existence and
// preconditions (so a refusal never says more than forbidden), then the
// document size.
func (w *Writer) stage(tx *firestore.Transaction, i int, p *plannedOp, snap *firestore.DocumentSnapshot, now time.Time) error {
	op := p.op
	exists := snap != nil && snap.Exists()
	var stored map[string]any
	if exists {
		stored = subscriptions.DataToJSON(snap.Data())
	}
	in := authz.WriteInput{Stored: stored}
	merge := p.merge
	switch op.Op {
	case wire.OpCreate:
		in.Op = authz.WriteCreate
		p.target.Stamp(p.data)
		in.New = resolveData(nil, p.data, now)
		in.Fields = authz.ChangedFields(nil, in.New)
	case wire.OpSet:
		in.Op = authz.WriteUpdate
		if !exists {
			in.Op = authz.WriteCreate
		}
		if merge == nil {
			p.target.Stamp(p.data)
			in.New = resolveData(nil, p.data, now)
			in.Fields = authz.ChangedFields(stored, in.New)
		} else {
			if !exists && p.target.Stamp(p.data) {
				merge = append(append([][]string(nil), merge...), strings.Split(p.target.ScopeField, "."))
			}
			in.New = copyMap(stored)
			if in.New == nil {
				in.New = map[string]any{}
			}
			in.Fields = make([]string, len(merge))
			for j, m := range merge {
				v, _ := lookup(p.data, m)
				setPath(in.New, m, resolveValue(valueAt(stored, m), v, now))
				in.Fields[j] = wire.JoinFieldPath(m)
			}
			sort.Strings(in.Fields)
		}
	case wire.OpUpdate:
		in.Op = authz.WriteUpdate
		in.New = copyMap(stored)
		if in.New == nil {
			in.New = map[string]any{}
		}
		in.Fields = make([]string, len(op.Updates))
		for j, u := range op.Updates {
			setPath(in.New, u.Path, resolveValue(valueAt(stored, u.Path), u.Value, now))
			in.Fields[j] = wire.JoinFieldPath(u.Path)
		}
	case wire.OpDelete:
		in.Op = authz.WriteDelete
		in.Fields = []string{}
	}
	if err := p.target.Decide(in); err != nil {
		var de *authz.DenyError
		if errors.As(err, &de) {
			return &Error{Code: de.Code, Index: i, Msg: de.Msg}
		}
		return &Error{Code: wire.CodeForbidden, Index: i, Msg: "not allowed to write this document", Err: err}
	}
	if op.Op == wire.OpCreate && exists {
		return opErr(wire.CodeAlreadyExists, i, "%s already exists", p.path)
	}
	if op.Exists != nil && *op.Exists != exists {
		if exists {
			return opErr(wire.CodeFailedPrecondition, i, "precondition exists:false failed: the document exists")
		}
		return opErr(wire.CodeFailedPrecondition, i, "precondition exists:true failed: the document does not exist")
	}
	if !op.UpdateTime.IsZero() && (!exists || !snap.UpdateTime.Equal(op.UpdateTime)) {
		return opErr(wire.CodeFailedPrecondition, i, "precondition update_time failed: the document changed since %s", formatTime(op.UpdateTime))
	}
	if in.New != nil {
		if n := DocumentSize(p.path, in.New); n > MaxDocumentBytes {
			return opErr(wire.CodeBadRequest, i, "the document would be %d bytes; Firestore's limit is %d", n, MaxDocumentBytes)
		}
	}
	var err error
	switch op.Op {
	case wire.OpCreate:
		err = tx.Create(p.ref, toFirestore(p.data))
	case wire.OpSet:
		if merge == nil {
			err = tx.Set(p.ref, toFirestore(p.data))
		} else {
			fps := make([]firestore.FieldPath, len(merge))
			for j, m := range merge {
				fps[j] = firestore.FieldPath(m)
			}
			err = tx.Set(p.ref, toFirestore(p.data), firestore.Merge(fps...))
		}
	case wire.OpUpdate:
		ups := make([]firestore.Update, len(op.Updates))
		for j, u := range op.Updates {
			ups[j] = firestore.Update{FieldPath: firestore.FieldPath(u.Path), Value: toFirestoreValue(u.Value)}
		}
		err = tx.Update(p.ref, ups)
	case wire.OpDelete:
		err = tx.Delete(p.ref)
	}
	if err != nil {
		return &Error{Code: wire.CodeBadRequest, Index: i, Msg: "Firestore refuses this operation", Err: err}
	}
	return nil
}

// commitError classifies a Firestore error that is not ours.
func commitError(err error) *Error {
	e := &Error{Index: -1, Err: err}
	switch status.Code(err) {
	case codes.AlreadyExists:
		e.Code, e.Msg = wire.CodeAlreadyExists, "a document already exists"
	case codes.FailedPrecondition:
		e.Code, e.Msg = wire.CodeFailedPrecondition, "a precondition failed"
	case codes.NotFound:
		e.Code, e.Msg = wire.CodeNotFound, "not found"
	case codes.InvalidArgument:
		e.Code, e.Msg = wire.CodeBadRequest, "Firestore refused the write"
	case codes.Canceled:
		e.Code, e.Msg = wire.CodeUnavailable, "the write was cancelled; nothing was written"
	default: // Aborted after retries (contention), Unavailable, DeadlineExceeded, ...
		e.Code, e.Msg = wire.CodeUnavailable, "Firestore could not commit the write; nothing was written, retry"
	}
	return e
}

// recordID is the idempotency record's document id for (user, active
// org, key): a key is the user's within one organization, so a key reused
// after switching org is a new write, never the other org's answer.
func recordID(user, org, key string) string {
	h := sha256.Sum256([]byte(user + "\x00" + org + "\x00" + key))
	return hex.EncodeToString(h[:])
}

// decodeRecord returns the answer an unexpired record of user in org
// remembers.
func decodeRecord(snap *firestore.DocumentSnapshot, user, org string, now time.Time) (*Result, bool) {
	if snap == nil || !snap.Exists() {
		return nil, false
	}
	d := snap.Data()
	if u, _ := d["user_id"].(string); u != user {
		return nil, false
	}
	if o, _ := d["org_id"].(string); o != org {
		return nil, false
	}
	exp, ok := d["expires_at"].(time.Time)
	if !ok || !now.Before(exp) {
		return nil, false
	}
	paths, _ := d["paths"].([]any)
	// Every write of one commit carries the commit time, and so does the
	// record written with them; update_times holds the exact answer once
	// the first call recorded it.
	commit := snap.UpdateTime
	if ct, ok := d["commit_time"].(time.Time); ok {
		commit = ct
	}
	times, _ := d["update_times"].([]any)
	res := &Result{Replayed: true, Written: wire.Written{Type: wire.TypeWritten, CommitTime: formatTime(commit)}}
	res.Written.Results = make([]wire.WriteResult, len(paths))
	for i, p := range paths {
		s, _ := p.(string)
		ut := commit
		if i < len(times) {
			if t, ok := times[i].(time.Time); ok {
				ut = t
			}
		}
		res.Written.Results[i] = wire.WriteResult{Path: s, UpdateTime: formatTime(ut)}
	}
	return res, true
}

func updateTimes(rs []wire.WriteResult) []any {
	out := make([]any, len(rs))
	for i, r := range rs {
		t, err := time.Parse(time.RFC3339Nano, r.UpdateTime)
		if err != nil {
			out[i] = nil
			continue
		}
		out[i] = t
	}
	return out
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// toFirestore converts write data to the Firestore client's values:
// transforms become its sentinels.
func toFirestore(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = toFirestoreValue(v)
	}
	return out
}

func toFirestoreValue(v any) any {
	switch x := v.(type) {
	case *wire.Transform:
		switch x.Kind {
		case wire.TransformServerTimestamp:
			return firestore.ServerTimestamp
		case wire.TransformIncrement:
			return firestore.Increment(x.By)
		case wire.TransformArrayUnion:
			return firestore.ArrayUnion(x.Values...)
		case wire.TransformArrayRemove:
			return firestore.ArrayRemove(x.Values...)
		}
	case map[string]any:
		return toFirestore(x)
	}
	return v
}

// resolveData is data with its transforms resolved against old (the
// stored values at the same places, or nil): what request.doc shows.
func resolveData(old, data map[string]any, now time.Time) map[string]any {
	out := make(map[string]any, len(data))
	for k, v := range data {
		var ov any
		if old != nil {
			ov = old[k]
		}
		out[k] = resolveValue(ov, v, now)
	}
	return out
}

// resolveValue shows one written value as it will be stored: a
// server_timestamp as now (an RFC 3339 string, as subscribers see
// timestamps), an increment as the sum (integer unless either side is a
// float; a non-number old value counts as 0), array_union/array_remove as
// the resulting list.
func resolveValue(old, v any, now time.Time) any {
	switch x := v.(type) {
	case *wire.Transform:
		switch x.Kind {
		case wire.TransformServerTimestamp:
			return formatTime(now)
		case wire.TransformIncrement:
			return addNumbers(old, x.By)
		case wire.TransformArrayUnion:
			base, _ := old.([]any)
			out := append([]any(nil), base...)
			for _, e := range x.Values {
				if !containsValue(out, e) {
					out = append(out, e)
				}
			}
			if out == nil {
				out = []any{}
			}
			return out
		case wire.TransformArrayRemove:
			base, _ := old.([]any)
			out := []any{}
			for _, e := range base {
				if !containsValue(x.Values, e) {
					out = append(out, e)
				}
			}
			return out
		}
	case map[string]any:
		om, _ := old.(map[string]any)
		return resolveData(om, x, now)
	}
	return v
}

func addNumbers(old, by any) any {
	switch o := old.(type) {
	case int64:
		if b, ok := by.(int64); ok {
			s := o + b
			// Firestore saturates integer overflow.
			if b > 0 && s < o {
				return int64(math.MaxInt64)
			}
			if b < 0 && s > o {
				return int64(math.MinInt64)
			}
			return s
		}
		return float64(o) + by.(float64)
	case float64:
		if b, ok := by.(int64); ok {
			return o + float64(b)
		}
		return o + by.(float64)
	}
	return by
}

func containsValue(list []any, v any) bool {
	for _, e := range list {
		if reflect.DeepEqual(e, v) || numEqual(e, v) {
			return true
		}
	}
	return false
}

func numEqual(a, b any) bool {
	af, aok := asFloat(a)
	bf, bok := asFloat(b)
	return aok && bok && af == bf
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func copyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if mm, ok := v.(map[string]any); ok {
			out[k] = copyMap(mm)
		} else {
			out[k] = v
		}
	}
	return out
}

func lookup(m map[string]any, segs []string) (any, bool) {
	var cur any = m
	for _, s := range segs {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[s]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// valueAt is the value at segs in m, or nil when there is none.
func valueAt(m map[string]any, segs []string) any {
	v, _ := lookup(m, segs)
	return v
}

// setPath sets segs in m to v, replacing non-maps on the way with maps (as
// Firestore does for an update of a.b where a is not a map).
func setPath(m map[string]any, segs []string, v any) {
	cur := m
	for _, s := range segs[:len(segs)-1] {
		next, ok := cur[s].(map[string]any)
		if !ok {
			next = map[string]any{}
		} else {
			next = copyMap(next)
		}
		cur[s] = next
		cur = next
	}
	cur[segs[len(segs)-1]] = v
}

// DocumentSize is the storage size Firestore computes for the document at
// path (database-relative) with fields data (JSON-mapped values): the name
// (each segment's bytes + 1, + 16), every field (name bytes + 1 + value
// size) and 32. Values: string bytes + 1, bool and null 1, numbers 8,
// arrays the sum of their elements, maps the sum of their fields.
func DocumentSize(path string, data map[string]any) int {
	n := 16 + 32
	for _, s := range strings.Split(path, "/") {
		n += len(s) + 1
	}
	return n + mapSize(data)
}

func mapSize(m map[string]any) int {
	n := 0
	for k, v := range m {
		n += len(k) + 1 + valueSize(v)
	}
	return n
}

func valueSize(v any) int {
	switch x := v.(type) {
	case nil, bool:
		return 1
	case int64, float64:
		return 8
	case string:
		return len(x) + 1
	case []any:
		n := 0
		for _, e := range x {
			n += valueSize(e)
		}
		return n
	case map[string]any:
		return mapSize(x)
	}
	return 8
}
