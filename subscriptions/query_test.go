package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/firegate/firegate/wire"
)

func nqF(field, op string, v any) wire.Filter { return wire.Filter{Field: field, Op: op, Value: v} }

func nqInts(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = int64(i)
	}
	return out
}

// nqIneq returns n range filters on n distinct fields.
func nqIneq(n int) []wire.Filter {
	out := make([]wire.Filter, n)
	for i := range out {
		out[i] = nqF(fmt.Sprintf("f%d", i), ">", int64(0))
	}
	return out
}

func nqEqs(n int) []wire.Filter {
	out := make([]wire.Filter, n)
	for i := range out {
		out[i] = nqF(fmt.Sprintf("f%d", i), "==", int64(i))
	}
	return out
}

func nqOrders(n int) []wire.Order {
	out := make([]wire.Order, n)
	for i := range out {
		out[i] = wire.Order{Field: fmt.Sprintf("o%d", i)}
	}
	return out
}

type nqCase struct {
	name    string
	coll    string
	where   []wire.Filter
	orderBy []wire.Order
	limit   int
	max     int
	err     string // substring of the QueryError; "" = accepted
	// firestore says whether the Firestore emulator must agree with the
	// verdict (false for gateway-only rules and rules the emulator does
	// not enforce).
	firestore bool
}

