package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// grafanaPanel is the part of a Grafana panel these tests read.
type grafanaPanel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's panels
}

type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Multi      bool            `json:"multi"`
			IncludeAll bool            `json:"includeAll"`
			Datasource *struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("grafana", "firegate-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d
}

// flatPanels returns every panel, rows' nested panels included.
func flatPanels(ps []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatPanels(p.Panels)...)
	}
	return out
}

func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	fams := families(t)
	if d.SchemaVersion != 39 {
		t.Errorf("schemaVersion = %d, want 39", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard needs a uid and a title (uid %q, title %q)", d.UID, d.Title)
	}

	t.Run("variables", func(t *testing.T) {
		vars := map[string]int{}
		for i, v := range d.Templating.List {
			vars[v.Name] = i
		}
		i, ok := vars["datasource"]
		if !ok {
			t.Fatal("no datasource variable")
		}
		ds := d.Templating.List[i]
		var q string
		if ds.Type != "datasource" || json.Unmarshal(ds.Query, &q) != nil || q != "prometheus" {
			t.Errorf("datasource variable: type %q query %s, want a prometheus datasource variable", ds.Type, ds.Query)
		}
		i, ok = vars["instance"]
		if !ok {
			t.Fatal("no instance variable")
		}
		inst := d.Templating.List[i]
		if inst.Type != "query" || !inst.Multi || !inst.IncludeAll {
			t.Errorf("instance variable: type %q multi %v includeAll %v, want a multi-value query with All", inst.Type, inst.Multi, inst.IncludeAll)
		}
		if inst.Datasource == nil || inst.Datasource.UID != "${datasource}" {
			t.Errorf("instance variable does not query the ${datasource} variable")
		}
		names := MetricNames(inst.Definition)
		if len(names) == 0 {
			t.Errorf("instance variable definition %q names no metric", inst.Definition)
		}
		for _, n := range names {
			if !fams[n] {
				t.Errorf("instance variable queries %s, which metrics.New does not register", n)
			}
		}
	})

	panels := flatPanels(d.Panels)
	used := map[string][]string{} // family -> panel titles
	ids := map[int]bool{}
	titles := map[string]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps panel %q at (%d,%d)", p.Title, other, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if titles[p.Title] || p.Title == "" {
			t.Errorf("panel title %q empty or used twice", p.Title)
		}
		titles[p.Title] = true
		if p.Description == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the ${datasource} variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.RefID == "" {
				t.Errorf("panel %q: refId %q empty or used twice", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: query %q ignores the instance variable", p.Title, tg.Expr)
			}
			if err := checkBalanced(tg.Expr); err != "" {
				t.Errorf("panel %q: query %q: %s", p.Title, tg.Expr, err)
			}
			names := MetricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				if !fams[n] {
					t.Errorf("panel %q queries %s, which metrics.New does not register", p.Title, n)
				}
				used[n] = append(used[n], p.Title)
			}
		}
	}

	t.Run("every family has a panel", func(t *testing.T) {
		want := append(firegateFamilies(fams), "process_resident_memory_bytes", "go_goroutines")
		for _, f := range want {
			if len(used[f]) == 0 {
				t.Errorf("no dashboard panel shows %s", f)
			}
		}
	})
}

// checkBalanced reports unbalanced (), [] or {} outside string literals; ""
// when balanced.
func checkBalanced(expr string) string {
	var stack []byte
	pairs := map[byte]byte{')': '(', ']': '[', '}': '{'}
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '"', '\'', '`':
			i = skipString(expr, i) - 1
		case '(', '[', '{':
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return "unbalanced " + string(c)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return "unclosed " + string(stack[len(stack)-1])
	}
	return ""
}

// alertRule is one rule of a Prometheus rule file.
type alertRule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name     string      `yaml:"name"`
		Interval string      `yaml:"interval"`
		Rules    []alertRule `yaml:"rules"`
	} `yaml:"groups"`
}

func readAlerts(t *testing.T) []alertRule {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true) // a misspelt key (annotation:, label:) fails here
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("alerts.yaml has no groups")
	}
	var rules []alertRule
	groups := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q empty or used twice", g.Name)
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			t.Errorf("group %q has no rules", g.Name)
		}
		rules = append(rules, g.Rules...)
	}
	return rules
}

