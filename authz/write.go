package authz

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
	"gopkg.in/yaml.v3"

	"github.com/firegate/firegate/wire"
)

// Write rule kinds: the keys of a collection rule and the operation a rule
// judges. A `set` is judged as create when the document does not exist and
// as update when it does.
const (
	WriteCreate = "create"
	WriteUpdate = "update"
	WriteDelete = "delete"
)

// varRequest is the CEL variable of write rules: request.doc (the document
// after the write) and request.fields (the changed field paths).
const varRequest = "request"

// requestKeys are the keys of `request`; reading another is a load error.
var requestKeys = map[string]bool{"doc": true, "fields": true}

// Client messages of write refusals. One message covers "no rule", "not
// allowed", "missing" and "another organization's document", so that a
// refusal never reveals whether a document exists.
const (
	msgWriteNotAllowed = "not allowed to write this document (it does not exist, is outside your scope, or the policy does not allow this write)"
	msgWriteNoOrg      = "no active organization: select an organization to write to this collection"
)

// writeRules are a collection rule's write expressions; nil denies.
type writeRules struct {
	create, update, delete *celProgram
}

func (w *writeRules) forOp(op string) *celProgram {
	switch op {
	case WriteCreate:
		return w.create
	case WriteUpdate:
		return w.update
	case WriteDelete:
		return w.delete
	}
	return nil
}

type writeEnvSet struct {
	create *cel.Env // auth, path, request, doc_id, doc_path
	change *cel.Env // the same plus doc (the stored document)
}

// writeEnvs builds the write rules' CEL environments once per process.
var writeEnvs = sync.OnceValues(func() (*writeEnvSet, error) {
	base, err := envs()
	if err != nil {
		return nil, err
	}
	create, err := base.allow.Extend(
		cel.Variable(varRequest, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varDocID, cel.StringType),
		cel.Variable(varDocPath, cel.StringType),
	)
	if err != nil {
		return nil, fmt.Errorf("failed to build the CEL create environment: %w", err)
	}
	change, err := create.Extend(cel.Variable(varDoc, cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		return nil, fmt.Errorf("failed to build the CEL update environment: %w", err)
	}
	return &writeEnvSet{create: create, change: change}, nil
})

// parseWriteRules compiles the rule's create, update and delete keys.
func parseWriteRules(r *policyRule, vals map[string]*yaml.Node) error {
	we, err := writeEnvs()
	if err != nil {
		return err
	}
	for _, key := range []string{WriteCreate, WriteUpdate, WriteDelete} {
		n := vals[key]
		if n == nil {
			continue
		}
		env := we.change
		if key == WriteCreate {
			env = we.create
		}
		prg, err := compileExpr(env, n.Value, r.vars)
		if err == nil {
			err = checkRequestRefs(n.Value, env)
		}
		if err != nil {
			if key == WriteCreate && readsVar(env, n.Value, varDoc) {
				err = fmt.Errorf("create may not read doc (there is no stored document; the new one is request.doc): %w", err)
			}
			return fmt.Errorf("%s: %s (line %d): %v", r, key, n.Line, err)
		}
		switch key {
		case WriteCreate:
			r.write.create = prg
		case WriteUpdate:
			r.write.update = prg
		case WriteDelete:
			r.write.delete = prg
		}
	}
	return nil
}

// checkRequestRefs refuses reads of request.<key> for keys other than doc
// and fields.
func checkRequestRefs(src string, env *cel.Env) error {
	checked, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return iss.Err()
	}
	var bad string
	var walk func(e ast.Expr)
	walk = func(e ast.Expr) {
		if e == nil || bad != "" {
			return
		}
		if root, keys, ok := refChain(e); ok {
			if root == varRequest && len(keys) > 0 && !requestKeys[keys[0]] {
				bad = keys[0]
			}
			return
		}
		switch e.Kind() {
		case ast.SelectKind:
			walk(e.AsSelect().Operand())
		case ast.CallKind:
			c := e.AsCall()
			if c.IsMemberFunction() {
				walk(c.Target())
			}
			for _, a := range c.Args() {
				walk(a)
			}
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				walk(el)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				walk(en.AsMapEntry().Key())
				walk(en.AsMapEntry().Value())
			}
		case ast.ComprehensionKind:
			c := e.AsComprehension()
			walk(c.IterRange())
			walk(c.AccuInit())
			walk(c.LoopCondition())
			walk(c.LoopStep())
			walk(c.Result())
		}
	}
	walk(checked.NativeRep().Expr())
	if bad != "" {
		return fmt.Errorf("request has no key %q (known: doc, fields)", bad)
	}
	return nil
}

