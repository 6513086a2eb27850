package authz

import (
	"fmt"
	"math"
	"strings"
	"time"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"

	"github.com/firegate/firegate/wire"
)

// MaxPushdownDisjuncts bounds the disjunctive normal form a residual may
// translate into: Firestore's own limit on the disjunctions of one query.
// The query planner (subscriptions) applies the exact limit again with the
// client's filters and the `in` values counted.
const MaxPushdownDisjuncts = 30

// Firestore bounds the values of in.
const maxPushInValues = 30

// notPushable says why a residual has no exact Firestore translation. Its
// text is safe to show the client: it names the shape, never a value.
type notPushable struct{ reason string }

func (e *notPushable) Error() string { return e.reason }

func cannotPush(format string, args ...any) error {
	return &notPushable{reason: fmt.Sprintf(format, args...)}
}

// pushLeaf is one Firestore filter of a conjunct, or (has set) a presence
// test of the field path has, which Firestore cannot express alone: it is
// dropped when the same conjunct compares that field or a field under it
// (every pushed comparison already requires its field to exist), and makes
// the residual not pushable otherwise.
type pushLeaf struct {
	f   wire.Filter
	seg []string // f.Field's segments, unquoted
	has bool
}

// pushDNF is a disjunction of conjunctions. nil or empty: false; a conjunct
// with no leaf: true.
type pushDNF [][]pushLeaf

// translateResidual translates a residual expression (over doc only) into
// Firestore filters in disjunctive normal form: a document matches when it
// matches every filter of at least one conjunct. It succeeds only for
// shapes whose Firestore semantics equal CEL's under "an error denies":
//
//   - doc.f == c, doc.f != c (c a string, integer, double other than NaN,
//     bool or null). A `!=` with a non-null c in the result means CEL's
//     heterogeneous !=, which holds for a field of another kind and for
//     null: Firestore's != drops null, so the query planner adds the
//     `== null` alternative (subscriptions.Plan). Both exclude documents
//     without the field (CEL errors on them). `!= null` is Firestore's
//     IS_NOT_NULL, exactly CEL's;
//   - doc.f < c, <=, >, >= (c a string, number or bool: both sides order
//     only values of one kind, numbers together);
//   - doc.f in [c, ...] (in, at most 30 values, none null) and
//     !(doc.f in [c]) (!= c); not-in with more values is not translated
//     (Firestore's not-in drops null and cannot be ORed);
//   - c in doc.f (array-contains; a scalar c other than null);
//   - doc.f and !doc.f for a bool field (== true, == false);
//   - has(doc.f) in a conjunction that also compares doc.f or a field
//     under it;
//   - &&, || and ! over those (! distributes by De Morgan, which holds in
//     CEL's error-absorbing logic); at most MaxPushdownDisjuncts conjuncts.
//
// Negated ranges are not translated (CEL's !(x < 5) holds for NaN,
// Firestore's x >= 5 does not), nor is anything else. Errors are
// *notPushable.
func translateResidual(e ast.Expr) ([][]wire.Filter, error) {
	d, err := translateExpr(e, false)
	if err != nil {
		return nil, err
	}
	out := make([][]wire.Filter, 0, len(d))
	for _, conj := range d {
		fs := make([]wire.Filter, 0, len(conj))
		for i, l := range conj {
			if !l.has {
				fs = append(fs, l.f)
				continue
			}
			covered := false
			for j, o := range conj {
				if j != i && !o.has && segsHavePrefix(o.seg, l.seg) {
					covered = true
					break
				}
			}
			if !covered {
				return nil, cannotPush("has(%s) without a comparison of the same field: Firestore cannot test that a field exists", "doc."+l.f.Field)
			}
		}
		out = append(out, fs)
	}
	return out, nil
}

func segsHavePrefix(s, p []string) bool {
	if len(p) > len(s) {
		return false
	}
	for i := range p {
		if s[i] != p[i] {
			return false
		}
	}
	return true
}

var dnfTrue = pushDNF{{}}