func nqCases() []nqCase {
	long := strings.Repeat("a", MaxFieldPathBytes)
	return []nqCase{
		// Every operator with an ordinary value.
		{name: "op ==", where: []wire.Filter{nqF("a", "==", "x")}, firestore: true},
		{name: "op !=", where: []wire.Filter{nqF("a", "!=", "x")}, firestore: true},
		{name: "op <", where: []wire.Filter{nqF("a", "<", int64(1))}, firestore: true},
		{name: "op <=", where: []wire.Filter{nqF("a", "<=", 1.5)}, firestore: true},
		{name: "op >", where: []wire.Filter{nqF("a", ">", "m")}, firestore: true},
		{name: "op >=", where: []wire.Filter{nqF("a", ">=", true)}, firestore: true},
		{name: "op in", where: []wire.Filter{nqF("a", "in", []any{"x", "y"})}, firestore: true},
		{name: "op not-in", where: []wire.Filter{nqF("a", "not-in", []any{"x", "y"})}, firestore: true},
		{name: "op array-contains", where: []wire.Filter{nqF("tags", "array-contains", "x")}, firestore: true},
		{name: "op array-contains-any", where: []wire.Filter{nqF("tags", "array-contains-any", []any{"x", int64(2)})}, firestore: true},
		{name: "unknown op", where: []wire.Filter{nqF("a", "=~", "x")}, err: "unknown op"},
		{name: "empty op", where: []wire.Filter{nqF("a", "", "x")}, err: "unknown op"},

		// null and NaN.
		{name: "== null", where: []wire.Filter{nqF("a", "==", nil)}, firestore: true},
		{name: "!= null", where: []wire.Filter{nqF("a", "!=", nil)}, firestore: true},
		{name: "< null", where: []wire.Filter{nqF("a", "<", nil)}, err: "null can only be compared with == or !="},
		{name: ">= null", where: []wire.Filter{nqF("a", ">=", nil)}, err: "null"},
		{name: "array-contains null", where: []wire.Filter{nqF("a", "array-contains", nil)}, err: "null"},
		{name: "== NaN", where: []wire.Filter{nqF("a", "==", math.NaN())}, firestore: true},
		{name: "!= NaN", where: []wire.Filter{nqF("a", "!=", math.NaN())}, firestore: true},
		{name: "> NaN", where: []wire.Filter{nqF("a", ">", math.NaN())}, err: "NaN can only be compared with == or !="},
		{name: "array-contains NaN", where: []wire.Filter{nqF("a", "array-contains", math.NaN())}, err: "NaN"},
		{name: "in with null", where: []wire.Filter{nqF("a", "in", []any{nil, int64(1)})}, firestore: true},
		{name: "in with NaN", where: []wire.Filter{nqF("a", "in", []any{math.NaN()})}, firestore: true},
		{name: "infinity", where: []wire.Filter{nqF("a", "<", math.Inf(1))}, firestore: true},

		// Array operators: shape and size, at and past the edge.
		{name: "in scalar", where: []wire.Filter{nqF("a", "in", "x")}, err: "in needs an array value"},
		{name: "not-in scalar", where: []wire.Filter{nqF("a", "not-in", int64(1))}, err: "not-in needs an array value"},
		{name: "array-contains-any scalar", where: []wire.Filter{nqF("a", "array-contains-any", nil)}, err: "array-contains-any needs an array value"},
		{name: "in empty", where: []wire.Filter{nqF("a", "in", []any{})}, err: "non-empty array", firestore: true},
		{name: "not-in empty", where: []wire.Filter{nqF("a", "not-in", []any{})}, err: "non-empty array"},
		{name: "array-contains-any empty", where: []wire.Filter{nqF("a", "array-contains-any", []any{})}, err: "non-empty array"},
		{name: "in 30", where: []wire.Filter{nqF("a", "in", nqInts(30))}, firestore: true},
		{name: "in 31", where: []wire.Filter{nqF("a", "in", nqInts(31))}, err: "in takes at most 30 values (got 31)", firestore: true},
		{name: "array-contains-any 30", where: []wire.Filter{nqF("a", "array-contains-any", nqInts(30))}, firestore: true},
		{name: "array-contains-any 31", where: []wire.Filter{nqF("a", "array-contains-any", nqInts(31))}, err: "at most 30 values (got 31)", firestore: true},
		{name: "not-in 10", where: []wire.Filter{nqF("a", "not-in", nqInts(10))}, firestore: true},
		{name: "not-in 11", where: []wire.Filter{nqF("a", "not-in", nqInts(11))}, err: "not-in takes at most 10 values (got 11)", firestore: true},
		{name: "in 31 with a duplicate", where: []wire.Filter{nqF("a", "in", append(nqInts(30), int64(0)))}, firestore: true},
		{name: "in nested array", where: []wire.Filter{nqF("a", "in", []any{[]any{int64(1)}})}, err: "nested"},
		{name: "== array", where: []wire.Filter{nqF("a", "==", []any{int64(1), "x"})}, firestore: true},
		{name: "> array", where: []wire.Filter{nqF("a", ">", []any{int64(1)})}, firestore: true},
		{name: "== nested array", where: []wire.Filter{nqF("a", "==", []any{int64(1), []any{int64(2)}})}, err: "nested"},
		{name: "array-contains array", where: []wire.Filter{nqF("a", "array-contains", []any{int64(1)})}, err: "array-contains takes a single value"},

		// Value types.
		{name: "object value", where: []wire.Filter{nqF("a", "==", map[string]any{"x": int64(1)})}, err: "objects"},
		{name: "object in array", where: []wire.Filter{nqF("a", "in", []any{map[string]any{}})}, err: "objects"},
		{name: "unsupported type", where: []wire.Filter{nqF("a", "==", struct{}{})}, err: "unsupported value type"},
		{name: "invalid UTF-8 string", where: []wire.Filter{nqF("a", "==", "\xff")}, err: "UTF-8"},
		{name: "json.Number", where: []wire.Filter{nqF("a", "==", json.Number("12"))}, firestore: true},
		{name: "json.Number overflow", where: []wire.Filter{nqF("a", "==", json.Number("1e999"))}, err: "out of range"},
		{name: "uint64 overflow", where: []wire.Filter{nqF("a", "==", uint64(math.MaxUint64))}, err: "out of range"},

		// Query-wide rules.
		{name: "two array-contains", where: []wire.Filter{nqF("a", "array-contains", "x"), nqF("b", "array-contains", "y")}, err: "at most one array-contains", firestore: true},
		{name: "array-contains and any", where: []wire.Filter{nqF("a", "array-contains", "x"), nqF("b", "array-contains-any", []any{"y"})}, err: "at most one array-contains", firestore: true},
		{name: "two array-contains-any", where: []wire.Filter{nqF("a", "array-contains-any", []any{"x"}), nqF("b", "array-contains-any", []any{"y"})}, err: "at most one array-contains"},
		{name: "two != fields", where: []wire.Filter{nqF("a", "!=", int64(1)), nqF("b", "!=", int64(1))}, err: "at most one !=", firestore: true},
		{name: "two != one field", where: []wire.Filter{nqF("a", "!=", int64(1)), nqF("a", "!=", int64(2))}, err: "at most one !="},
		{name: "!= null and !=", where: []wire.Filter{nqF("a", "!=", nil), nqF("b", "!=", int64(1))}, err: "at most one !=", firestore: true},
		{name: "not-in and !=", where: []wire.Filter{nqF("a", "not-in", []any{int64(1)}), nqF("b", "!=", int64(1))}, err: "not-in cannot be combined with != or another not-in", firestore: true},
		{name: "not-in and != null", where: []wire.Filter{nqF("a", "not-in", []any{int64(1)}), nqF("b", "!=", nil)}, err: "not-in cannot be combined", firestore: true},
		{name: "two not-in", where: []wire.Filter{nqF("a", "not-in", []any{int64(1)}), nqF("b", "not-in", []any{int64(1)})}, err: "not-in cannot be combined with != or another not-in", firestore: true},
		{name: "not-in and in", where: []wire.Filter{nqF("a", "not-in", []any{int64(1)}), nqF("b", "in", []any{int64(1)})}, err: "not-in cannot be combined with in", firestore: true},
		{name: "not-in and array-contains-any", where: []wire.Filter{nqF("a", "not-in", []any{int64(1)}), nqF("b", "array-contains-any", []any{int64(1)})}, err: "not-in cannot be combined with in or array-contains-any", firestore: true},
		{name: "not-in and array-contains", where: []wire.Filter{nqF("a", "not-in", []any{int64(1)}), nqF("b", "array-contains", int64(1))}, firestore: true},
		{name: "in and array-contains-any", where: []wire.Filter{nqF("a", "in", []any{int64(1)}), nqF("b", "array-contains-any", []any{int64(1)})}, firestore: true},
		{name: "!= and range", where: []wire.Filter{nqF("a", "!=", int64(1)), nqF("b", ">", int64(1))}, firestore: true},
		{name: "disjunctions 30", where: []wire.Filter{nqF("a", "in", nqInts(5)), nqF("b", "in", nqInts(6))}, firestore: true},
		{name: "disjunctions 36", where: []wire.Filter{nqF("a", "in", nqInts(6)), nqF("b", "in", nqInts(6))}, err: "too many disjunctions", firestore: true},
		{name: "disjunctions in x any 30", where: []wire.Filter{nqF("a", "in", nqInts(3)), nqF("b", "array-contains-any", nqInts(10))}, firestore: true},
		{name: "disjunctions in x any 33", where: []wire.Filter{nqF("a", "in", nqInts(3)), nqF("b", "array-contains-any", nqInts(11))}, err: "too many disjunctions", firestore: true},
		{name: "disjunctions three ins", where: []wire.Filter{nqF("a", "in", nqInts(30)), nqF("b", "in", nqInts(30)), nqF("c", "in", nqInts(30))}, err: "too many disjunctions"},
		{name: "inequality fields 10", where: nqIneq(10), firestore: true},
		// The emulator does not enforce this one; production Firestore does.
		{name: "inequality fields 11", where: nqIneq(11), err: "on 11 fields (at most 10)"},
		{name: "range on one field twice", where: append(nqIneq(10), nqF("f0", "<", int64(9))), firestore: true},
		{name: "filters 100", where: nqEqs(100), firestore: true},
		{name: "filters 101", where: nqEqs(101), err: "too many filters: 101 (at most 100)"},
		{name: "inequality and other order", where: []wire.Filter{nqF("a", ">", int64(0))}, orderBy: []wire.Order{{Field: "b"}}, firestore: true},
		{name: "not-in and other order", where: []wire.Filter{nqF("a", "not-in", []any{int64(1)})}, orderBy: []wire.Order{{Field: "b", Direction: "desc"}}, firestore: true},
		{name: "two inequalities order second", where: []wire.Filter{nqF("a", ">", int64(0)), nqF("b", "<", int64(5))}, orderBy: []wire.Order{{Field: "b", Direction: "desc"}}, firestore: true},
		{name: "equality and order on it", where: []wire.Filter{nqF("a", "==", int64(1))}, orderBy: []wire.Order{{Field: "a"}}, firestore: true},

		// order_by.
		{name: "order_by 10", orderBy: nqOrders(10), firestore: true},
		{name: "order_by 11", orderBy: nqOrders(11), err: "too many order_by clauses: 11 (at most 10)"},
		{name: "order_by duplicate", orderBy: []wire.Order{{Field: "a"}, {Field: "a", Direction: "desc"}}, err: "appears twice", firestore: true},
		{name: "order_by duplicate quoted", orderBy: []wire.Order{{Field: "a"}, {Field: "`a`"}}, err: "appears twice"},
		{name: "order_by bad direction", orderBy: []wire.Order{{Field: "a", Direction: "up"}}, err: "direction must be asc or desc"},
		{name: "order_by bad field", orderBy: []wire.Order{{Field: "a..b"}}, err: "order_by[0]: field path"},
		{name: "order_by reserved", orderBy: []wire.Order{{Field: "__name__"}}, err: "reserved"},

		// Field paths.
		{name: "field empty", where: []wire.Filter{nqF("", "==", int64(1))}, err: "empty field path"},
		{name: "field empty segment", where: []wire.Filter{nqF("a..b", "==", int64(1))}, err: "empty segment"},
		{name: "field leading dot", where: []wire.Filter{nqF(".a", "==", int64(1))}, err: "empty segment"},
		{name: "field trailing dot", where: []wire.Filter{nqF("a.", "==", int64(1))}, err: "empty segment"},
		{name: "field nested", where: []wire.Filter{nqF("a.b.c", "==", int64(1))}, firestore: true},
		{name: "field backquoted", where: []wire.Filter{nqF("`a.b`.c", "==", int64(1))}, firestore: true},
		{name: "field backquoted escapes", where: []wire.Filter{nqF("`a\\`b\\\\c`", "==", int64(1))}, firestore: true},
		{name: "field non-identifier", where: []wire.Filter{nqF("my-field", "==", int64(1))}, firestore: true},
		{name: "field empty backquotes", where: []wire.Filter{nqF("``", "==", int64(1))}, err: "empty segment"},
		{name: "field unterminated", where: []wire.Filter{nqF("`a", "==", int64(1))}, err: "unterminated"},
		{name: "field backquote inside", where: []wire.Filter{nqF("a`b", "==", int64(1))}, err: "backquote inside"},
		{name: "field text after backquote", where: []wire.Filter{nqF("`a`b", "==", int64(1))}, err: "followed by"},
		{name: "field __name__", where: []wire.Filter{nqF("__name__", "==", "x")}, err: "reserved"},
		{name: "field __x", where: []wire.Filter{nqF("__x", "==", "x")}, err: "reserved"},
		{name: "field quoted __x", where: []wire.Filter{nqF("`__x`", "==", "x")}, err: "reserved"},
		{name: "field nested __x__", where: []wire.Filter{nqF("a.__x__", "==", "x")}, err: "reserved"},
		{name: "field nested __x", where: []wire.Filter{nqF("a.__x", "==", "x")}, firestore: true},
		{name: "field invalid UTF-8", where: []wire.Filter{nqF("a\xff", "==", "x")}, err: "UTF-8"},
		{name: "field 1500 bytes", where: []wire.Filter{nqF(long, "==", "x")}},
		{name: "field 1501 bytes", where: []wire.Filter{nqF(long+"a", "==", "x")}, err: "longer than 1500"},
		{name: "field 1501 bytes quoted", where: []wire.Filter{nqF("`-"+long[:1498]+"`", "==", "x")}, err: "longer than 1500"},
		{name: "field 1500 bytes quoted", where: []wire.Filter{nqF("`-"+long[:1497]+"`", "==", "x")}},

		// Limits.
		{name: "limit at max", limit: 50, max: 50},
		{name: "limit past max", limit: 51, max: 50, err: "limit 51 exceeds the maximum of 50"},
		{name: "limit negative", limit: -1, max: 50, err: "negative"},

		// Collections.
		{name: "collection empty", coll: "-", err: "collection is empty"},
		{name: "collection document path", coll: "a/b", err: "odd number"},
		{name: "collection leading slash", coll: "/a", err: "start or end"},
		{name: "collection empty segment", coll: "a//b", err: "empty segment"},
		{name: "collection nested", coll: "projects/p1/tasks", firestore: true},
	}
}

