package loadtest

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricSamples are the samples of one Prometheus text exposition, keyed by
// series: the metric name, then its labels sorted by name in canonical
// form (`name{a="x",b="y"}`; a series without labels is just the name).
// A histogram h is flattened as the text format shows it: h_bucket{le=…}
// (cumulative), h_sum and h_count; a summary s as s{quantile=…}, s_sum
// and s_count.
type metricSamples map[string]float64

// parseExposition parses the Prometheus text format (version 0.0.4) as the
// gateway's /metrics serves it, with prometheus/common's expfmt; timestamps
// are ignored; a missing final newline is tolerated. A malformed
// exposition is an error naming the line.
func parseExposition(b []byte) (metricSamples, error) {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b[:len(b):len(b)], '\n')
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("failed to parse the exposition: %w", err)
	}
	out := metricSamples{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := make([][2]string, 0, len(m.GetLabel())+1)
			for _, lp := range m.GetLabel() {
				labels = append(labels, [2]string{lp.GetName(), lp.GetValue()})
			}
			with := func(k, v string) [][2]string {
				return append(append(make([][2]string, 0, len(labels)+1), labels...), [2]string{k, v})
			}
			switch {
			case m.Counter != nil:
				out[seriesKey(name, labels)] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[seriesKey(name, labels)] = m.Gauge.GetValue()
			case m.Untyped != nil:
				out[seriesKey(name, labels)] = m.Untyped.GetValue()
			case m.Histogram != nil:
				h := m.Histogram
				inf := false
				for _, bk := range h.GetBucket() {
					inf = inf || math.IsInf(bk.GetUpperBound(), 1)
					out[seriesKey(name+"_bucket", with("le", formatFloat(bk.GetUpperBound())))] = cumulative(bk)
				}
				if !inf {
					out[seriesKey(name+"_bucket", with("le", "+Inf"))] = sampleCount(h)
				}
				out[seriesKey(name+"_sum", labels)] = h.GetSampleSum()
				out[seriesKey(name+"_count", labels)] = sampleCount(h)
			case m.Summary != nil:
				for _, q := range m.Summary.GetQuantile() {
					out[seriesKey(name, with("quantile", formatFloat(q.GetQuantile())))] = q.GetValue()
				}
				out[seriesKey(name+"_sum", labels)] = m.Summary.GetSampleSum()
				out[seriesKey(name+"_count", labels)] = float64(m.Summary.GetSampleCount())
			}
		}
	}
	return out, nil
}

func cumulative(b *dto.Bucket) float64 {
	if b.CumulativeCountFloat != nil {
		return b.GetCumulativeCountFloat()
	}
	return float64(b.GetCumulativeCount())
}

func sampleCount(h *dto.Histogram) float64 {
	if h.SampleCountFloat != nil {
		return h.GetSampleCountFloat()
	}
	return float64(h.GetSampleCount())
}

// formatFloat renders a bound as the text format does ("0.005", "+Inf").
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
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
		return 0, fmt.Errorf("bad sample value %q", s)
	}
	return v, nil
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
func (s metricSamples) Get(name string, labelPairs ...string) (float64, bool) {
	var labels [][2]string
	for i := 0; i+1 < len(labelPairs); i += 2 {
		labels = append(labels, [2]string{labelPairs[i], labelPairs[i+1]})
	}
	v, ok := s[seriesKey(name, labels)]
	return v, ok
}

// Value is Get without the presence flag (0 when absent).
func (s metricSamples) Value(name string, labelPairs ...string) float64 {
	v, _ := s.Get(name, labelPairs...)
	return v
}

// bucketQuantile estimates quantile q of the observations a Prometheus
// histogram (name, without the _bucket suffix) gained between two
// scrapes: the upper bound of the first bucket whose cumulative count
// reaches q of the total. ok is false when the histogram is absent or
// gained nothing; +Inf is returned when q falls in the last bucket.
func bucketQuantile(before, after metricSamples, name string, q float64) (float64, bool) {
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

// truncateStr shortens s to n bytes for an error message.
func truncateStr(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
