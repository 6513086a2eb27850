package subscriptions

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/firegate/firegate/wire"
)

// Query limits. They are Firestore's own where Firestore has one; a query
// within them is one Firestore accepts.
const (
	MaxFilters          = 100  // where clauses per query
	MaxOrderBy          = 10   // order_by clauses per query
	MaxInValues         = 30   // values of in and array-contains-any
	MaxNotInValues      = 10   // values of not-in (Firestore: "NOT_IN supports up to 10 comparison values")
	MaxDisjunctions     = 30   // product of the sizes of in and array-contains-any
	MaxInequalityFields = 10   // distinct fields under <, <=, >, >=, !=, not-in
	MaxFieldPathBytes   = 1500 // a field path, canonical form
	MaxCollectionBytes  = 1500 // a collection path
)

// QueryError is a client query Firestore would reject (or that breaks a
// gateway limit). It always maps to the wire code bad_request; Msg is safe
// to send to the client.
type QueryError struct{ Msg string }

func (e *QueryError) Error() string { return e.Msg }

func queryErrf(format string, args ...any) error {
	return &QueryError{Msg: fmt.Sprintf(format, args...)}
}

// NormalizeQuery validates a client query with Firestore's rules and
// returns it normalized, so that queries that mean the same have equal
// Keys:
//
//   - field paths canonical: segments that are identifiers unquoted, every
//     other segment backquoted with ` and \ escaped ("`a`.b" -> "a.b");
//   - filter values int64, float64, string, bool, nil or []any of those;
//     the values of in, not-in and array-contains-any sorted and
//     de-duplicated (they are sets);
//   - filters sorted by (field, op, canonical value), exact duplicates
//     dropped; limits apply to this normalized form, which is what Firestore
//     receives;
//   - order_by directions explicit ("asc" or "desc"), order kept;
//   - Limit: 0 asks for no limit, which becomes maxLimit when maxLimit > 0;
//     a limit above maxLimit (> 0) is refused, naming the maximum.
//
// Rules enforced (each refusal a *QueryError): at most MaxFilters filters
// and MaxOrderBy order_by clauses; field paths non-empty, at most
// MaxFieldPathBytes, no empty segment, valid UTF-8, not starting with "__"
// and no __…__ segment (reserved); values of the types above, no objects,
// no arrays nested in arrays, strings valid UTF-8; null and NaN only with ==
// and !=; in and array-contains-any a non-empty array of at most
// MaxInValues values, not-in at most MaxNotInValues; array-contains takes a
// non-array value; at most one array-contains or array-contains-any; at
// most one != or not-in (Firestore allows a single NOT_EQUAL, NOT_IN,
// IS_NOT_NULL or IS_NOT_NAN per query); not-in not with in or
// array-contains-any; at most MaxDisjunctions disjunctions; at most
// MaxInequalityFields inequality fields; no field twice in order_by.
//
// order_by and inequalities: Firestore now allows inequalities on several
// fields and an order_by whose first field is not an inequality field (it
// appends the inequality fields it needs to the order itself). This
// normalizer follows that and is permissive: it imposes no rule on which
// field comes first in order_by. The Firestore emulator behaves the same.
func NormalizeQuery(collection string, where []wire.Filter, orderBy []wire.Order, limit, maxLimit int) (Query, error) {
	if err := checkQueryCollection(collection); err != nil {
		return Query{}, err
	}
	if limit < 0 {
		return Query{}, queryErrf("limit must not be negative")
	}
	if maxLimit > 0 {
		if limit > maxLimit {
			return Query{}, queryErrf("limit %d exceeds the maximum of %d for this collection", limit, maxLimit)
		}
		if limit == 0 {
			limit = maxLimit
		}
	}
	if len(where) > MaxFilters {
		return Query{}, queryErrf("too many filters: %d (at most %d)", len(where), MaxFilters)
	}
	if len(orderBy) > MaxOrderBy {
		return Query{}, queryErrf("too many order_by clauses: %d (at most %d)", len(orderBy), MaxOrderBy)
	}
	fs := make([]keyedFilter, 0, len(where))
	for i, f := range where {
		kf, err := normalizeWhereFilter(f)
		if err != nil {
			return Query{}, queryErrf("where[%d]: %s", i, err.(*QueryError).Msg)
		}
		fs = append(fs, kf)
	}
	fs = sortWhereFilters(fs)
	if err := checkWhereFilters(fs); err != nil {
		return Query{}, err
	}
	q := Query{Collection: collection, Limit: limit}
	if len(fs) > 0 {
		q.Filters = make([]wire.Filter, len(fs))
		for i := range fs {
			q.Filters[i] = fs[i].f
		}
	}
	if len(orderBy) > 0 {
		q.OrderBy = make([]wire.Order, len(orderBy))
		seen := make(map[string]bool, len(orderBy))
		for i, o := range orderBy {
			field, err := CanonicalFieldPath(o.Field)
			if err != nil {
				return Query{}, queryErrf("order_by[%d]: %s", i, err.(*QueryError).Msg)
			}
			dir := o.Direction
			switch dir {
			case "", "asc":
				dir = "asc"
			case "desc":
			default:
				return Query{}, queryErrf("order_by[%d]: direction must be asc or desc", i)
			}
			if seen[field] {
				return Query{}, queryErrf("order_by[%d]: field %s appears twice", i, field)
			}
			seen[field] = true
			q.OrderBy[i] = wire.Order{Field: field, Direction: dir}
		}
	}
	return q, nil
}

