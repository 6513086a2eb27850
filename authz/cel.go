package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/firegate/firegate/wire"
)

// CostLimit bounds the CEL runtime cost of one evaluation of an allow or
// filter expression. An expression that exceeds it fails, and a failing
// expression denies; a hostile or careless policy therefore cannot hang a
// Feed on a large document. Ordinary expressions cost tens of units.
const CostLimit = 100_000

// Names of the CEL variables. `auth` and `path` are visible to allow and
// filter expressions; `doc`, `doc_id` and `doc_path` only to filters.
const (
	varAuth    = "auth"
	varPath    = "path"
	varDoc     = "doc"
	varDocID   = "doc_id"
	varDocPath = "doc_path"
)

// authAttrs are the keys of the `auth` map. Reading any other key of `auth`
// is a load error, so a typo in a policy fails start-up instead of denying
// silently forever.
var authAttrs = map[string]bool{
	"user_id":         true,
	"session_id":      true,
	"org_id":          true,
	"org_slug":        true,
	"org_role":        true,
	"org_permissions": true,
	"claims":          true,
}

type celEnvs struct {
	allow  *cel.Env
	filter *cel.Env
}

// envs builds the two CEL environments once per process; cel.Env is safe
// for concurrent use.
var envs = sync.OnceValues(func() (*celEnvs, error) {
	common := []cel.EnvOption{
		cel.Variable(varAuth, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varPath, cel.MapType(cel.StringType, cel.StringType)),
		cel.CrossTypeNumericComparisons(true),
	}
	allow, err := cel.NewEnv(common...)
	if err != nil {
		return nil, fmt.Errorf("failed to build the CEL allow environment: %w", err)
	}
	filter, err := allow.Extend(
		cel.Variable(varDoc, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varDocID, cel.StringType),
		cel.Variable(varDocPath, cel.StringType),
	)
	if err != nil {
		return nil, fmt.Errorf("failed to build the CEL filter environment: %w", err)
	}
	return &celEnvs{allow: allow, filter: filter}, nil
})

// attrRef is one statically resolved read of a principal attribute or a
// path variable: root ("auth" or "path") followed by the keys selected.
// auth with no keys means the whole principal.
type attrRef struct {
	root string
	keys []string
}

// name renders the reference in CEL syntax: auth.org_role,
// auth.claims["a.b"]. It is unambiguous.
func (a attrRef) name() string {
	var b strings.Builder
	b.WriteString(a.root)
	for _, k := range a.keys {
		if isCELIdent(k) {
			b.WriteByte('.')
			b.WriteString(k)
		} else {
			b.WriteByte('[')
			b.WriteString(strconv.Quote(k))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// hasPrefix reports whether p's keys are a prefix of a's (same root).
func (a attrRef) hasPrefix(p attrRef) bool {
	if a.root != p.root || len(p.keys) > len(a.keys) {
		return false
	}
	for i := range p.keys {
		if a.keys[i] != p.keys[i] {
			return false
		}
	}
	return true
}

func isCELIdent(s string) bool { return wire.IsIdentifier(s) }

// celProgram is one compiled allow or filter expression. Immutable.
type celProgram struct {
	src  string
	ast  *cel.Ast // checked
	prg  cel.Program
	refs []attrRef // minimal set: no element is prefixed by another
	res  residualState
}

// compileExpr compiles and type-checks src in env. The result must be a
// bool (or dyn, checked at run time). pathVars are the rule's template
// variables: reading path.x for another x is an error, as is reading an
// unknown auth attribute.
func compileExpr(env *cel.Env, src string, pathVars []string) (*celProgram, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	checked, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, errors.New(strings.TrimSpace(iss.Err().Error()))
	}
	out := checked.OutputType()
	if !out.IsExactType(cel.BoolType) && !out.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("expression must be a bool, not %s", out)
	}
	refs := collectRefs(checked.NativeRep().Expr())
	for _, r := range refs {
		if len(r.keys) == 0 {
			continue
		}
		switch r.root {
		case varAuth:
			if !authAttrs[r.keys[0]] {
				return nil, fmt.Errorf("auth has no attribute %q (known: claims, org_id, org_permissions, org_role, org_slug, session_id, user_id)", r.keys[0])
			}
		case varPath:
			if !containsStr(pathVars, r.keys[0]) {
				if len(pathVars) == 0 {
					return nil, fmt.Errorf("path.%s: the rule's path has no template variables", r.keys[0])
				}
				return nil, fmt.Errorf("path has no variable %q (the rule's path declares: %s)", r.keys[0], strings.Join(pathVars, ", "))
			}
		}
	}
	prg, err := env.Program(checked,
		cel.CostLimit(CostLimit),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, fmt.Errorf("failed to plan expression: %w", err)
	}
	return &celProgram{src: src, ast: checked, prg: prg, refs: refs}, nil
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// collectRefs finds every read of `auth` and `path` in a checked expression,
// each as its longest statically resolvable chain of field selections and
// constant-string indexes. A chain that cannot be followed further (a
// variable index, auth passed whole to a function) is recorded up to where it
// can: everything the expression learns through it is a function of the value
// at that prefix, so keying on that value is safe. Comprehension variables
// that shadow auth or path are not principal reads.
func collectRefs(e ast.Expr) []attrRef {
	var refs []attrRef
	walkRefs(e, nil, &refs)
	// Minimise: drop chains covered by a shorter one, and duplicates.
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].root != refs[j].root {
			return refs[i].root < refs[j].root
		}
		return lessRefKeys(refs[i].keys, refs[j].keys)
	})
	var out []attrRef
	for _, r := range refs {
		covered := false
		for _, o := range out {
			if r.hasPrefix(o) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, r)
		}
	}
	return out
}