func (c nqCase) collection() string {
	switch c.coll {
	case "":
		return "items"
	case "-":
		return ""
	}
	return c.coll
}

func TestNormalizeQueryRules(t *testing.T) {
	for _, tc := range nqCases() {
		t.Run(tc.name, func(t *testing.T) {
			q, err := NormalizeQuery(tc.collection(), tc.where, tc.orderBy, tc.limit, tc.max)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("NormalizeQuery: %v", err)
				}
				return
			}
			var qe *QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("NormalizeQuery = %+v, %v; want *QueryError containing %q", q, err, tc.err)
			}
			if !strings.Contains(qe.Msg, tc.err) {
				t.Fatalf("QueryError %q does not contain %q", qe.Msg, tc.err)
			}
		})
	}
}

// TestNormalizeQueryMatchesFirestore runs the cases whose verdict is
// Firestore's own against the Firestore emulator: what the normalizer
// accepts, Firestore accepts, and what it refuses, Firestore refuses.
func TestNormalizeQueryMatchesFirestore(t *testing.T) {
	testEmulator(t)
	ctx := context.Background()
	client, err := firestore.NewClient(ctx, "fg-query-rules")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	for _, tc := range nqCases() {
		if !tc.firestore {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			q, nerr := NormalizeQuery(tc.collection(), tc.where, tc.orderBy, tc.limit, tc.max)
			if nerr != nil {
				// Give Firestore the query as the client wrote it.
				q = Query{Collection: tc.collection(), Filters: tc.where, OrderBy: tc.orderBy, Limit: tc.limit}
			}
			fq, err := nqToFirestore(client, q)
			if err == nil {
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				it := fq.Snapshots(cctx)
				_, err = it.Next()
				it.Stop()
				cancel()
			}
			if (nerr == nil) != (err == nil) {
				t.Fatalf("normalizer: %v; Firestore: %v", nerr, err)
			}
		})
	}
}