// Key is a canonical, unambiguous encoding of the whole query (collection,
// filters, order, limit): equal normalized queries have equal keys and
// different ones different keys. Every string is length-prefixed and every
// value type-tagged.
func (q Query) Key() string {
	b := make([]byte, 0, 64+len(q.Collection)+32*len(q.Filters))
	b = append(b, "q1"...)
	b = appendKeyField(b, 'c', q.Collection)
	b = q.appendOrKey(b)
	for _, f := range q.Filters {
		b = appendKeyField(b, 'f', f.Field)
		b = appendKeyField(b, 'o', f.Op)
		b = appendFilterValueKey(b, f.Value)
	}
	for _, o := range q.OrderBy {
		b = appendKeyField(b, 'b', o.Field)
		if o.Direction == "desc" {
			b = append(b, 'D')
		} else {
			b = append(b, 'A')
		}
	}
	b = append(b, 'l')
	b = strconv.AppendInt(b, int64(q.Limit), 10)
	return string(b)
}

// WithFilter returns a copy of q with f added and the filters re-sorted
// (an exact duplicate of an existing filter is not added twice). The gateway
// uses it to add the scope filter after validation; f's field is
// canonicalized and its value normalized as NormalizeQuery does, and kept
// as given when that fails. q is not modified.
func (q Query) WithFilter(f wire.Filter) Query {
	fs := make([]keyedFilter, 0, len(q.Filters)+1)
	for _, g := range q.Filters {
		fs = append(fs, keyedFilter{f: g, key: appendFilterValueKey(nil, g.Value)})
	}
	if kf, err := normalizeWhereFilter(f); err == nil {
		fs = append(fs, kf)
	} else {
		fs = append(fs, keyedFilter{f: f, key: appendFilterValueKey(nil, f.Value)})
	}
	fs = sortWhereFilters(fs)
	out := q
	out.Filters = make([]wire.Filter, len(fs))
	for i := range fs {
		out.Filters[i] = fs[i].f
	}
	if len(q.OrderBy) > 0 {
		out.OrderBy = append([]wire.Order(nil), q.OrderBy...)
	}
	return out
}

type keyedFilter struct {
	f   wire.Filter
	key []byte // appendFilterValueKey of f.Value
}

// sortWhereFilters sorts by (field, op, value key) and drops exact duplicates.
func sortWhereFilters(fs []keyedFilter) []keyedFilter {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := &fs[i], &fs[j]
		if a.f.Field != b.f.Field {
			return a.f.Field < b.f.Field
		}
		if a.f.Op != b.f.Op {
			return a.f.Op < b.f.Op
		}
		return bytes.Compare(a.key, b.key) < 0
	})
	out := fs[:0]
	for i := range fs {
		if len(out) > 0 {
			p := &out[len(out)-1]
			if p.f.Field == fs[i].f.Field && p.f.Op == fs[i].f.Op && bytes.Equal(p.key, fs[i].key) {
				continue
			}
		}
		out = append(out, fs[i])
	}
	return out
}

func isInequalityOp(op string) bool {
	switch op {
	case "<", "<=", ">", ">=", "!=", "not-in":
		return true
	}
	return false
}

