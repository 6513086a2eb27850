package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

const chartDir = "helm/firegate"

// object is one rendered Kubernetes object, decoded generically.
type object map[string]any

func (o object) kind() string { return str(o, "kind") }
func (o object) name() string { return str(o, "metadata", "name") }

// get walks maps by key and lists by index (an int key).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, ok2 := v.(object); ok2 {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// render renders the chart's templates in-process, as `helm template`
// would for release "fg" in namespace "firegate", with overrides merged
// over values.yaml, and decodes every object.
func render(t *testing.T, ch *chart.Chart, overrides string) ([]object, error) {
	t.Helper()
	vals, err := chartutil.ReadValues([]byte(overrides))
	if err != nil {
		t.Fatalf("overrides: %v", err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "fg", Namespace: "firegate", IsInstall: true, Revision: 1}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	slices.Sort(names)
	var objs []object
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") {
			continue
		}
		dec := yaml.NewDecoder(strings.NewReader(out[n]))
		for {
			var o map[string]any
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s does not render to valid YAML: %v\n%s", n, err, out[n])
			}
			if o == nil {
				continue
			}
			objs = append(objs, object(o))
		}
	}
	return objs, nil
}

func mustRender(t *testing.T, ch *chart.Chart, overrides string) []object {
	t.Helper()
	objs, err := render(t, ch, overrides)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return objs
}

func byKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func one(t *testing.T, objs []object, kind string) object {
	t.Helper()
	got := byKind(objs, kind)
	if len(got) != 1 {
		t.Fatalf("%d %s objects rendered, want 1", len(got), kind)
	}
	return got[0]
}

func podContainer(t *testing.T, dep object) map[string]any {
	t.Helper()
	c, _ := get(dep, "spec", "template", "spec", "containers", 0).(map[string]any)
	if c == nil {
		t.Fatal("deployment has no container")
	}
	return c
}

func envOf(c map[string]any) map[string]any {
	out := map[string]any{}
	for _, e := range list(c, "env") {
		out[str(e, "name")] = get(e, "value")
		if vf := get(e, "valueFrom"); vf != nil {
			out[str(e, "name")] = vf
		}
	}
	return out
}

