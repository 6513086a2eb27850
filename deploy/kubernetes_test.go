package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const k8sDir = "kubernetes"

// k8sDoc is one YAML document of a manifest file.
type k8sDoc struct {
	File       string
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	node *yaml.Node
}

// decode decodes the whole document into v.
func (d k8sDoc) decode(t *testing.T, v any) {
	t.Helper()
	if err := d.node.Decode(v); err != nil {
		t.Fatalf("%s %s/%s: %v", d.File, d.Kind, d.Metadata.Name, err)
	}
}

// readManifests parses every YAML file in deploy/kubernetes, multi-document
// files included.
func readManifests(t *testing.T) []k8sDoc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no manifests in deploy/kubernetes")
	}
	var docs []k8sDoc
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(src))
		for i := 0; ; i++ {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			d := k8sDoc{File: filepath.Base(f), node: &n}
			if err := n.Decode(&d); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if d.APIVersion == "" || d.Kind == "" || (d.Metadata.Name == "" && d.Kind != "Kustomization") {
				t.Errorf("%s document %d: apiVersion %q kind %q name %q: all required", f, i, d.APIVersion, d.Kind, d.Metadata.Name)
			}
			docs = append(docs, d)
		}
	}
	return docs
}

// findDoc returns the only document of kind (and name, when not "").
func findDoc(t *testing.T, docs []k8sDoc, kind, name string) k8sDoc {
	t.Helper()
	var found []k8sDoc
	for _, d := range docs {
		if d.Kind == kind && (name == "" || d.Metadata.Name == name) {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s %q, found %d", kind, name, len(found))
	}
	return found[0]
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
		ConfigMapKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"configMapKeyRef"`
		ResourceFieldRef *struct {
			Resource string `yaml:"resource"`
		} `yaml:"resourceFieldRef"`
	} `yaml:"valueFrom"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Privileged               *bool  `yaml:"privileged"`
	Capabilities             struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
	SeccompProfile struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env          []envVar `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *securityContext `yaml:"securityContext"`
}

type deploymentSpec struct {
	Spec struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds *int            `yaml:"terminationGracePeriodSeconds"`
				ServiceAccountName            string          `yaml:"serviceAccountName"`
				SecurityContext               securityContext `yaml:"securityContext"`
				Containers                    []container     `yaml:"containers"`
				Volumes                       []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// gateway is the Deployment and its firegate container.
type gateway struct {
	doc k8sDoc
	dep deploymentSpec
	c   container
	env map[string]envVar
}

func readGateway(t *testing.T, docs []k8sDoc) gateway {
	t.Helper()
	g := gateway{doc: findDoc(t, docs, "Deployment", "firegate"), env: map[string]envVar{}}
	g.doc.decode(t, &g.dep)
	cs := g.dep.Spec.Template.Spec.Containers
	i := slices.IndexFunc(cs, func(c container) bool { return c.Name == "firegate" })
	if i < 0 {
		t.Fatal("Deployment has no firegate container")
	}
	g.c = cs[i]
	for _, e := range g.c.Env {
		if _, dup := g.env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		g.env[e.Name] = e
	}
	return g
}

// port resolves a port given by number or by container port name.
func (g gateway) port(p any) (int, error) {
	switch v := p.(type) {
	case int:
		return v, nil
	case string:
		for _, cp := range g.c.Ports {
			if cp.Name == v {
				return cp.ContainerPort, nil
			}
		}
		if n, err := strconv.Atoi(v); err == nil {
			return n, nil
		}
		return 0, fmt.Errorf("no container port named %q", v)
	}
	return 0, fmt.Errorf("port %v (%T): want a number or a name", p, p)
}

// addrPort returns the port of a FIREGATE_*ADDR value such as ":8080".
func addrPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKustomization(t *testing.T) {
	docs := readManifests(t)
	k := findDoc(t, docs, "Kustomization", "")
	var kz struct {
		Namespace string   `yaml:"namespace"`
		Resources []string `yaml:"resources"`
		Images    []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
		} `yaml:"images"`
	}
	k.decode(t, &kz)
	var files []string
	for _, d := range docs {
		if d.Kind != "Kustomization" && !slices.Contains(files, d.File) {
			files = append(files, d.File)
		}
	}
	slices.Sort(files)
	res := slices.Clone(kz.Resources)
	slices.Sort(res)
	if !slices.Equal(files, res) {
		t.Errorf("kustomization resources %q, manifest files %q: want the same", res, files)
	}
	ns := findDoc(t, docs, "Namespace", "")
	if kz.Namespace != ns.Metadata.Name {
		t.Errorf("kustomization namespace %q, Namespace object %q", kz.Namespace, ns.Metadata.Name)
	}
	if ns.Metadata.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace does not enforce the restricted Pod Security Standard")
	}
	g := readGateway(t, docs)
	image, _, _ := strings.Cut(g.c.Image, ":")
	if !slices.ContainsFunc(kz.Images, func(i struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
	}) bool {
		return i.Name == image && i.NewName != ""
	}) {
		t.Errorf("kustomization images do not set the container image %q", image)
	}
}

func TestDeployment(t *testing.T) {
	docs := readManifests(t)
	g := readGateway(t, docs)
	spec := g.dep.Spec.Template.Spec
	df := readDockerfile(t)
	final := df.Stages[len(df.Stages)-1]

	if g.dep.Spec.Replicas != 3 {
		t.Errorf("replicas = %d, want 3", g.dep.Spec.Replicas)
	}
	if !subset(g.dep.Spec.Selector.MatchLabels, g.dep.Spec.Template.Metadata.Labels) {
		t.Errorf("selector %v does not select the pod labels %v", g.dep.Spec.Selector.MatchLabels, g.dep.Spec.Template.Metadata.Labels)
	}
	if len(g.c.Args) != 1 || g.c.Args[0] != "serve" {
		t.Errorf("args %q, want [serve]", g.c.Args)
	}
	findDoc(t, docs, "ServiceAccount", spec.ServiceAccountName)

	t.Run("ports", func(t *testing.T) {
		exposed := imagePorts(final)
		ws := addrPort(t, g.env["FIREGATE_ADDR"].Value)
		admin := addrPort(t, g.env["FIREGATE_ADMIN_ADDR"].Value)
		if ws != 8080 || admin != 9090 {
			t.Errorf("FIREGATE_ADDR port %d, FIREGATE_ADMIN_ADDR port %d: want 8080 and 9090", ws, admin)
		}
		for name, want := range map[string]int{"ws": ws, "admin": admin} {
			got, err := g.port(name)
			if err != nil || got != want {
				t.Errorf("container port %q = %d (%v), want %d", name, got, err, want)
			}
			if !exposed[want] {
				t.Errorf("Dockerfile does not EXPOSE %d", want)
			}
		}
		ann := g.dep.Spec.Template.Metadata.Annotations
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(admin) || ann["prometheus.io/path"] != "/metrics" {
			t.Errorf("prometheus annotations %v, want scrape=true port=%d path=/metrics", ann, admin)
		}
	})

	t.Run("probes", func(t *testing.T) {
		admin := addrPort(t, g.env["FIREGATE_ADMIN_ADDR"].Value)
		for _, p := range []struct {
			name string
			pr   *probe
			path string
		}{{"readiness", g.c.ReadinessProbe, "/readyz"}, {"liveness", g.c.LivenessProbe, "/healthz"}} {
			if p.pr == nil || p.pr.HTTPGet == nil {
				t.Errorf("no %s httpGet probe", p.name)
				continue
			}
			if p.pr.HTTPGet.Path != p.path {
				t.Errorf("%s probe path %q, want %s", p.name, p.pr.HTTPGet.Path, p.path)
			}
			if port, err := g.port(p.pr.HTTPGet.Port); err != nil || port != admin {
				t.Errorf("%s probe port %v = %d (%v), want the admin port %d", p.name, p.pr.HTTPGet.Port, port, err, admin)
			}
		}
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		drain, err := time.ParseDuration(g.env["FIREGATE_DRAIN_TIMEOUT"].Value)
		if err != nil || drain <= 0 {
			t.Fatalf("FIREGATE_DRAIN_TIMEOUT %q: %v", g.env["FIREGATE_DRAIN_TIMEOUT"].Value, err)
		}
		if g.c.Lifecycle == nil || g.c.Lifecycle.PreStop == nil || g.c.Lifecycle.PreStop.Sleep == nil {
			t.Fatal("no preStop sleep action (the distroless image has no sleep binary for an exec hook)")
		}
		if g.c.Lifecycle.PreStop.Exec != nil {
			t.Errorf("preStop exec hook: the distroless image has no shell or binaries to run")
		}
		pre := time.Duration(g.c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if pre < 5*time.Second {
			t.Errorf("preStop sleep %v, want at least 5s so the load balancer stops sending first", pre)
		}
		if spec.TerminationGracePeriodSeconds == nil {
			t.Fatal("no terminationGracePeriodSeconds")
		}
		grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		if grace <= drain+pre {
			t.Errorf("terminationGracePeriodSeconds %v <= preStop %v + drain %v: pods would be killed mid-drain", grace, pre, drain)
		}
		if grace != 45*time.Second || drain != 30*time.Second {
			t.Errorf("grace %v drain %v, want 45s and 30s", grace, drain)
		}
	})

	t.Run("security context", func(t *testing.T) {
		pod, c := spec.SecurityContext, g.c.SecurityContext
		if c == nil {
			t.Fatal("container has no securityContext")
		}
		isTrue := func(b *bool) bool { return b != nil && *b }
		isFalse := func(b *bool) bool { return b != nil && !*b }
		if !isTrue(pod.RunAsNonRoot) || !isTrue(c.RunAsNonRoot) {
			t.Errorf("runAsNonRoot not set on pod and container")
		}
		if !isTrue(c.ReadOnlyRootFilesystem) {
			t.Errorf("readOnlyRootFilesystem not true")
		}
		if !isFalse(c.AllowPrivilegeEscalation) {
			t.Errorf("allowPrivilegeEscalation not false")
		}
		if c.Privileged != nil && *c.Privileged {
			t.Errorf("privileged container")
		}
		if !slices.Contains(c.Capabilities.Drop, "ALL") || len(c.Capabilities.Add) > 0 {
			t.Errorf("capabilities drop %q add %q, want drop ALL and add none", c.Capabilities.Drop, c.Capabilities.Add)
		}
		if pod.SeccompProfile.Type != "RuntimeDefault" || c.SeccompProfile.Type != "RuntimeDefault" {
			t.Errorf("seccompProfile pod %q container %q, want RuntimeDefault", pod.SeccompProfile.Type, c.SeccompProfile.Type)
		}
		users := stageInstructions(final, "USER")
		if len(users) == 0 {
			t.Fatal("Dockerfile sets no USER")
		}
		uid, _, _ := strings.Cut(users[len(users)-1], ":")
		for _, sc := range []securityContext{pod, *c} {
			if sc.RunAsUser == nil {
				t.Errorf("runAsUser not set, want the image's USER %s", uid)
			} else if strconv.FormatInt(*sc.RunAsUser, 10) != uid {
				t.Errorf("runAsUser %d, want the image's USER %s", *sc.RunAsUser, uid)
			}
		}
	})

	t.Run("resources", func(t *testing.T) {
		for _, r := range []string{"cpu", "memory"} {
			if g.c.Resources.Requests[r] == "" || g.c.Resources.Limits[r] == "" {
				t.Errorf("resources: %s request %q limit %q, want both", r, g.c.Resources.Requests[r], g.c.Resources.Limits[r])
			}
		}
	})

	t.Run("configuration", func(t *testing.T) {
		sk := g.env["CLERK_SECRET_KEY"]
		if sk.Value != "" || sk.ValueFrom == nil || sk.ValueFrom.SecretKeyRef == nil ||
			sk.ValueFrom.SecretKeyRef.Name == "" || sk.ValueFrom.SecretKeyRef.Key == "" {
			t.Errorf("CLERK_SECRET_KEY must come from a Secret, not a literal")
		}
		if g.env["FIRESTORE_PROJECT_ID"].Value == "" {
			t.Errorf("FIRESTORE_PROJECT_ID not set (serve requires it)")
		}
		if g.env["FIREGATE_ALLOWED_ORIGINS"].Value == "" {
			t.Errorf("FIREGATE_ALLOWED_ORIGINS not set")
		}
		policy := g.env["FIREGATE_POLICY"].Value
		if policy != "/etc/firegate/policy.yaml" {
			t.Fatalf("FIREGATE_POLICY = %q, want /etc/firegate/policy.yaml", policy)
		}
		dir, key := filepath.Dir(policy), filepath.Base(policy)
		mi := slices.IndexFunc(g.c.VolumeMounts, func(m struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			SubPath   string `yaml:"subPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		}) bool {
			return m.MountPath == dir
		})
		if mi < 0 {
			t.Fatalf("nothing mounted at %s", dir)
		}
		m := g.c.VolumeMounts[mi]
		if m.SubPath != "" || !m.ReadOnly {
			t.Errorf("policy mount subPath %q readOnly %v: want a read-only directory mount (subPath mounts never see ConfigMap updates)", m.SubPath, m.ReadOnly)
		}
		var cmName string
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cmName = v.ConfigMap.Name
			}
		}
		if cmName == "" {
			t.Fatalf("volume %q is not a ConfigMap volume", m.Name)
		}
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		findDoc(t, docs, "ConfigMap", cmName).decode(t, &cm)
		checkPolicy(t, cm.Data[key])
	})
}

