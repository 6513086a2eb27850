package deploy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction after line continuations are
// joined and comment lines removed.
type instruction struct {
	Line    int    // 1-based line of the keyword
	Keyword string // upper-cased: FROM, RUN, ...
	Args    string // the rest, trimmed
}

// stage is one build stage: a FROM and the instructions up to the next FROM.
type stage struct {
	From     instruction
	Image    string // image reference with ARGs declared before the first FROM substituted
	Platform string // the --platform flag, as written
	Name     string // the AS name, lower-cased; "" when unnamed
	Body     []instruction
}

// dockerfile is a parsed Dockerfile.
type dockerfile struct {
	GlobalArgs map[string]string // ARGs before the first FROM, with defaults
	Stages     []stage
}

// parseDockerfile splits src into instructions and stages. It follows the
// Dockerfile grammar closely enough for the checks in this package: a
// trailing backslash continues a line, lines whose first non-blank character
// is # are comments (also inside a continuation), heredocs are not supported.
func parseDockerfile(src string) (*dockerfile, error) {
	var ins []instruction
	var cur strings.Builder
	startLine := 0
	lines := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")
	for n, raw := range lines {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if line == "" { // also inside a continuation, as Docker does
			continue
		}
		if cur.Len() == 0 {
			startLine = n + 1
		}
		cont := strings.HasSuffix(line, `\`)
		if cont {
			line = strings.TrimSuffix(line, `\`)
		}
		if cur.Len() > 0 && line != "" {
			cur.WriteByte(' ')
		}
		cur.WriteString(strings.TrimSpace(line))
		if cont {
			continue
		}
		if cur.Len() > 0 {
			in, err := splitInstruction(cur.String(), startLine)
			if err != nil {
				return nil, err
			}
			ins = append(ins, in)
		}
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: instruction ends with a line continuation", startLine)
	}

	df := &dockerfile{GlobalArgs: map[string]string{}}
	for _, in := range ins {
		switch {
		case in.Keyword == "FROM":
			st, err := parseFrom(in, df.GlobalArgs)
			if err != nil {
				return nil, err
			}
			df.Stages = append(df.Stages, st)
		case len(df.Stages) == 0 && in.Keyword == "ARG":
			name, def, _ := strings.Cut(in.Args, "=")
			df.GlobalArgs[strings.TrimSpace(name)] = strings.Trim(strings.TrimSpace(def), `"`)
		case len(df.Stages) == 0:
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.Line, in.Keyword)
		default:
			last := &df.Stages[len(df.Stages)-1]
			last.Body = append(last.Body, in)
		}
	}
	if len(df.Stages) == 0 {
		return nil, errors.New("no FROM instruction")
	}
	return df, nil
}

func splitInstruction(s string, line int) (instruction, error) {
	kw, rest, _ := strings.Cut(s, " ")
	kw = strings.ToUpper(strings.TrimSpace(kw))
	for _, r := range kw {
		if r < 'A' || r > 'Z' {
			return instruction{}, fmt.Errorf("line %d: bad instruction %q", line, kw)
		}
	}
	return instruction{Line: line, Keyword: kw, Args: strings.TrimSpace(rest)}, nil
}

func parseFrom(in instruction, args map[string]string) (stage, error) {
	st := stage{From: in}
	fields := strings.Fields(in.Args)
	for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
		if v, ok := strings.CutPrefix(fields[0], "--platform="); ok {
			st.Platform = v
		}
		fields = fields[1:]
	}
	switch {
	case len(fields) == 1:
	case len(fields) == 3 && strings.EqualFold(fields[1], "AS"):
		st.Name = strings.ToLower(fields[2])
	default:
		return stage{}, fmt.Errorf("line %d: FROM wants IMAGE [AS NAME], got %q", in.Line, in.Args)
	}
	if len(fields) == 0 {
		return stage{}, fmt.Errorf("line %d: FROM without an image", in.Line)
	}
	st.Image = expandArgs(fields[0], args)
	return st, nil
}

// expandArgs substitutes $NAME and ${NAME} from args (unknown names become "").
func expandArgs(s string, args map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		j := i + 1
		var name string
		if s[j] == '{' {
			end := strings.IndexByte(s[j:], '}')
			if end < 0 {
				b.WriteString(s[i:])
				break
			}
			name = s[j+1 : j+end]
			i = j + end
		} else {
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			name = s[i+1 : j]
			i = j - 1
		}
		b.WriteString(args[name])
	}
	return b.String()
}

// shellWords splits a shell command line into words, honouring single
// quotes, double quotes (with \" \\ \$ escapes) and backslash escapes. The
// operators &&, ||, ; and | become words of their own. It returns an error
// for an unterminated quote.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			flush()
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			inWord = true
			i += end + 1
		case c == '"':
			inWord = true
			i++
			for ; ; i++ {
				if i >= len(s) {
					return nil, errors.New("unterminated double quote")
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
		case c == '\\':
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
				inWord = true
			}
		case c == ';' || c == '|' || c == '&':
			flush()
			op := string(c)
			if (c == '|' || c == '&') && i+1 < len(s) && s[i+1] == c {
				op += string(c)
				i++
			}
			words = append(words, op)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, nil
}

