package gateway

import (
	"fmt"
	"net/url"
	"strings"
)

// originPattern is one allowed origin: scheme, host labels (a "*" label
// matches exactly one label) and port ("" = the scheme's default).
type originPattern struct {
	scheme string
	labels []string
	port   string
}

func parseOriginPattern(s string) (originPattern, error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		// Never "every origin": any site could then open sockets with a
		// visitor's __session cookie.
		return originPattern{}, fmt.Errorf("allowed origin %q would allow every website; list the origins (https://app.example.com, or https://*.example.com where * stands for one DNS label)", s)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.ContainsAny(rest, "/?#@") {
		return originPattern{}, fmt.Errorf("allowed origin %q must look like https://host[:port] (a * may stand for one label)", s)
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i+1:]
		if port == "" {
			return originPattern{}, fmt.Errorf("allowed origin %q has an empty port", s)
		}
	}
	return originPattern{scheme: scheme, labels: strings.Split(strings.ToLower(host), "."), port: defaultPort(scheme, port)}, nil
}

func defaultPort(scheme, port string) string {
	if port != "" {
		return port
	}
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// originMatcher decides whether a browser Origin is allowed. It is
// immutable and safe for concurrent use.
type originMatcher struct{ patterns []originPattern }

func newOriginMatcher(list []string) (*originMatcher, error) {
	m := &originMatcher{}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := parseOriginPattern(s)
		if err != nil {
			return nil, err
		}
		m.patterns = append(m.patterns, p)
	}
	return m, nil
}

// Allowed reports whether origin (an Origin header or an azp value)
// matches an allowed pattern.
func (m *originMatcher) Allowed(origin string) bool {
	if origin == "" || origin == "null" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil {
		return false
	}
	labels := strings.Split(strings.ToLower(u.Hostname()), ".")
	port := defaultPort(u.Scheme, u.Port())
	for _, p := range m.patterns {
		if p.scheme != u.Scheme || p.port != port || len(p.labels) != len(labels) {
			continue
		}
		ok := true
		for i, l := range p.labels {
			if l != "*" && l != labels[i] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// OriginMatcher compiles an allowed-origin list into a predicate (the same
// matching the handshake uses), for the verifier's authorized-party check.
func OriginMatcher(list []string) (func(string) bool, error) {
	m, err := newOriginMatcher(list)
	if err != nil {
		return nil, err
	}
	return m.Allowed, nil
}
