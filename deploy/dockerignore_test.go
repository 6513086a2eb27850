package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// ignoreRule is one .dockerignore line compiled to a regular expression.
type ignoreRule struct {
	Pattern string
	Negate  bool
	re      *regexp.Regexp
}

// parseDockerignore compiles a .dockerignore file with Docker's semantics
// (moby/patternmatcher): # starts a comment line, a leading ! re-includes,
// patterns are cleaned and relative to the context root, * and ? do not cross
// "/", ** matches any number of directories, [...] is a character class,
// \ escapes; the last matching rule wins, and a rule that matches a
// directory matches everything below it.
func parseDockerignore(src string) ([]ignoreRule, error) {
	var rules []ignoreRule
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{Pattern: line}
		if p, ok := strings.CutPrefix(line, "!"); ok {
			r.Negate = true
			line = strings.TrimSpace(p)
		}
		line = path.Clean(filepath.ToSlash(line))
		line = strings.TrimPrefix(line, "/")
		if line == "" || line == "." {
			continue
		}
		re, err := regexp.Compile(ignoreRegexp(line))
		if err != nil {
			return nil, err
		}
		r.re = re
		rules = append(rules, r)
	}
	return rules, nil
}

// ignoreRegexp translates one cleaned pattern into an anchored regexp.
func ignoreRegexp(p string) string {
	var b strings.Builder
	b.WriteByte('^')
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '*':
			if i+1 < len(p) && p[i+1] == '*' {
				i++
				for i+1 < len(p) && p[i+1] == '/' {
					i++
				}
				if i+1 == len(p) {
					b.WriteString(".*")
				} else {
					b.WriteString("(.*/)?")
				}
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		case '[':
			end := strings.IndexByte(p[i+1:], ']')
			if end < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := p[i+1 : i+1+end]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			if class == "" || class == "^" || strings.ContainsAny(class, `[\`) {
				b.WriteString(regexp.QuoteMeta(p[i : i+2+end]))
			} else {
				b.WriteString("[" + class + "]")
			}
			i += end + 1
		case '\\':
			if i+1 < len(p) {
				_, size := utf8.DecodeRuneInString(p[i+1:])
				b.WriteString(regexp.QuoteMeta(p[i+1 : i+1+size]))
				i += size
			}
		default:
			// Whole runes, so multi-byte characters stay valid UTF-8.
			_, size := utf8.DecodeRuneInString(p[i:])
			b.WriteString(regexp.QuoteMeta(p[i : i+size]))
			i += size - 1
		}
	}
	b.WriteByte('$')
	return b.String()
}

// ignored reports whether the slash-separated, context-relative file name is
// left out of the build context by rules.
func ignored(rules []ignoreRule, name string) bool {
	name = strings.TrimPrefix(path.Clean(name), "/")
	var candidates []string
	for p := name; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		candidates = append(candidates, p)
	}
	out := false
	for _, r := range rules {
		for _, c := range candidates {
			if r.re.MatchString(c) {
				out = !r.Negate
				break
			}
		}
	}
	return out
}

func TestDockerignoreMatcher(t *testing.T) {
	rules, err := parseDockerignore(`
# comment
.git
**/node_modules
**/*.test
/warm
docs/*.md
!docs/keep.md
bin/
a?c
x[0-9]
`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want bool
	}{
		{".git", true},
		{".git/objects/ab/cd", true},
		{".github/x", false},
		{"node_modules/x.js", true},
		{"web/client/node_modules/a/b.js", true},
		{"gateway/gateway.test", true},
		{"gateway.test", true},
		{"gateway/gateway.go", false},
		{"warm", true},
		{"internal/warm/main.go", false},
		{"docs/a.md", true},
		{"docs/keep.md", false},
		{"docs/sub/a.md", false},
		{"bin/firegate", true},
		{"abc", true},
		{"a/c", false},
		{"x7", true},
		{"xa", false},
	}
	for _, tt := range tests {
		if got := ignored(rules, tt.name); got != tt.want {
			t.Errorf("ignored(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func FuzzDockerignore(f *testing.F) {
	f.Add("**/node_modules", "web/node_modules/x")
	f.Add("!a\n[!b]c\n\\*", "bc")
	f.Add("a/**/b/**", "a/b/c")
	f.Add("[", "[")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		rules, err := parseDockerignore(pattern)
		if err != nil {
			// Only a bad character class or invalid UTF-8 is a bad pattern.
			if utf8.ValidString(pattern) && !strings.Contains(pattern, "[") {
				t.Fatalf("parseDockerignore(%q): %v", pattern, err)
			}
			return
		}
		_ = ignored(rules, name)
		// A plain pattern (no metacharacters, no negation) ignores the path
		// it names and everything below it.
		p := strings.TrimSpace(pattern)
		if p == "" || strings.ContainsAny(p, "*?[]\\!#\n\r") || strings.HasPrefix(p, "/") {
			return
		}
		clean := path.Clean(p)
		if clean == "." || strings.HasPrefix(clean, "..") || clean != p {
			return
		}
		if !ignored(rules, clean) || !ignored(rules, clean+"/child") {
			t.Fatalf("pattern %q does not ignore itself", p)
		}
	})
}

// repoRoot is the repository root, relative to this package's directory.
const repoRoot = ".."

// TestDockerignore checks that the build context keeps everything go build
// reads (go.mod, go.sum, the Go and embedded files of every package of the
// module) and leaves out VCS data, node_modules and test artefacts.
func TestDockerignore(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := parseDockerignore(string(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		".git/HEAD", "node_modules/x/index.js", "web/node_modules/x/index.js",
		"gateway/gateway.test", "cpu.prof", "cover.out", "subscriptions/testdata/fuzz/FuzzX/abc",
	} {
		if !ignored(rules, name) {
			t.Errorf(".dockerignore keeps %s in the build context", name)
		}
	}

	needed := []string{"go.mod", "go.sum"}
	cmd := exec.Command("go", "list", "-e", "-json=Dir,GoFiles,CgoFiles,EmbedFiles,Module", "./...")
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			Dir                           string
			GoFiles, CgoFiles, EmbedFiles []string
			Module                        *struct{ Main bool }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(abs, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, files := range [][]string{p.GoFiles, p.CgoFiles, p.EmbedFiles} {
			for _, f := range files {
				needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	if len(needed) < 3 {
		t.Fatalf("go list found no Go files in the module")
	}
	for _, name := range needed {
		if ignored(rules, name) {
			t.Errorf(".dockerignore leaves %s out of the build context, but go build needs it", name)
		}
	}
}