// TestEnvNamesAreRead checks that every Firegate, Clerk and Firestore
// variable the Deployment and the Dockerfile set is one the code reads: its
// name appears as a string literal in the module's non-test Go source (a
// misspelt knob would otherwise be silently ignored).
func TestEnvNamesAreRead(t *testing.T) {
	var src strings.Builder
	err := filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "deploy":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			src.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code := src.String()
	names := map[string]string{}
	g := readGateway(t, readManifests(t))
	for n := range g.env {
		names[n] = "deployment.yaml"
	}
	df := readDockerfile(t)
	for _, e := range stageInstructions(df.Stages[len(df.Stages)-1], "ENV") {
		words, err := shellWords(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range words {
			k, _, _ := strings.Cut(w, "=")
			names[k] = "Dockerfile"
		}
	}
	for n, where := range names {
		if !strings.HasPrefix(n, "FIREGATE_") && !strings.HasPrefix(n, "CLERK_") && !strings.HasPrefix(n, "FIRESTORE_") {
			continue // GOMEMLIMIT and the like are read by the runtime
		}
		if !strings.Contains(code, `"`+n+`"`) {
			t.Errorf("%s sets %s, which no Go source reads", where, n)
		}
	}
}

// checkPolicy checks the shape of the example policy (docs/policy.md);
// the gateway's own tests compile it.
func checkPolicy(t *testing.T, src string) {
	t.Helper()
	var p struct {
		Collections []struct {
			Path       string `yaml:"path"`
			Scope      string `yaml:"scope"`
			ScopeField string `yaml:"scope_field"`
			Allow      string `yaml:"allow"`
			Filter     string `yaml:"filter"`
		} `yaml:"collections"`
	}
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("policy: %v", err)
	}
	if len(p.Collections) == 0 {
		t.Fatal("policy lists no collections")
	}
	seen := map[string]bool{}
	for _, c := range p.Collections {
		if c.Path == "" || seen[c.Path] {
			t.Errorf("policy collection path %q empty or listed twice", c.Path)
		}
		seen[c.Path] = true
		if c.Scope != "org" && c.Scope != "user" {
			t.Errorf("collection %q: scope %q, want org or user", c.Path, c.Scope)
		}
	}
}

