package devmode

import (
	_ "embed"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed policy.yaml
var defaultPolicy []byte

// DefaultPolicy returns the embedded dev policy (devmode/policy.yaml), a
// fresh copy on every call:
//
//   - tasks: org scope; private tasks only for org admins
//     (filter "doc.visibility != 'private' || auth.org_role == 'org:admin'");
//     members create and edit non-private tasks, only admins delete
//   - invoices: org scope; allow "'org:invoices:read' in auth.org_permissions";
//     create and update need org:invoices:write, delete org:admin
//   - notes: user scope, scope_field owner_id; the owner writes freely
//   - projects/{project}/tasks: org scope; only admins delete
func DefaultPolicy() []byte {
	return append([]byte(nil), defaultPolicy...)
}

// CollectionInfo describes one collection of the dev policy for the demo
// page. Example is Path with every {wildcard} segment replaced by the id
// Seed uses ("p1"), i.e. a collection one can subscribe to.
type CollectionInfo struct {
	Path       string `json:"path"`
	Example    string `json:"example"`
	Scope      string `json:"scope"`
	ScopeField string `json:"scope_field"`
}

// exampleSegment replaces wildcard segments in CollectionInfo.Example.
const exampleSegment = "p1"

// policyCollections lists the collections of a policy file: path, scope
// and scope field (defaulted as the policy does: org_id for org scope,
// user_id for user scope). It reads only those keys; the authz package
// is what compiles and enforces a policy.
func policyCollections(policy []byte) ([]CollectionInfo, error) {
	var doc struct {
		Collections []struct {
			Path       string `yaml:"path"`
			Scope      string `yaml:"scope"`
			ScopeField string `yaml:"scope_field"`
		} `yaml:"collections"`
	}
	if err := yaml.Unmarshal(policy, &doc); err != nil {
		return nil, fmt.Errorf("failed to parse policy: %w", err)
	}
	out := make([]CollectionInfo, 0, len(doc.Collections))
	for i, c := range doc.Collections {
		if c.Path == "" {
			return nil, fmt.Errorf("failed to parse policy: collection %d has no path", i)
		}
		info := CollectionInfo{Path: c.Path, Scope: c.Scope, ScopeField: c.ScopeField}
		var defaultField string
		switch c.Scope {
		case "org":
			defaultField = "org_id"
		case "user":
			defaultField = "user_id"
		default:
			return nil, fmt.Errorf("failed to parse policy: collection %q has scope %q, want org or user", c.Path, c.Scope)
		}
		if info.ScopeField == "" {
			info.ScopeField = defaultField
		}
		segs := strings.Split(c.Path, "/")
		for j, s := range segs {
			if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
				segs[j] = exampleSegment
			}
		}
		info.Example = strings.Join(segs, "/")
		out = append(out, info)
	}
	return out, nil
}
