package subscriptions

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/firegate/firegate/wire"
)

// PlanRequest is a subscription the policy allowed, with what the policy
// decided about it: everything Plan needs to build the Feed's query and
// key. The gateway fills it from the client's subscribe and the policy
// decision.
type PlanRequest struct {
	// Collection is the collection path (validated by the policy).
	Collection string
	// DocID, when not empty, makes this a document subscription: the one
	// document Collection/DocID. Where, OrderBy and Limit must then be
	// empty.
	DocID string
	// Where, OrderBy and Limit are the client's query (Limit 0: none).
	// Filters on ScopeField are dropped: the policy has checked that they
	// name the caller's own scope, which Plan adds itself.
	Where   []wire.Filter
	OrderBy []wire.Order
	Limit   int
	// MaxLimit is the rule's limit cap (applied when Limit is 0, unless
	// the policy filter runs only in the gateway: then no Firestore limit
	// applies, since it would count hidden documents).
	MaxLimit int
	// ScopeField and ScopeValue: the scope filter, always added.
	ScopeField, ScopeValue string
	// Tenant is FeedSpec.Tenant.
	Tenant string
	// Rule is the fingerprint of the policy rule (FeedSpec.Rule).
	Rule string
	// Pushdown is the policy filter's residual for the caller as Firestore
	// filters in disjunctive normal form (a document is visible when it
	// matches every filter of one conjunct); nil when there is none to
	// push down.
	Pushdown [][]wire.Filter
	// GatewayReason, when not empty, says why the policy filter runs only
	// in the gateway (Pushdown is then nil).
	GatewayReason string
	// ResidualKey identifies the documents the caller may see within its
	// scope ("" when the rule has no filter).
	ResidualKey string
	// Filter is the policy filter for one document (FeedSpec.Filter).
	Filter func(id, path string, data map[string]any) bool
}

// FilterWhere says where a planned subscription's policy filter runs.
type FilterWhere uint8

const (
	// FilterNowhere: no policy filter.
	FilterNowhere FilterWhere = iota
	// FilterInFirestore: the filter is part of the Firestore query (and,
	// as a defence in depth, the gateway evaluates it too).
	FilterInFirestore
	// FilterInGateway: only the gateway filters.
	FilterInGateway
)

// Plan builds the FeedSpec of a subscription: the normalized query with the
// scope filter and, when Firestore can apply it together with the client's
// filters, the policy's pushed-down filter, so that Firestore filters
// before it orders and limits; and the Feed key, which holds the query,
// the rule fingerprint and the residual key, so that subscribers share a
// Feed exactly when they see the same documents under the same rule.
//
// A document subscription (DocID) queries Collection for __name__ ==
// the document and the scope, and its policy filter runs in the gateway.
//
// When the policy filter runs only in the gateway — the residual has no
// Firestore translation, or the translation and the client's filters
// together break a Firestore rule (too many disjunctions, two
// array-contains in one conjunct, != or not-in with a disjunction...) —
// a client Limit is refused with a *QueryError saying why: a limit would
// count hidden documents. Other refusals are NormalizeQuery's.
func Plan(r PlanRequest) (FeedSpec, FilterWhere, error) {
	var q Query
	var err error
	if r.DocID != "" {
		if len(r.Where) > 0 || len(r.OrderBy) > 0 || r.Limit != 0 {
			return FeedSpec{}, 0, queryErrf("a document subscription takes no where, order_by or limit")
		}
		if reason := badDocID(r.DocID); reason != "" {
			return FeedSpec{}, 0, queryErrf("document id: %s", reason)
		}
		q, err = NormalizeQuery(r.Collection, nil, nil, 0, 0)
		q.Doc = r.DocID
	} else {
		where := make([]wire.Filter, 0, len(r.Where))
		for _, f := range r.Where {
			if field, err := CanonicalFieldPath(f.Field); err == nil && field == r.ScopeField {
				continue
			}
			where = append(where, f)
		}
		q, err = NormalizeQuery(r.Collection, where, r.OrderBy, r.Limit, r.MaxLimit)
	}
	if err != nil {
		return FeedSpec{}, 0, err
	}
	q = q.WithFilter(wire.Filter{Field: r.ScopeField, Op: "==", Value: r.ScopeValue})

	where := FilterNowhere
	reason := r.GatewayReason
	switch {
	case r.DocID != "" && r.Filter != nil:
		// One document needs no push-down (no limit to honour, nothing
		// billed beyond it), and Firestore refuses an equality on
		// __name__ next to inequalities on other fields: the gateway
		// filters it.
		reason = "document subscription"
	case r.Pushdown != nil && reason == "":
		pq, err := q.withPushdown(r.Pushdown)
		if err != nil {
			reason = err.Error()
			break
		}
		q = pq
		where = FilterInFirestore
	case r.Filter != nil && reason == "":
		reason = "the policy filter is evaluated by the gateway"
	}
	if reason != "" {
		where = FilterInGateway
		if r.Limit > 0 {
			return FeedSpec{}, 0, queryErrf("limit is not available on this collection for you: the policy's filter cannot be applied by Firestore (%s), so a limit would count documents you cannot see; subscribe without limit", reason)
		}
		// Nor does the rule's max_limit apply in Firestore: it too would
		// count hidden documents (whether a visible one makes the cut
		// would tell how many hidden ones sort before it). Such a Feed
		// holds the whole scoped result; the per-org Feed byte budget
		// bounds what an org's Feeds hold.
		q.Limit = 0
	}

	b := make([]byte, 0, 128)
	b = append(b, "p1"...)
	b = appendKeyField(b, 'q', q.Key())
	b = appendKeyField(b, 'r', r.Rule)
	b = appendKeyField(b, 'x', r.ResidualKey)
	b = append(b, 'w', byte('0'+where))
	return FeedSpec{Query: q, Key: string(b), Tenant: r.Tenant, Rule: r.Rule, Filter: r.Filter}, where, nil
}

