package deploy

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firegate/firegate/metrics"
)

// families returns the metric family names that a registry populated by
// metrics.New exposes (firegate_*, plus the Go and process collectors).
func families(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := make(map[string]bool, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	return out
}

// firegateFamilies returns the sorted firegate_ family names of fams.
func firegateFamilies(fams map[string]bool) []string {
	var out []string
	for name := range fams {
		if strings.HasPrefix(name, metrics.Namespace+"_") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func readDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(string(src))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return df
}

// imageBuild returns the Dockerfile's single go build command.
func imageBuild(t *testing.T, df *dockerfile) goBuild {
	t.Helper()
	builds, err := df.goBuilds()
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(builds) != 1 {
		t.Fatalf("Dockerfile has %d go build commands, want 1", len(builds))
	}
	return builds[0]
}

// stageInstructions returns the arguments of every kw instruction of st.
func stageInstructions(st stage, kw string) []string {
	var out []string
	for _, in := range st.Body {
		if in.Keyword == kw {
			out = append(out, in.Args)
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	df := readDockerfile(t)
	if len(df.Stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", len(df.Stages))
	}
	b := imageBuild(t, df)
	builder := b.Stage
	final := df.Stages[len(df.Stages)-1]

	t.Run("build stage", func(t *testing.T) {
		if !strings.HasPrefix(builder.Image, "golang:1.26") || !strings.Contains(builder.Image, "bookworm") {
			t.Errorf("build stage image = %q, want golang:1.26 on bookworm", builder.Image)
		}
		if builder.Name == "" {
			t.Errorf("build stage has no AS name for COPY --from")
		}
		if builder == &df.Stages[len(df.Stages)-1] {
			t.Errorf("go build runs in the final stage")
		}
	})

	t.Run("go build flags", func(t *testing.T) {
		if b.Env["CGO_ENABLED"] != "0" {
			t.Errorf("go build runs with CGO_ENABLED=%q, want 0", b.Env["CGO_ENABLED"])
		}
		if v, ok := b.flag("trimpath"); !ok || v != "true" {
			t.Errorf("go build without -trimpath")
		}
		ld, _ := b.flag("ldflags")
		if f := strings.Fields(ld); !slices.Contains(f, "-s") || !slices.Contains(f, "-w") {
			t.Errorf("-ldflags = %q, want -s -w (stripped)", ld)
		}
		if b.Output == "" {
			t.Errorf("go build without -o")
		}
	})

	t.Run("version stamping", func(t *testing.T) {
		ld, _ := b.flag("ldflags")
		x := linkerX(ld)
		args := stageArgs(*builder, b.Run.Line)
		for _, sv := range stampVars {
			v, ok := x[sv.Var]
			if !ok {
				t.Errorf("-ldflags = %q lacks -X %s=${%s}", ld, sv.Var, sv.Arg)
				continue
			}
			if v != "${"+sv.Arg+"}" && v != "$"+sv.Arg {
				t.Errorf("-X %s=%s, want it set from the build argument %s", sv.Var, v, sv.Arg)
			}
			if !args[sv.Arg] {
				t.Errorf("build stage has no ARG %s before the go build (line %d)", sv.Arg, b.Run.Line)
			}
		}
	})

	t.Run("build targets exist", func(t *testing.T) {
		want := []string{"./cmd/firegate", "./cmd/firegate-loadtest"}
		for _, w := range want {
			if !slices.Contains(b.Packages, w) {
				t.Errorf("go build packages %q lack %s", b.Packages, w)
			}
		}
		for _, pkg := range b.Packages {
			dir := filepath.Join(repoRoot, filepath.FromSlash(pkg))
			if !hasMainPackage(t, dir) {
				t.Errorf("build target %s: no package main in %s", pkg, dir)
			}
		}
	})

	t.Run("final stage", func(t *testing.T) {
		switch {
		case strings.HasPrefix(final.Image, "gcr.io/distroless/static"):
		case final.Image == "scratch":
			if !slices.ContainsFunc(stageInstructions(final, "COPY"), func(s string) bool { return strings.Contains(s, "ca-certificates") }) {
				t.Errorf("scratch image without CA certificates")
			}
		default:
			t.Errorf("final image %q, want distroless static or scratch", final.Image)
		}
		copies := strings.Join(stageInstructions(final, "COPY"), "\n")
		for _, pkg := range b.Packages {
			bin := strings.TrimSuffix(b.Output, "/") + "/" + filepath.Base(pkg)
			if !strings.Contains(copies, "--from="+builder.Name+" "+bin+" ") {
				t.Errorf("final stage does not copy %s from stage %q", bin, builder.Name)
			}
		}
	})

	t.Run("non-root user", func(t *testing.T) {
		users := stageInstructions(final, "USER")
		if len(users) == 0 {
			t.Fatal("final stage has no USER: the image would run as root")
		}
		uid, gid, _ := strings.Cut(users[len(users)-1], ":")
		n, err := strconv.Atoi(uid)
		if err != nil || n == 0 {
			t.Errorf("USER %q: want a numeric non-zero uid (runAsNonRoot can only verify numbers)", users[len(users)-1])
		}
		if gid != "" {
			if g, err := strconv.Atoi(gid); err != nil || g == 0 {
				t.Errorf("USER group %q: want a numeric non-zero gid", gid)
			}
		}
	})

	t.Run("ports, env and entrypoint", func(t *testing.T) {
		exposed := imagePorts(final)
		for _, p := range []int{8080, 9090} {
			if !exposed[p] {
				t.Errorf("final stage does not EXPOSE %d", p)
			}
		}
		env := map[string]string{}
		for _, e := range stageInstructions(final, "ENV") {
			words, err := shellWords(e)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range words {
				k, v, _ := strings.Cut(w, "=")
				env[k] = v
			}
		}
		if env["FIREGATE_ADDR"] != ":8080" || env["FIREGATE_ADMIN_ADDR"] != ":9090" {
			t.Errorf("ENV FIREGATE_ADDR=%q FIREGATE_ADMIN_ADDR=%q, want :8080 and :9090", env["FIREGATE_ADDR"], env["FIREGATE_ADMIN_ADDR"])
		}
		if ep := stageInstructions(final, "ENTRYPOINT"); len(ep) != 1 || ep[0] != `["/firegate"]` {
			t.Errorf("ENTRYPOINT = %q, want [\"/firegate\"] (exec form)", ep)
		}
		if c := stageInstructions(final, "CMD"); len(c) != 1 || c[0] != `["serve"]` {
			t.Errorf("CMD = %q, want [\"serve\"]", c)
		}
	})
}

// stampVars are the link-time variables the image build sets with -X, each
// from a build argument (docker build --build-arg VERSION=... REVISION=...).
var stampVars = []struct{ Var, Arg string }{
	{"github.com/firegate/firegate/metrics.Version", "VERSION"},
	{"github.com/firegate/firegate/metrics.Revision", "REVISION"},
}

// linkerX returns the -X name=value assignments of an -ldflags value (both
// "-X name=value" and "-X=name=value"); a later assignment wins, as in the
// linker.
func linkerX(ldflags string) map[string]string {
	out := map[string]string{}
	f := strings.Fields(ldflags)
	for i := 0; i < len(f); i++ {
		var kv string
		switch {
		case f[i] == "-X" || f[i] == "--X":
			if i+1 == len(f) {
				return out
			}
			i++
			kv = f[i]
		case strings.HasPrefix(f[i], "-X="):
			kv = strings.TrimPrefix(f[i], "-X=")
		case strings.HasPrefix(f[i], "--X="):
			kv = strings.TrimPrefix(f[i], "--X=")
		default:
			continue
		}
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

func TestLinkerX(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
	}{
		{"-s -w", map[string]string{}},
		{"-s -w -X a.V=${VERSION} -X b.R=$REVISION", map[string]string{"a.V": "${VERSION}", "b.R": "$REVISION"}},
		{"-X=a.V=1 --X a.V=2", map[string]string{"a.V": "2"}},
		{"-X a.V=", map[string]string{"a.V": ""}},
		{"-X noequals -X", map[string]string{}},
	}
	for _, tt := range tests {
		got := linkerX(tt.in)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("linkerX(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// stageArgs returns the names of the ARGs st declares before line.
func stageArgs(st stage, line int) map[string]bool {
	out := map[string]bool{}
	for _, in := range st.Body {
		if in.Keyword == "ARG" && in.Line < line {
			for _, a := range strings.Fields(in.Args) {
				name, _, _ := strings.Cut(a, "=")
				out[name] = true
			}
		}
	}
	return out
}

// imagePorts returns the ports a stage EXPOSEs.
func imagePorts(st stage) map[int]bool {
	out := map[int]bool{}
	for _, e := range stageInstructions(st, "EXPOSE") {
		for _, f := range strings.Fields(e) {
			p, _, _ := strings.Cut(f, "/")
			if n, err := strconv.Atoi(p); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// hasMainPackage reports whether dir holds a non-test Go file of package main.
func hasMainPackage(t *testing.T, dir string) bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		src, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(src), "\n") {
			if strings.TrimSpace(line) == "package main" {
				return true
			}
		}
	}
	return false
}

// TestStaticBuild runs the Dockerfile's go build (same flags, same packages,
// same environment, for linux) into a temporary directory and checks that
// every binary is what the distroless static image needs: statically linked
// (no PT_INTERP program header, no shared libraries), stripped, built with
// CGO_ENABLED=0 and -trimpath; and that the VERSION and REVISION build
// arguments reach `firegate version` (which prints what
// firegate_build_info reports).
func TestStaticBuild(t *testing.T) {
	b := imageBuild(t, readDockerfile(t))
	out := t.TempDir()
	// The build arguments, as `docker build --build-arg` would pass them.
	buildArgs := map[string]string{"VERSION": "v0.0.0-stamptest", "REVISION": "5a17c0ffee5a17c0ffee5a17c0ffee5a17c0ffee"}
	// -buildvcs=false: the image's build context has no .git, so the
	// toolchain stamps no VCS revision there; this build must not either.
	args := []string{"build", "-buildvcs=false"}
	for _, f := range b.Flags {
		if !strings.HasPrefix(f, "-o=") {
			args = append(args, expandArgs(f, buildArgs))
		}
	}
	args = append(args, "-o", out+string(filepath.Separator))
	args = append(args, b.Packages...)

	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...) // go test puts its own go first on PATH
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOOS=linux")
	for k, v := range b.Env {
		if !strings.Contains(v, "$") { // $TARGETOS and friends: the host platform
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}

	for _, pkg := range b.Packages {
		bin := filepath.Join(out, filepath.Base(pkg))
		t.Run(filepath.Base(pkg), func(t *testing.T) {
			checkStaticBinary(t, bin)
		})
	}

	t.Run("version stamped", func(t *testing.T) {
		bin := filepath.Join(out, "firegate")
		got, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s version: %v\n%s", bin, err, got)
		}
		want := fmt.Sprintf("firegate %s (revision %s, %s)\n", buildArgs["VERSION"], buildArgs["REVISION"], runtime.Version())
		if string(got) != want {
			t.Errorf("firegate version = %q, want %q", got, want)
		}
	})
}

func checkStaticBinary(t *testing.T, bin string) {
	t.Helper()
	for _, p := range staticProblems(bin) {
		t.Errorf("%s: %s", bin, p)
	}
}

// staticProblems returns what makes bin unfit for the distroless static
// image: dynamic linking, symbols or DWARF left in, cgo, no -trimpath, not a
// linux Go program of this module. None when it is fit.
func staticProblems(bin string) []string {
	var out []string
	f, err := elf.Open(bin)
	if err != nil {
		return []string{fmt.Sprintf("not an ELF binary: %v", err)}
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			out = append(out, "PT_INTERP program header: dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		out = append(out, fmt.Sprintf("needs shared libraries %q", libs))
	}
	if f.Section(".symtab") != nil {
		out = append(out, ".symtab present: -ldflags -s missing")
	}
	if f.Section(".debug_info") != nil || f.Section(".zdebug_info") != nil {
		out = append(out, "DWARF present: -ldflags -w missing")
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return append(out, fmt.Sprintf("no Go build info: %v", err))
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" {
		out = append(out, fmt.Sprintf("built with CGO_ENABLED=%q", settings["CGO_ENABLED"]))
	}
	if settings["-trimpath"] != "true" {
		out = append(out, "built without -trimpath")
	}
	if settings["GOOS"] != "linux" {
		out = append(out, fmt.Sprintf("built for GOOS=%q", settings["GOOS"]))
	}
	if !strings.HasPrefix(info.Path, "github.com/firegate/firegate/cmd/") {
		out = append(out, fmt.Sprintf("main package %q is not one of this module's commands", info.Path))
	}
	return out
}

// TestStaticProblemsDetectsUnfitBinaries makes sure the checks above can
// fail: a dynamically linked system binary and this test binary (built
// without -trimpath, outside cmd/) are both refused.
func TestStaticProblemsDetectsUnfitBinaries(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		bin  string
		want []string
	}{
		{"/bin/sh", []string{"PT_INTERP", "no Go build info"}},
		{self, []string{"without -trimpath", "not one of this module's commands"}},
		{"deploy_test.go", []string{"not an ELF binary"}},
	}
	for _, tt := range tests {
		got := strings.Join(staticProblems(tt.bin), "\n")
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("staticProblems(%s) = %q, want a problem mentioning %q", tt.bin, got, w)
			}
		}
	}
}