func TestServices(t *testing.T) {
	docs := readManifests(t)
	g := readGateway(t, docs)
	type svcSpec struct {
		Spec struct {
			Type     string            `yaml:"type"`
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort any    `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	// want maps each Service to its port -> container port.
	want := map[string]map[int]int{
		"firegate":       {80: 8080},
		"firegate-admin": {9090: 9090},
	}
	n := 0
	for _, d := range docs {
		if d.Kind != "Service" {
			continue
		}
		n++
		var s svcSpec
		d.decode(t, &s)
		if !subset(s.Spec.Selector, g.dep.Spec.Template.Metadata.Labels) {
			t.Errorf("Service %s selector %v does not select the gateway pods", d.Metadata.Name, s.Spec.Selector)
		}
		ports, ok := want[d.Metadata.Name]
		if !ok {
			t.Errorf("unexpected Service %s", d.Metadata.Name)
			continue
		}
		got := map[int]int{}
		for _, p := range s.Spec.Ports {
			tp, err := g.port(p.TargetPort)
			if err != nil {
				t.Errorf("Service %s port %s: %v", d.Metadata.Name, p.Name, err)
			}
			got[p.Port] = tp
		}
		if fmt.Sprint(got) != fmt.Sprint(ports) {
			t.Errorf("Service %s ports %v, want %v (the admin port never on the public Service)", d.Metadata.Name, got, ports)
		}
	}
	if n != len(want) {
		t.Errorf("%d Services, want %d", n, len(want))
	}
}

func TestPDBAndHPA(t *testing.T) {
	docs := readManifests(t)
	g := readGateway(t, docs)
	labels := g.dep.Spec.Template.Metadata.Labels

	pdb := findDoc(t, docs, "PodDisruptionBudget", "firegate")
	var p struct {
		Spec struct {
			MaxUnavailable any `yaml:"maxUnavailable"`
			MinAvailable   any `yaml:"minAvailable"`
			Selector       struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
		} `yaml:"spec"`
	}
	pdb.decode(t, &p)
	if pdb.APIVersion != "policy/v1" || p.Spec.MaxUnavailable != 1 || p.Spec.MinAvailable != nil {
		t.Errorf("PDB %s maxUnavailable %v minAvailable %v, want policy/v1 maxUnavailable 1", pdb.APIVersion, p.Spec.MaxUnavailable, p.Spec.MinAvailable)
	}
	if !subset(p.Spec.Selector.MatchLabels, labels) {
		t.Errorf("PDB selector %v does not select the gateway pods", p.Spec.Selector.MatchLabels)
	}

	hpaDoc := findDoc(t, docs, "HorizontalPodAutoscaler", "firegate")
	var h struct {
		Spec struct {
			ScaleTargetRef struct {
				Kind string `yaml:"kind"`
				Name string `yaml:"name"`
			} `yaml:"scaleTargetRef"`
			MinReplicas int `yaml:"minReplicas"`
			MaxReplicas int `yaml:"maxReplicas"`
			Metrics     []struct {
				Type string `yaml:"type"`
				Pods *struct {
					Metric struct {
						Name string `yaml:"name"`
					} `yaml:"metric"`
					Target struct {
						Type         string `yaml:"type"`
						AverageValue string `yaml:"averageValue"`
					} `yaml:"target"`
				} `yaml:"pods"`
				Resource *struct {
					Name   string `yaml:"name"`
					Target struct {
						Type               string `yaml:"type"`
						AverageUtilization int    `yaml:"averageUtilization"`
					} `yaml:"target"`
				} `yaml:"resource"`
			} `yaml:"metrics"`
		} `yaml:"spec"`
	}
	hpaDoc.decode(t, &h)
	if hpaDoc.APIVersion != "autoscaling/v2" {
		t.Errorf("HPA apiVersion %q, want autoscaling/v2", hpaDoc.APIVersion)
	}
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != g.doc.Metadata.Name {
		t.Errorf("HPA targets %s/%s, want Deployment/%s", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name, g.doc.Metadata.Name)
	}
	if h.Spec.MinReplicas != g.dep.Spec.Replicas || h.Spec.MaxReplicas <= h.Spec.MinReplicas {
		t.Errorf("HPA replicas %d..%d, want min = Deployment replicas %d < max", h.Spec.MinReplicas, h.Spec.MaxReplicas, g.dep.Spec.Replicas)
	}
	fams := families(t)
	var pods, cpu bool
	for _, m := range h.Spec.Metrics {
		switch {
		case m.Type == "Pods" && m.Pods != nil:
			if !fams[m.Pods.Metric.Name] {
				t.Errorf("HPA scales on %s, which metrics.New does not register", m.Pods.Metric.Name)
			}
			pods = m.Pods.Metric.Name == "firegate_connections_active" && m.Pods.Target.Type == "AverageValue" && m.Pods.Target.AverageValue == "8000"
		case m.Type == "Resource" && m.Resource != nil:
			cpu = m.Resource.Name == "cpu" && m.Resource.Target.Type == "Utilization" && m.Resource.Target.AverageUtilization == 70
		}
	}
	if !pods || !cpu {
		t.Errorf("HPA metrics: connections AverageValue 8000 %v, cpu 70%% %v: want both", pods, cpu)
	}
	if g.c.Resources.Requests["cpu"] == "" {
		t.Errorf("CPU utilization scaling needs a CPU request")
	}
}