// goBuild is a `go build` command found in a RUN instruction.
type goBuild struct {
	Stage    *stage
	Run      instruction
	Env      map[string]string // stage ENV merged with the command's VAR=value prefix
	Flags    []string          // build flags, normalised to -name or -name=value
	Output   string            // the -o value
	Packages []string
}

// flag returns the value of -name (a boolean flag yields "true") and whether
// it was given.
func (b goBuild) flag(name string) (string, bool) {
	for _, f := range b.Flags {
		n, v, hasV := strings.Cut(f, "=")
		if n == "-"+name || n == "--"+name {
			if !hasV {
				v = "true"
			}
			return v, true
		}
	}
	return "", false
}

// buildFlagsWithValue are the go build flags that take a separate value.
var buildFlagsWithValue = map[string]bool{
	"-o": true, "-ldflags": true, "-gcflags": true, "-asmflags": true, "-tags": true,
	"-mod": true, "-p": true, "-pgo": true, "-buildmode": true, "-modfile": true,
	"-overlay": true, "-installsuffix": true, "-compiler": true, "-gccgoflags": true,
	"-toolexec": true, "-exec": true, "-C": true,
}

// goBuilds returns every go build command of every stage.
func (df *dockerfile) goBuilds() ([]goBuild, error) {
	var out []goBuild
	for si := range df.Stages {
		st := &df.Stages[si]
		env := map[string]string{}
		for _, in := range st.Body {
			switch in.Keyword {
			case "ENV":
				words, err := shellWords(in.Args)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", in.Line, err)
				}
				for _, w := range words {
					if k, v, ok := strings.Cut(w, "="); ok {
						env[k] = v
					}
				}
			case "RUN":
				words, err := shellWords(in.Args)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", in.Line, err)
				}
				for len(words) > 0 && strings.HasPrefix(words[0], "--") { // --mount=..., --network=...
					words = words[1:]
				}
				for _, cmd := range splitCommands(words) {
					b, ok, err := parseGoBuild(cmd, env)
					if err != nil {
						return nil, fmt.Errorf("line %d: %w", in.Line, err)
					}
					if ok {
						b.Stage, b.Run = st, in
						out = append(out, b)
					}
				}
			}
		}
	}
	return out, nil
}

func splitCommands(words []string) [][]string {
	var out [][]string
	var cur []string
	for _, w := range words {
		switch w {
		case "&&", "||", ";", "|", "&":
			out = append(out, cur)
			cur = nil
		default:
			cur = append(cur, w)
		}
	}
	return append(out, cur)
}

func parseGoBuild(cmd []string, stageEnv map[string]string) (goBuild, bool, error) {
	b := goBuild{Env: map[string]string{}}
	for k, v := range stageEnv {
		b.Env[k] = v
	}
	i := 0
	for ; i < len(cmd); i++ {
		k, v, ok := strings.Cut(cmd[i], "=")
		if !ok || k == "" || strings.HasPrefix(k, "-") {
			break
		}
		b.Env[k] = v
	}
	if len(cmd)-i < 2 || cmd[i] != "go" || cmd[i+1] != "build" {
		return goBuild{}, false, nil
	}
	args := cmd[i+2:]
	for j := 0; j < len(args); j++ {
		a := args[j]
		if !strings.HasPrefix(a, "-") {
			b.Packages = append(b.Packages, a)
			continue
		}
		name, _, hasV := strings.Cut(a, "=")
		name = "-" + strings.TrimLeft(name, "-")
		if !hasV && buildFlagsWithValue[name] {
			if j+1 == len(args) {
				return goBuild{}, false, fmt.Errorf("go build flag %s without a value", name)
			}
			j++
			a = name + "=" + args[j]
		} else if hasV {
			a = name + a[strings.IndexByte(a, '='):]
		} else {
			a = name
		}
		b.Flags = append(b.Flags, a)
		if v, ok := strings.CutPrefix(a, "-o="); ok {
			b.Output = v
		}
	}
	return b, true, nil
}