func nqToFirestore(c *firestore.Client, q Query) (fq firestore.Query, err error) {
	defer func() {
		// The Go client panics on some malformed input; report it as a refusal.
		if r := recover(); r != nil {
			err = fmt.Errorf("client refused: %v", r)
		}
	}()
	fq = c.Collection(q.Collection).Query
	for _, f := range q.Filters {
		segs, err := FieldPathSegments(f.Field)
		if err != nil {
			return fq, err
		}
		fq = fq.WherePath(firestore.FieldPath(segs), f.Op, f.Value)
	}
	for _, o := range q.OrderBy {
		segs, err := FieldPathSegments(o.Field)
		if err != nil {
			return fq, err
		}
		dir := firestore.Asc
		if o.Direction == "desc" {
			dir = firestore.Desc
		}
		fq = fq.OrderByPath(firestore.FieldPath(segs), dir)
	}
	if q.Limit > 0 {
		fq = fq.Limit(q.Limit)
	}
	return fq, nil
}

func TestNormalizeQueryOutput(t *testing.T) {
	q, err := NormalizeQuery("projects/p1/tasks",
		[]wire.Filter{
			nqF("status", "in", []any{"b", "a", "b", json.Number("3")}),
			nqF("`priority`", ">", json.Number("2.5")),
			nqF("my-field", "==", int(7)),
			nqF("a.`b.c`", "!=", nil),
			nqF("status", "in", []any{"a", int64(3), "b"}), // same set: dropped as a duplicate
		},
		[]wire.Order{{Field: "`priority`", Direction: "desc"}, {Field: "created"}},
		0, 200)
	if err != nil {
		t.Fatal(err)
	}
	want := Query{
		Collection: "projects/p1/tasks",
		Filters: []wire.Filter{
			{Field: "`my-field`", Op: "==", Value: int64(7)},
			{Field: "a.`b.c`", Op: "!=", Value: nil},
			{Field: "priority", Op: ">", Value: 2.5},
			{Field: "status", Op: "in", Value: []any{int64(3), "a", "b"}},
		},
		OrderBy: []wire.Order{{Field: "priority", Direction: "desc"}, {Field: "created", Direction: "asc"}},
		Limit:   200,
	}
	if !reflect.DeepEqual(q, want) {
		t.Fatalf("NormalizeQuery =\n%#v\nwant\n%#v", q, want)
	}
}

