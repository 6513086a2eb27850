package web

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// node returns the path of Node.js, which runs the browser client's tests.
func node(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to test the browser client (Debian package nodejs): %v", err)
	}
	return p
}

// TestFiregateJS runs static/firegate.test.mjs (node's built-in test
// runner, no packages): the protocol client against a scripted WebSocket.
func TestFiregateJS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node(t), "--test", "--test-reporter=tap", "firegate.test.mjs")
	cmd.Dir = "static"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "# fail 0") || strings.Contains(string(out), "# pass 0\n") {
		t.Fatalf("unexpected node --test output:\n%s", out)
	}
}

// TestJSSyntax parses every served script as an ES module.
func TestJSSyntax(t *testing.T) {
	for _, name := range []string{"app.js", "firegate.js"} {
		f, err := os.Open(filepath.Join("static", name))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(node(t), "--input-type=module", "--check")
		cmd.Stdin = f
		out, err := cmd.CombinedOutput()
		f.Close()
		if err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}
