package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/firegate/firegate/authz"
	"github.com/firegate/firegate/deploy"
)

// TestDashboardAndAlertsMatchLiveMetrics checks every metric name the
// Grafana dashboard and the Prometheus alerts use against /metrics of a
// running gateway that has served a subscription.
func TestDashboardAndAlertsMatchLiveMetrics(t *testing.T) {
	e := newEnv(t, envOpts{})
	org := uniq("org")
	cl := e.connect(e.token(authz.MintOptions{UserID: uniq("u"), OrgID: org}))
	cl.subscribe(map[string]any{"id": "s", "collection": "tasks"})
	resp, err := http.Get(e.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	live := map[string]bool{}
	nameRe := regexp.MustCompile(`(?m)^# TYPE (\S+) `)
	for _, m := range nameRe.FindAllStringSubmatch(string(body), -1) {
		live[m[1]] = true
	}

	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if s, ok := val.(string); ok && (k == "expr" || k == "query") {
					exprs = append(exprs, s)
				}
				walk(val)
			}
		case []any:
			for _, val := range x {
				walk(val)
			}
		}
	}
	dash, err := os.ReadFile("../deploy/grafana/firegate-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatal(err)
	}
	walk(d)
	nDash := len(exprs)
	alerts, err := os.ReadFile("../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var a any
	if err := yaml.Unmarshal(alerts, &a); err != nil {
		t.Fatal(err)
	}
	walk(a)
	if nDash == 0 || len(exprs) == nDash {
		t.Fatalf("found %d dashboard and %d alert expressions", nDash, len(exprs)-nDash)
	}
	used := 0
	for _, ex := range exprs {
		for _, name := range deploy.MetricNames(ex) {
			used++
			if !live[name] {
				t.Errorf("%q uses %s, which the running gateway does not export", strings.TrimSpace(ex), name)
			}
		}
	}
	if used == 0 {
		t.Fatal("no metric names extracted")
	}
}