// badDocID says why id is not a document id, or "".
func badDocID(id string) string {
	switch {
	case strings.Contains(id, "/"):
		return "contains /"
	case id == "." || id == "..":
		return "may not be . or .."
	case len(id) > MaxCollectionBytes:
		return fmt.Sprintf("longer than %d bytes", MaxCollectionBytes)
	case len(id) >= 4 && strings.HasPrefix(id, "__") && strings.HasSuffix(id, "__"):
		return "ids of the form __…__ are reserved"
	case !utf8.ValidString(id):
		return "not valid UTF-8"
	}
	return ""
}

// withPushdown adds the policy's filters in disjunctive normal form to q,
// or says which Firestore rule the combination breaks. One conjunct joins
// q.Filters (and all of NormalizeQuery's rules apply to the whole), except
// a `!=` with a non-null value, which means CEL's != and becomes q.Or =
// (x != c || x == null), Firestore's != excluding null; several
// become q.Or, under Firestore's rules for disjunctions: at most
// MaxDisjunctions in disjunctive normal form (each `in` or
// array-contains-any value counting as one), at most one array-contains or
// array-contains-any per conjunct, no != or not-in anywhere in a query
// with a disjunction (a conservative reading of Firestore's rules), at
// most MaxInequalityFields inequality fields overall, and each inequality
// field tested in every disjunct (Firestore orders by the inequality
// fields, dropping documents that lack one, whichever disjunct they match).
func (q Query) withPushdown(dnf [][]wire.Filter) (Query, error) {
	if len(dnf) == 0 {
		return Query{}, queryErrf("the policy filter is false")
	}
	conjs := make([][]keyedFilter, 0, len(dnf))
	for _, conj := range dnf {
		if len(conj) == 0 {
			return q, nil // true: nothing to add
		}
		kfs := make([]keyedFilter, 0, len(conj))
		for _, f := range conj {
			kf, err := normalizeWhereFilter(f)
			if err != nil {
				return Query{}, queryErrf("the policy filter on %s: %s", f.Field, err.(*QueryError).Msg)
			}
			kfs = append(kfs, kf)
		}
		conjs = append(conjs, sortWhereFilters(kfs))
	}
	base := make([]keyedFilter, 0, len(q.Filters))
	for _, f := range q.Filters {
		base = append(base, keyedFilter{f: f, key: appendFilterValueKey(nil, f.Value)})
	}
	if len(conjs) == 1 {
		// A policy `x != c` (c not null) is CEL's !=, which holds for null
		// too: it becomes the disjunction (x != c || x == null), which
		// Firestore accepts once per query (its single NOT_EQUAL).
		var neq *keyedFilter
		rest := make([]keyedFilter, 0, len(conjs[0]))
		for i, kf := range conjs[0] {
			if kf.f.Op == "!=" && kf.f.Value != nil {
				if neq != nil {
					return Query{}, queryErrf("two != comparisons (Firestore allows one per query)")
				}
				neq = &conjs[0][i]
				continue
			}
			rest = append(rest, kf)
		}
		all := sortWhereFilters(append(append([]keyedFilter(nil), base...), rest...))
		check := all
		if neq != nil {
			for _, kf := range all {
				if kf.f.Op == "!=" || kf.f.Op == "not-in" {
					return Query{}, queryErrf("the query has a %s filter and the policy a != comparison (Firestore allows one per query)", kf.f.Op)
				}
			}
			check = sortWhereFilters(append(append([]keyedFilter(nil), all...), *neq))
		}
		if err := checkWhereFilters(check); err != nil {
			return Query{}, err
		}
		out := q
		out.Filters = make([]wire.Filter, len(all))
		for i := range all {
			out.Filters[i] = all[i].f
		}
		if neq != nil {
			out.Or = [][]wire.Filter{{neq.f}, {{Field: neq.f.Field, Op: "==", Value: nil}}}
		}
		return out, nil
	}
	ineq := map[string]bool{}
	baseDisj, baseArr := 1, 0
	for _, kf := range base {
		switch kf.f.Op {
		case "!=", "not-in":
			return Query{}, queryErrf("the client's %s filter cannot be combined with the policy's disjunction", kf.f.Op)
		case "in", "array-contains-any":
			baseDisj *= len(kf.f.Value.([]any))
		}
		if kf.f.Op == "array-contains" || kf.f.Op == "array-contains-any" {
			baseArr++
		}
		if isInequalityOp(kf.f.Op) {
			ineq[kf.f.Field] = true
		}
	}
	total := 0
	for _, conj := range conjs {
		disj, arr := baseDisj, baseArr
		for _, kf := range conj {
			switch kf.f.Op {
			case "!=", "not-in":
				return Query{}, queryErrf("a %s comparison inside a disjunction (Firestore allows a single one per query, and none under an OR)", kf.f.Op)
			case "in", "array-contains-any":
				disj *= len(kf.f.Value.([]any))
			}
			if kf.f.Op == "array-contains" || kf.f.Op == "array-contains-any" {
				arr++
			}
			if isInequalityOp(kf.f.Op) {
				ineq[kf.f.Field] = true
			}
			if disj > MaxDisjunctions {
				break
			}
		}
		if arr > 1 {
			return Query{}, queryErrf("more than one array-contains or array-contains-any in one disjunct")
		}
		total += disj
		if total > MaxDisjunctions {
			return Query{}, queryErrf("more than %d disjunctions with the client's filters", MaxDisjunctions)
		}
	}
	if len(ineq) > MaxInequalityFields {
		return Query{}, queryErrf("inequality filters on more than %d fields", MaxInequalityFields)
	}
	// Firestore orders a query by its inequality fields, which drops every
	// document that lacks one of them, also from the disjuncts that do not
	// test it: each inequality field must be tested by every disjunct (or
	// by the filters common to all).
	baseFields := map[string]bool{}
	for _, kf := range base {
		baseFields[kf.f.Field] = true
	}
	for field := range ineq {
		if baseFields[field] {
			continue
		}
		for _, conj := range conjs {
			tested := false
			for _, kf := range conj {
				if kf.f.Field == field {
					tested = true
					break
				}
			}
			if !tested {
				return Query{}, queryErrf("a range comparison of %s in only some disjuncts (Firestore would drop documents without %s from all of them)", field, field)
			}
		}
	}
	// Canonical order of the conjuncts, duplicates dropped.
	keys := make([][]byte, len(conjs))
	for i, conj := range conjs {
		for _, kf := range conj {
			keys[i] = appendKeyField(keys[i], 'f', kf.f.Field)
			keys[i] = appendKeyField(keys[i], 'o', kf.f.Op)
			keys[i] = append(keys[i], kf.key...)
		}
	}
	idx := make([]int, len(conjs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return bytes.Compare(keys[idx[a]], keys[idx[b]]) < 0 })
	out := q
	out.Or = make([][]wire.Filter, 0, len(conjs))
	var prev []byte
	for n, i := range idx {
		if n > 0 && bytes.Equal(prev, keys[i]) {
			continue
		}
		prev = keys[i]
		fs := make([]wire.Filter, len(conjs[i]))
		for j := range conjs[i] {
			fs[j] = conjs[i][j].f
		}
		out.Or = append(out.Or, fs)
	}
	if len(out.Or) == 1 {
		return q.withPushdown(out.Or)
	}
	return out, nil
}

// appendOrKey appends the encoding of q.Or and q.Doc to a query key.
func (q Query) appendOrKey(b []byte) []byte {
	if q.Doc != "" {
		b = appendKeyField(b, 'd', q.Doc)
	}
	for _, conj := range q.Or {
		b = append(b, '|')
		b = strconv.AppendInt(b, int64(len(conj)), 10)
		for _, f := range conj {
			b = appendKeyField(b, 'f', f.Field)
			b = appendKeyField(b, 'o', f.Op)
			b = appendFilterValueKey(b, f.Value)
		}
	}
	return b
}