func lessRefKeys(a, b []string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// chain resolves e as root ident followed by selects / constant indexes.
func refChain(e ast.Expr) (root string, keys []string, ok bool) {
	switch e.Kind() {
	case ast.IdentKind:
		return e.AsIdent(), nil, true
	case ast.SelectKind:
		s := e.AsSelect()
		root, keys, ok = refChain(s.Operand())
		if !ok {
			return "", nil, false
		}
		return root, append(keys, s.FieldName()), true
	case ast.CallKind:
		c := e.AsCall()
		if c.FunctionName() != operators.Index || c.IsMemberFunction() || len(c.Args()) != 2 {
			return "", nil, false
		}
		k := c.Args()[1]
		if k.Kind() != ast.LiteralKind {
			return "", nil, false
		}
		s, isStr := k.AsLiteral().(types.String)
		if !isStr {
			return "", nil, false
		}
		root, keys, ok = refChain(c.Args()[0])
		if !ok {
			return "", nil, false
		}
		return root, append(keys, string(s)), true
	}
	return "", nil, false
}

func walkRefs(e ast.Expr, shadowed []string, refs *[]attrRef) {
	if e == nil {
		return
	}
	if root, keys, ok := refChain(e); ok {
		if (root == varAuth || root == varPath) && !containsStr(shadowed, root) {
			*refs = append(*refs, attrRef{root: root, keys: keys})
		}
		return
	}
	switch e.Kind() {
	case ast.SelectKind:
		walkRefs(e.AsSelect().Operand(), shadowed, refs)
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			walkRefs(c.Target(), shadowed, refs)
		}
		for _, a := range c.Args() {
			walkRefs(a, shadowed, refs)
		}
	case ast.ListKind:
		for _, el := range e.AsList().Elements() {
			walkRefs(el, shadowed, refs)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			walkRefs(me.Key(), shadowed, refs)
			walkRefs(me.Value(), shadowed, refs)
		}
	case ast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			walkRefs(f.AsStructField().Value(), shadowed, refs)
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		walkRefs(c.IterRange(), shadowed, refs)
		walkRefs(c.AccuInit(), shadowed, refs)
		inner := append(append([]string(nil), shadowed...), c.IterVar(), c.AccuVar())
		if c.HasIterVar2() {
			inner = append(inner, c.IterVar2())
		}
		walkRefs(c.LoopCondition(), inner, refs)
		walkRefs(c.LoopStep(), inner, refs)
		walkRefs(c.Result(), inner, refs)
	}
}

// principalAuthMap is the native form of the `auth` variable for one principal.
func principalAuthMap(pr *Principal) map[string]any {
	perms := pr.OrgPermissions
	if perms == nil {
		perms = []string{}
	}
	claims := pr.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	return map[string]any{
		"user_id":         pr.UserID,
		"session_id":      pr.SessionID,
		"org_id":          pr.OrgID,
		"org_slug":        pr.OrgSlug,
		"org_role":        pr.OrgRole,
		"org_permissions": perms,
		"claims":          claims,
	}
}

// celVars is the activation of allow expressions and the per-Decision part of
// filter activations. The values are converted to CEL once, so evaluating a
// filter does not re-adapt the principal per document. Immutable.
type celVars struct {
	auth ref.Val
	path ref.Val
}

func newCELVars(adapter types.Adapter, auth map[string]any, pathVars map[string]string) *celVars {
	am := make(map[ref.Val]ref.Val, len(auth))
	for k, v := range auth {
		am[types.String(k)] = adapter.NativeToValue(v)
	}
	pm := make(map[ref.Val]ref.Val, len(pathVars))
	for k, v := range pathVars {
		pm[types.String(k)] = types.String(v)
	}
	return &celVars{auth: types.NewRefValMap(adapter, am), path: types.NewRefValMap(adapter, pm)}
}