func TestNormalizeQueryLimit(t *testing.T) {
	tests := []struct{ limit, max, want int }{
		{0, 0, 0},
		{5, 0, 5},
		{1 << 30, 0, 1 << 30},
		{0, 100, 100},
		{1, 100, 1},
		{100, 100, 100},
	}
	for _, tt := range tests {
		q, err := NormalizeQuery("c", nil, nil, tt.limit, tt.max)
		if err != nil {
			t.Fatalf("limit %d max %d: %v", tt.limit, tt.max, err)
		}
		if q.Limit != tt.want {
			t.Errorf("limit %d max %d: Limit = %d, want %d", tt.limit, tt.max, q.Limit, tt.want)
		}
	}
}

func TestNormalizeQueryDoesNotMutate(t *testing.T) {
	in := []any{"b", "a", "b"}
	where := []wire.Filter{nqF("z", "in", in), nqF("a", "==", int(1))}
	orig := []wire.Filter{nqF("z", "in", []any{"b", "a", "b"}), nqF("a", "==", int(1))}
	if _, err := NormalizeQuery("c", where, nil, 0, 0); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(where, orig) {
		t.Fatalf("input changed: %#v", where)
	}
}

func TestQueryKeyEquality(t *testing.T) {
	norm := func(where []wire.Filter, order []wire.Order, limit int) string {
		t.Helper()
		q, err := NormalizeQuery("tasks", where, order, limit, 0)
		if err != nil {
			t.Fatal(err)
		}
		return q.Key()
	}
	a, b, c := nqF("status", "==", "open"), nqF("priority", ">", int64(2)), nqF("tags", "array-contains-any", []any{"x", "y"})
	equal := [][2]string{
		{norm([]wire.Filter{a, b, c}, nil, 0), norm([]wire.Filter{c, a, b}, nil, 0)},
		{norm([]wire.Filter{a, b, c}, nil, 0), norm([]wire.Filter{b, c, a, a}, nil, 0)},
		{norm([]wire.Filter{nqF("tags", "array-contains-any", []any{"y", "x", "y"})}, nil, 0), norm([]wire.Filter{c}, nil, 0)},
		{norm([]wire.Filter{nqF("`status`", "==", "open")}, nil, 0), norm([]wire.Filter{a}, nil, 0)},
		{norm([]wire.Filter{nqF("n", "==", json.Number("5"))}, nil, 0), norm([]wire.Filter{nqF("n", "==", int64(5))}, nil, 0)},
		{norm([]wire.Filter{nqF("n", "==", int(5))}, nil, 0), norm([]wire.Filter{nqF("n", "==", int64(5))}, nil, 0)},
		{norm(nil, []wire.Order{{Field: "a"}}, 0), norm(nil, []wire.Order{{Field: "a", Direction: "asc"}}, 0)},
		{norm(nil, []wire.Order{{Field: "`a`"}}, 0), norm(nil, []wire.Order{{Field: "a"}}, 0)},
	}
	for i, p := range equal {
		if p[0] != p[1] {
			t.Errorf("pair %d: keys differ:\n%s\n%s", i, p[0], p[1])
		}
	}
	distinct := []string{
		norm(nil, nil, 0),
		norm(nil, nil, 10),
		norm([]wire.Filter{a}, nil, 0),
		norm([]wire.Filter{nqF("status", "==", "open2")}, nil, 0),
		norm([]wire.Filter{nqF("status", "!=", "open")}, nil, 0),
		norm([]wire.Filter{nqF("n", "==", int64(1))}, nil, 0),
		norm([]wire.Filter{nqF("n", "==", 1.5)}, nil, 0),
		norm([]wire.Filter{nqF("n", "==", "1")}, nil, 0),
		norm([]wire.Filter{nqF("n", "==", true)}, nil, 0),
		norm([]wire.Filter{nqF("n", "==", nil)}, nil, 0),
		norm([]wire.Filter{nqF("n", "==", []any{"1"})}, nil, 0),
		norm([]wire.Filter{nqF("n", "in", []any{"1"})}, nil, 0),
		norm([]wire.Filter{nqF("n", "==", []any{"a", "b"})}, nil, 0),
		norm([]wire.Filter{nqF("n", "==", []any{"b", "a"})}, nil, 0), // array equality is ordered
		norm([]wire.Filter{nqF("a.b", "==", "x")}, nil, 0),
		norm([]wire.Filter{nqF("`a.b`", "==", "x")}, nil, 0),
		norm([]wire.Filter{nqF("a", "==", "b"), nqF("c", "==", "d")}, nil, 0),
		norm([]wire.Filter{nqF("a", "==", "bf1:c"), nqF("c", "==", "d")}, nil, 0),
		norm(nil, []wire.Order{{Field: "a"}}, 0),
		norm(nil, []wire.Order{{Field: "a", Direction: "desc"}}, 0),
		norm(nil, []wire.Order{{Field: "a"}, {Field: "b"}}, 0),
		norm(nil, []wire.Order{{Field: "b"}, {Field: "a"}}, 0),
	}
	seen := map[string]int{}
	for i, k := range distinct {
		if j, dup := seen[k]; dup {
			t.Errorf("queries %d and %d share the key %q", j, i, k)
		}
		seen[k] = i
	}
	q1, _ := NormalizeQuery("a", nil, nil, 0, 0)
	q2, _ := NormalizeQuery("a/b/c", nil, nil, 0, 0)
	if q1.Key() == q2.Key() {
		t.Error("collections share a key")
	}
}