// readmeAnchors returns the GitHub anchors of deploy/README.md's headings.
func readmeAnchors(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	out := map[string]bool{}
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		out[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return out
}

// promTemplateFuncs stands in for the template functions Prometheus offers
// to alert annotations.
var promTemplateFuncs = template.FuncMap{
	"humanize":           func(v float64) string { return "1" },
	"humanizePercentage": func(v float64) string { return "1%" },
	"humanizeDuration":   func(v float64) string { return "1s" },
	"humanize1024":       func(v float64) string { return "1" },
	"title":              strings.ToTitle,
	"toUpper":            strings.ToUpper,
	"toLower":            strings.ToLower,
}

var labelsRef = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
var byClause = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
var aggregation = regexp.MustCompile(`\b(?:sum|avg|min|max|count|stddev|stdvar|topk|bottomk|quantile|count_values|group)\s*(?:by|without)?\s*\(`)

func TestAlerts(t *testing.T) {
	rules := readAlerts(t)
	fams := families(t)
	anchors := readmeAnchors(t)
	names := map[string]bool{}
	byFamily := map[string][]alertRule{}
	for _, r := range rules {
		t.Run(r.Alert, func(t *testing.T) {
			if r.Record != "" || r.Alert == "" {
				t.Fatalf("rule %q/%q: want alerting rules only", r.Alert, r.Record)
			}
			if names[r.Alert] || !strings.HasPrefix(r.Alert, "Firegate") {
				t.Errorf("alert %q: duplicate or not prefixed Firegate", r.Alert)
			}
			names[r.Alert] = true
			if msg := checkBalanced(r.Expr); msg != "" {
				t.Errorf("expr %q: %s", r.Expr, msg)
			}
			used := MetricNames(r.Expr)
			if len(used) == 0 {
				t.Errorf("expr %q names no metric", r.Expr)
			}
			for _, n := range used {
				if !fams[n] {
					t.Errorf("expr uses %s, which metrics.New does not register", n)
				}
				byFamily[n] = append(byFamily[n], r)
			}
			d, err := model.ParseDuration(r.For)
			if err != nil || d <= 0 {
				t.Errorf("for: %q: want a positive duration (%v)", r.For, err)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("severity label %q, want critical, warning or info", r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("no %s annotation", a)
				}
			}
			if rb := r.Annotations["runbook"]; !anchors[strings.TrimPrefix(rb, "deploy/README.md#")] || !strings.HasPrefix(rb, "deploy/README.md#") {
				t.Errorf("runbook %q: no such heading in deploy/README.md", rb)
			}
			// Annotations render as Prometheus renders them, and only name
			// labels the expression keeps.
			for k, a := range r.Annotations {
				tmpl, err := template.New(k).Funcs(promTemplateFuncs).Option("missingkey=zero").
					Parse("{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}" + a)
				if err != nil {
					t.Errorf("annotation %s: %v", k, err)
					continue
				}
				data := map[string]any{"Labels": map[string]string{}, "ExternalLabels": map[string]string{}, "Value": 1.0}
				if err := tmpl.Execute(&bytes.Buffer{}, data); err != nil {
					t.Errorf("annotation %s: %v", k, err)
				}
				if !aggregation.MatchString(r.Expr) {
					continue
				}
				kept := map[string]bool{}
				for _, m := range byClause.FindAllStringSubmatch(r.Expr, -1) {
					for _, l := range strings.Split(m[1], ",") {
						kept[strings.TrimSpace(l)] = true
					}
				}
				for _, m := range labelsRef.FindAllStringSubmatch(a, -1) {
					if !kept[m[1]] {
						t.Errorf("annotation %s uses $labels.%s, which the aggregation in %q drops", k, m[1], r.Expr)
					}
				}
			}
		})
	}

	// The alerts the runbook promises, by what they watch.
	required := []struct {
		what     string
		families []string
		contains []string
		minFor   time.Duration
	}{
		{"auth failure spike", []string{"firegate_auth_failures_total", "firegate_handshakes_total"}, nil, 5 * time.Minute},
		{"feed errors", []string{"firegate_feed_errors_total"}, nil, 5 * time.Minute},
		{"fan-out p99 over 1 s", []string{"firegate_fanout_latency_seconds"}, []string{"histogram_quantile(0.99", "> 1"}, 10 * time.Minute},
		{"slow-consumer disconnects", []string{"firegate_disconnects_total"}, []string{`reason="slow_consumer"`}, 5 * time.Minute},
		{"upstream lag p99", []string{"firegate_upstream_lag_seconds"}, []string{"histogram_quantile(0.99"}, 5 * time.Minute},
		{"rate-limit surge", []string{"firegate_rate_limited_total"}, nil, 5 * time.Minute},
		{"not ready", []string{"firegate_ready"}, []string{"== 0"}, time.Minute},
	}
	for _, req := range required {
		found := false
		for _, r := range byFamily[req.families[0]] {
			ok := true
			used := MetricNames(r.Expr)
			for _, f := range req.families {
				ok = ok && slices.Contains(used, f)
			}
			for _, c := range req.contains {
				ok = ok && strings.Contains(r.Expr, c)
			}
			d, _ := model.ParseDuration(r.For)
			ok = ok && time.Duration(d) >= req.minFor
			found = found || ok
		}
		if !found {
			t.Errorf("no %s alert (on %v containing %q, for >= %v)", req.what, req.families, req.contains, req.minFor)
		}
	}
}