// WriteTarget is the rule a document write falls under, for one caller.
// It is immutable.
type WriteTarget struct {
	// DocPath is the document path; DocID its last segment.
	DocPath, DocID string
	// Rule is the matched rule's path pattern.
	Rule string
	// Scope is "org" or "user"; ScopeField the document field that must
	// equal ScopeValue (the caller's org id or user id).
	Scope, ScopeField, ScopeValue string

	rule     *policyRule
	pathVars map[string]string
	pr       *Principal
}

// WriteTarget finds the rule for a write of the document at docPath by pr.
// A refusal is a *DenyError: forbidden when no rule matches the
// collection or the caller has no org for an org-scoped one (one message
// for both when the policy has org rules, as for subscribe), bad_request
// for a path that is not a document path.
func (p *Policy) WriteTarget(pr *Principal, docPath string) (*WriteTarget, error) {
	t, den := p.writeTarget(pr, docPath)
	if den != nil {
		return nil, den.err
	}
	return t, nil
}

func (p *Policy) writeTarget(pr *Principal, docPath string) (*WriteTarget, *denial) {
	if pr == nil {
		return nil, denyForbidden(msgWriteNotAllowed, "no principal")
	}
	i := strings.LastIndexByte(docPath, '/')
	if i <= 0 {
		return nil, denyBadRequest("not a document path: it needs an even number of segments (collection/doc)")
	}
	segs, reason := validateCollectionPath(docPath[:i])
	if reason != "" {
		return nil, denyBadRequest(reason)
	}
	id := docPath[i+1:]
	if r := badPathID(id); r != "" {
		return nil, denyBadRequest("document id: " + r)
	}
	r, vars := p.match(segs)
	if r == nil {
		if pr.OrgID == "" && p.hasOrgRule {
			return nil, denyForbidden(msgWriteNoOrg, "no rule matches the collection (answered as \"no active organization\" so that an org-less caller cannot tell unknown from org-scoped collections)")
		}
		return nil, denyForbidden(msgWriteNotAllowed, "no rule matches the collection")
	}
	t := &WriteTarget{DocPath: docPath, DocID: id, Rule: r.pattern, Scope: r.scope, ScopeField: r.scopeField, rule: r, pathVars: vars, pr: pr}
	switch r.scope {
	case ScopeOrg:
		if pr.OrgID == "" {
			return nil, denyForbidden(msgWriteNoOrg, "the rule is org-scoped and the session has no active organization")
		}
		t.ScopeValue = pr.OrgID
	default:
		if pr.UserID == "" {
			return nil, denyForbidden(msgWriteNotAllowed, "the rule is user-scoped and the principal has no user id")
		}
		t.ScopeValue = pr.UserID
	}
	return t, nil
}

// Stamp sets the scope field of data (a create's or set's fields, before
// the write) to the caller's scope value when it is absent, creating
// intermediate maps for a dotted scope field. It reports whether it
// stamped. A present value is left alone (Decide judges it).
func (t *WriteTarget) Stamp(data map[string]any) bool {
	segs := strings.Split(t.ScopeField, ".")
	cur := data
	for _, s := range segs[:len(segs)-1] {
		next, ok := cur[s].(map[string]any)
		if !ok {
			if _, present := cur[s]; present {
				return false // a non-map in the way: Decide refuses it
			}
			next = map[string]any{}
			cur[s] = next
		}
		cur = next
	}
	last := segs[len(segs)-1]
	if _, ok := cur[last]; ok {
		return false
	}
	cur[last] = t.ScopeValue
	return true
}

// WriteInput is one operation as the rules see it. Documents are in the
// JSON mapping subscribers see (timestamps as RFC 3339 strings).
type WriteInput struct {
	// Op is WriteCreate, WriteUpdate or WriteDelete (a set is create or
	// update by whether the document exists).
	Op string
	// Stored is the stored document's fields, nil when it does not exist.
	Stored map[string]any
	// New is the document after the write (request.doc); nil for delete.
	New map[string]any
	// Fields are the changed field paths (request.fields).
	Fields []string
}

