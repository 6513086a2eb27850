package devmode

import "slices"

// Demo organizations seeded by Seed.
const (
	OrgAcme       = "org_acme"
	OrgAcmeSlug   = "acme"
	OrgGlobex     = "org_globex"
	OrgGlobexSlug = "globex"
)

// Roles and permissions used by the demo users.
const (
	RoleAdmin          = "org:admin"
	RoleMember         = "org:member"
	PermInvoicesRead   = "org:invoices:read"
	PermInvoicesWrite  = "org:invoices:write"
	defaultUnknownRole = RoleMember
)

// Membership is a demo user's membership in one organization.
type Membership struct {
	OrgID       string   `json:"org_id"`
	OrgSlug     string   `json:"org_slug"`
	Role        string   `json:"role"`
	Permissions []string `json:"permissions"`
}

// DemoUser is one of the users the demo page offers. Users with several
// memberships demonstrate the org switch; a user without any demonstrates
// a session with no active org.
type DemoUser struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Memberships []Membership `json:"memberships"`
}

// Membership returns u's membership in orgID, if any.
func (u DemoUser) Membership(orgID string) (Membership, bool) {
	for _, m := range u.Memberships {
		if m.OrgID == orgID {
			return m, true
		}
	}
	return Membership{}, false
}

// Users returns the demo users, a fresh copy on every call (callers may
// modify it):
//
//   - user_alice: admin of acme, with org:invoices:read
//   - user_bob: member of acme
//   - user_carol: admin of globex, with org:invoices:read
//   - user_dave: member of acme and of globex (with org:invoices:read
//     there) — the org switch demo
//   - user_erin: no organization
func Users() []DemoUser {
	return []DemoUser{
		{ID: "user_alice", Name: "Alice (acme admin)", Memberships: []Membership{
			{OrgID: OrgAcme, OrgSlug: OrgAcmeSlug, Role: RoleAdmin, Permissions: []string{PermInvoicesRead, PermInvoicesWrite}},
		}},
		{ID: "user_bob", Name: "Bob (acme member)", Memberships: []Membership{
			{OrgID: OrgAcme, OrgSlug: OrgAcmeSlug, Role: RoleMember, Permissions: []string{}},
		}},
		{ID: "user_carol", Name: "Carol (globex admin)", Memberships: []Membership{
			{OrgID: OrgGlobex, OrgSlug: OrgGlobexSlug, Role: RoleAdmin, Permissions: []string{PermInvoicesRead, PermInvoicesWrite}},
		}},
		{ID: "user_dave", Name: "Dave (acme + globex member)", Memberships: []Membership{
			{OrgID: OrgAcme, OrgSlug: OrgAcmeSlug, Role: RoleMember, Permissions: []string{}},
			{OrgID: OrgGlobex, OrgSlug: OrgGlobexSlug, Role: RoleMember, Permissions: []string{PermInvoicesRead}},
		}},
		{ID: "user_erin", Name: "Erin (no organization)", Memberships: []Membership{}},
	}
}

// demoUser returns the demo user with id, if any.
func demoUser(id string) (DemoUser, bool) {
	for _, u := range Users() {
		if u.ID == id {
			return u, true
		}
	}
	return DemoUser{}, false
}

// orgSlug returns the slug of a demo org, or for any other org id the id
// without its "org_" prefix.
func orgSlug(orgID string) string {
	for _, u := range Users() {
		if m, ok := u.Membership(orgID); ok {
			return m.OrgSlug
		}
	}
	if len(orgID) > 4 && orgID[:4] == "org_" {
		return orgID[4:]
	}
	return orgID
}

// orgMembers returns the ids of the demo users who belong to orgID, sorted.
func orgMembers(orgID string) []string {
	var ids []string
	for _, u := range Users() {
		if _, ok := u.Membership(orgID); ok {
			ids = append(ids, u.ID)
		}
	}
	slices.Sort(ids)
	return ids
}
