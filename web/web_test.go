package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerServesAssets(t *testing.T) {
	h := Handler()
	tests := []struct {
		path, wantType, wantBody string
		wantCSP                  bool
	}{
		{"/", "text/html; charset=utf-8", "DEV MODE — tokens are minted by an ephemeral local issuer", true},
		{"/index.html", "text/html; charset=utf-8", `src="app.js"`, true},
		{"/app.js", "text/javascript; charset=utf-8", "from './firegate.js'", false},
		{"/firegate.js", "text/javascript; charset=utf-8", `"firegate.v1"`, false},
		{"/style.css", "text/css; charset=utf-8", ".banner", false},
		{"/react/", "text/html; charset=utf-8", `<div id="root">`, true},
		{"/react/app.js", "text/javascript; charset=utf-8", "createRoot", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tt.path, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			hd := w.Header()
			if got := hd.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type %q, want %q", got, tt.wantType)
			}
			if !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Errorf("body lacks %q", tt.wantBody)
			}
			if hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("Cache-Control") != "no-cache" || hd.Get("ETag") == "" {
				t.Errorf("headers %v", hd)
			}
			if got := hd.Get("Content-Security-Policy"); (got == ContentSecurityPolicy) != tt.wantCSP {
				t.Errorf("CSP %q (want it: %v)", got, tt.wantCSP)
			}
			// A revalidation with the ETag gets 304 and no body.
			r := httptest.NewRequest(http.MethodGet, tt.path, nil)
			r.Header.Set("If-None-Match", hd.Get("ETag"))
			w2 := httptest.NewRecorder()
			h.ServeHTTP(w2, r)
			if w2.Code != http.StatusNotModified || w2.Body.Len() != 0 {
				t.Errorf("revalidation: %d, %d bytes", w2.Code, w2.Body.Len())
			}
			// HEAD: headers, no body.
			w3 := httptest.NewRecorder()
			h.ServeHTTP(w3, httptest.NewRequest(http.MethodHead, tt.path, nil))
			if w3.Code != http.StatusOK || w3.Body.Len() != 0 || w3.Header().Get("Content-Type") != tt.wantType {
				t.Errorf("HEAD: %d, %d bytes, %q", w3.Code, w3.Body.Len(), w3.Header().Get("Content-Type"))
			}
		})
	}
}

func TestHandlerRefusals(t *testing.T) {
	h := Handler()
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/nope.js", http.StatusNotFound},
		{http.MethodGet, "/static/app.js", http.StatusNotFound},
		{http.MethodGet, "/app.js/", http.StatusNotFound},
		{http.MethodGet, "/../app.js", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/app.js", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
		if w.Code != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, w.Code, tt.want)
		}
		if tt.want == http.StatusMethodNotAllowed && w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", tt.method, tt.path, w.Header().Get("Allow"))
		}
	}
}

// TestAssetsAreSelfContained checks the pages' rules: every file has a
// known content type, the pages load only same-origin relative assets
// (nothing from a CDN, no inline script), and the JS has no imports other
// than ./firegate.js and never writes HTML from data. react/app.js is a
// bundle with React inside: React's own sources mention innerHTML
// (dangerouslySetInnerHTML, unused by the example) and its error-decoder
// URL, so only the import, eval and document.write rules apply to it.
func TestAssetsAreSelfContained(t *testing.T) {
	root := FS()
	var names []string
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"index.html": true, "app.js": true, "firegate.js": true, "style.css": true,
		"react/index.html": true, "react/app.js": true, "react/style.css": true}
	if len(names) != len(want) {
		t.Errorf("embedded files %v", names)
	}
	for _, n := range names {
		if !want[n] {
			t.Errorf("unexpected embedded file %s", n)
		}
		f, err := root.Open(n)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		s := string(b)
		for _, bad := range []string{"http://", "https://", "innerHTML", "outerHTML", "eval(", "document.write"} {
			if n == "react/app.js" && bad != "eval(" && bad != "document.write" {
				continue
			}
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", n, bad)
			}
		}
		if strings.HasSuffix(n, ".js") {
			for _, line := range strings.Split(s, "\n") {
				if strings.HasPrefix(line, "import ") && !strings.HasSuffix(line, "from './firegate.js';") {
					t.Errorf("%s imports something else: %s", n, line)
				}
			}
		}
		if strings.HasSuffix(n, ".html") && strings.Contains(s, "<script>") {
			t.Errorf("%s has an inline script (the CSP forbids it)", n)
		}
	}
}