func TestParseDockerfile(t *testing.T) {
	src := `# syntax=docker/dockerfile:1
ARG GO_VERSION=1.26
ARG BASE="debian"
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS Build
ENV CGO_ENABLED=0 GOFLAGS="-mod=readonly"
RUN --mount=type=cache,target=/root/.cache \
    # a comment inside a continuation
    CGO_ENABLED=0 GOOS=$TARGETOS go build -trimpath \
      -ldflags="-s -w" -o /out/ ./cmd/a ./cmd/b && echo done

FROM $BASE
COPY --from=build /out/a /a
`
	df, err := parseDockerfile(src)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(df.Stages); got != 2 {
		t.Fatalf("stages = %d, want 2", got)
	}
	s0, s1 := df.Stages[0], df.Stages[1]
	if s0.Image != "golang:1.26-bookworm" || s0.Name != "build" || s0.Platform != "$BUILDPLATFORM" {
		t.Errorf("stage 0 = %q %q %q", s0.Image, s0.Name, s0.Platform)
	}
	if s1.Image != "debian" || s1.Name != "" || len(s1.Body) != 1 || s1.Body[0].Keyword != "COPY" {
		t.Errorf("stage 1 = %+v", s1)
	}
	if s0.Body[1].Line != 6 {
		t.Errorf("RUN line = %d, want 6", s0.Body[1].Line)
	}
	builds, err := df.goBuilds()
	if err != nil {
		t.Fatal(err)
	}
	if len(builds) != 1 {
		t.Fatalf("go builds = %d, want 1", len(builds))
	}
	b := builds[0]
	if b.Output != "/out/" || strings.Join(b.Packages, " ") != "./cmd/a ./cmd/b" {
		t.Errorf("output %q packages %q", b.Output, b.Packages)
	}
	if v, _ := b.flag("ldflags"); v != "-s -w" {
		t.Errorf("ldflags = %q", v)
	}
	if v, ok := b.flag("trimpath"); !ok || v != "true" {
		t.Errorf("trimpath = %q %v", v, ok)
	}
	if b.Env["CGO_ENABLED"] != "0" || b.Env["GOOS"] != "$TARGETOS" || b.Env["GOFLAGS"] != "-mod=readonly" {
		t.Errorf("env = %v", b.Env)
	}
}

func TestParseDockerfileErrors(t *testing.T) {
	tests := []struct {
		name, src string
	}{
		{"empty", ""},
		{"only comments", "# nothing\n"},
		{"instruction before FROM", "RUN true\nFROM scratch\n"},
		{"dangling continuation", "FROM scratch\nRUN true \\\n"},
		{"FROM with junk", "FROM a b c d\n"},
		{"bad keyword", "FROM scratch\nR-UN true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseDockerfile(tt.src); err == nil {
				t.Errorf("parseDockerfile(%q) succeeded, want an error", tt.src)
			}
		})
	}
}

func TestShellWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`a  b`, []string{"a", "b"}},
		{`-ldflags="-s -w" x`, []string{"-ldflags=-s -w", "x"}},
		{`'a b'c "d\"e"`, []string{"a bc", `d"e`}},
		{`a&&b||c;d|e`, []string{"a", "&&", "b", "||", "c", ";", "d", "|", "e"}},
		{`a\ b`, []string{"a b"}},
		{`""`, []string{""}},
	}
	for _, tt := range tests {
		got, err := shellWords(tt.in)
		if err != nil {
			t.Errorf("shellWords(%q): %v", tt.in, err)
			continue
		}
		if strings.Join(got, "\x00") != strings.Join(tt.want, "\x00") || len(got) != len(tt.want) {
			t.Errorf("shellWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{`'a`, `"a`, `"a\"`} {
		if _, err := shellWords(bad); err == nil {
			t.Errorf("shellWords(%q) succeeded, want an error", bad)
		}
	}
}

func FuzzParseDockerfile(f *testing.F) {
	f.Add("FROM scratch\n")
	f.Add("ARG V=1\nFROM golang:${V} AS b\nRUN CGO_ENABLED=0 go build -o /o/ ./x && true\nFROM b\n")
	f.Add("FROM a\nRUN go build -o\n")
	f.Add("FROM a\nRUN \\\n# c\n go build 'x\n")
	f.Add("FROM a\nENV A=\"b c\" D=e\nRUN --mount=x go build -ldflags '-s' -trimpath .\n")
	f.Fuzz(func(t *testing.T, src string) {
		df, err := parseDockerfile(src)
		if err != nil {
			return
		}
		if len(df.Stages) == 0 {
			t.Fatal("parsed Dockerfile without stages")
		}
		for _, st := range df.Stages {
			if st.From.Keyword != "FROM" {
				t.Fatalf("stage starts with %q", st.From.Keyword)
			}
			for _, in := range st.Body {
				if in.Keyword == "" || in.Keyword == "FROM" || in.Line < 1 {
					t.Fatalf("bad instruction %+v", in)
				}
			}
		}
		builds, err := df.goBuilds()
		if err != nil {
			return
		}
		for _, b := range builds {
			for _, fl := range b.Flags {
				if !strings.HasPrefix(fl, "-") {
					t.Fatalf("flag %q without dash", fl)
				}
			}
		}
	})
}

func FuzzShellWords(f *testing.F) {
	f.Add(`a b c`)
	f.Add(`-ldflags="-s -w" 'x y' a\ b && c`)
	f.Add(`"unterminated`)
	f.Fuzz(func(t *testing.T, s string) {
		words, err := shellWords(s)
		if err != nil {
			return
		}
		// Without quotes, escapes or operators, shellWords is strings.Fields
		// on blanks.
		if !strings.ContainsAny(s, "'\"\\;|&\r\v\f") {
			want := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' })
			if strings.Join(words, "\x00") != strings.Join(want, "\x00") || len(words) != len(want) {
				t.Fatalf("shellWords(%q) = %q, want %q", s, words, want)
			}
		}
	})
}