func translateExpr(e ast.Expr, neg bool) (pushDNF, error) {
	switch e.Kind() {
	case ast.LiteralKind:
		b, ok := e.AsLiteral().(types.Bool)
		if !ok {
			return nil, cannotPush("a constant that is not a bool")
		}
		if bool(b) != neg {
			return dnfTrue, nil
		}
		return pushDNF{}, nil
	case ast.SelectKind:
		s := e.AsSelect()
		if s.IsTestOnly() {
			if neg {
				return nil, cannotPush("!has(...): Firestore cannot select documents that lack a field")
			}
			root, keys, ok := refChain(s.Operand())
			if !ok || root != varDoc {
				return nil, cannotPush("has() of something other than a document field")
			}
			segs := append(append([]string(nil), keys...), s.FieldName())
			if err := checkPushField(segs); err != nil {
				return nil, err
			}
			return pushDNF{{{f: wire.Filter{Field: wire.JoinFieldPath(segs)}, seg: segs, has: true}}}, nil
		}
		return boolField(e, neg)
	case ast.CallKind:
	default:
		return nil, cannotPush("an expression Firestore cannot evaluate")
	}
	c := e.AsCall()
	args := c.Args()
	switch c.FunctionName() {
	case operators.LogicalNot:
		if len(args) != 1 {
			break
		}
		return translateExpr(args[0], !neg)
	case operators.LogicalAnd, operators.LogicalOr:
		if len(args) != 2 {
			break
		}
		a, err := translateExpr(args[0], neg)
		if err != nil {
			return nil, err
		}
		b, err := translateExpr(args[1], neg)
		if err != nil {
			return nil, err
		}
		if (c.FunctionName() == operators.LogicalAnd) != neg {
			return dnfAnd(a, b)
		}
		return dnfOr(a, b)
	case operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
		if len(args) != 2 || c.IsMemberFunction() {
			break
		}
		return comparison(c.FunctionName(), args[0], args[1], neg)
	case operators.In:
		if len(args) != 2 || c.IsMemberFunction() {
			break
		}
		return membership(args[0], args[1], neg)
	case operators.Index:
		return boolField(e, neg)
	}
	return nil, cannotPush("the function or operator %s", displayFunction(c.FunctionName()))
}

func displayFunction(name string) string {
	if d, ok := operators.FindReverse(name); ok && d != "" {
		return d
	}
	return strings.Trim(name, "_@")
}

// boolField translates a bare field read used as a condition.
func boolField(e ast.Expr, neg bool) (pushDNF, error) {
	segs, ok := docField(e)
	if !ok {
		return nil, cannotPush("an expression Firestore cannot evaluate")
	}
	if err := checkPushField(segs); err != nil {
		return nil, err
	}
	return leafDNF(segs, "==", !neg), nil
}

func leafDNF(segs []string, op string, v any) pushDNF {
	return pushDNF{{{f: wire.Filter{Field: wire.JoinFieldPath(segs), Op: op, Value: v}, seg: segs}}}
}

// docField resolves e as doc followed by field selections and constant
// string indexes, returning the field path's segments.
func docField(e ast.Expr) ([]string, bool) {
	root, keys, ok := refChain(e)
	if !ok || root != varDoc || len(keys) == 0 {
		return nil, false
	}
	return keys, true
}

// checkPushField refuses field paths Firestore reserves or rejects.
func checkPushField(segs []string) error {
	for i, s := range segs {
		switch {
		case s == "":
			return cannotPush("an empty field name")
		case i == 0 && strings.HasPrefix(s, "__"):
			return cannotPush("a field name starting with __ (reserved by Firestore)")
		case len(s) >= 4 && strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__"):
			return cannotPush("a field name of the form __…__ (reserved by Firestore)")
		}
	}
	if len(wire.JoinFieldPath(segs)) > 1500 {
		return cannotPush("a field path longer than 1500 bytes")
	}
	return nil
}

// scalarConst converts a literal to a Firestore filter value: string,
// int64, float64 (not NaN), bool or nil. ok is false for anything else.
func scalarConst(e ast.Expr) (any, bool) {
	if e.Kind() != ast.LiteralKind {
		return nil, false
	}
	switch v := e.AsLiteral().(type) {
	case types.String:
		return string(v), true
	case types.Int:
		return int64(v), true
	case types.Uint:
		if uint64(v) > math.MaxInt64 {
			return nil, false
		}
		return int64(v), true
	case types.Double:
		if math.IsNaN(float64(v)) {
			return nil, false
		}
		return float64(v), true
	case types.Bool:
		return bool(v), true
	case types.Null:
		return nil, true
	}
	return nil, false
}