// checkWhereFilters applies the query-wide rules to sorted, de-duplicated
// filters.
func checkWhereFilters(fs []keyedFilter) error {
	var arrayContains, notEqual, notIn, in, anyOf int
	disjunctions := 1
	ineqFields := map[string]bool{}
	for _, kf := range fs {
		f := kf.f
		switch f.Op {
		case "array-contains":
			arrayContains++
		case "array-contains-any":
			anyOf++
			disjunctions *= len(f.Value.([]any))
		case "in":
			in++
			disjunctions *= len(f.Value.([]any))
		case "!=":
			notEqual++
		case "not-in":
			notIn++
		}
		if disjunctions > MaxDisjunctions {
			// Keep checking cheap (and overflow-free): stop multiplying.
			disjunctions = MaxDisjunctions + 1
		}
		if isInequalityOp(f.Op) {
			ineqFields[f.Field] = true
		}
	}
	switch {
	case arrayContains+anyOf > 1:
		return queryErrf("at most one array-contains or array-contains-any filter per query")
	case notIn > 0 && notEqual+notIn > 1:
		return queryErrf("not-in cannot be combined with != or another not-in")
	case notEqual > 1:
		return queryErrf("at most one != filter per query (Firestore allows a single !=, not-in, != null or != NaN)")
	case notIn > 0 && in+anyOf > 0:
		return queryErrf("not-in cannot be combined with in or array-contains-any")
	case disjunctions > MaxDisjunctions:
		return queryErrf("too many disjunctions: the product of the sizes of in and array-contains-any filters must be at most %d", MaxDisjunctions)
	case len(ineqFields) > MaxInequalityFields:
		return queryErrf("inequality filters (<, <=, >, >=, !=, not-in) on %d fields (at most %d)", len(ineqFields), MaxInequalityFields)
	}
	return nil
}

// normalizeWhereFilter checks and normalizes one filter. Errors are *QueryError.
func normalizeWhereFilter(f wire.Filter) (keyedFilter, error) {
	field, err := CanonicalFieldPath(f.Field)
	if err != nil {
		return keyedFilter{}, err
	}
	op := f.Op
	out := wire.Filter{Field: field, Op: op}
	switch op {
	case "==", "!=", "<", "<=", ">", ">=", "array-contains":
		v, err := normalizeFilterValue(f.Value, true)
		if err != nil {
			return keyedFilter{}, err
		}
		switch {
		case v == nil && op != "==" && op != "!=":
			return keyedFilter{}, queryErrf("null can only be compared with == or !=")
		case isNaNValue(v) && op != "==" && op != "!=":
			return keyedFilter{}, queryErrf("NaN can only be compared with == or !=")
		}
		if _, isArr := v.([]any); isArr && op == "array-contains" {
			return keyedFilter{}, queryErrf("array-contains takes a single value, not an array (arrays cannot be nested)")
		}
		out.Value = v
	case "in", "not-in", "array-contains-any":
		arr, ok := f.Value.([]any)
		if !ok {
			return keyedFilter{}, queryErrf("%s needs an array value", op)
		}
		max := MaxInValues
		if op == "not-in" {
			max = MaxNotInValues
		}
		if len(arr) == 0 {
			return keyedFilter{}, queryErrf("%s needs a non-empty array (at most %d values)", op, max)
		}
		type kv struct {
			v   any
			key []byte
		}
		elems := make([]kv, 0, len(arr))
		for _, e := range arr {
			v, err := normalizeFilterValue(e, false)
			if err != nil {
				return keyedFilter{}, err
			}
			elems = append(elems, kv{v: v, key: appendFilterValueKey(nil, v)})
		}
		sort.SliceStable(elems, func(i, j int) bool { return bytes.Compare(elems[i].key, elems[j].key) < 0 })
		vals := make([]any, 0, len(elems))
		for i := range elems {
			if i > 0 && bytes.Equal(elems[i].key, elems[i-1].key) {
				continue
			}
			vals = append(vals, elems[i].v)
		}
		if len(vals) > max {
			return keyedFilter{}, queryErrf("%s takes at most %d values (got %d)", op, max, len(vals))
		}
		out.Value = vals
	default:
		return keyedFilter{}, queryErrf("unknown op %q", op)
	}
	return keyedFilter{f: out, key: appendFilterValueKey(nil, out.Value)}, nil
}

func isNaNValue(v any) bool {
	f, ok := v.(float64)
	return ok && math.IsNaN(f)
}

// normalizeFilterValue converts a filter value to int64, float64, string, bool,
// nil or (if allowArray) []any of those. The result never aliases v's
// slices.
func normalizeFilterValue(v any, allowArray bool) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case bool:
		return x, nil
	case string:
		if !utf8.ValidString(x) {
			return nil, queryErrf("string values must be valid UTF-8")
		}
		return x, nil
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return nil, queryErrf("integer out of range")
		}
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, queryErrf("integer out of range")
		}
		return int64(x), nil
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return nil, queryErrf("number %s out of range", x)
		}
		return f, nil
	case []any:
		if !allowArray {
			return nil, queryErrf("arrays cannot be nested in arrays")
		}
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalizeFilterValue(e, false)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		return nil, queryErrf("filter values may not be objects")
	default:
		return nil, queryErrf("unsupported value type %T", v)
	}
}

