package devmode

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"

	"cloud.google.com/go/firestore"

	"github.com/firegate/firegate/authz"
)

var seededCollections = []string{"tasks", "invoices", "notes", "projects/p1/tasks"}

// readAll returns every document of the seeded collections by path.
func readAll(t *testing.T, c *firestore.Client) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, col := range seededCollections {
		docs, err := c.Collection(col).Documents(context.Background()).GetAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			out[col+"/"+d.Ref.ID] = d.Data()
		}
	}
	return out
}

func TestSeedIdempotent(t *testing.T) {
	c := testClient(t)
	ctx := context.Background()
	if err := Seed(ctx, c); err != nil {
		t.Fatal(err)
	}
	first := readAll(t, c)
	// An edit to a seeded document is undone by the next Seed.
	if _, err := c.Doc("tasks/acme-1").Update(ctx, []firestore.Update{{Path: "status", Value: "done"}}); err != nil {
		t.Fatal(err)
	}
	if err := Seed(ctx, c); err != nil {
		t.Fatal(err)
	}
	second := readAll(t, c)
	if len(first) != len(seedDocs()) || len(second) != len(first) {
		t.Fatalf("doc counts: first %d, second %d, want %d", len(first), len(second), len(seedDocs()))
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second Seed changed the data")
	}

	// Shape of the demo data.
	perOrg := map[string]map[string]int{}
	notes := 0
	for path, d := range first {
		col := path[:strings.LastIndex(path, "/")]
		switch col {
		case "tasks", "invoices", "projects/p1/tasks":
			org, _ := d["org_id"].(string)
			if perOrg[org] == nil {
				perOrg[org] = map[string]int{}
			}
			perOrg[org][col]++
		case "notes":
			if _, ok := demoUser(d["owner_id"].(string)); !ok {
				t.Errorf("%s: owner_id %v is not a demo user", path, d["owner_id"])
			}
			notes++
		}
		if col == "tasks" {
			for _, f := range []string{"org_id", "title", "status", "visibility", "created_at", "assignee"} {
				if _, ok := d[f]; !ok {
					t.Errorf("%s lacks %s", path, f)
				}
			}
			if s := d["status"]; s != "open" && s != "done" {
				t.Errorf("%s: status %v", path, s)
			}
			if v := d["visibility"]; v != "public" && v != "private" {
				t.Errorf("%s: visibility %v", path, v)
			}
		}
	}
	for _, org := range []string{OrgAcme, OrgGlobex} {
		if got := perOrg[org]; got["tasks"] != 6 || got["invoices"] != 2 || got["projects/p1/tasks"] != 2 {
			t.Errorf("%s: %v", org, got)
		}
	}
	if len(perOrg) != 2 || notes != 2*len(Users()) {
		t.Errorf("orgs seeded: %v, notes %d", perOrg, notes)
	}
}

func TestSeedErrors(t *testing.T) {
	if err := Seed(context.Background(), nil); err == nil {
		t.Error("Seed(nil) succeeded")
	}
	c := testClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Seed(ctx, c); err == nil || !strings.Contains(err.Error(), "failed to seed") {
		t.Errorf("Seed with a cancelled context: %v", err)
	}
}

func TestUsers(t *testing.T) {
	users := Users()
	ids := map[string]DemoUser{}
	for _, u := range users {
		ids[u.ID] = u
	}
	member := func(user, org, role string, perms ...string) {
		t.Helper()
		m, ok := ids[user].Membership(org)
		if !ok || m.Role != role || !reflect.DeepEqual(append([]string{}, m.Permissions...), append([]string{}, perms...)) {
			t.Errorf("%s in %s = %+v, %v; want %s %v", user, org, m, ok, role, perms)
		}
	}
	member("user_alice", OrgAcme, RoleAdmin, PermInvoicesRead, PermInvoicesWrite)
	member("user_bob", OrgAcme, RoleMember)
	member("user_carol", OrgGlobex, RoleAdmin, PermInvoicesRead, PermInvoicesWrite)
	member("user_dave", OrgAcme, RoleMember)
	member("user_dave", OrgGlobex, RoleMember, PermInvoicesRead)
	if len(ids["user_erin"].Memberships) != 0 || len(users) != 5 {
		t.Errorf("users = %+v", users)
	}
	// Callers get a copy.
	users[0].Memberships[0].Role = "org:hacked"
	if Users()[0].Memberships[0].Role != RoleAdmin {
		t.Error("Users shares its slices")
	}
	if got := orgMembers(OrgAcme); !reflect.DeepEqual(got, []string{"user_alice", "user_bob", "user_dave"}) {
		t.Errorf("acme members %v", got)
	}
	if orgSlug(OrgGlobex) != "globex" || orgSlug("org_x") != "x" || orgSlug("plain") != "plain" {
		t.Error("orgSlug")
	}
}

