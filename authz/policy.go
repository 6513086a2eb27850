package authz

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"gopkg.in/yaml.v3"

	"github.com/firegate/firegate/wire"
)

// Scopes of a collection rule.
const (
	ScopeOrg  = "org"
	ScopeUser = "user"
)

// DefaultMaxLimit is a rule's max_limit when the file gives none (or 0).
const DefaultMaxLimit = 1000

// MaxPathBytes bounds a collection path, as Firestore bounds a document name.
const MaxPathBytes = 1500

// ReservedPrefix starts the ids of Firegate's own collections
// (_firegate_writes, _firegate_revocations, _firegate). No collection path
// with a segment starting with it matches any rule, whatever the policy
// says (see reservedSegment), and a rule naming one does not load.
const ReservedPrefix = "_firegate"

// reservedSegment reports whether a path segment (a collection or document
// id) is in Firegate's own namespace.
func reservedSegment(s string) bool { return strings.HasPrefix(s, ReservedPrefix) }

// Client messages of refusals. One message covers "no such collection" and
// "not allowed" so that a refusal never reveals what exists.
const (
	msgNotAllowed = "not allowed to subscribe to this collection"
	msgNoOrg      = "no active organization: select an organization to subscribe to this collection"
)

// Policy is a parsed, compiled authorization policy: default deny, one rule
// per collection path pattern. It is immutable and safe for concurrent use.
type Policy struct {
	rules      []*policyRule
	hasOrgRule bool
}

// policyRule is one entry of `collections`.
type policyRule struct {
	index      int
	line       int
	pattern    string
	segs       []string // literal ids, or "{name}" for template variables
	vars       []string // template variable names, in order
	scope      string
	scopeField string
	allow      *celProgram // nil: everyone may subscribe
	filter     *celProgram // nil: every document is visible
	maxLimit   int
	write      writeRules // create, update, delete (write.go)
	// fingerprint is ruleFingerprint of the rule, set once parsed.
	fingerprint string
}

func (r *policyRule) String() string {
	return fmt.Sprintf("collections[%d] (path %q, line %d)", r.index, r.pattern, r.line)
}

// Decision is the outcome of an allowed subscription request.
type Decision struct {
	// Collection is the concrete collection path requested, validated.
	Collection string
	// Rule is the matched rule's path pattern.
	Rule string
	// Scope is "org" or "user".
	Scope string
	// ScopeField is the document field that must equal ScopeValue.
	ScopeField string
	// ScopeValue is the caller's org id (org scope) or user id (user scope).
	ScopeValue string
	// MaxLimit bounds the subscription's limit (never 0).
	MaxLimit int
	// KeyAttrs canonically encodes the values of exactly the principal
	// attributes and path variables that the rule's filter reads ("" when
	// it reads none, or has no filter), found statically from the compiled
	// filter: `name=value` pairs sorted by name and joined by ";", such as
	// `auth.org_role="org:admin";path.project="p1"`. A read that cannot be
	// followed statically (auth.claims[doc.k], size(auth)) keys on the
	// whole value it starts from (auth.claims, or the whole principal).
	// Subscriptions of equal queries, equal scope values and equal KeyAttrs
	// see the same documents and may share a Feed.
	KeyAttrs string
	// RuleFingerprint identifies the matched rule's read behaviour (path,
	// scope, scope field, filter, max_limit); it changes when a reload
	// changes any of them. Policy.CurrentRule tells whether it is current.
	RuleFingerprint string
	// Placement says where the filter runs for this caller: nowhere
	// (FilterNone), in Firestore (FilterPushedDown, with Pushdown) or only
	// in the gateway (FilterGateway, with GatewayReason).
	Placement FilterPlacement
	// Pushdown is the filter's residual for this caller — the filter with
	// auth and path known, over doc only — as Firestore filters in
	// disjunctive normal form: a document is visible when it matches every
	// filter of at least one conjunct. Set only with FilterPushedDown;
	// never empty then, and no conjunct is empty. A `!=` with a non-null
	// value means CEL's != (true also for null); Firestore's excludes null,
	// so the planner adds `field == null` as an alternative.
	Pushdown [][]wire.Filter
	// GatewayReason says, safely for the client, why the residual cannot be
	// pushed down (FilterGateway only).
	GatewayReason string
	// Residual is the residual's CEL text ("" for FilterNone without a
	// residual), for diagnostics.
	Residual string
	// ResidualKey canonically identifies the documents this caller may see
	// within the scope: the residual's text and the values of any principal
	// attribute it still reads. "" when the rule has no filter. Subscriptions
	// of equal queries, scope values, RuleFingerprints and ResidualKeys see
	// the same documents and may share a Feed.
	ResidualKey string
	// Filter evaluates the filter's residual (or, if partial evaluation was
	// not possible, the whole filter) for one document with the principal
	// bound; nil when the rule has no filter or its residual is true. It is
	// exact also where the residual is pushed down (defence in depth). An
	// evaluation error (a missing field, the cost limit) returns false.
	// Safe for concurrent use.
	Filter func(id, path string, data map[string]any) bool

	// eval is Filter with the evaluation error, for Explain.
	eval func(id, path string, data map[string]any) (bool, error)
}

