package authz

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Explanation says what the policy decides for one caller, collection and
// (optionally) document, with the operator-facing reason. It is what
// `firegate policy explain` prints.
type Explanation struct {
	Collection string `json:"collection"`
	Rule       string `json:"rule,omitempty"`
	Decision   string `json:"decision"` // "allow" | "deny"
	Reason     string `json:"reason"`
	// FilterResult is the filter's verdict on the document; nil when no
	// document was given or the subscription itself is denied.
	FilterResult *bool  `json:"filter_result,omitempty"`
	KeyAttrs     string `json:"key_attrs,omitempty"`
	// Residual is the filter with the caller known (over doc only);
	// FilterRuns says where it runs: "none", "firestore" (pushed down) or
	// "gateway" (then GatewayReason says why, and a limit is refused).
	Residual      string `json:"residual,omitempty"`
	FilterRuns    string `json:"filter_runs,omitempty"`
	GatewayReason string `json:"gateway_reason,omitempty"`
}

// ExplainDocIDKey is a key of Explain's document that, when it holds a
// string, is taken as the document id (doc_id; doc_path is then
// collection/id) and removed from the data. Firestore reserves field names
// of the form __…__, so it cannot clash with a real field.
const ExplainDocIDKey = "__id__"

// Explain evaluates the policy for the principal built from claims (raw JWT
// claims, v1 or v2) subscribing to collection with no client filters, and,
// when doc is not nil, the rule's filter on doc. Unlike Decide's client
// messages, the Reason is precise (which step denied and why).
func (p *Policy) Explain(claims map[string]any, collection string, doc map[string]any) Explanation {
	claims, _ = normalizeClaimNumbers(claims, false).(map[string]any)
	pr := PrincipalFromClaims(claims)
	ex := Explanation{Collection: collection, Decision: "deny"}
	d, r, den := p.decide(pr, collection, nil)
	if r != nil {
		ex.Rule = r.pattern
	}
	if den != nil {
		ex.Reason = fmt.Sprintf("%s (client sees %s: %q)", den.detail, den.err.Code, den.err.Msg)
		return ex
	}
	ex.KeyAttrs = d.KeyAttrs
	ex.Residual = d.Residual
	switch d.Placement {
	case FilterPushedDown:
		ex.FilterRuns = "firestore"
	case FilterGateway:
		ex.FilterRuns = "gateway"
		ex.GatewayReason = d.GatewayReason
	default:
		ex.FilterRuns = "none"
	}
	reason := fmt.Sprintf("rule %q allows it; the gateway confines the query to %s == %q", d.Rule, d.ScopeField, d.ScopeValue)
	if doc == nil {
		ex.Decision = "allow"
		ex.Reason = reason
		return ex
	}
	data, _ := normalizeClaimNumbers(doc, true).(map[string]any)
	var id, path string
	if s, ok := data[ExplainDocIDKey].(string); ok {
		id, path = s, collection+"/"+s
		cp := make(map[string]any, len(data))
		for k, v := range data {
			if k != ExplainDocIDKey {
				cp[k] = v
			}
		}
		data = cp
	}
	var filterErr error
	visible := true
	if d.eval != nil {
		visible, filterErr = d.eval(id, path, data)
	}
	ex.FilterResult = &visible
	scopeVal, present := lookupDocField(data, d.ScopeField)
	switch {
	case !present || scopeVal != d.ScopeValue:
		// The gateway's query confines the scope; the filter never sees it.
		ex.Reason = fmt.Sprintf("%s, and the document's %s is %s, so the query never returns it", reason, d.ScopeField, describeValue(scopeVal, present))
	case d.eval == nil:
		ex.Decision = "allow"
		ex.Reason = reason + "; the rule has no filter, so the document is visible"
	case filterErr != nil:
		ex.Reason = fmt.Sprintf("%s, but the filter failed on the document (which hides it): %v", reason, filterErr)
	case !visible:
		ex.Reason = reason + ", but the filter is false for the document: it is hidden"
	default:
		ex.Decision = "allow"
		ex.Reason = reason + "; the filter is true for the document: it is visible"
	}
	return ex
}