func TestQueryWithFilter(t *testing.T) {
	q, err := NormalizeQuery("tasks", []wire.Filter{nqF("status", "==", "open"), nqF("a", "<", int64(3))}, nil, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	before := q.Key()
	origFilters := append([]wire.Filter(nil), q.Filters...)
	scoped := q.WithFilter(nqF("org_id", "==", "org_1"))
	if q.Key() != before || !reflect.DeepEqual(q.Filters, origFilters) {
		t.Fatal("WithFilter modified its receiver")
	}
	want := []wire.Filter{nqF("a", "<", int64(3)), nqF("org_id", "==", "org_1"), nqF("status", "==", "open")}
	if !reflect.DeepEqual(scoped.Filters, want) || scoped.Limit != 100 || scoped.Collection != "tasks" {
		t.Fatalf("WithFilter = %#v", scoped)
	}
	// Adding the scope filter is order-independent and idempotent: a client
	// that already named its own org shares the key.
	withOwn, err := NormalizeQuery("tasks", []wire.Filter{nqF("`org_id`", "==", "org_1"), nqF("status", "==", "open"), nqF("a", "<", int(3))}, nil, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := withOwn.WithFilter(nqF("org_id", "==", "org_1")); got.Key() != scoped.Key() {
		t.Fatalf("keys differ:\n%s\n%s", got.Key(), scoped.Key())
	}
	if scoped.WithFilter(nqF("org_id", "==", "org_1")).Key() != scoped.Key() {
		t.Fatal("adding the same filter twice changed the key")
	}
	// Appending to the result must not write into the receiver's array.
	base := Query{Collection: "c", Filters: make([]wire.Filter, 1, 8)}
	base.Filters[0] = nqF("b", "==", "x")
	r1 := base.WithFilter(nqF("a", "==", "y"))
	r2 := base.WithFilter(nqF("c", "==", "z"))
	if r1.Filters[0].Field != "a" || r2.Filters[1].Field != "c" || base.Filters[0].Field != "b" {
		t.Fatalf("aliasing: %v %v %v", base.Filters, r1.Filters, r2.Filters)
	}
}

func TestFieldPathSegments(t *testing.T) {
	tests := []struct {
		in        string
		segs      []string
		canonical string
		err       bool
	}{
		{"a", []string{"a"}, "a", false},
		{"a.b.c", []string{"a", "b", "c"}, "a.b.c", false},
		{"`a`", []string{"a"}, "a", false},
		{"`a.b`.c", []string{"a.b", "c"}, "`a.b`.c", false},
		{"my-field", []string{"my-field"}, "`my-field`", false},
		{"`it\\`s`", []string{"it`s"}, "`it\\`s`", false},
		{"`back\\\\slash`", []string{"back\\slash"}, "`back\\\\slash`", false},
		{"1st", []string{"1st"}, "`1st`", false},
		{"a b", []string{"a b"}, "`a b`", false},
		{"é", []string{"é"}, "`é`", false},
		{"a.__x", []string{"a", "__x"}, "a.__x", false},
		{"", nil, "", true},
		{".", nil, "", true},
		{"a.", nil, "", true},
		{"`a", nil, "", true},
		{"`a\\`", nil, "", true},
		{"a`", nil, "", true},
		{"__name__", nil, "", true},
		{"a.__b__", nil, "", true},
	}
	for _, tt := range tests {
		segs, err := FieldPathSegments(tt.in)
		c, cerr := CanonicalFieldPath(tt.in)
		if tt.err {
			if err == nil || cerr == nil {
				t.Errorf("%q: segments %v, canonical %q; want errors", tt.in, segs, c)
			}
			continue
		}
		if err != nil || cerr != nil || !reflect.DeepEqual(segs, tt.segs) || c != tt.canonical {
			t.Errorf("%q: segments %q (%v), canonical %q (%v); want %q, %q", tt.in, segs, err, c, cerr, tt.segs, tt.canonical)
			continue
		}
		// The canonical form parses back to the same segments.
		back, err := FieldPathSegments(c)
		if err != nil || !reflect.DeepEqual(back, segs) {
			t.Errorf("%q: canonical %q parses to %q, %v", tt.in, c, back, err)
		}
	}
}

// FuzzNormalizeQuery feeds random where/order_by JSON through the wire
// decoder and the normalizer: it must never panic, a normalized query must
// normalize to itself (same Key), and the key must not depend on the
// order of the filters.
func FuzzNormalizeQuery(f *testing.F) {
	f.Add(`[{"field":"status","op":"==","value":"open"}]`, `[{"field":"created","direction":"desc"}]`, 10, 100)
	f.Add(`[{"field":"a","op":"in","value":[3,1,2,1]},{"field":"b","op":">","value":1.5}]`, `[]`, 0, 0)
	f.Add(`[{"field":"a","op":"not-in","value":[null,"x"]},{"field":"b","op":"array-contains","value":true}]`, `[{"field":"b"}]`, 5, 5)
	f.Add(`[{"field":"`+"`a.b`"+`.c","op":"!=","value":null}]`, `[{"field":"`+"`x`"+`"}]`, 0, 1000)
	f.Add(`[{"field":"a","op":"array-contains-any","value":[[1]]}]`, `null`, 1, 1)
	f.Add(`[{"field":"__name__","op":"==","value":"x"},{"field":"a","op":"==","value":{"x":1}}]`, `[{"field":"a","direction":"sideways"}]`, -1, 0)
	f.Add(`[{"field":"a","op":"~","value":1e400}]`, `[{"field":""}]`, 0, 0)
	f.Fuzz(func(t *testing.T, where, order string, limit, maxLimit int) {
		frame := fmt.Sprintf(`{"type":"subscribe","id":"s","collection":"c","where":%s,"order_by":%s}`, where, order)
		if m, err := wire.DecodeClient([]byte(frame)); err == nil {
			nqCheckStable(t, m.Where, m.OrderBy, limit, maxLimit)
		}
		// Also without the decoder's checks (unknown ops, json.Number).
		var raw []wire.Filter
		dec := json.NewDecoder(strings.NewReader(where))
		dec.UseNumber()
		if dec.Decode(&raw) == nil {
			var ord []wire.Order
			_ = json.Unmarshal([]byte(order), &ord)
			nqCheckStable(t, raw, ord, limit, maxLimit)
		}
	})
}

func nqCheckStable(t *testing.T, where []wire.Filter, order []wire.Order, limit, maxLimit int) {
	t.Helper()
	q, err := NormalizeQuery("c", where, order, limit, maxLimit)
	if err != nil {
		var qe *QueryError
		if !errors.As(err, &qe) {
			t.Fatalf("error %v is not a *QueryError", err)
		}
		return
	}
	again, err := NormalizeQuery(q.Collection, q.Filters, q.OrderBy, q.Limit, maxLimit)
	if err != nil {
		t.Fatalf("re-normalizing %#v: %v", q, err)
	}
	if again.Key() != q.Key() {
		t.Fatalf("key changed on re-normalization:\n%q\n%q", q.Key(), again.Key())
	}
	rev := make([]wire.Filter, len(where))
	for i := range where {
		rev[len(where)-1-i] = where[i]
	}
	qr, err := NormalizeQuery("c", rev, order, limit, maxLimit)
	if err != nil || qr.Key() != q.Key() {
		t.Fatalf("reversed filters: %v, key %q vs %q", err, qr.Key(), q.Key())
	}
	for _, f := range q.Filters {
		if q.WithFilter(f).Key() != q.Key() {
			t.Fatalf("WithFilter(existing %v) changed the key", f)
		}
	}
}
