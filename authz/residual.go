package authz

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"strconv"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/firegate/firegate/wire"
)

// FilterPlacement says where a subscription's policy filter runs.
type FilterPlacement uint8

const (
	// FilterNone: the rule has no filter, or its residual for the caller is
	// true; every document in scope is visible.
	FilterNone FilterPlacement = iota
	// FilterPushedDown: the residual is Decision.Pushdown, which Firestore
	// applies before it orders and limits.
	FilterPushedDown
	// FilterGateway: the residual has no exact Firestore translation
	// (Decision.GatewayReason says why); only the gateway filters, so a
	// client limit cannot be honoured exactly and is refused.
	FilterGateway
)

// maxResidualCache bounds the compiled residual programs kept per rule;
// past it, residuals are compiled per subscribe.
const maxResidualCache = 1024

// residualState is the per-filter partial-evaluation machinery. Safe for
// concurrent use: mu guards cache; the rest is immutable once built.
type residualState struct {
	once    sync.Once
	partial cel.Program // the filter with OptPartialEval and OptTrackState
	err     error

	mu    sync.Mutex
	cache map[string]*compiledResidual // residual text → program; guarded by mu
}

// compiledResidual is one residual, compiled. Immutable.
type compiledResidual struct {
	src      string
	prg      cel.Program
	refs     []attrRef       // principal reads left in the residual
	pushdown [][]wire.Filter // nil when not pushable
	reason   string          // why not pushable
}

// residualPlan is the outcome of partially evaluating a rule's filter for
// one principal.
type residualPlan struct {
	never     bool // the filter is false (or fails) for every document
	placement FilterPlacement
	key       string // the residual's canonical text + the attributes it still reads
	src       string // the residual's text ("" for none)
	prg       cel.Program
	pushdown  [][]wire.Filter
	reason    string
}

// unknownDocVars are the filter variables partial evaluation leaves open.
var unknownDocVars = []*cel.AttributePatternType{
	cel.AttributePattern(varDoc), cel.AttributePattern(varDocID), cel.AttributePattern(varDocPath),
}

func (p *celProgram) residuals(env *cel.Env) (*residualState, error) {
	rs := &p.res
	rs.once.Do(func() {
		rs.partial, rs.err = env.Program(p.ast,
			cel.CostLimit(CostLimit),
			cel.EvalOptions(cel.OptPartialEval, cel.OptTrackState),
		)
		if rs.err != nil {
			rs.err = fmt.Errorf("failed to plan partial evaluation: %w", rs.err)
		}
		rs.cache = make(map[string]*compiledResidual)
	})
	return rs, rs.err
}

// planResidual partially evaluates filter p with the principal and path
// variables of base known and doc, doc_id and doc_path unknown. A failure
// of the machinery (never expected) falls back to the whole filter, filtered
// by the gateway and keyed on the attributes it reads, which is what the
// gateway did before push-down.
func planResidual(env *cel.Env, p *celProgram, base *celVars, auth map[string]any, pathVars map[string]string) residualPlan {
	fallback := func(why string) residualPlan {
		return residualPlan{
			placement: FilterGateway,
			key:       "F" + strconv.Itoa(len(p.src)) + ":" + p.src + "\x1f" + computeKeyAttrs(p.refs, auth, pathVars),
			src:       p.src,
			prg:       p.prg,
			reason:    why,
		}
	}
	rs, err := p.residuals(env)
	if err != nil {
		return fallback("the filter could not be partially evaluated")
	}
	act, err := cel.PartialVars(base, unknownDocVars...)
	if err != nil {
		return fallback("the filter could not be partially evaluated")
	}
	out, det, err := rs.partial.Eval(act)
	if err != nil || types.IsError(out) {
		// Fails whatever the document: every document is hidden.
		return residualPlan{never: true}
	}
	switch v := out.(type) {
	case types.Bool:
		if v {
			return residualPlan{placement: FilterNone}
		}
		return residualPlan{never: true}
	case *types.Unknown:
	default:
		return residualPlan{never: true} // not a bool: denies every document
	}
	// Pruning drops any known operand of || and && that is not true
	// (resp. false) next to one that depends on the document — also an
	// error or a non-bool, which would make the residual more permissive
	// than the filter (`x || err` is never true, `x` may be) — and assumes
	// a known ?: condition is a bool. Any failure, or a non-bool where a
	// bool belongs, keeps the whole filter instead.
	st := det.State()
	for _, id := range st.IDs() {
		if v, ok := st.Value(id); ok && types.IsError(v) {
			return fallback("the filter fails on a part that does not depend on the document")
		}
	}
	if !logicalOperandsAreBools(p.ast.NativeRep().Expr(), st) {
		return fallback("the filter applies a logical operator to something that is not a bool")
	}
	src, err := residualText(p.ast, det)
	if err != nil {
		return fallback("the filter's residual could not be expressed (e.g. a comprehension over the document)")
	}
	cr, err := rs.compiled(env, src)
	if err != nil {
		return fallback("the filter's residual could not be compiled")
	}
	plan := residualPlan{
		src:      cr.src,
		prg:      cr.prg,
		pushdown: cr.pushdown,
		reason:   cr.reason,
		key:      "R" + strconv.Itoa(len(cr.src)) + ":" + cr.src + "\x1f" + computeKeyAttrs(cr.refs, auth, pathVars),
	}
	switch {
	case cr.pushdown == nil:
		plan.placement = FilterGateway
	case len(cr.pushdown) == 0:
		return residualPlan{never: true}
	default:
		plan.placement = FilterPushedDown
		for _, conj := range cr.pushdown {
			if len(conj) == 0 {
				// Always true once translated: nothing for Firestore to do;
				// the gateway still evaluates the residual.
				plan.pushdown = nil
				plan.placement = FilterNone
				break
			}
		}
	}
	return plan
}