func (v *celVars) ResolveName(name string) (any, bool) {
	switch name {
	case varAuth:
		return v.auth, true
	case varPath:
		return v.path, true
	}
	return nil, false
}

func (v *celVars) Parent() interpreter.Activation { return nil }

// celDocVars binds one document on top of a Decision's vars.
type celDocVars struct {
	base *celVars
	id   string
	path string
	data map[string]any
}

var celDocVarsPool = sync.Pool{New: func() any { return new(celDocVars) }}

func (d *celDocVars) ResolveName(name string) (any, bool) {
	switch name {
	case varDoc:
		return d.data, true
	case varDocID:
		return types.String(d.id), true
	case varDocPath:
		return types.String(d.path), true
	}
	return d.base.ResolveName(name)
}

func (d *celDocVars) Parent() interpreter.Activation { return nil }

// evalBool runs prg and reports whether it produced true. Anything else (false,
// a non-bool, an error, the cost limit) is false, with the error when there
// was one.
func evalBool(prg cel.Program, act interpreter.Activation) (bool, error) {
	out, _, err := prg.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("expression produced %s, not a bool", out.Type())
	}
	return bool(b), nil
}

// evalDoc evaluates a filter for one document; see evalBool.
func evalDoc(prg cel.Program, base *celVars, id, path string, data map[string]any) (bool, error) {
	act := celDocVarsPool.Get().(*celDocVars)
	act.base, act.id, act.path, act.data = base, id, path, data
	ok, err := evalBool(prg, act)
	*act = celDocVars{}
	celDocVarsPool.Put(act)
	return ok, err
}

// keyAttrs renders the values of refs for one principal canonically:
// `name=value` joined by ";", where name is the reference in CEL syntax and
// value a type-tagged encoding; a chain that breaks (a missing key, or a
// non-map on the way) is written `name!N`, N being the number of keys that
// resolved, because a break at different depths can evaluate differently
// (has() of a missing key is false, of a key under a missing map an error).
func computeKeyAttrs(refs []attrRef, auth map[string]any, pathVars map[string]string) string {
	if len(refs) == 0 {
		return ""
	}
	var b []byte
	for i, r := range refs {
		if i > 0 {
			b = append(b, ';')
		}
		b = append(b, r.name()...)
		var cur any
		switch r.root {
		case varAuth:
			cur = auth
		case varPath:
			m := make(map[string]any, len(pathVars))
			for k, v := range pathVars {
				m[k] = v
			}
			cur = m
		}
		depth := 0
		for _, k := range r.keys {
			m, ok := cur.(map[string]any)
			if !ok {
				break
			}
			v, ok := m[k]
			if !ok {
				break
			}
			cur = v
			depth++
		}
		if depth < len(r.keys) {
			b = append(b, '!')
			b = strconv.AppendInt(b, int64(depth), 10)
			continue
		}
		b = append(b, '=')
		b = appendAttrValue(b, cur)
	}
	return string(b)
}

// appendAttrValue appends a type-tagged, unambiguous encoding of a decoded
// JSON-like value: strings quoted, integers `i…`, unsigned `u…`, doubles
// `d…`, maps with sorted keys.
func appendAttrValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case string:
		return strconv.AppendQuote(b, x)
	case float64:
		return appendAttrFloat(b, x)
	case float32:
		return appendAttrFloat(b, float64(x))
	case int:
		return strconv.AppendInt(append(b, 'i'), int64(x), 10)
	case int32:
		return strconv.AppendInt(append(b, 'i'), int64(x), 10)
	case int64:
		return strconv.AppendInt(append(b, 'i'), x, 10)
	case uint:
		return strconv.AppendUint(append(b, 'u'), uint64(x), 10)
	case uint32:
		return strconv.AppendUint(append(b, 'u'), uint64(x), 10)
	case uint64:
		return strconv.AppendUint(append(b, 'u'), x, 10)
	case json.Number:
		return append(append(b, 'n'), x...)
	case []string:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, e)
		}
		return append(b, ']')
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAttrValue(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, k)
			b = append(b, ':')
			b = appendAttrValue(b, x[k])
		}
		return append(b, '}')
	default:
		return strconv.AppendQuote(b, fmt.Sprintf("%T:%v", v, v))
	}
}

func appendAttrFloat(b []byte, f float64) []byte {
	b = append(b, 'd')
	if math.IsNaN(f) {
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
