package loadtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Samples are the samples of one Prometheus text exposition, keyed by
// series: the metric name, then its labels sorted by name in canonical
// form (`name{a="x",b="y"}`; a series without labels is just the name).
type Samples map[string]float64

// maxExpositionLine bounds one line of an exposition.
const maxExpositionLine = 1 << 20

// ParseExposition parses the Prometheus text format (version 0.0.4) as the
// gateway's /metrics serves it: comments and blank lines are skipped,
// timestamps ignored. A malformed sample line is an error naming the line.
func ParseExposition(b []byte) (Samples, error) {
	out := Samples{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), maxExpositionLine)
	ln := 0
	for sc.Scan() {
		ln++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, v, err := parseSampleLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		out[key] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read exposition: %w", err)
	}
	return out, nil
}

func isNameChar(c byte, first bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

func parseSampleLine(line string) (string, float64, error) {
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return "", 0, errors.New("missing metric name")
	}
	name := line[:i]
	var labels [][2]string
	if i < len(line) && line[i] == '{' {
		i++
		for {
			for i < len(line) && (line[i] == ' ' || line[i] == ',') {
				i++
			}
			if i < len(line) && line[i] == '}' {
				i++
				break
			}
			j := i
			for j < len(line) && isNameChar(line[j], j == i) {
				j++
			}
			if j == i || j >= len(line) || line[j] != '=' {
				return "", 0, errors.New("malformed label name")
			}
			lname := line[i:j]
			j++
			if j >= len(line) || line[j] != '"' {
				return "", 0, errors.New("label value must be quoted")
			}
			j++
			var val strings.Builder
			closed := false
			for j < len(line) {
				c := line[j]
				if c == '\\' {
					if j+1 >= len(line) {
						return "", 0, errors.New("dangling escape in label value")
					}
					switch line[j+1] {
					case 'n':
						val.WriteByte('\n')
					case '\\', '"':
						val.WriteByte(line[j+1])
					default:
						return "", 0, errors.New("unknown escape in label value")
					}
					j += 2
					continue
				}
				if c == '"' {
					closed = true
					j++
					break
				}
				val.WriteByte(c)
				j++
			}
			if !closed {
				return "", 0, errors.New("unterminated label value")
			}
			labels = append(labels, [2]string{lname, val.String()})
			i = j
		}
	}
	rest := strings.Fields(line[i:])
	if len(rest) < 1 || len(rest) > 2 {
		return "", 0, errors.New("want a value and an optional timestamp after the series")
	}
	v, err := parseFloat(rest[0])
	if err != nil {
		return "", 0, err
	}
	return seriesKey(name, labels), v, nil
}

func parseFloat(s string) (float64, error) {
	switch s {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("bad sample value %q", truncateStr(s, 32))
	}
	return v, nil
}

func truncateStr(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// seriesKey renders the canonical key of a series.
func seriesKey(name string, labels [][2]string) string {
	if len(labels) == 0 {
		return name
	}
	sort.SliceStable(labels, func(a, b int) bool { return labels[a][0] < labels[b][0] })
	var sb strings.Builder
	sb.WriteString(name)
	sb.WriteByte('{')
	for k, l := range labels {
		if k > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(l[0])
		sb.WriteString(`="`)
		for i := 0; i < len(l[1]); i++ {
			switch c := l[1][i]; c {
			case '\\', '"':
				sb.WriteByte('\\')
				sb.WriteByte(c)
			case '\n':
				sb.WriteString(`\n`)
			default:
				sb.WriteByte(c)
			}
		}
		sb.WriteByte('"')
	}
	sb.WriteByte('}')
	return sb.String()
}

// Get returns the sample of name with the given label pairs
// ("label", "value", ...), and whether it exists.
func (s Samples) Get(name string, labelPairs ...string) (float64, bool) {
	var labels [][2]string
	for i := 0; i+1 < len(labelPairs); i += 2 {
		labels = append(labels, [2]string{labelPairs[i], labelPairs[i+1]})
	}
	v, ok := s[seriesKey(name, labels)]
	return v, ok
}

// Value is Get without the presence flag (0 when absent).
func (s Samples) Value(name string, labelPairs ...string) float64 {
	v, _ := s.Get(name, labelPairs...)
	return v
}

// BucketQuantile estimates quantile q of the observations a Prometheus
// histogram (name, without the _bucket suffix) gained between two
// scrapes: the upper bound of the first bucket whose cumulative count
// reaches q of the total. ok is false when the histogram is absent or
// gained nothing; +Inf is returned when q falls in the last bucket.
func BucketQuantile(before, after Samples, name string, q float64) (float64, bool) {
	type bucket struct{ le, n float64 }
	var bs []bucket
	prefix := name + `_bucket{le="`
	for k, v := range after {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		leStr, ok := strings.CutSuffix(rest, `"}`)
		if !ok {
			continue
		}
		le, err := parseFloat(leStr)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v - before[k]})
	}
	if len(bs) == 0 {
		return 0, false
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := bs[len(bs)-1].n
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	for _, b := range bs {
		if b.n >= rank {
			return b.le, true
		}
	}
	return math.Inf(1), true
}
