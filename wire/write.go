package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Write message types.
const (
	TypeWrite   = "write"   // client → server
	TypeWritten = "written" // server → client
)

// Error codes only writes answer (besides forbidden, bad_request,
// not_found, rate_limited and unavailable).
const (
	CodeAlreadyExists      = "already_exists"
	CodeFailedPrecondition = "failed_precondition"
)

// Write operations.
const (
	OpCreate = "create"
	OpSet    = "set"
	OpUpdate = "update"
	OpDelete = "delete"
)

// WriteOps lists the operations, for metrics labels.
var WriteOps = []string{OpCreate, OpSet, OpUpdate, OpDelete}

// Transforms accepted as {"$transform": kind, ...} values.
const (
	TransformServerTimestamp = "server_timestamp"
	TransformIncrement       = "increment"
	TransformArrayUnion      = "array_union"
	TransformArrayRemove     = "array_remove"
)

// TransformKey is the key that marks a transform object in write data.
const TransformKey = "$transform"

// Write limits.
const (
	// MaxWriteOps is Firestore's batch limit: operations per write.
	MaxWriteOps = 500
	// MaxIdempotencyKeyLength bounds idempotency_key, in bytes.
	MaxIdempotencyKeyLength = 256
	// MaxValueDepth is Firestore's nesting limit for maps and arrays.
	MaxValueDepth = 20
)

// WriteRequest is a decoded and checked `write` (or a POST /v1/write body).
// Values in Data and Updates are nil, bool, string, int64, float64,
// []any, map[string]any or *Transform (never inside an array).
type WriteRequest struct {
	ID             string
	IdempotencyKey string
	Ops            []WriteOp
}

// WriteOp is one checked operation of a write.
type WriteOp struct {
	// Op is OpCreate, OpSet, OpUpdate or OpDelete.
	Op string
	// Path is a document path (even number of segments) or, for create
	// only, a collection path (odd): the document id is then generated.
	Path string
	// Data holds the fields of create and set (keys are plain field
	// names; nested maps are nested fields). nil for update and delete.
	Data map[string]any
	// Updates holds update's fields: parsed field paths and their values,
	// sorted by canonical path, no path a prefix of another.
	Updates []FieldUpdate
	// Merge is set's merge field paths (each present in Data); nil means
	// the set replaces the whole document.
	Merge [][]string
	// Exists is the `exists` precondition (update implies true, create
	// false); nil when absent.
	Exists *bool
	// UpdateTime is the `update_time` precondition; zero when absent.
	UpdateTime time.Time
}

// IsCollectionPath reports whether the op names a collection (create with
// a generated id).
func (o *WriteOp) IsCollectionPath() bool { return strings.Count(o.Path, "/")%2 == 0 }

// FieldUpdate is one field of an update.
type FieldUpdate struct {
	Path  []string
	Value any
}

// Transform is a server-side transform of one field.
type Transform struct {
	// Kind is one of the Transform* constants.
	Kind string
	// By is increment's operand: int64 or float64.
	By any
	// Values are array_union's and array_remove's elements.
	Values []any
}

// Written answers a successful write.
type Written struct {
	Type       string        `json:"type"` // "written"
	ID         string        `json:"id,omitempty"`
	CommitTime string        `json:"commit_time"`
	Results    []WriteResult `json:"results"`
}

// WriteResult is one operation's outcome: the document's path (with the
// generated id for a create into a collection) and its update_time (the
// commit time for a delete).
type WriteResult struct {
	Path       string `json:"path"`
	UpdateTime string `json:"update_time"`
}

// WriteError refuses a write. Index is the failing operation's index,
// absent when the whole request failed (rate limit, unavailable, a
// malformed envelope).
type WriteError struct {
	Type         string `json:"type"` // "error"
	ID           string `json:"id,omitempty"`
	Code         string `json:"code"`
	Index        *int   `json:"index,omitempty"`
	Message      string `json:"message"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// HTTPWriteError is the body of a refused POST /v1/write.
type HTTPWriteError struct {
	Error HTTPWriteErrorBody `json:"error"`
}

// HTTPWriteErrorBody is the inner object of HTTPWriteError.
type HTTPWriteErrorBody struct {
	Code    string `json:"code"`
	Index   *int   `json:"index,omitempty"`
	Message string `json:"message"`
}

// WriteDecodeError is a malformed write. Index is the operation it
// concerns, or -1 for the envelope. Its message is safe to send back.
type WriteDecodeError struct {
	Index int
	Msg   string
}

func (e *WriteDecodeError) Error() string {
	if e.Index < 0 {
		return e.Msg
	}
	return fmt.Sprintf("ops[%d]: %s", e.Index, e.Msg)
}

type rawWrite struct {
	Type           string            `json:"type"`
	ID             string            `json:"id"`
	IdempotencyKey string            `json:"idempotency_key"`
	Ops            []json.RawMessage `json:"ops"`
}

type rawOp struct {
	Op           string          `json:"op"`
	Path         string          `json:"path"`
	Data         json.RawMessage `json:"data"`
	Merge        []string        `json:"merge"`
	Precondition *rawPrecond     `json:"precondition"`
}

type rawPrecond struct {
	Exists     *bool   `json:"exists"`
	UpdateTime *string `json:"update_time"`
}

// DecodeWrite decodes and checks a write: a `write` message, or the body
// of POST /v1/write (where `type` may be absent). Unknown keys of the
// envelope are ignored; unknown keys of an operation or a precondition are
// refused, as are: no operations or more than MaxWriteOps, a bad path, data
// on delete or missing elsewhere, merge outside set or naming a field not in
// data, both preconditions at once, a precondition that contradicts the
// operation, keys beginning with $ other than a well-formed $transform,
// transforms inside arrays, nesting deeper than MaxValueDepth, numbers out
// of range. Errors are *WriteDecodeError.
func DecodeWrite(b []byte) (WriteRequest, error) {
	var req WriteRequest
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return req, &WriteDecodeError{-1, "body must be one JSON object"}
	}
	if !utf8.Valid(b) {
		return req, &WriteDecodeError{-1, "body is not valid UTF-8"}
	}
	var raw rawWrite
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return req, &WriteDecodeError{-1, "invalid JSON: " + cleanJSONErr(err)}
	}
	if dec.More() {
		return req, &WriteDecodeError{-1, "trailing data after the JSON object"}
	}
	if raw.Type != "" && raw.Type != TypeWrite {
		return req, &WriteDecodeError{-1, fmt.Sprintf("type must be %q", TypeWrite)}
	}
	if len(raw.ID) > MaxIDLength {
		return req, &WriteDecodeError{-1, fmt.Sprintf("id longer than %d bytes", MaxIDLength)}
	}
	if len(raw.IdempotencyKey) > MaxIdempotencyKeyLength {
		return req, &WriteDecodeError{-1, fmt.Sprintf("idempotency_key longer than %d bytes", MaxIdempotencyKeyLength)}
	}
	req.ID, req.IdempotencyKey = raw.ID, raw.IdempotencyKey
	switch {
	case len(raw.Ops) == 0:
		return req, &WriteDecodeError{-1, "a write needs at least one operation in ops"}
	case len(raw.Ops) > MaxWriteOps:
		return req, &WriteDecodeError{-1, fmt.Sprintf("at most %d operations per write (Firestore's batch limit), got %d", MaxWriteOps, len(raw.Ops))}
	}
	req.Ops = make([]WriteOp, len(raw.Ops))
	for i, ro := range raw.Ops {
		op, err := decodeOp(ro)
		if err != nil {
			return req, &WriteDecodeError{i, err.Error()}
		}
		req.Ops[i] = op
	}
	return req, nil
}

func decodeOp(b json.RawMessage) (WriteOp, error) {
	var op WriteOp
	var ro rawOp
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ro); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return op, fmt.Errorf("unknown key %s (known: op, path, data, merge, precondition)", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return op, errors.New("invalid operation: " + cleanJSONErr(err))
	}
	op.Op, op.Path = ro.Op, ro.Path
	switch ro.Op {
	case OpCreate, OpSet, OpUpdate, OpDelete:
	case "":
		return op, errors.New("missing op (create, set, update or delete)")
	default:
		return op, fmt.Errorf("unknown op %q (create, set, update or delete)", truncate(ro.Op, 32))
	}
	collection, reason := checkWritePath(ro.Path)
	if reason != "" {
		return op, fmt.Errorf("path: %s", reason)
	}
	if collection && ro.Op != OpCreate {
		return op, fmt.Errorf("path %q names a collection; only create takes a collection path (for a generated id)", truncate(ro.Path, 64))
	}
	hasData := len(ro.Data) > 0 && string(ro.Data) != "null"
	if ro.Op == OpDelete {
		if hasData {
			return op, errors.New("delete takes no data")
		}
	} else if !hasData {
		return op, fmt.Errorf("%s needs data (an object)", ro.Op)
	}
	if ro.Merge != nil && ro.Op != OpSet {
		return op, errors.New("merge is only for set")
	}
	if hasData {
		var data map[string]any
		dd := json.NewDecoder(bytes.NewReader(ro.Data))
		dd.UseNumber()
		if err := dd.Decode(&data); err != nil {
			return op, errors.New("data must be an object")
		}
		if ro.Op == OpUpdate {
			if len(data) == 0 {
				return op, errors.New("update needs at least one field")
			}
			ups, err := decodeUpdates(data)
			if err != nil {
				return op, err
			}
			op.Updates = ups
		} else {
			m, err := convertMap(data, "data", 1, false)
			if err != nil {
				return op, err
			}
			op.Data = m
		}
	}
	if ro.Merge != nil {
		if len(ro.Merge) == 0 {
			return op, errors.New("merge must name at least one field path (omit it to replace the document)")
		}
		paths := make([][]string, 0, len(ro.Merge))
		for j, s := range ro.Merge {
			segs, err := ParseFieldPath(s)
			if err != nil {
				return op, fmt.Errorf("merge[%d]: %v", j, err)
			}
			if _, ok := lookupPath(op.Data, segs); !ok {
				return op, fmt.Errorf("merge[%d]: %s is not in data", j, JoinFieldPath(segs))
			}
			paths = append(paths, segs)
		}
		if err := checkNoPrefix(paths); err != nil {
			return op, fmt.Errorf("merge: %v", err)
		}
		op.Merge = paths
	}
	if pc := ro.Precondition; pc != nil {
		if pc.Exists != nil && pc.UpdateTime != nil {
			return op, errors.New("precondition takes exists or update_time, not both")
		}
		if pc.Exists == nil && pc.UpdateTime == nil {
			return op, errors.New("precondition needs exists or update_time")
		}
		if ro.Op == OpCreate {
			return op, errors.New("create takes no precondition (it already requires the document not to exist)")
		}
		if pc.Exists != nil {
			if ro.Op == OpUpdate && !*pc.Exists {
				return op, errors.New("update requires the document to exist; precondition exists:false contradicts it")
			}
			v := *pc.Exists
			op.Exists = &v
		}
		if pc.UpdateTime != nil {
			t, err := time.Parse(time.RFC3339Nano, *pc.UpdateTime)
			if err != nil {
				return op, errors.New("precondition update_time must be an RFC 3339 timestamp")
			}
			op.UpdateTime = t.UTC()
		}
	}
	return op, nil
}

// checkWritePath validates a document or collection path: segments
// separated by /, each non-empty, not . or .., not __…__, valid UTF-8
// without control characters, the whole at most 1500 bytes. It reports
// whether the path is a collection path (odd number of segments).
func checkWritePath(p string) (collection bool, reason string) {
	switch {
	case p == "":
		return false, "missing"
	case len(p) > 1500:
		return false, "longer than 1500 bytes"
	case strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/"):
		return false, "may not start or end with /"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if r := badSegment(s); r != "" {
			return false, fmt.Sprintf("segment %d: %s", i+1, r)
		}
	}
	return len(segs)%2 == 1, ""
}

func badSegment(s string) string {
	switch {
	case s == "":
		return "empty segment"
	case s == "." || s == "..":
		return "may not be . or .."
	case len(s) >= 4 && strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__"):
		return "ids of the form __…__ are reserved"
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return "contains a control character"
		}
	}
	return ""
}

func decodeUpdates(data map[string]any) ([]FieldUpdate, error) {
	ups := make([]FieldUpdate, 0, len(data))
	for k, v := range data {
		segs, err := ParseFieldPath(k)
		if err != nil {
			return nil, fmt.Errorf("data: field path %q: %v", truncate(k, 64), err)
		}
		for _, s := range segs {
			if err := checkFieldName(s); err != nil {
				return nil, fmt.Errorf("data: field path %q: %v", truncate(k, 64), err)
			}
		}
		cv, err := convertValue(v, "data."+JoinFieldPath(segs), 1, false, false)
		if err != nil {
			return nil, err
		}
		ups = append(ups, FieldUpdate{Path: segs, Value: cv})
	}
	sort.Slice(ups, func(i, j int) bool { return JoinFieldPath(ups[i].Path) < JoinFieldPath(ups[j].Path) })
	paths := make([][]string, len(ups))
	for i := range ups {
		paths[i] = ups[i].Path
	}
	if err := checkNoPrefix(paths); err != nil {
		return nil, fmt.Errorf("data: %v", err)
	}
	return ups, nil
}

// checkNoPrefix refuses duplicate paths and a path that is a prefix of
// another (Firestore refuses both in one write).
func checkNoPrefix(paths [][]string) error {
	for i := range paths {
		for j := range paths {
			if i == j || len(paths[i]) > len(paths[j]) {
				continue
			}
			prefix := true
			for k := range paths[i] {
				if paths[i][k] != paths[j][k] {
					prefix = false
					break
				}
			}
			if !prefix {
				continue
			}
			if len(paths[i]) == len(paths[j]) {
				return fmt.Errorf("field path %s appears twice", JoinFieldPath(paths[i]))
			}
			return fmt.Errorf("field path %s is a prefix of %s", JoinFieldPath(paths[i]), JoinFieldPath(paths[j]))
		}
	}
	return nil
}

func checkFieldName(k string) error {
	switch {
	case k == "":
		return errors.New("empty field name")
	case len(k) >= 4 && strings.HasPrefix(k, "__") && strings.HasSuffix(k, "__"):
		return fmt.Errorf("field names of the form __…__ are reserved (%q)", truncate(k, 32))
	case strings.HasPrefix(k, "$"):
		return fmt.Errorf("keys beginning with $ are reserved (%q); a transform is {\"$transform\": ...}", truncate(k, 32))
	}
	return nil
}

// convertMap converts a data object; underArray says it sits inside an
// array (where transforms are not allowed).
func convertMap(m map[string]any, where string, depth int, underArray bool) (map[string]any, error) {
	if depth > MaxValueDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d levels", where, MaxValueDepth)
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if err := checkFieldName(k); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		cv, err := convertValue(v, where+"."+JoinFieldPath([]string{k}), depth+1, false, underArray)
		if err != nil {
			return nil, err
		}
		out[k] = cv
	}
	return out, nil
}

// convertValue turns a decoded JSON value (numbers as json.Number) into a
// write value. inArray (directly an array element) forbids nested arrays;
// underArray (anywhere below an array) forbids transforms.
func convertValue(v any, where string, depth int, inArray, underArray bool) (any, error) {
	if depth > MaxValueDepth+1 {
		return nil, fmt.Errorf("%s: nested deeper than %d levels", where, MaxValueDepth)
	}
	switch x := v.(type) {
	case nil, bool, string:
		return x, nil
	case json.Number:
		n, err := convertNumber(x)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		return n, nil
	case []any:
		if inArray {
			return nil, fmt.Errorf("%s: an array may not directly contain an array", where)
		}
		out := make([]any, len(x))
		for i, e := range x {
			cv, err := convertValue(e, fmt.Sprintf("%s[%d]", where, i), depth+1, true, true)
			if err != nil {
				return nil, err
			}
			out[i] = cv
		}
		return out, nil
	case map[string]any:
		if kind, ok := x[TransformKey]; ok {
			if underArray {
				return nil, fmt.Errorf("%s: transforms may not appear inside arrays", where)
			}
			return convertTransform(kind, x, where, depth)
		}
		return convertMap(x, where, depth, underArray)
	}
	return nil, fmt.Errorf("%s: unsupported value", where)
}

func convertTransform(kind any, m map[string]any, where string, depth int) (*Transform, error) {
	k, _ := kind.(string)
	allowed := func(keys ...string) error {
		for key := range m {
			if key == TransformKey {
				continue
			}
			ok := false
			for _, a := range keys {
				ok = ok || key == a
			}
			if !ok {
				return fmt.Errorf("%s: transform %q takes no key %q", where, k, truncate(key, 32))
			}
		}
		return nil
	}
	t := &Transform{Kind: k}
	switch k {
	case TransformServerTimestamp:
		if err := allowed(); err != nil {
			return nil, err
		}
	case TransformIncrement:
		if err := allowed("by"); err != nil {
			return nil, err
		}
		n, ok := m["by"].(json.Number)
		if !ok {
			return nil, fmt.Errorf("%s: increment needs a number in by", where)
		}
		by, err := convertNumber(n)
		if err != nil {
			return nil, fmt.Errorf("%s: by: %v", where, err)
		}
		t.By = by
	case TransformArrayUnion, TransformArrayRemove:
		if err := allowed("values"); err != nil {
			return nil, err
		}
		vals, ok := m["values"].([]any)
		if !ok {
			return nil, fmt.Errorf("%s: %s needs an array in values", where, k)
		}
		cv, err := convertValue(vals, where+".values", depth, false, false)
		if err != nil {
			return nil, err
		}
		t.Values = cv.([]any)
	default:
		return nil, fmt.Errorf("%s: unknown $transform %q (server_timestamp, increment, array_union or array_remove)", where, truncate(fmt.Sprint(kind), 32))
	}
	return t, nil
}

// convertNumber gives int64 for an integer literal, float64 otherwise;
// an integer beyond int64 or a float beyond float64 is an error.
func convertNumber(n json.Number) (any, error) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("integer %s out of range (64-bit)", truncate(s, 32))
		}
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, fmt.Errorf("number %s out of range", truncate(s, 32))
	}
	return f, nil
}

// lookupPath follows segs through nested maps.
func lookupPath(m map[string]any, segs []string) (any, bool) {
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

// EncodeWrite encodes req as a `write` message (DecodeWrite's inverse).
func EncodeWrite(req WriteRequest) ([]byte, error) {
	type encPrecond struct {
		Exists     *bool  `json:"exists,omitempty"`
		UpdateTime string `json:"update_time,omitempty"`
	}
	type encOp struct {
		Op           string      `json:"op"`
		Path         string      `json:"path"`
		Data         any         `json:"data,omitempty"` // a nil interface, not an empty map, is omitted
		Merge        []string    `json:"merge,omitempty"`
		Precondition *encPrecond `json:"precondition,omitempty"`
	}
	ops := make([]encOp, len(req.Ops))
	for i, o := range req.Ops {
		e := encOp{Op: o.Op, Path: o.Path}
		switch {
		case o.Op == OpUpdate:
			d := make(map[string]any, len(o.Updates))
			for _, u := range o.Updates {
				d[JoinFieldPath(u.Path)] = encodeValue(u.Value)
			}
			e.Data = d
		case o.Data != nil:
			e.Data = encodeValue(o.Data)
		}
		for _, m := range o.Merge {
			e.Merge = append(e.Merge, JoinFieldPath(m))
		}
		if o.Exists != nil || !o.UpdateTime.IsZero() {
			e.Precondition = &encPrecond{Exists: o.Exists}
			if !o.UpdateTime.IsZero() {
				e.Precondition.UpdateTime = o.UpdateTime.UTC().Format(time.RFC3339Nano)
			}
		}
		ops[i] = e
	}
	return json.Marshal(struct {
		Type           string  `json:"type"`
		ID             string  `json:"id,omitempty"`
		IdempotencyKey string  `json:"idempotency_key,omitempty"`
		Ops            []encOp `json:"ops"`
	}{TypeWrite, req.ID, req.IdempotencyKey, ops})
}

func encodeValue(v any) any {
	switch x := v.(type) {
	case *Transform:
		m := map[string]any{TransformKey: x.Kind}
		switch x.Kind {
		case TransformIncrement:
			m["by"] = x.By
		case TransformArrayUnion, TransformArrayRemove:
			m["values"] = encodeValue(x.Values)
		}
		return m
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = encodeValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = encodeValue(e)
		}
		return out
	case float64:
		// Keep a float a float through a round trip: 1.0 must not come
		// back as the integer 1.
		if x == math.Trunc(x) && math.Abs(x) < 1e21 {
			return json.Number(strconv.FormatFloat(x, 'f', 1, 64))
		}
		return x
	}
	return v
}