// ParsePolicy parses and compiles a policy file (YAML). Every problem is
// reported with the rule (index and path), the line and the reason: unknown
// keys, a missing or unknown scope, bad or overlapping paths, CEL that does
// not compile, is not a bool, reads `doc` in allow, or reads an unknown
// attribute.
func ParsePolicy(data []byte) (*Policy, error) {
	p, err := parsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("invalid policy: %w", err)
	}
	return p, nil
}

// LoadPolicyFile reads and parses the policy file at path.
func LoadPolicyFile(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read policy: %w", err)
	}
	p, err := parsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("invalid policy %s: %w", path, err)
	}
	return p, nil
}

// Collections returns the rules' path patterns in file order.
func (p *Policy) Collections() []string {
	out := make([]string, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.pattern
	}
	return out
}

func policyLineErr(line int, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

func derefYAML(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func parsePolicy(data []byte) (*Policy, error) {
	envs, err := envs()
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, errors.New("the policy is empty; it needs a `collections` list")
	}
	top := derefYAML(doc.Content[0])
	if top.Kind != yaml.MappingNode {
		return nil, policyLineErr(top.Line, "the policy must be a mapping with a `collections` list")
	}
	var colls *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], derefYAML(top.Content[i+1])
		switch k.Value {
		case "collections":
			if colls != nil {
				return nil, policyLineErr(k.Line, "duplicate key `collections`")
			}
			colls = v
		default:
			return nil, policyLineErr(k.Line, "unknown key %q (the policy has only `collections`)", k.Value)
		}
	}
	if colls == nil {
		return nil, policyLineErr(top.Line, "missing `collections`")
	}
	if colls.Kind != yaml.SequenceNode {
		if colls.Kind == yaml.ScalarNode && colls.Tag == "!!null" {
			return nil, policyLineErr(colls.Line, "`collections` is empty")
		}
		return nil, policyLineErr(colls.Line, "`collections` must be a list")
	}
	p := &Policy{}
	for i, item := range colls.Content {
		r, err := parseRule(envs, i, derefYAML(item))
		if err != nil {
			return nil, err
		}
		for _, o := range p.rules {
			if patternsOverlap(o.segs, r.segs) {
				if o.pattern == r.pattern {
					return nil, fmt.Errorf("%s: duplicate of %s", r, o)
				}
				return nil, fmt.Errorf("%s: ambiguous: a collection path can match both it and %s", r, o)
			}
		}
		if r.scope == ScopeOrg {
			p.hasOrgRule = true
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// patternsOverlap reports whether some concrete path matches both patterns.
func patternsOverlap(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !isTemplateVar(a[i]) && !isTemplateVar(b[i]) && a[i] != b[i] {
			return false
		}
	}
	return true
}

func isTemplateVar(seg string) bool {
	return len(seg) >= 2 && seg[0] == '{' && seg[len(seg)-1] == '}'
}

func parseRule(envs *celEnvs, index int, n *yaml.Node) (*policyRule, error) {
	r := &policyRule{index: index, line: n.Line}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("collections[%d] (line %d): each entry must be a mapping with path and scope", index, n.Line)
	}
	vals := map[string]*yaml.Node{}
	var order []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], derefYAML(n.Content[i+1])
		switch k.Value {
		case "path", "scope", "scope_field", "allow", "filter", "max_limit", WriteCreate, WriteUpdate, WriteDelete:
		default:
			return nil, fmt.Errorf("collections[%d] (line %d): unknown key %q (known: path, scope, scope_field, allow, filter, max_limit, create, update, delete)", index, k.Line, k.Value)
		}
		if _, dup := vals[k.Value]; dup {
			return nil, fmt.Errorf("collections[%d] (line %d): duplicate key %q", index, k.Line, k.Value)
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return nil, fmt.Errorf("collections[%d] (line %d): %s must be a scalar value", index, v.Line, k.Value)
		}
		vals[k.Value] = v
		order = append(order, k.Value)
	}
	pn := vals["path"]
	if pn == nil {
		return nil, fmt.Errorf("collections[%d] (line %d): missing path", index, n.Line)
	}
	r.pattern = pn.Value
	segs, vars, err := parsePattern(pn.Value)
	if err != nil {
		return nil, fmt.Errorf("%s: path: %v", r, err)
	}
	r.segs, r.vars = segs, vars

	sn := vals["scope"]
	if sn == nil {
		return nil, fmt.Errorf("%s: missing scope (org or user)", r)
	}
	switch sn.Value {
	case ScopeOrg:
		r.scopeField = "org_id"
	case ScopeUser:
		r.scopeField = "user_id"
	default:
		return nil, fmt.Errorf("%s: line %d: scope must be org or user, not %q", r, sn.Line, sn.Value)
	}
	r.scope = sn.Value
	if fn := vals["scope_field"]; fn != nil {
		if !validScopeField(fn.Value) {
			return nil, fmt.Errorf("%s: line %d: scope_field %q must be a field name or dotted path of identifiers, not starting with __", r, fn.Line, fn.Value)
		}
		r.scopeField = fn.Value
	}
	r.maxLimit = DefaultMaxLimit
	if mn := vals["max_limit"]; mn != nil {
		v, err := strconv.Atoi(mn.Value)
		if err != nil || mn.Tag != "!!int" || v < 0 {
			return nil, fmt.Errorf("%s: line %d: max_limit must be a non-negative integer, not %q", r, mn.Line, mn.Value)
		}
		if v > 0 {
			r.maxLimit = v
		}
	}
	for _, key := range order {
		var env = envs.filter
		switch key {
		case "allow":
			env = envs.allow
		case "filter":
		default:
			continue
		}
		en := vals[key]
		prg, err := compileExpr(env, en.Value, r.vars)
		if err != nil {
			if key == "allow" && readsVar(env, en.Value, varDoc, varDocID, varDocPath) {
				err = fmt.Errorf("allow may read only auth and path (documents are for filter): %w", err)
			}
			return nil, fmt.Errorf("%s: %s (line %d): %v", r, key, en.Line, err)
		}
		if key == "allow" {
			r.allow = prg
		} else {
			r.filter = prg
		}
	}
	if err := parseWriteRules(r, vals); err != nil {
		return nil, err
	}
	r.fingerprint = ruleFingerprint(r)
	return r, nil
}

