// Package deploy holds Firegate's deployment artefacts (Kubernetes manifests,
// the Grafana dashboard, Prometheus alert rules) and the tests that keep them
// consistent with the code: every metric they query must exist in
// metrics.New, and every metric family must be on the dashboard.
//
// Its only Go API is MetricNames, which end-to-end tests reuse to check the
// artefacts against a running gateway's /metrics.
package deploy

import (
	"slices"
	"strings"
)

// metricPrefixes are the name prefixes MetricNames reports: Firegate's own
// families and the Go and process collectors registered beside them.
var metricPrefixes = []string{"firegate_", "go_", "process_"}

// seriesSuffixes are the per-series suffixes of histograms and summaries;
// MetricNames strips one of them to get the family name.
var seriesSuffixes = []string{"_bucket", "_sum", "_count"}

// labelListKeywords are PromQL keywords followed by a parenthesised list of
// label names (not metric names).
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true,
}

// MetricNames returns the metric family names that a PromQL expression
// refers to. It also accepts Grafana's templated PromQL ($instance,
// ${datasource}, [[var]], $__rate_interval) and variable queries such as
// label_values(firegate_ready, instance).
//
// A name is reported when it is an identifier starting with firegate_, go_
// or process_ that stands where a metric name can: not inside a string
// literal, a # comment, a {label matcher} block, a by/without/on/ignoring/
// group_left/group_right label list, or a Grafana variable, and not directly
// followed by "(" (a function call). One trailing _bucket, _sum or _count is
// removed, so firegate_fanout_latency_seconds_bucket yields the histogram
// family firegate_fanout_latency_seconds. Selectors by __name__="..." are not
// reported.
//
// The result is sorted and free of duplicates; it is nil when expr names no
// such metric. MetricNames never fails: it does not validate PromQL syntax,
// and input that is not PromQL yields whatever identifiers it contains. It is
// safe for concurrent use.
func MetricNames(expr string) []string {
	var out []string
	braces := 0          // depth of {label matcher} blocks
	labelList := false   // next "(" opens a label-name list
	inLabelList := false // inside such a list
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(expr, i)
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '$':
			i = skipVariable(expr, i)
		case c == '[' && i+1 < len(expr) && expr[i+1] == '[':
			// Grafana's deprecated [[var]] syntax.
			if end := strings.Index(expr[i+2:], "]]"); end >= 0 {
				i += 2 + end + 2
			} else {
				i = len(expr)
			}
		case c == '{':
			braces++
			i++
		case c == '}':
			if braces > 0 {
				braces--
			}
			i++
		case c == '(':
			if labelList {
				inLabelList = true
				labelList = false
			}
			i++
		case c == ')':
			inLabelList = false
			i++
		case isDigit(c):
			// Numbers and durations (5m, 1e-9, 0x1f): not identifiers.
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdentChar(expr[i]) {
				i++
			}
			ident := expr[start:i]
			if labelListKeywords[ident] {
				labelList = true
				continue
			}
			labelList = false
			if braces > 0 || inLabelList || nextNonSpace(expr, i) == '(' {
				continue
			}
			if name, ok := familyName(ident); ok {
				out = append(out, name)
			}
		default:
			i++
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// familyName reports whether ident is a metric of interest and returns its
// family name.
func familyName(ident string) (string, bool) {
	if !hasMetricPrefix(ident) {
		return "", false
	}
	for _, s := range seriesSuffixes {
		// firegate_bucket is a family of its own, not the buckets of
		// "firegate".
		if base, cut := strings.CutSuffix(ident, s); cut && hasMetricPrefix(base) {
			return base, true
		}
	}
	return ident, true
}

// hasMetricPrefix reports whether name is a known prefix followed by more.
func hasMetricPrefix(name string) bool {
	for _, p := range metricPrefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}

// skipString returns the index just past the string literal starting at i
// (or len(s) when it is unterminated). Backslash escapes apply in "..." and
// '...' but not in `...`.
func skipString(s string, i int) int {
	q := s[i]
	i++
	for i < len(s) {
		switch {
		case s[i] == '\\' && q != '`':
			i += 2
		case s[i] == q:
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

// skipVariable returns the index just past the Grafana variable starting at
// the '$' at i: $name, ${name} or ${name:format}.
func skipVariable(s string, i int) int {
	i++
	if i < len(s) && s[i] == '{' {
		if end := strings.IndexByte(s[i:], '}'); end >= 0 {
			return i + end + 1
		}
		return len(s)
	}
	for i < len(s) && isIdentChar(s[i]) {
		i++
	}
	return i
}

// nextNonSpace returns the first non-blank byte at or after i, or 0.
func nextNonSpace(s string, i int) byte {
	for ; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return s[i]
		}
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }
