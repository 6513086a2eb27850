package devmode

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/firegate/firegate/authz"
)

// Limits of /dev/token parameters.
const (
	maxIDLen         = 128 // user and org ids
	maxRoleLen       = 64
	maxPermissionLen = 128
	maxPermissions   = 64
)

// tokenRequest is a parsed /dev/token query.
type tokenRequest struct {
	User        string
	Org         string        // "" → no active org
	Role        string        // "" → the default for (User, Org)
	Permissions []string      // meaningful when PermsSet
	PermsSet    bool          // the query had a permissions parameter
	TTL         time.Duration // in [MinTokenTTL, MaxTokenTTL]
	V2          bool
}

// tokenResponse is the JSON of /dev/token.
type tokenResponse struct {
	Token          string   `json:"token"`
	ExpiresAt      string   `json:"expires_at"`
	UserID         string   `json:"user_id"`
	OrgID          string   `json:"org_id"`
	OrgSlug        string   `json:"org_slug,omitempty"`
	OrgRole        string   `json:"org_role,omitempty"`
	OrgPermissions []string `json:"org_permissions,omitempty"`
	SessionID      string   `json:"session_id"`
	V2             bool     `json:"v2"`
}

// parseTokenQuery validates a /dev/token query:
//
//   - user (required): any id, 1..128 bytes of UTF-8 without control
//     characters or spaces;
//   - org: same rules; empty or absent means no active org;
//   - role: org:<name> (letters, digits, _ - :); needs org;
//   - permissions: comma list (blank items dropped, at most 64, no
//     spaces); needs org; with v2 each must read org:<feature>:<perm>;
//   - ttl: a Go duration in [1s, 24h], default 60s;
//   - v2: a strconv.ParseBool value, default false.
//
// A parameter given twice, or any other parameter, is an error.
func parseTokenQuery(q url.Values) (tokenRequest, error) {
	var req tokenRequest
	for k, v := range q {
		switch k {
		case "user", "org", "role", "permissions", "ttl", "v2":
		default:
			return req, fmt.Errorf("unknown parameter %q (want user, org, role, permissions, ttl, v2)", k)
		}
		if len(v) != 1 {
			return req, fmt.Errorf("parameter %q given %d times", k, len(v))
		}
	}
	req.User = q.Get("user")
	if req.User == "" {
		return req, errors.New("user is required")
	}
	if err := checkID(req.User); err != nil {
		return req, fmt.Errorf("user: %w", err)
	}
	req.Org = q.Get("org")
	if req.Org != "" {
		if err := checkID(req.Org); err != nil {
			return req, fmt.Errorf("org: %w", err)
		}
	}
	req.Role = q.Get("role")
	if req.Role != "" {
		if req.Org == "" {
			return req, errors.New("role needs an org")
		}
		if err := checkRole(req.Role); err != nil {
			return req, err
		}
	}
	if s := q.Get("v2"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return req, fmt.Errorf("v2: %q is not a boolean", s)
		}
		req.V2 = b
	}
	if _, ok := q["permissions"]; ok {
		req.PermsSet = true
		perms, err := parsePermissions(q.Get("permissions"), req.V2)
		if err != nil {
			return req, err
		}
		if len(perms) > 0 && req.Org == "" {
			return req, errors.New("permissions need an org")
		}
		req.Permissions = perms
	}
	req.TTL = DefaultTokenTTL
	if s := q.Get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return req, fmt.Errorf("ttl: %q is not a Go duration such as 60s or 5m", s)
		}
		if d < MinTokenTTL || d > MaxTokenTTL {
			return req, fmt.Errorf("ttl: %s is out of range [%s, %s]", d, MinTokenTTL, MaxTokenTTL)
		}
		req.TTL = d
	}
	return req, nil
}