func labelsMatch(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func TestHelmChartMetadata(t *testing.T) {
	ch := loadChart(t)
	md := ch.Metadata
	if md.APIVersion != chart.APIVersionV2 || md.Name != "firegate" || md.Version == "" || md.AppVersion == "" {
		t.Fatalf("Chart.yaml: apiVersion %q name %q version %q appVersion %q", md.APIVersion, md.Name, md.Version, md.AppVersion)
	}
	if err := md.Validate(); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	var nats *chart.Dependency
	for _, d := range md.Dependencies {
		if d.Name == "nats" {
			nats = d
		}
	}
	if nats == nil {
		t.Fatal("Chart.yaml has no nats dependency")
	}
	if nats.Condition != "nats.enabled" {
		t.Errorf("nats dependency condition %q, want nats.enabled (optional)", nats.Condition)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(nats.Version) {
		t.Errorf("nats dependency version %q is not pinned to one release", nats.Version)
	}
	if u, err := url.Parse(nats.Repository); err != nil || u.Scheme != "https" {
		t.Errorf("nats dependency repository %q is not an https chart repository", nats.Repository)
	}
	if enabled, _ := get(ch.Values, "nats", "enabled").(bool); enabled {
		t.Error("nats.enabled defaults to true; fleet mode must be opt-in")
	}
	// The chart's alert and dashboard files are the ones in deploy/.
	for file, want := range map[string]string{
		"files/alerts.yaml":             filepath.Join("prometheus", "alerts.yaml"),
		"files/firegate-dashboard.json": filepath.Join("grafana", "firegate-dashboard.json"),
	} {
		src, err := os.ReadFile(want)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, f := range ch.Files {
			if f.Name == file {
				got = f.Data
			}
		}
		if !bytes.Equal(got, src) {
			t.Errorf("chart %s differs from deploy/%s", file, want)
		}
	}
}

func TestHelmChartDefaults(t *testing.T) {
	ch := loadChart(t)
	objs := mustRender(t, ch, "")

	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind()]++
		md := asMap(get(o, "metadata"))
		labels := asMap(md["labels"])
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if labels[l] == nil {
				t.Errorf("%s %s: no %s label", o.kind(), o.name(), l)
			}
		}
		if o.name() == "" || !strings.HasPrefix(o.name(), "fg-firegate") {
			t.Errorf("%s %q: not named after the release", o.kind(), o.name())
		}
	}
	for kind, n := range map[string]int{
		"Deployment": 1, "Service": 2, "PodDisruptionBudget": 1, "HorizontalPodAutoscaler": 1,
		"NetworkPolicy": 1, "ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": 2, "ServiceAccount": 1,
	} {
		if kinds[kind] != n {
			t.Errorf("%d %s objects, want %d", kinds[kind], kind, n)
		}
	}
	for _, kind := range []string{"Ingress", "HTTPRoute"} {
		if kinds[kind] != 0 {
			t.Errorf("%s rendered by default; it must be opt-in", kind)
		}
	}

	dep := one(t, objs, "Deployment")
	podLabels := asMap(get(dep, "spec", "template", "metadata", "labels"))
	selector := asMap(get(dep, "spec", "selector", "matchLabels"))
	if !labelsMatch(selector, podLabels) {
		t.Fatalf("deployment selector %v does not match its pod labels %v", selector, podLabels)
	}

	t.Run("deployment", func(t *testing.T) {
		c := podContainer(t, dep)
		image := str(c, "image")
		if image != "ghcr.io/firegate/firegate:"+ch.Metadata.AppVersion {
			t.Errorf("image %q, want the repository pinned to appVersion %s", image, ch.Metadata.AppVersion)
		}
		ports := map[string]bool{}
		for _, p := range list(c, "ports") {
			ports[str(p, "name")] = true
		}
		if !ports["ws"] || !ports["admin"] {
			t.Errorf("container ports %v, want ws and admin", ports)
		}
		if str(c, "readinessProbe", "httpGet", "path") != "/readyz" || str(c, "livenessProbe", "httpGet", "path") != "/healthz" {
			t.Error("probes do not use /readyz and /healthz")
		}
		env := envOf(c)
		if _, ok := env["FIREGATE_NATS_URL"]; ok {
			t.Error("FIREGATE_NATS_URL set by default; fleet mode must be opt-in")
		}
		if str(env["CLERK_SECRET_KEY"], "secretKeyRef", "name") == "" {
			t.Error("CLERK_SECRET_KEY does not come from a Secret")
		}
		grace, _ := get(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)
		sleep, _ := get(c, "lifecycle", "preStop", "sleep", "seconds").(int)
		if env["FIREGATE_DRAIN_TIMEOUT"] != "30s" || grace <= sleep+30 {
			t.Errorf("terminationGracePeriodSeconds %d must exceed preStop %d + drain %v", grace, sleep, env["FIREGATE_DRAIN_TIMEOUT"])
		}
		if get(dep, "spec", "replicas") != nil {
			t.Error("deployment sets replicas while the HPA owns them")
		}
	})

	t.Run("services", func(t *testing.T) {
		var public, admin object
		for _, s := range byKind(objs, "Service") {
			if !labelsMatch(asMap(get(s, "spec", "selector")), podLabels) {
				t.Errorf("service %s does not select the gateway pods", s.name())
			}
			for _, p := range list(s, "spec", "ports") {
				switch str(p, "targetPort") {
				case "ws":
					public = s
				case "admin":
					admin = s
				}
			}
		}
		if public == nil || admin == nil || public.name() == admin.name() {
			t.Fatal("want one Service for ws and another for admin")
		}
		if len(list(public, "spec", "ports")) != 1 {
			t.Error("the public Service must carry only the WebSocket port")
		}
		sm := one(t, objs, "ServiceMonitor")
		if !labelsMatch(asMap(get(sm, "spec", "selector", "matchLabels")), asMap(get(admin, "metadata", "labels"))) {
			t.Error("the ServiceMonitor does not select the admin Service")
		}
		if labelsMatch(asMap(get(sm, "spec", "selector", "matchLabels")), asMap(get(public, "metadata", "labels"))) {
			t.Error("the ServiceMonitor also selects the public Service (duplicate scrapes)")
		}
		if str(sm, "spec", "endpoints", 0, "port") != "admin" || str(sm, "spec", "endpoints", 0, "path") != "/metrics" {
			t.Error("the ServiceMonitor does not scrape admin /metrics")
		}
	})

	t.Run("pdb and hpa", func(t *testing.T) {
		pdb := one(t, objs, "PodDisruptionBudget")
		if !labelsMatch(asMap(get(pdb, "spec", "selector", "matchLabels")), podLabels) || get(pdb, "spec", "maxUnavailable") != 1 {
			t.Error("the PodDisruptionBudget must select the gateway pods with maxUnavailable 1")
		}
		hpa := one(t, objs, "HorizontalPodAutoscaler")
		if str(hpa, "spec", "scaleTargetRef", "name") != dep.name() || str(hpa, "spec", "scaleTargetRef", "kind") != "Deployment" {
			t.Error("the HPA does not scale the Deployment")
		}
		minR, _ := get(hpa, "spec", "minReplicas").(int)
		maxR, _ := get(hpa, "spec", "maxReplicas").(int)
		if minR < 2 || maxR < minR {
			t.Errorf("HPA min %d max %d", minR, maxR)
		}
		var names []string
		for _, m := range list(hpa, "spec", "metrics") {
			names = append(names, str(m, "pods", "metric", "name")+str(m, "resource", "name"))
		}
		if !slices.Contains(names, "firegate_connections_active") || !slices.Contains(names, "cpu") {
			t.Errorf("HPA metrics %v, want connections and cpu", names)
		}
	})

	t.Run("network policy", func(t *testing.T) {
		np := one(t, objs, "NetworkPolicy")
		if !labelsMatch(asMap(get(np, "spec", "podSelector", "matchLabels")), podLabels) {
			t.Fatal("the NetworkPolicy does not select the gateway pods")
		}
		if !slices.Contains(list(np, "spec", "policyTypes"), any("Ingress")) {
			t.Fatal("the NetworkPolicy does not restrict ingress")
		}
		adminRules, wsRules := 0, 0
		for _, r := range list(np, "spec", "ingress") {
			ports := list(r, "ports")
			if len(ports) == 0 {
				t.Error("an ingress rule without ports opens every port")
				continue
			}
			for _, p := range ports {
				switch get(p, "port") {
				case "admin", 9090:
					adminRules++
					from := list(r, "from")
					if len(from) != 1 || str(from[0], "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") != "monitoring" ||
						len(asMap(get(from[0], "namespaceSelector", "matchLabels"))) != 1 || get(from[0], "podSelector") != nil || get(from[0], "ipBlock") != nil {
						t.Errorf("admin port open to %v, want only the monitoring namespace", from)
					}
				case "ws", 8080:
					wsRules++
				default:
					t.Errorf("unexpected port %v in the NetworkPolicy", get(p, "port"))
				}
			}
		}
		if adminRules != 1 || wsRules != 1 {
			t.Errorf("%d admin and %d ws ingress rules, want one each", adminRules, wsRules)
		}
	})

	t.Run("prometheus rule", func(t *testing.T) {
		pr := one(t, objs, "PrometheusRule")
		src := readAlerts(t)
		anchors := readmeAnchors(t)
		var rendered []map[string]any
		for _, g := range list(pr, "spec", "groups") {
			for _, r := range list(g, "rules") {
				rendered = append(rendered, asMap(r))
			}
		}
		if len(rendered) != len(src) {
			t.Fatalf("PrometheusRule has %d rules, deploy/prometheus/alerts.yaml %d", len(rendered), len(src))
		}
		for i, r := range rendered {
			want := src[i]
			if r["alert"] != want.Alert || r["expr"] != want.Expr || r["for"] != want.For {
				t.Errorf("rule %d: %v/%v, want %s as in alerts.yaml", i, r["alert"], r["for"], want.Alert)
			}
			ann := asMap(r["annotations"])
			if ann["summary"] != want.Annotations["summary"] || ann["description"] != want.Annotations["description"] {
				t.Errorf("%s: annotations differ from alerts.yaml", want.Alert)
			}
			if _, ok := ann["runbook"]; ok {
				t.Errorf("%s: keeps the relative runbook annotation", want.Alert)
			}
			ru, _ := ann["runbook_url"].(string)
			u, err := url.Parse(ru)
			if err != nil || u.Scheme != "https" || u.Host == "" || !u.IsAbs() {
				t.Errorf("%s: runbook_url %q is not absolute", want.Alert, ru)
				continue
			}
			if !strings.HasPrefix(ru, "https://github.com/firegate/firegate/blob/main/deploy/README.md#") || !anchors[u.Fragment] {
				t.Errorf("%s: runbook_url %q does not point at a deploy/README.md heading", want.Alert, ru)
			}
			if asMap(r["labels"])["severity"] != want.Labels["severity"] {
				t.Errorf("%s: severity label lost", want.Alert)
			}
		}
	})

	t.Run("dashboard configmap", func(t *testing.T) {
		var dash object
		for _, cm := range byKind(objs, "ConfigMap") {
			if get(cm, "data", "firegate-dashboard.json") != nil {
				dash = cm
			}
		}
		if dash == nil {
			t.Fatal("no ConfigMap holds the dashboard")
		}
		if str(dash, "metadata", "labels", "grafana_dashboard") != "1" {
			t.Error("the dashboard ConfigMap lacks the grafana_dashboard label the sidecar looks for")
		}
		var got, want any
		if err := json.Unmarshal([]byte(str(dash, "data", "firegate-dashboard.json")), &got); err != nil {
			t.Fatalf("dashboard JSON: %v", err)
		}
		src, _ := os.ReadFile(filepath.Join("grafana", "firegate-dashboard.json"))
		if err := json.Unmarshal(src, &want); err != nil {
			t.Fatal(err)
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if !bytes.Equal(g, w) {
			t.Error("the dashboard ConfigMap differs from deploy/grafana/firegate-dashboard.json")
		}
	})

	t.Run("policy configmap", func(t *testing.T) {
		name := ""
		for _, v := range list(dep, "spec", "template", "spec", "volumes") {
			if str(v, "name") == "policy" {
				name = str(v, "configMap", "name")
			}
		}
		found := false
		for _, cm := range byKind(objs, "ConfigMap") {
			if cm.name() == name && strings.Contains(str(cm, "data", "policy.yaml"), "collections:") {
				found = true
			}
		}
		if !found {
			t.Errorf("the policy volume names ConfigMap %q, which is not rendered with a policy", name)
		}
	})
}