// TestDefaultPolicy compiles the embedded policy with authz and checks
// the demo's story on the seeded documents: who may subscribe to what, and
// who sees private tasks.
func TestDefaultPolicy(t *testing.T) {
	p, err := authz.ParsePolicy(DefaultPolicy())
	if err != nil {
		t.Fatalf("embedded policy does not compile: %v", err)
	}
	cols := p.Collections()
	sort.Strings(cols)
	if want := []string{"invoices", "notes", "projects/{project}/tasks", "tasks"}; !reflect.DeepEqual(cols, want) {
		t.Errorf("collections %v, want %v", cols, want)
	}
	principal := func(user, org string) *authz.Principal {
		pr := &authz.Principal{UserID: user, SessionID: "sess_1", Claims: map[string]any{}}
		if u, ok := demoUser(user); ok {
			if m, ok := u.Membership(org); ok {
				pr.OrgID, pr.OrgSlug, pr.OrgRole, pr.OrgPermissions = m.OrgID, m.OrgSlug, m.Role, m.Permissions
			}
		}
		return pr
	}
	allowed := []struct {
		user, org, collection string
		want                  bool
		scopeField, scopeVal  string
	}{
		{"user_alice", OrgAcme, "invoices", true, "org_id", OrgAcme},
		{"user_bob", OrgAcme, "invoices", false, "", ""},
		{"user_dave", OrgAcme, "invoices", false, "", ""},
		{"user_dave", OrgGlobex, "invoices", true, "org_id", OrgGlobex},
		{"user_bob", OrgAcme, "tasks", true, "org_id", OrgAcme},
		{"user_erin", "", "tasks", false, "", ""},
		{"user_erin", "", "notes", true, "owner_id", "user_erin"},
		{"user_carol", OrgGlobex, "projects/p1/tasks", true, "org_id", OrgGlobex},
		{"user_alice", OrgAcme, "secrets", false, "", ""},
	}
	for _, tt := range allowed {
		d, err := p.Decide(principal(tt.user, tt.org), tt.collection, nil)
		if tt.want != (err == nil) {
			t.Errorf("%s@%s %s: err %v, want allowed=%v", tt.user, tt.org, tt.collection, err, tt.want)
			continue
		}
		if err != nil {
			var de *authz.DenyError
			if !errors.As(err, &de) || de.Code != authz.DenyForbidden {
				t.Errorf("%s@%s %s: %v, want forbidden", tt.user, tt.org, tt.collection, err)
			}
			continue
		}
		if d.ScopeField != tt.scopeField || d.ScopeValue != tt.scopeVal {
			t.Errorf("%s@%s %s: scope %s=%s", tt.user, tt.org, tt.collection, d.ScopeField, d.ScopeValue)
		}
	}
	// Private tasks: admins see them, members do not.
	visible := func(user, org string) int {
		d, err := p.Decide(principal(user, org), "tasks", nil)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, sd := range seedDocs() {
			if strings.HasPrefix(sd.path, "tasks/") && sd.data["org_id"] == org {
				if d.Filter == nil || d.Filter(sd.path[len("tasks/"):], sd.path, sd.data) {
					n++
				}
			}
		}
		return n
	}
	if a, b := visible("user_alice", OrgAcme), visible("user_bob", OrgAcme); a != 6 || b != 4 {
		t.Errorf("acme tasks visible to alice %d (want 6), bob %d (want 4)", a, b)
	}
}

func TestPolicyCollections(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"not yaml", "collections: [", "failed to parse"},
		{"no path", "collections:\n  - scope: org\n", "no path"},
		{"bad scope", "collections:\n  - path: x\n    scope: team\n", "want org or user"},
	}
	for _, tt := range tests {
		if _, err := policyCollections([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.wantErr)
		}
	}
	got, err := policyCollections([]byte("collections:\n  - path: a/{x}/b/{y}/c\n    scope: user\n"))
	if err != nil || len(got) != 1 || got[0].Example != "a/p1/b/p1/c" || got[0].ScopeField != "user_id" {
		t.Errorf("template: %+v %v", got, err)
	}
	// DefaultPolicy returns a copy.
	b := DefaultPolicy()
	b[0] = '!'
	if DefaultPolicy()[0] == '!' {
		t.Error("DefaultPolicy shares its bytes")
	}
}