// checkID accepts 1..maxIDLen bytes of valid UTF-8 without control or
// space characters.
func checkID(s string) error {
	if s == "" || len(s) > maxIDLen {
		return fmt.Errorf("must be 1 to %d bytes long", maxIDLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("must be valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return errors.New("must not contain spaces or control characters")
		}
	}
	return nil
}

// checkRole accepts org:<name> where name is letters, digits, _ - and :.
func checkRole(role string) error {
	name, ok := strings.CutPrefix(role, "org:")
	if !ok || name == "" || len(role) > maxRoleLen {
		return fmt.Errorf("role must read org:<name> (at most %d bytes), e.g. org:admin", maxRoleLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == ':') {
			return fmt.Errorf("role %q: after org: only letters, digits, _, - and : are allowed", role)
		}
	}
	return nil
}

// parsePermissions splits a comma list; blank items are dropped.
func parsePermissions(s string, v2 bool) ([]string, error) {
	perms := []string{}
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if len(perms) == maxPermissions {
			return nil, fmt.Errorf("permissions: at most %d", maxPermissions)
		}
		if len(p) > maxPermissionLen {
			return nil, fmt.Errorf("permissions: %q is longer than %d bytes", p[:16]+"...", maxPermissionLen)
		}
		if err := checkID(p); err != nil {
			return nil, fmt.Errorf("permissions: %q: %w", p, err)
		}
		if v2 {
			parts := strings.Split(p, ":")
			if len(parts) != 3 || parts[0] != "org" || parts[1] == "" || parts[2] == "" {
				return nil, fmt.Errorf("permissions: %q: v2 tokens need org:<feature>:<permission>", p)
			}
		}
		perms = append(perms, p)
	}
	return perms, nil
}

// resolve fills in the defaults that depend on the demo users: a demo
// user's role and permissions in a demo org (else org:member and no
// permissions), and the org slug.
func (req tokenRequest) resolve() authz.MintOptions {
	o := authz.MintOptions{UserID: req.User, OrgID: req.Org, V2: req.V2, TTL: req.TTL}
	if req.Org == "" {
		return o
	}
	o.OrgSlug = orgSlug(req.Org)
	var m Membership
	var member bool
	if u, ok := demoUser(req.User); ok {
		m, member = u.Membership(req.Org)
	}
	o.OrgRole = req.Role
	if o.OrgRole == "" {
		o.OrgRole = defaultUnknownRole
		if member {
			o.OrgRole = m.Role
		}
	}
	switch {
	case req.PermsSet:
		o.OrgPermissions = req.Permissions
	case member:
		o.OrgPermissions = append([]string{}, m.Permissions...)
	default:
		o.OrgPermissions = []string{}
	}
	return o
}

// serveToken answers GET /dev/token: a token minted by the dev issuer.
func (h *DevHandler) serveToken(w http.ResponseWriter, r *http.Request) {
	req, err := parseTokenQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	o := req.resolve()
	// iat is whole seconds, as in the token, so expires_at equals exp.
	iat := h.now().Truncate(time.Second)
	o.IssuedAt = iat
	o.SessionID = h.sessionID(o.UserID)
	o.Azp = h.cfg.Azp
	tok, err := h.cfg.Issuer.Mint(o)
	if err != nil {
		h.log.Error("dev token: mint failed", "user", o.UserID, "org", o.OrgID, "err", err)
		writeError(w, http.StatusInternalServerError, "failed to mint a token")
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		Token:          tok,
		ExpiresAt:      iat.Add(req.TTL).UTC().Format(time.RFC3339),
		UserID:         o.UserID,
		OrgID:          o.OrgID,
		OrgSlug:        o.OrgSlug,
		OrgRole:        o.OrgRole,
		OrgPermissions: o.OrgPermissions,
		SessionID:      o.SessionID,
		V2:             o.V2,
	})
}

// sessionID returns the session id of user's tokens: stable for the
// handler's lifetime, as a Clerk session survives token refreshes and org
// switches, and different for every user and every dev run.
func (h *DevHandler) sessionID(user string) string {
	sum := sha256.Sum256([]byte(h.sessionSalt + "\x00" + user))
	return "sess_dev_" + hex.EncodeToString(sum[:12])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