func TestHelmChartOptions(t *testing.T) {
	ch := loadChart(t)
	cases := []struct {
		name      string
		overrides string
		check     func(t *testing.T, objs []object)
		wantErr   string
	}{
		{
			name:      "fleet mode with the bundled NATS",
			overrides: "nats:\n  enabled: true\n",
			check: func(t *testing.T, objs []object) {
				env := envOf(podContainer(t, one(t, objs, "Deployment")))
				if env["FIREGATE_NATS_URL"] != "nats://fg-nats:4222" {
					t.Errorf("FIREGATE_NATS_URL = %v, want the bundled NATS service", env["FIREGATE_NATS_URL"])
				}
			},
		},
		{
			name:      "fleet mode with an existing NATS",
			overrides: "fleet:\n  natsURL: nats://nats.messaging:4222\n",
			check: func(t *testing.T, objs []object) {
				env := envOf(podContainer(t, one(t, objs, "Deployment")))
				if env["FIREGATE_NATS_URL"] != "nats://nats.messaging:4222" {
					t.Errorf("FIREGATE_NATS_URL = %v", env["FIREGATE_NATS_URL"])
				}
			},
		},
		{
			name:      "ingress has WebSocket timeouts",
			overrides: "ingress:\n  enabled: true\n",
			check: func(t *testing.T, objs []object) {
				ing := one(t, objs, "Ingress")
				for _, a := range []string{"nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"} {
					if v := str(ing, "metadata", "annotations", a); v != "3600" {
						t.Errorf("%s = %q, want 3600", a, v)
					}
				}
				if str(ing, "spec", "rules", 0, "http", "paths", 0, "backend", "service", "port", "name") != "ws" {
					t.Error("the Ingress does not route to the ws port")
				}
			},
		},
		{
			name:      "ingress refuses short timeouts",
			overrides: "ingress:\n  enabled: true\n  timeoutSeconds: 60\n",
			wantErr:   "at least 3600",
		},
		{
			name:      "httproute disables request timeouts",
			overrides: "httpRoute:\n  enabled: true\n  parentRefs:\n    - name: public\n      namespace: gateways\n",
			check: func(t *testing.T, objs []object) {
				r := one(t, objs, "HTTPRoute")
				if str(r, "spec", "rules", 0, "timeouts", "request") != "0s" || str(r, "spec", "rules", 0, "timeouts", "backendRequest") != "0s" {
					t.Errorf("HTTPRoute timeouts %v, want request and backendRequest 0s", get(r, "spec", "rules", 0, "timeouts"))
				}
				if str(r, "spec", "parentRefs", 0, "name") != "public" {
					t.Error("parentRefs not rendered")
				}
			},
		},
		{
			name:      "runbook base from a value",
			overrides: "prometheusRule:\n  runbookBaseURL: https://runbooks.example.com/firegate/\n",
			check: func(t *testing.T, objs []object) {
				pr := one(t, objs, "PrometheusRule")
				ru := str(pr, "spec", "groups", 0, "rules", 0, "annotations", "runbook_url")
				if ru != "https://runbooks.example.com/firegate#firegatenotready" {
					t.Errorf("runbook_url %q", ru)
				}
			},
		},
		{
			name:      "relative runbook base refused",
			overrides: "prometheusRule:\n  runbookBaseURL: deploy/README.md\n",
			wantErr:   "absolute",
		},
		{
			name:      "latest image tag refused",
			overrides: "image:\n  tag: latest\n",
			wantErr:   "pinned",
		},
		{
			name:      "digest pins the image",
			overrides: "image:\n  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
			check: func(t *testing.T, objs []object) {
				img := str(podContainer(t, one(t, objs, "Deployment")), "image")
				if !strings.HasSuffix(img, "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") {
					t.Errorf("image %q not pinned by digest", img)
				}
			},
		},
		{
			name:      "monitoring namespace from a value",
			overrides: "networkPolicy:\n  monitoringNamespace: observability\n",
			check: func(t *testing.T, objs []object) {
				np := one(t, objs, "NetworkPolicy")
				if str(np, "spec", "ingress", 1, "from", 0, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") != "observability" {
					t.Error("the admin port is not limited to the configured namespace")
				}
			},
		},
		{
			name:      "without the HPA the deployment sets replicas",
			overrides: "hpa:\n  enabled: false\nreplicaCount: 4\n",
			check: func(t *testing.T, objs []object) {
				if len(byKind(objs, "HorizontalPodAutoscaler")) != 0 {
					t.Error("HPA rendered while disabled")
				}
				if get(one(t, objs, "Deployment"), "spec", "replicas") != 4 {
					t.Error("replicas not set from replicaCount")
				}
			},
		},
		{
			name:      "operator objects can be turned off",
			overrides: "serviceMonitor:\n  enabled: false\nprometheusRule:\n  enabled: false\ngrafanaDashboard:\n  enabled: false\n",
			check: func(t *testing.T, objs []object) {
				for _, k := range []string{"ServiceMonitor", "PrometheusRule"} {
					if len(byKind(objs, k)) != 0 {
						t.Errorf("%s rendered while disabled", k)
					}
				}
				if len(byKind(objs, "ConfigMap")) != 1 {
					t.Error("the dashboard ConfigMap rendered while disabled")
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := render(t, ch, tc.overrides)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("render error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			tc.check(t, objs)
		})
	}
}

// helmLintCases are the value sets TestHelmLint lints the chart with: the
// defaults and every optional part switched on.
var helmLintCases = []struct{ name, overrides string }{
	{"defaults", ""},
	{"fleet mode with the bundled NATS", "nats:\n  enabled: true\n"},
	{"fleet mode with an existing NATS", "fleet:\n  natsURL: nats://nats.messaging:4222\n"},
	{"ingress and httproute", "ingress:\n  enabled: true\nhttpRoute:\n  enabled: true\n  parentRefs:\n    - name: public\n      namespace: gateways\n"},
	{"without the HPA", "hpa:\n  enabled: false\nreplicaCount: 4\n"},
}

// TestHelmLint runs Helm's own linter (the rules `helm lint --strict`
// runs: Chart.yaml, values, rendered templates, deprecated APIs,
// dependencies) over the chart for each of helmLintCases, at the oldest
// Kubernetes version the chart supports and at the newest whose API types
// the linter links, and fails on any warning or error. (Without a version
// the library checks deprecations against Kubernetes 1.20, older than the
// chart allows: its own build sets the real default at link time.)
func TestHelmLint(t *testing.T) {
	kubes := []*chartutil.KubeVersion{minKubeVersion(t, loadChart(t)), linkedKubeVersion(t)}
	for _, tt := range helmLintCases {
		vals, err := chartutil.ReadValues([]byte(tt.overrides))
		if err != nil {
			t.Fatalf("%s: overrides: %v", tt.name, err)
		}
		for _, kube := range kubes {
			t.Run(tt.name+"/kube "+kube.Version, func(t *testing.T) {
				for _, m := range lintProblems(chartDir, vals, kube) {
					t.Errorf("helm lint: %v", m)
				}
			})
		}
	}
}

// minKubeVersion returns the lowest Kubernetes version ch's kubeVersion
// constraint (">=X.Y.Z-0") admits.
func minKubeVersion(t *testing.T, ch *chart.Chart) *chartutil.KubeVersion {
	t.Helper()
	m := regexp.MustCompile(`^>=\s*v?(\d+\.\d+\.\d+)(-0)?$`).FindStringSubmatch(ch.Metadata.KubeVersion)
	if m == nil {
		t.Fatalf("Chart.yaml kubeVersion %q is not of the form >=X.Y.Z-0", ch.Metadata.KubeVersion)
	}
	kv, err := chartutil.ParseKubeVersion("v" + m[1])
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// linkedKubeVersion returns the Kubernetes version of the API types the
// linter is built with (k8s.io/api v0.X.Y is Kubernetes 1.X.Y), the newest
// whose deprecations it knows.
func linkedKubeVersion(t *testing.T) *chartutil.KubeVersion {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/api").Output()
	if err != nil {
		t.Fatalf("go list -m k8s.io/api: %v", err)
	}
	v := strings.TrimSpace(string(out))
	m := regexp.MustCompile(`^v0\.(\d+)\.(\d+)$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("k8s.io/api version %q is not v0.X.Y", v)
	}
	kv, err := chartutil.ParseKubeVersion("v1." + m[1] + "." + m[2])
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// lintProblems runs Helm's linter over the chart in dir with values merged
// over its values.yaml, for Kubernetes version kube, and
// returns the messages that fail `helm lint --strict`: every warning and
// error except the missing NATS subchart (see missingNATSChart).
func lintProblems(dir string, values map[string]any, kube *chartutil.KubeVersion) []support.Message {
	l := lint.AllWithKubeVersion(dir, values, "firegate", kube)
	var out []support.Message
	for _, m := range l.Messages {
		if m.Severity >= support.WarningSev && !missingNATSChart(dir, m) {
			out = append(out, m)
		}
	}
	return out
}

// missingNATSChart reports whether m is exactly the linter's warning that
// the chart directory lacks the nats dependency, and nothing else. The NATS
// subchart is an optional dependency (condition nats.enabled) fetched from
// its official repository by `helm dependency build`; it is not vendored in
// the repository, and the test machine cannot reach chart repositories, so
// charts/ never holds it here and the linter always says so. The message is
// matched in full (Helm gives it no typed error): a second missing
// dependency, an error, or the message for another chart still fails.
func missingNATSChart(dir string, m support.Message) bool {
	abs, err := filepath.Abs(dir)
	return err == nil && m.Severity == support.WarningSev && m.Path == abs &&
		m.Err != nil && m.Err.Error() == "chart directory is missing these dependencies: nats"
}

// TestHelmLintFindsProblems makes sure lintProblems can fail: copies of the
// chart with a broken template, a Deployment without a selector, and a
// second undeclared-in-charts/ dependency each report a problem, while the
// unmodified copy reports none.
func TestHelmLintFindsProblems(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(t *testing.T, dir string)
		wants string // in some problem; "" means no problem
	}{
		{"unmodified copy", func(*testing.T, string) {}, ""},
		{"template that is not YAML", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "templates", "broken.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n")
		}, "unable to parse YAML"},
		{"deployment without a selector", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "templates", "bare.yaml"),
				"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bare\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: i}]\n")
		}, "must contain matchLabels or matchExpressions"},
		{"API deprecated at the chart's oldest Kubernetes", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "templates", "old.yaml"),
				"apiVersion: flowcontrol.apiserver.k8s.io/v1beta3\nkind: FlowSchema\nmetadata:\n  name: old\n")
		}, "flowcontrol.apiserver.k8s.io/v1beta3 FlowSchema is deprecated"},
		{"another missing dependency", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "Chart.yaml")
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, p, string(src)+"  - name: redis\n    version: \"1.0.0\"\n    repository: https://charts.invalid/\n    condition: redis.enabled\n")
		}, "missing these dependencies: nats,redis"},
	}
	kube := minKubeVersion(t, loadChart(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "firegate")
			copyTree(t, chartDir, dir)
			tt.edit(t, dir)
			var got []string
			for _, m := range lintProblems(dir, nil, kube) {
				got = append(got, m.Error())
			}
			switch {
			case tt.wants == "" && len(got) > 0:
				t.Errorf("problems %q, want none", got)
			case tt.wants != "" && !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, tt.wants) }):
				t.Errorf("problems %q, want one mentioning %q", got, tt.wants)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the directory src to dst, following symbolic links (the
// chart's files/ link to deploy/prometheus and deploy/grafana).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p) // follows a symbolic link
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