func validScopeField(s string) bool {
	if strings.HasPrefix(s, "__") {
		return false
	}
	for _, seg := range strings.Split(s, ".") {
		if !isCELIdent(seg) {
			return false
		}
	}
	return true
}

// parsePattern validates a rule's path pattern: a collection path whose
// segments are ids or whole-segment template variables `{name}`.
func parsePattern(p string) (segs, vars []string, err error) {
	if p == "" {
		return nil, nil, errors.New("empty")
	}
	segs = strings.Split(p, "/")
	if len(segs)%2 == 0 {
		return nil, nil, errors.New("a collection path has an odd number of segments (collection/doc/collection...)")
	}
	for i, s := range segs {
		if isTemplateVar(s) {
			name := s[1 : len(s)-1]
			if !isCELIdent(name) {
				return nil, nil, fmt.Errorf("segment %d: template variable %q must be an identifier", i+1, s)
			}
			if containsStr(vars, name) {
				return nil, nil, fmt.Errorf("template variable %q appears twice", name)
			}
			vars = append(vars, name)
			continue
		}
		if reason := badPathID(s); reason != "" {
			return nil, nil, fmt.Errorf("segment %d (%q): %s", i+1, s, reason)
		}
		if reservedSegment(s) {
			return nil, nil, fmt.Errorf("segment %d (%q): ids starting with %s are reserved for Firegate's own records; no rule can grant access to them", i+1, s, ReservedPrefix)
		}
	}
	if len(p) > MaxPathBytes {
		return nil, nil, fmt.Errorf("longer than %d bytes", MaxPathBytes)
	}
	return segs, vars, nil
}

