package web

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// node returns the path of Node.js, which checks the served scripts.
func node(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to check the browser scripts (Debian package nodejs): %v", err)
	}
	return p
}

// TestJSSyntax parses every served script as an ES module. The client's
// behaviour is tested in clients/js (scripts/test-js.sh), which also fails
// when the committed bundles (firegate.js, react/app.js) are stale.
func TestJSSyntax(t *testing.T) {
	for _, name := range []string{"app.js", "firegate.js", "react/app.js"} {
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
