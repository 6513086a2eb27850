// Package web embeds the pages that `firegate dev` serves: the demo page at
// `/` (plain HTML, CSS and an ES2020 module, app.js, on top of firegate.js,
// the committed browser build of @firegate/client from clients/js) and the
// React example (examples/react-clerk, built to react/app.js) at `/react/`.
// The built files are committed so the Go binary needs no Node; the JS tests
// fail when they are stale (clients/js/scripts/build.mjs --check).
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// static holds the pages.
//
//go:embed static/index.html static/app.js static/firegate.js static/style.css
//go:embed static/react/index.html static/react/app.js static/react/style.css
var static embed.FS

// contentTypes maps the extensions of the embedded files to their media
// types. It is explicit (not mime.TypeByExtension) so that the host's
// /etc/mime.types cannot change what the page is served as.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
	".txt":  "text/plain; charset=utf-8",
}

// ContentSecurityPolicy is sent with every page asset: only same-origin
// scripts, styles and connections (WebSocket included), no inline script.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// FS returns the embedded static files (index.html, app.js, firegate.js,
// style.css, react/index.html, react/app.js, react/style.css) rooted at the
// static directory.
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil { // cannot happen: the directory is embedded
		panic("web: embedded static directory missing: " + err.Error())
	}
	return sub
}

// Handler serves the embedded pages: `/` is index.html, `/react/` is
// react/index.html (and `/react` redirects there), and every other embedded
// file is served under its own name. Only GET and HEAD are allowed
// (405 otherwise); unknown paths are 404. Responses carry an explicit
// Content-Type, an ETag (If-None-Match is honoured), Cache-Control no-cache,
// X-Content-Type-Options nosniff and ContentSecurityPolicy. The returned
// handler is safe for concurrent use; the assets are read once, here.
func Handler() http.Handler {
	assets := make(map[string]asset)
	root := FS()
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		assets["/"+p] = asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil { // cannot happen: the files are embedded
		panic("web: reading embedded files: " + err.Error())
	}
	assets["/"] = assets["/index.html"]
	assets["/react/"] = assets["/react/index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/react" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			http.Redirect(w, r, "/react/", http.StatusMovedPermanently)
			return
		}
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("ETag", a.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if strings.HasPrefix(a.contentType, "text/html") {
			h.Set("Content-Security-Policy", ContentSecurityPolicy)
		}
		// ServeContent handles If-None-Match (via the ETag header), HEAD and
		// ranges; a zero modtime sends no Last-Modified.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