// appendFilterValueKey appends a type-tagged, self-delimiting encoding of a
// normalized value. Distinct values have distinct encodings (every NaN
// encodes alike; -0 and 0 differ).
func appendFilterValueKey(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, 'n')
	case bool:
		if x {
			return append(b, 't')
		}
		return append(b, 'F')
	case int64:
		b = append(b, 'i')
		b = strconv.AppendInt(b, x, 10)
		return append(b, ';')
	case float64:
		b = append(b, 'd')
		if math.IsNaN(x) {
			b = append(b, "NaN"...)
		} else {
			b = strconv.AppendFloat(b, x, 'g', -1, 64)
		}
		return append(b, ';')
	case string:
		return appendKeyField(b, 's', x)
	case []any:
		b = append(b, 'a')
		b = strconv.AppendInt(b, int64(len(x)), 10)
		b = append(b, ':')
		for _, e := range x {
			b = appendFilterValueKey(b, e)
		}
		return b
	default:
		// Not produced by normalization; keep the encoding total anyway.
		return appendKeyField(b, '?', fmt.Sprintf("%T:%v", v, v))
	}
}

func appendKeyField(b []byte, tag byte, s string) []byte {
	b = append(b, tag)
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

func checkQueryCollection(c string) error {
	switch {
	case c == "":
		return queryErrf("collection is empty")
	case len(c) > MaxCollectionBytes:
		return queryErrf("collection path longer than %d bytes", MaxCollectionBytes)
	case strings.HasPrefix(c, "/") || strings.HasSuffix(c, "/"):
		return queryErrf("collection path may not start or end with /")
	case !utf8.ValidString(c):
		return queryErrf("collection path must be valid UTF-8")
	}
	n := strings.Count(c, "/") + 1
	if n%2 == 0 {
		return queryErrf("not a collection path: it needs an odd number of segments")
	}
	if strings.Contains(c, "//") {
		return queryErrf("collection path has an empty segment")
	}
	return nil
}

// CanonicalFieldPath parses a field path and returns its canonical form.
// Syntax: segments separated by "."; a segment is either unquoted (any
// characters but "." and "`") or backquoted, in which "\" escapes the next
// character ("`a.b`", "`it\`s`"). Canonical form: identifier segments
// ([A-Za-z_][A-Za-z0-9_]*) unquoted, every other segment backquoted with
// "`" and "\" escaped. Refused (with a *QueryError): an empty path or
// segment, a path over MaxFieldPathBytes, invalid UTF-8, a first segment
// starting with "__", and any segment of the form __…__ (reserved by
// Firestore).
func CanonicalFieldPath(s string) (string, error) {
	segs, err := parseFieldPathSegments(s)
	if err != nil {
		return "", err
	}
	out := wire.JoinFieldPath(segs)
	if len(out) > MaxFieldPathBytes {
		return "", queryErrf("field path longer than %d bytes", MaxFieldPathBytes)
	}
	return out, nil
}

// FieldPathSegments splits a field path (canonical or not) into its
// segments, unquoted: "a.`b.c`" -> ["a", "b.c"]. It is what a Firestore
// Source passes to firestore.FieldPath (the Go client's dotted strings do
// not understand backquotes). Errors as CanonicalFieldPath.
func FieldPathSegments(s string) ([]string, error) {
	return parseFieldPathSegments(s)
}

func parseFieldPathSegments(s string) ([]string, error) {
	if s == "" {
		return nil, queryErrf("empty field path")
	}
	if len(s) > 2*MaxFieldPathBytes {
		return nil, queryErrf("field path longer than %d bytes", MaxFieldPathBytes)
	}
	if !utf8.ValidString(s) {
		return nil, queryErrf("field path must be valid UTF-8")
	}
	segs, err := wire.ParseFieldPath(s)
	if err != nil {
		return nil, queryErrf("field path %q: %v", truncateFieldPath(s), err)
	}
	for _, seg := range segs {
		if !utf8.ValidString(seg) {
			return nil, queryErrf("field path must be valid UTF-8")
		}
	}
	if strings.HasPrefix(segs[0], "__") {
		return nil, queryErrf("field path %q: names starting with __ are reserved", truncateFieldPath(s))
	}
	for _, seg := range segs {
		if len(seg) >= 4 && strings.HasPrefix(seg, "__") && strings.HasSuffix(seg, "__") {
			return nil, queryErrf("field path %q: names of the form __…__ are reserved", truncateFieldPath(s))
		}
	}
	return segs, nil
}

func truncateFieldPath(s string) string {
	if len(s) <= 64 {
		return s
	}
	// Cut at a rune boundary.
	n := 64
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