// lookupDocField follows a dotted field path of identifiers through maps.
func lookupDocField(data map[string]any, field string) (any, bool) {
	var cur any = data
	for _, seg := range strings.Split(field, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func describeValue(v any, ok bool) string {
	if !ok {
		return "missing"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// normalizeClaimNumbers turns json.Number into float64 (as a plain JSON
// decode of claims gives) recursively, or, with ints set, integral numbers
// into int64 (as Firestore documents hold them), so that claims and
// documents decoded with UseNumber evaluate in CEL as they would live.
func normalizeClaimNumbers(v any, ints bool) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			if ints {
				return i
			}
			return float64(i)
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return string(x)
		}
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeClaimNumbers(e, ints)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeClaimNumbers(e, ints)
		}
		return out
	}
	return v
}

// PrincipalFromClaims builds a Principal from raw, already verified JWT
// claims of a Clerk session token, in either format. Version 2 (`"v":2`
// with an `o` object holding an id) takes the org from `o`: id, slg, rol
// (prefixed "org:", so "admin" becomes "org:admin"), and permissions decoded
// from `fea`, `o.per` and `o.fpm` exactly as clerk-sdk-go/v2/jwt does (least
// significant bit = first entry of per). Otherwise the v1 claims org_id,
// org_slug, org_role and org_permissions apply. Claims is the map itself.
func PrincipalFromClaims(claims map[string]any) *Principal {
	pr := &Principal{Claims: claims}
	pr.UserID = pfcString(claims, "sub")
	pr.SessionID = pfcString(claims, "sid")
	pr.Azp = pfcString(claims, "azp")
	if t, ok := pfcTime(claims["iat"]); ok {
		pr.IssuedAt = t
	}
	if t, ok := pfcTime(claims["exp"]); ok {
		pr.ExpiresAt = t
	}
	v, _ := pfcNumber(claims["v"])
	o, _ := claims["o"].(map[string]any)
	if v == 2 && pfcString(o, "id") != "" {
		pr.OrgID = pfcString(o, "id")
		pr.OrgSlug = pfcString(o, "slg")
		if rol := pfcString(o, "rol"); rol != "" {
			pr.OrgRole = "org:" + rol
		}
		pr.OrgPermissions = v2OrgPermissions(pfcString(claims, "fea"), pfcString(o, "per"), pfcString(o, "fpm"))
		return pr
	}
	pr.OrgID = pfcString(claims, "org_id")
	pr.OrgSlug = pfcString(claims, "org_slug")
	pr.OrgRole = pfcString(claims, "org_role")
	if list, ok := claims["org_permissions"].([]any); ok {
		for _, e := range list {
			if s, ok := e.(string); ok {
				pr.OrgPermissions = append(pr.OrgPermissions, s)
			}
		}
	}
	return pr
}

// v2OrgPermissions mirrors extractOrganizationPermissions of
// clerk-sdk-go/v2/jwt: for the i-th feature "scopes:name" whose scopes
// include "o", the i-th entry of fpm is a bit mask over per (least
// significant bit first); a set bit j grants "org:name:per[j]".
func v2OrgPermissions(fea, per, fpm string) []string {
	permissions := strings.Split(per, ",")
	mappings := strings.Split(fpm, ",")
	out := make([]string, 0)
	for i, feature := range strings.Split(fea, ",") {
		scopeAndFeature := strings.Split(feature, ":")
		if len(scopeAndFeature) < 2 {
			continue
		}
		if !strings.Contains(scopeAndFeature[0], "o") {
			continue
		}
		if i >= len(mappings) {
			continue
		}
		mapping, err := strconv.Atoi(mappings[i])
		if err != nil {
			continue
		}
		var bits []int
		for n := mapping; n > 0; n >>= 1 {
			bits = append(bits, n&1)
		}
		if len(bits) > len(permissions) {
			continue
		}
		for j, bit := range bits {
			if bit == 0 {
				continue
			}
			out = append(out, "org:"+scopeAndFeature[1]+":"+permissions[j])
		}
	}
	return out
}

func pfcString(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func pfcNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

func pfcTime(v any) (time.Time, bool) {
	f, ok := pfcNumber(v)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}