// badPathID says why s is not an acceptable collection or document id, or "".
// Beyond Firestore's own rules (non-empty, not . or .., not __.*__, valid
// UTF-8) it refuses control characters and the characters *, { and }, which
// could be read as wildcards or template variables.
func badPathID(s string) string {
	switch {
	case s == "":
		return "empty segment"
	case s == "." || s == "..":
		return "segment may not be . or .."
	case len(s) >= 4 && strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__"):
		return "ids of the form __…__ are reserved"
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == '*' || c == '{' || c == '}' {
			return "contains a control character, *, { or }"
		}
	}
	return ""
}

// validateCollectionPath checks a requested collection path; it returns the
// segments or a reason.
func validateCollectionPath(c string) ([]string, string) {
	switch {
	case c == "":
		return nil, "collection is empty"
	case len(c) > MaxPathBytes:
		return nil, fmt.Sprintf("collection path longer than %d bytes", MaxPathBytes)
	case strings.HasPrefix(c, "/") || strings.HasSuffix(c, "/"):
		return nil, "collection path may not start or end with /"
	}
	segs := strings.Split(c, "/")
	if len(segs)%2 == 0 {
		return nil, "not a collection path: it needs an odd number of segments (collection/doc/collection...)"
	}
	for i, s := range segs {
		if reason := badPathID(s); reason != "" {
			return nil, fmt.Sprintf("collection path segment %d: %s", i+1, reason)
		}
	}
	return segs, ""
}

