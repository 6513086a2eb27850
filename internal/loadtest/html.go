package loadtest

import (
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strings"
)

// chart geometry
const (
	chartW, chartH = 720, 320
	padL, padR     = 64, 16
	padT, padB     = 16, 40
)

var palette = []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// series is one line of a chart.
type series struct {
	name   string
	points [][2]float64
}

// nines maps a quantile to the x axis of a latency chart: 0.9 → 1,
// 0.99 → 2, ...; 1 (the maximum) is drawn at 5.
func nines(q float64) float64 {
	if q >= 1 {
		return 5
	}
	return math.Min(-math.Log10(1-q), 5)
}

// svgChart renders lines as an inline SVG; logY plots log10 of y.
func svgChart(title, xLabel, yLabel string, lines []series, logY bool, xTicks [][2]any) string {
	var sb strings.Builder
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	ty := func(v float64) float64 {
		if logY {
			return math.Log10(math.Max(v, 0.001))
		}
		return v
	}
	for _, l := range lines {
		for _, p := range l.points {
			minX, maxX = math.Min(minX, p[0]), math.Max(maxX, p[0])
			minY, maxY = math.Min(minY, ty(p[1])), math.Max(maxY, ty(p[1]))
		}
	}
	if math.IsInf(minX, 1) {
		return ""
	}
	if !logY {
		minY = math.Min(minY, 0)
	} else {
		minY = math.Floor(minY)
		maxY = math.Ceil(maxY)
	}
	if maxX == minX {
		maxX = minX + 1
	}
	if maxY == minY {
		maxY = minY + 1
	}
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	px := func(x float64) float64 { return padL + (x-minX)/(maxX-minX)*pw }
	py := func(y float64) float64 { return padT + ph - (ty(y)-minY)/(maxY-minY)*ph }
	pyRaw := func(t float64) float64 { return padT + ph - (t-minY)/(maxY-minY)*ph }
	fmt.Fprintf(&sb, `<figure><figcaption>%s</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`,
		html.EscapeString(title), chartW, chartH+20*((len(lines)+2)/3), chartW, chartH+20*((len(lines)+2)/3))
	fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, padL, padT, pw, ph)
	// y ticks
	if logY {
		for e := minY; e <= maxY; e++ {
			y := pyRaw(e)
			fmt.Fprintf(&sb, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`,
				padL, padL+pw, y, y, padL-4, y+4, trimFloat(math.Pow(10, e)))
		}
	} else {
		for i := 0; i <= 4; i++ {
			v := minY + (maxY-minY)*float64(i)/4
			y := pyRaw(v)
			fmt.Fprintf(&sb, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`,
				padL, padL+pw, y, y, padL-4, y+4, human(v))
		}
	}
	// x ticks
	if xTicks == nil {
		for i := 0; i <= 5; i++ {
			v := minX + (maxX-minX)*float64(i)/5
			xTicks = append(xTicks, [2]any{v, human(v)})
		}
	}
	for _, t := range xTicks {
		x := px(t[0].(float64))
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.0f" stroke="#eee"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`,
			x, x, padT, padT+ph, x, padT+ph+14, html.EscapeString(fmt.Sprint(t[1])))
	}
	fmt.Fprintf(&sb, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`, padL+pw/2, chartH-6, html.EscapeString(xLabel))
	fmt.Fprintf(&sb, `<text x="12" y="%.0f" transform="rotate(-90 12 %.0f)" text-anchor="middle">%s</text>`, padT+ph/2, padT+ph/2, html.EscapeString(yLabel))
	for i, l := range lines {
		c := palette[i%len(palette)]
		var pts []string
		for _, p := range l.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
		for _, p := range l.points {
			fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s: %s → %s</title></circle>`, px(p[0]), py(p[1]), c,
				html.EscapeString(l.name), trimFloat(p[0]), trimFloat(p[1]))
		}
		lx, ly := padL+(i%3)*220, chartH+(i/3)*20+4
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`, lx, ly, c, lx+16, ly+10, html.EscapeString(l.name))
	}
	sb.WriteString(`</svg></figure>`)
	return sb.String()
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

var ninesTicks = [][2]any{{0.0, "p0"}, {nines(0.5), "p50"}, {1.0, "p90"}, {2.0, "p99"}, {3.0, "p99.9"}, {4.0, "p99.99"}, {5.0, "max"}}

// WriteHTML writes a self-contained HTML page (inline SVG, no external
// assets) with the latency curves, the time series and the tables.
func (r *Report) WriteHTML(w io.Writer) error {
	var sb strings.Builder
	sb.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>Firegate load test</title><style>
body{font-family:sans-serif;margin:24px;max-width:1000px}table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}figure{margin:16px 0}figcaption{font-weight:bold;margin-bottom:4px}.fail{color:#b00}.ok{color:#070}pre{background:#f8f8f8;padding:8px;overflow:auto}
</style></head><body><h1>Firegate load test</h1>`)
	m := r.Machine
	fmt.Fprintf(&sb, `<p>%s · %d CPUs (%s) · %s RAM · %s · run %s</p><pre>%s</pre>`, html.EscapeString(r.StartedAt.Format("2006-01-02 15:04:05 MST")), m.NumCPU,
		html.EscapeString(m.CPUModel), mib(m.MemTotal), html.EscapeString(m.GoVersion), html.EscapeString(r.RunID), html.EscapeString(r.Command))
	if len(r.Ratios) > 0 {
		sb.WriteString(`<h2>Ratios to the coder/websocket baseline</h2><table><tr><th>figure</th><th>firegate</th><th>baseline</th><th>ratio</th><th>target</th><th>met</th></tr>`)
		for _, q := range r.Ratios {
			met := "–"
			if q.Met != nil {
				met = map[bool]string{true: `<span class="ok">yes</span>`, false: `<span class="fail">no</span>`}[*q.Met]
			}
			fmt.Fprintf(&sb, `<tr><td>%s</td><td>%s</td><td>%s</td><td>%.3f</td><td>%s</td><td>%s</td></tr>`, html.EscapeString(q.Name), human(q.Firegate), human(q.Baseline), q.Ratio, html.EscapeString(q.Target), met)
		}
		sb.WriteString(`</table>`)
	}
	var lat []series
	for _, x := range r.Runs {
		if x.Latency == nil || len(x.Latency.Curve) == 0 || (x.Scenario != ScenarioFanout && x.Scenario != ScenarioSlow) {
			continue
		}
		s := series{name: x.Scenario + " / " + x.Target}
		for _, p := range x.Latency.Curve {
			s.points = append(s.points, [2]float64{nines(p[0]), p[1]})
		}
		lat = append(lat, s)
	}
	if len(lat) > 0 {
		sb.WriteString(`<h2>Latency, commit (publish) → receipt</h2>`)
		sb.WriteString(svgChart("latency by percentile", "percentile", "ms (log)", lat, true, ninesTicks))
	}
	var hs []series
	for _, x := range r.Runs {
		if x.Latency == nil || len(x.Latency.Curve) == 0 || (x.Scenario != ScenarioChurn && x.Scenario != ScenarioAuthstorm) {
			continue
		}
		s := series{name: x.Scenario + " handshake"}
		for _, p := range x.Latency.Curve {
			s.points = append(s.points, [2]float64{nines(p[0]), p[1]})
		}
		hs = append(hs, s)
	}
	if len(hs) > 0 {
		sb.WriteString(svgChart("handshake latency (dial → welcome) by percentile", "percentile", "ms (log)", hs, true, ninesTicks))
	}
	var dps, rss []series
	for _, x := range r.Runs {
		d := series{name: x.Scenario + " / " + x.Target}
		m := series{name: x.Scenario + " / " + x.Target}
		for _, s := range x.Series {
			d.points = append(d.points, [2]float64{s.T, s.DeliveriesPerS})
			m.points = append(m.points, [2]float64{s.T, float64(s.RSS) / (1 << 20)})
		}
		if x.Deliveries > 0 && len(d.points) > 0 {
			dps = append(dps, d)
		}
		if len(m.points) > 0 {
			rss = append(rss, m)
		}
	}
	if len(dps) > 0 {
		sb.WriteString(svgChart("deliveries per second over time", "seconds", "deliveries/s", dps, false, nil))
	}
	if len(rss) > 0 {
		sb.WriteString(svgChart("server resident memory over time (all instances)", "seconds", "MiB", rss, false, nil))
	}
	sb.WriteString(`<h2>Runs</h2>`)
	var tb strings.Builder
	r.WriteTable(&tb)
	fmt.Fprintf(&sb, `<pre>%s</pre>`, html.EscapeString(tb.String()))
	sb.WriteString(`</body></html>`)
	_, err := io.WriteString(w, sb.String())
	return err
}

// WriteHTMLFile writes the HTML report to path.
func (r *Report) WriteHTMLFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	if err := r.WriteHTML(f); err != nil {
		f.Close()
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return f.Close()
}
