package authz

import (
	"strings"
	"testing"
)

// TestReservedNamespacePolicyLoad: a rule naming Firegate's own
// collections literally does not load, with an error that says why.
func TestReservedNamespacePolicyLoad(t *testing.T) {
	for _, path := range []string{
		"_firegate_writes",
		"_firegate_revocations",
		"_firegate",
		"_firegateX",
		"projects/{p}/_firegate_writes",
		"_firegate/{d}/tasks",
		"projects/_firegate_x/tasks",
	} {
		t.Run(path, func(t *testing.T) {
			src := "collections:\n  - path: \"" + path + "\"\n    scope: org\n"
			_, err := ParsePolicy([]byte(src))
			if err == nil {
				t.Fatalf("policy with path %q loaded", path)
			}
			if !strings.Contains(err.Error(), "reserved for Firegate") || !strings.Contains(err.Error(), "collections[0]") {
				t.Fatalf("error %q does not name the rule and the reserved namespace", err)
			}
		})
	}
	// Ids that merely contain the prefix elsewhere are ordinary.
	polMustParse(t, "collections:\n  - path: my_firegate_tasks\n    scope: org\n  - path: firegate\n    scope: org\n")
}

// TestReservedNamespaceUnreachable: wildcard rules that would match
// Firegate's own collections refuse them for subscribe and write, with
// exactly the refusal of a collection the policy does not list.
func TestReservedNamespaceUnreachable(t *testing.T) {
	p := polMustParse(t, `
collections:
  - path: "{c}"
    scope: org
    create: "true"
    update: "true"
    delete: "true"
  - path: "{c}/{d}/{e}"
    scope: org
    create: "true"
  - path: "x/{d}/{e}/{f}/{g}"
    scope: user
`)
	pol := polMustParse(t, "collections:\n  - path: tasks\n    scope: org\n")
	member := polV1("user_m", "org_1", "org:member")
	noOrg := polV1("user_n", "", "")
	_, wantErr := pol.Decide(member, "nowhere", nil)
	_, wantNoOrg := pol.Decide(noOrg, "nowhere", nil)
	_, wantWrite := pol.WriteTarget(member, "nowhere/x")
	for _, coll := range []string{
		"_firegate_writes", "_firegate_revocations", "_firegate", "_firegate_future",
		"_firegate_writes/r1/sub", "tasks/_firegate/sub", "x/a/_firegate_revocations/b/c",
	} {
		if _, err := p.Decide(member, coll, nil); err == nil || err.Error() != wantErr.Error() {
			t.Errorf("Decide(%s) = %v, want %v", coll, err, wantErr)
		}
		if _, err := p.Decide(noOrg, coll, nil); err == nil || err.Error() != wantNoOrg.Error() {
			t.Errorf("org-less Decide(%s) = %v, want %v", coll, err, wantNoOrg)
		}
		if _, err := p.WriteTarget(member, coll+"/doc1"); err == nil || err.Error() != wantWrite.Error() {
			t.Errorf("WriteTarget(%s/doc1) = %v, want %v", coll, err, wantWrite)
		}
		if ex := p.Explain(map[string]any{"sub": "user_m", "sid": "s", "org_id": "org_1", "org_role": "org:member"}, coll, nil); ex.Decision != "deny" || ex.Rule != "" {
			t.Errorf("Explain(%s) = %+v, want deny without a rule", coll, ex)
		}
	}
	// The wildcard rules still work for everything else; a document id
	// with the prefix inside an ordinary collection is an ordinary id.
	if _, err := p.Decide(member, "tasks", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteTarget(member, "tasks/_firegate_like_id"); err != nil {
		t.Fatal(err)
	}
}