// Decide applies the gateway's own write rules and then the rule's CEL
// expression for in.Op. Refusals are *DenyError with code forbidden:
//   - update or delete of a document that does not exist or whose scope
//     field is not the caller's (one message: existence is never revealed);
//   - a document after the write whose scope field is not the caller's (a
//     create naming another org or user, an update moving it away);
//   - no expression for the operation, or one that is false or fails.
//
// A create of an existing document of the caller's scope is not refused
// here (the writer answers already_exists after the rule allowed it).
func (t *WriteTarget) Decide(in WriteInput) error {
	if den := t.decide(in); den != nil {
		return den.err
	}
	return nil
}

func (t *WriteTarget) decide(in WriteInput) *denial {
	if in.Op != WriteCreate {
		if in.Stored == nil {
			return denyForbidden(msgWriteNotAllowed, "the document does not exist (answered as forbidden: a missing document and another scope's look the same)")
		}
		if v, ok := lookupDocField(in.Stored, t.ScopeField); !ok || v != t.ScopeValue {
			return denyForbidden(msgWriteNotAllowed, fmt.Sprintf("the stored document's %s is %s, not the caller's %q", t.ScopeField, describeValue(v, ok), t.ScopeValue))
		}
	} else if in.Stored != nil {
		if v, ok := lookupDocField(in.Stored, t.ScopeField); !ok || v != t.ScopeValue {
			return denyForbidden(msgWriteNotAllowed, fmt.Sprintf("a document exists at this path with %s %s, not the caller's %q", t.ScopeField, describeValue(v, ok), t.ScopeValue))
		}
	}
	if in.Op != WriteDelete {
		if v, ok := lookupDocField(in.New, t.ScopeField); !ok || v != t.ScopeValue {
			msg := fmt.Sprintf("%s must be your own %s", t.ScopeField, scopeNoun(t.Scope))
			if in.Op == WriteUpdate {
				msg = fmt.Sprintf("a write may not change %s", t.ScopeField)
			}
			return denyForbidden(msg, fmt.Sprintf("after the write %s would be %s, not the caller's %q", t.ScopeField, describeValue(v, ok), t.ScopeValue))
		}
	}
	prg := t.rule.write.forOp(in.Op)
	if prg == nil {
		return denyForbidden(msgWriteNotAllowed, fmt.Sprintf("rule %q has no %s expression (absent denies)", t.Rule, in.Op))
	}
	ok, err := t.eval(prg, in)
	if err != nil {
		return denyForbidden(msgWriteNotAllowed, fmt.Sprintf("%s failed (which denies): %v", in.Op, err))
	}
	if !ok {
		return denyForbidden(msgWriteNotAllowed, fmt.Sprintf("%s is false", in.Op))
	}
	return nil
}

func (t *WriteTarget) eval(prg *celProgram, in WriteInput) (bool, error) {
	we, err := writeEnvs()
	if err != nil {
		return false, err
	}
	adapter := we.change.CELTypeAdapter()
	base := newCELVars(adapter, principalAuthMap(t.pr), t.pathVars)
	fields := in.Fields
	if fields == nil {
		fields = []string{}
	}
	newDoc := in.New
	if newDoc == nil {
		newDoc = map[string]any{}
	}
	act := &writeVars{
		base:    base,
		id:      types.String(t.DocID),
		path:    types.String(t.DocPath),
		request: adapter.NativeToValue(map[string]any{"doc": newDoc, "fields": fields}),
	}
	if in.Stored != nil {
		act.doc = in.Stored
	}
	return evalBool(prg.prg, act)
}

// writeVars is the activation of a write rule.
type writeVars struct {
	base     *celVars
	id, path types.String
	doc      map[string]any
	request  any
}

func (w *writeVars) ResolveName(name string) (any, bool) {
	switch name {
	case varDoc:
		if w.doc == nil {
			return nil, false
		}
		return w.doc, true
	case varDocID:
		return w.id, true
	case varDocPath:
		return w.path, true
	case varRequest:
		return w.request, true
	}
	return w.base.ResolveName(name)
}

func (w *writeVars) Parent() interpreter.Activation { return nil }