// residualText prunes the checked filter a with the partial evaluation's
// state and renders what is left as CEL text — the first half of
// cel.Env.ResidualAst, whose parse and check only a cache miss pays for
// (see compiled). A panic of the pruner becomes an error. a is shared by
// every caller of the Policy and only read: the pruner deletes and
// replaces entries of the macro-call map it is given, so it gets a copy
// (cel.Env.ResidualAst hands it the AST's own map, which races between
// concurrent Decide calls and loses the macro calls of later ones).
func residualText(a *cel.Ast, det *cel.EvalDetails) (src string, err error) {
	defer func() {
		if r := recover(); r != nil {
			src, err = "", fmt.Errorf("failed to prune the filter: %v", r)
		}
	}()
	nat := a.NativeRep()
	pruned := interpreter.PruneAst(nat.Expr(), maps.Clone(nat.SourceInfo().MacroCalls()), det.State())
	return cel.ExprToString(pruned.Expr(), pruned.SourceInfo())
}

// logicalOperandsAreBools reports whether every operand of &&, ||, ! and
// the condition of ?: that partial evaluation computed is a bool.
func logicalOperandsAreBools(e ast.Expr, st interpreter.EvalState) bool {
	ok := true
	var walk func(e ast.Expr)
	walk = func(e ast.Expr) {
		if !ok || e == nil {
			return
		}
		switch e.Kind() {
		case ast.CallKind:
			c := e.AsCall()
			var check []ast.Expr
			switch c.FunctionName() {
			case operators.LogicalAnd, operators.LogicalOr, operators.LogicalNot:
				check = c.Args()
			case operators.Conditional:
				if len(c.Args()) > 0 {
					check = c.Args()[:1]
				}
			}
			for _, a := range check {
				if v, known := st.Value(a.ID()); known {
					if _, isBool := v.(types.Bool); !isBool && !types.IsUnknown(v) {
						ok = false
						return
					}
				}
			}
			if c.IsMemberFunction() {
				walk(c.Target())
			}
			for _, a := range c.Args() {
				walk(a)
			}
		case ast.SelectKind:
			walk(e.AsSelect().Operand())
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				walk(el)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				me := en.AsMapEntry()
				walk(me.Key())
				walk(me.Value())
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
	walk(e)
	return ok
}

// compiled returns the compiled residual for src, from the cache when
// possible; a miss parses and type-checks src in env.
func (rs *residualState) compiled(env *cel.Env, src string) (*compiledResidual, error) {
	rs.mu.Lock()
	cr := rs.cache[src]
	rs.mu.Unlock()
	if cr != nil {
		return cr, nil
	}
	res, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	prg, err := env.Program(res, cel.CostLimit(CostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	expr := res.NativeRep().Expr()
	cr = &compiledResidual{src: src, prg: prg, refs: collectRefs(expr)}
	if len(cr.refs) > 0 {
		cr.reason = "the filter still reads the caller's attributes in a way that cannot be reduced to constants"
	} else if pd, err := translateResidual(expr); err != nil {
		cr.reason = err.Error()
	} else {
		cr.pushdown = pd
		if cr.pushdown == nil {
			cr.pushdown = [][]wire.Filter{}
		}
	}
	rs.mu.Lock()
	if len(rs.cache) < maxResidualCache {
		rs.cache[src] = cr
	}
	rs.mu.Unlock()
	return cr, nil
}

// ruleFingerprint identifies what a rule does to the documents a
// subscription sees: path pattern, scope, scope field, filter and
// max_limit. Equal fingerprints mean equal read behaviour; a reload that
// changes any of them changes the fingerprint.
func ruleFingerprint(r *policyRule) string {
	h := sha256.New()
	for _, s := range []string{r.pattern, r.scope, r.scopeField, strconv.Itoa(r.maxLimit), filterSrc(r)} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func filterSrc(r *policyRule) string {
	if r.filter == nil {
		return ""
	}
	return "f" + r.filter.src
}

// CurrentRule reports whether fingerprint names a rule of p (see
// Decision.RuleFingerprint). A Feed planned under a rule that is no longer
// current serves an old policy.
func (p *Policy) CurrentRule(fingerprint string) bool {
	for _, r := range p.rules {
		if r.fingerprint == fingerprint {
			return true
		}
	}
	return false
}