// match finds the rule of a collection path's segments. It is where every
// subscribe (collection or document) and every write finds its rule, so it
// also keeps Firegate's own namespace out of reach: a path with any segment
// starting with ReservedPrefix matches no rule (a template variable would
// otherwise match it), and is refused like any collection the policy does
// not list.
func (p *Policy) match(segs []string) (*policyRule, map[string]string) {
	for _, s := range segs {
		if reservedSegment(s) {
			return nil, nil
		}
	}
	for _, r := range p.rules {
		if len(r.segs) != len(segs) {
			continue
		}
		ok := true
		for i, s := range r.segs {
			if !isTemplateVar(s) && s != segs[i] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		vars := make(map[string]string, len(r.vars))
		for i, s := range r.segs {
			if isTemplateVar(s) {
				vars[s[1:len(s)-1]] = segs[i]
			}
		}
		return r, vars
	}
	return nil, nil
}

// denial is a refusal with the client-safe error and, for Explain, the
// precise operator-facing reason.
type denial struct {
	err    *DenyError
	detail string
}

// Decide decides whether pr may subscribe to collection with the client
// filters where. A refusal is a *DenyError: "bad_request" for a malformed
// collection or field path, "forbidden" for everything the policy does not
// allow. An unknown collection and one the caller may not read get the same
// message; so, for a caller without an active organization, do an unknown
// collection and an org-scoped one (when the policy has org-scoped rules).
func (p *Policy) Decide(pr *Principal, collection string, where []wire.Filter) (*Decision, error) {
	d, _, den := p.decide(pr, collection, where)
	if den != nil {
		return nil, den.err
	}
	return d, nil
}

func denyForbidden(msg, detail string) *denial {
	return &denial{err: &DenyError{Code: DenyForbidden, Msg: msg}, detail: detail}
}

func denyBadRequest(msg string) *denial {
	return &denial{err: &DenyError{Code: DenyBadRequest, Msg: msg}, detail: msg}
}

func (p *Policy) decide(pr *Principal, collection string, where []wire.Filter) (*Decision, *policyRule, *denial) {
	if pr == nil {
		return nil, nil, denyForbidden(msgNotAllowed, "no principal")
	}
	segs, reason := validateCollectionPath(collection)
	if reason != "" {
		return nil, nil, denyBadRequest(reason)
	}
	r, pathVars := p.match(segs)
	if r == nil {
		if pr.OrgID == "" && p.hasOrgRule {
			return nil, nil, denyForbidden(msgNoOrg, "no rule matches the collection (answered as \"no active organization\" so that an org-less caller cannot tell unknown from org-scoped collections)")
		}
		return nil, nil, denyForbidden(msgNotAllowed, "no rule matches the collection")
	}
	var scopeValue string
	switch r.scope {
	case ScopeOrg:
		if pr.OrgID == "" {
			return nil, r, denyForbidden(msgNoOrg, "the rule is org-scoped and the session has no active organization")
		}
		scopeValue = pr.OrgID
	default:
		if pr.UserID == "" {
			return nil, r, denyForbidden(msgNotAllowed, "the rule is user-scoped and the principal has no user id")
		}
		scopeValue = pr.UserID
	}
	var auth map[string]any
	var base *celVars
	if r.allow != nil || r.filter != nil {
		envs, err := envs()
		if err != nil {
			return nil, r, denyForbidden(msgNotAllowed, err.Error())
		}
		auth = principalAuthMap(pr)
		base = newCELVars(envs.filter.CELTypeAdapter(), auth, pathVars)
	}
	if r.allow != nil {
		ok, err := evalBool(r.allow.prg, base)
		if err != nil {
			return nil, r, denyForbidden(msgNotAllowed, fmt.Sprintf("allow failed (which denies): %v", err))
		}
		if !ok {
			return nil, r, denyForbidden(msgNotAllowed, "allow is false")
		}
	}
	for i, f := range where {
		field, err := canonicalFilterField(f.Field)
		if err != nil {
			return nil, r, denyBadRequest(fmt.Sprintf("where[%d]: %v", i, err))
		}
		if field != r.scopeField {
			continue
		}
		if f.Op != "==" {
			return nil, r, denyForbidden(fmt.Sprintf("where[%d]: a filter on %s may only be == your own %s", i, r.scopeField, scopeNoun(r.scope)),
				fmt.Sprintf("client filter on the scope field %s with op %q", r.scopeField, f.Op))
		}
		if s, ok := f.Value.(string); !ok || s != scopeValue {
			return nil, r, denyForbidden(fmt.Sprintf("where[%d]: a filter on %s may only be == your own %s", i, r.scopeField, scopeNoun(r.scope)),
				fmt.Sprintf("client filter on the scope field %s names another value", r.scopeField))
		}
	}
	d := &Decision{
		Collection: collection,
		Rule:       r.pattern,
		Scope:      r.scope,
		ScopeField: r.scopeField,
		ScopeValue: scopeValue,
		MaxLimit:   r.maxLimit,

		RuleFingerprint: r.fingerprint,
	}
	if r.filter != nil {
		d.KeyAttrs = computeKeyAttrs(r.filter.refs, auth, pathVars)
		ce, err := envs()
		if err != nil {
			return nil, r, denyForbidden(msgNotAllowed, err.Error())
		}
		plan := planResidual(ce.filter, r.filter, base, auth, pathVars)
		if plan.never {
			return nil, r, denyForbidden(msgNotAllowed, "the filter is false (or fails) for every document for this caller")
		}
		d.Placement = plan.placement
		d.Pushdown = plan.pushdown
		d.GatewayReason = plan.reason
		d.Residual = plan.src
		d.ResidualKey = plan.key
		if plan.prg != nil {
			prg := plan.prg
			d.eval = func(id, path string, data map[string]any) (bool, error) {
				return evalDoc(prg, base, id, path, data)
			}
			d.Filter = func(id, path string, data map[string]any) bool {
				ok, _ := evalDoc(prg, base, id, path, data)
				return ok
			}
		}
	}
	return d, r, nil
}

func scopeNoun(scope string) string {
	if scope == ScopeOrg {
		return "organization id"
	}
	return "user id"
}

// canonicalFilterField parses a client field path (segments separated by
// dots; a segment may be backquoted, with \ escaping ` and \ inside) and
// returns it with unnecessary quotes removed, so that "`org_id`" and
// "org_id" compare equal. It mirrors subscriptions' normalizer.
func canonicalFilterField(s string) (string, error) {
	segs, err := wire.ParseFieldPath(s)
	if err != nil {
		return "", fmt.Errorf("field path %q: %w", s, err)
	}
	return wire.JoinFieldPath(segs), nil
}

// readsVar reports whether the CEL expression src, parsed in env, reads a
// free variable (one no comprehension binds) named one of names. It looks
// at the parsed expression, so it answers for expressions that fail type
// checking, such as one reading a variable env does not declare; it is
// false for one that does not parse.
func readsVar(env *cel.Env, src string, names ...string) bool {
	parsed, iss := env.Parse(src)
	if iss != nil && iss.Err() != nil {
		return false
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	return readsFree(parsed.NativeRep().Expr(), want, nil)
}

// readsFree reports whether e reads an identifier in want that bound (the
// comprehension variables in scope) does not shadow.
func readsFree(e ast.Expr, want, bound map[string]bool) bool {
	if e == nil {
		return false
	}
	switch e.Kind() {
	case ast.IdentKind:
		return want[e.AsIdent()] && !bound[e.AsIdent()]
	case ast.SelectKind:
		return readsFree(e.AsSelect().Operand(), want, bound)
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() && readsFree(c.Target(), want, bound) {
			return true
		}
		for _, a := range c.Args() {
			if readsFree(a, want, bound) {
				return true
			}
		}
	case ast.ListKind:
		for _, el := range e.AsList().Elements() {
			if readsFree(el, want, bound) {
				return true
			}
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			if me := en.AsMapEntry(); readsFree(me.Key(), want, bound) || readsFree(me.Value(), want, bound) {
				return true
			}
		}
	case ast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			if readsFree(f.AsStructField().Value(), want, bound) {
				return true
			}
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		// The range and the accumulator's start are outside the
		// comprehension's scope; the loop sees the iteration and
		// accumulator variables, the result only the accumulator.
		if readsFree(c.IterRange(), want, bound) || readsFree(c.AccuInit(), want, bound) {
			return true
		}
		inner := withBound(bound, c.AccuVar(), c.IterVar(), c.IterVar2())
		if readsFree(c.LoopCondition(), want, inner) || readsFree(c.LoopStep(), want, inner) {
			return true
		}
		return readsFree(c.Result(), want, withBound(bound, c.AccuVar()))
	}
	return false
}

// withBound returns a copy of bound with names added (empty names skipped).
func withBound(bound map[string]bool, names ...string) map[string]bool {
	out := make(map[string]bool, len(bound)+len(names))
	for n := range bound {
		out[n] = true
	}
	for _, n := range names {
		if n != "" {
			out[n] = true
		}
	}
	return out
}