// ChangedFields lists the top-level fields whose values differ between
// old and new (added, removed or changed), sorted, in canonical field-path
// form: request.fields of a set that replaces a document.
func ChangedFields(old, new map[string]any) []string {
	var out []string
	for k, v := range new {
		if ov, ok := old[k]; !ok || !reflect.DeepEqual(ov, v) {
			out = append(out, wire.JoinFieldPath([]string{k}))
		}
	}
	for k := range old {
		if _, ok := new[k]; !ok {
			out = append(out, wire.JoinFieldPath([]string{k}))
		}
	}
	sort.Strings(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// WriteExplanation says what the policy decides for one write, with the
// operator-facing reason. It is what `firegate policy explain --op` prints.
type WriteExplanation struct {
	Op       string `json:"op"`
	Path     string `json:"path"`
	Rule     string `json:"rule,omitempty"`
	Decision string `json:"decision"` // "allow" | "deny"
	Reason   string `json:"reason"`
	// Stamped is true when the gateway would add the scope field to a
	// create that lacks it.
	Stamped bool `json:"stamped,omitempty"`
	// Fields are the request.fields the rule saw.
	Fields []string `json:"fields,omitempty"`
}

// ExplainWrite evaluates a write by the principal built from claims: op is
// create, update or delete; docPath the document (or, for create, a
// collection: the id is then "generated"); stored the document before the
// write (nil: it does not exist) and newDoc after it (request.doc, nil for
// delete). request.fields are the top-level fields that differ. A create
// lacking the scope field is stamped as the gateway would.
func (p *Policy) ExplainWrite(claims map[string]any, op, docPath string, stored, newDoc map[string]any) WriteExplanation {
	claims, _ = normalizeClaimNumbers(claims, false).(map[string]any)
	pr := PrincipalFromClaims(claims)
	ex := WriteExplanation{Op: op, Path: docPath, Decision: "deny"}
	switch op {
	case WriteCreate, WriteUpdate, WriteDelete:
	default:
		ex.Reason = fmt.Sprintf("unknown op %q (create, update or delete)", op)
		return ex
	}
	if strings.Count(docPath, "/")%2 == 0 {
		if op != WriteCreate {
			ex.Reason = "a collection path is only for create (generated id)"
			return ex
		}
		docPath += "/generated"
		ex.Path = docPath
	}
	t, den := p.writeTarget(pr, docPath)
	if den != nil {
		ex.Reason = fmt.Sprintf("%s (client sees %s: %q)", den.detail, den.err.Code, den.err.Msg)
		if den.err.Code == DenyForbidden {
			if _, r := p.ruleFor(docPath); r != nil {
				ex.Rule = r.pattern
			}
		}
		return ex
	}
	ex.Rule = t.Rule
	if stored != nil {
		stored, _ = normalizeClaimNumbers(stored, true).(map[string]any)
	}
	if newDoc != nil {
		newDoc, _ = normalizeClaimNumbers(newDoc, true).(map[string]any)
	}
	if op == WriteCreate {
		if newDoc == nil {
			newDoc = map[string]any{}
		}
		ex.Stamped = t.Stamp(newDoc)
	}
	in := WriteInput{Op: op, Stored: stored, New: newDoc}
	switch op {
	case WriteCreate:
		in.Fields = ChangedFields(nil, newDoc)
	case WriteUpdate:
		in.Fields = ChangedFields(stored, newDoc)
	default:
		in.Fields = []string{}
		in.New = nil
	}
	ex.Fields = in.Fields
	if den := t.decide(in); den != nil {
		ex.Reason = fmt.Sprintf("%s (client sees %s: %q)", den.detail, den.err.Code, den.err.Msg)
		return ex
	}
	ex.Decision = "allow"
	ex.Reason = fmt.Sprintf("rule %q: the scope field %s is the caller's %q and %s is true", t.Rule, t.ScopeField, t.ScopeValue, op)
	if ex.Stamped {
		ex.Reason += fmt.Sprintf("; the gateway stamps %s on the new document", t.ScopeField)
	}
	if op == WriteCreate && stored != nil {
		ex.Reason += "; but the document exists, so the write answers already_exists"
	}
	return ex
}

// ruleFor returns the rule matching a document path's collection, if any.
func (p *Policy) ruleFor(docPath string) (string, *policyRule) {
	i := strings.LastIndexByte(docPath, '/')
	if i <= 0 {
		return "", nil
	}
	segs, reason := validateCollectionPath(docPath[:i])
	if reason != "" {
		return "", nil
	}
	r, _ := p.match(segs)
	return docPath[:i], r
}

// WriteRuleCount is the number of create, update and delete expressions
// in the policy (for `firegate policy check`).
func (p *Policy) WriteRuleCount() int {
	n := 0
	for _, r := range p.rules {
		for _, prg := range []*celProgram{r.write.create, r.write.update, r.write.delete} {
			if prg != nil {
				n++
			}
		}
	}
	return n
}