var flippedOps = map[string]string{"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

var celCompareOps = map[string]string{
	operators.Equals: "==", operators.NotEquals: "!=",
	operators.Less: "<", operators.LessEquals: "<=", operators.Greater: ">", operators.GreaterEquals: ">=",
}

func comparison(fn string, l, r ast.Expr, neg bool) (pushDNF, error) {
	op := celCompareOps[fn]
	segs, ok := docField(l)
	cexpr := r
	if !ok {
		segs, ok = docField(r)
		cexpr = l
		op = flippedOps[op]
	}
	if !ok {
		return nil, cannotPush("a comparison that is not between a document field and a constant")
	}
	if err := checkPushField(segs); err != nil {
		return nil, err
	}
	v, ok := scalarConst(cexpr)
	if !ok {
		return nil, cannotPush("a comparison with something other than a string, number, bool or null constant")
	}
	if neg {
		switch op {
		case "==":
			op = "!="
		case "!=":
			op = "=="
		default:
			return nil, cannotPush("a negated range comparison (CEL and Firestore differ on NaN)")
		}
	}
	if v == nil && op != "==" && op != "!=" {
		return nil, cannotPush("a range comparison with null")
	}
	if op == "!=" {
		if err := checkPushNotEqual(v); err != nil {
			return nil, err
		}
	}
	return leafDNF(segs, op, v), nil
}

// checkPushNotEqual refuses `field != s` for a string s that a Firestore
// value of another kind is shown to the filter as: NaN and ±Infinity (the
// strings "NaN", "Infinity", "-Infinity"), a timestamp (its RFC 3339
// rendering) or a reference (a path, which has a /). CEL finds such a
// value equal to s and hides the document; Firestore's != compares kinds
// and would return it, so under `limit` the hidden document would take a
// place (an oracle on hidden documents).
func checkPushNotEqual(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	switch {
	case s == "NaN" || s == "Infinity" || s == "-Infinity":
		return cannotPush("!= %q (a NaN or infinite number is shown to the filter as this string; Firestore's != would return it)", s)
	case strings.Contains(s, "/"):
		return cannotPush("!= a string with / (a reference is shown to the filter as its path; Firestore's != would return it)")
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return cannotPush("!= a timestamp string (a timestamp is shown to the filter as this string; Firestore's != would return it)")
	}
	return nil
}

func membership(elem, coll ast.Expr, neg bool) (pushDNF, error) {
	if segs, ok := docField(elem); ok {
		if err := checkPushField(segs); err != nil {
			return nil, err
		}
		if coll.Kind() != ast.ListKind {
			return nil, cannotPush("`in` with something other than a constant list")
		}
		l := coll.AsList()
		if len(l.OptionalIndices()) > 0 {
			return nil, cannotPush("`in` with optional list elements")
		}
		vals := make([]any, 0, len(l.Elements()))
		for _, el := range l.Elements() {
			v, ok := scalarConst(el)
			if !ok || v == nil {
				return nil, cannotPush("`in` with a list element that is not a string, number or bool constant")
			}
			if !containsValue(vals, v) {
				vals = append(vals, v)
			}
		}
		switch {
		case len(vals) == 0 && !neg:
			return pushDNF{}, nil // a field in [] is false, or an error
		case len(vals) == 0:
			return nil, cannotPush("!(field in []): Firestore cannot select documents by the mere presence of a field")
		case !neg && len(vals) > maxPushInValues:
			return nil, cannotPush("`in` with more than %d values", maxPushInValues)
		case neg && len(vals) > 1:
			// Firestore's not-in also drops documents whose field is null,
			// which CEL keeps, and cannot be ORed with `== null`.
			return nil, cannotPush("!(field in [list]) with more than one value (Firestore's not-in excludes null values)")
		}
		if len(vals) == 1 {
			op := "=="
			if neg {
				op = "!="
				if err := checkPushNotEqual(vals[0]); err != nil {
					return nil, err
				}
			}
			return leafDNF(segs, op, vals[0]), nil
		}
		return leafDNF(segs, "in", vals), nil
	}
	if segs, ok := docField(coll); ok {
		if neg {
			return nil, cannotPush("!(value in field): Firestore has no array-does-not-contain")
		}
		if err := checkPushField(segs); err != nil {
			return nil, err
		}
		v, ok := scalarConst(elem)
		if !ok || v == nil {
			return nil, cannotPush("`in` on a field with something other than a string, number or bool constant")
		}
		return leafDNF(segs, "array-contains", v), nil
	}
	return nil, cannotPush("`in` that is not between a document field and constants")
}

// containsValue compares normalized scalars by type and value (1 and 1.0
// stay distinct: Firestore keeps both, CEL matches either).
func containsValue(vals []any, v any) bool {
	for _, x := range vals {
		if x == v {
			return true
		}
	}
	return false
}

func dnfOr(a, b pushDNF) (pushDNF, error) {
	for _, d := range [2]pushDNF{a, b} {
		for _, conj := range d {
			if len(conj) == 0 {
				return dnfTrue, nil
			}
		}
	}
	if len(a)+len(b) > MaxPushdownDisjuncts {
		return nil, cannotPush("more than %d disjunctions", MaxPushdownDisjuncts)
	}
	out := make(pushDNF, 0, len(a)+len(b))
	out = append(out, a...)
	return append(out, b...), nil
}

func dnfAnd(a, b pushDNF) (pushDNF, error) {
	if len(a) == 0 || len(b) == 0 {
		return pushDNF{}, nil
	}
	if len(a)*len(b) > MaxPushdownDisjuncts {
		return nil, cannotPush("more than %d disjunctions once expanded", MaxPushdownDisjuncts)
	}
	out := make(pushDNF, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			conj := make([]pushLeaf, 0, len(x)+len(y))
			conj = append(conj, x...)
			out = append(out, append(conj, y...))
		}
	}
	return out, nil
}
