// Package web holds the Privacy Center (/) and the partner console
// (/partners): static pages embedded in the binary that use the GraphQL API
// the way any other frontend does. There is no build step; the scripts are
// plain ES modules, and nothing is inline, so a strict Content Security
// Policy (script-src 'self', no inline handlers) fits them.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/consentgraph/consentgraph/internal/httpsec"
)

//go:embed static
var files embed.FS

//go:embed templates/privacy.html
var privacyTemplate string

// PrivacyTemplate is the html/template source of the policy page at
// /privacy; the server fills it from its configuration.
func PrivacyTemplate() string { return privacyTemplate }

// Static is the embedded file tree (index.html, partners.html, assets/...).
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	return sub
}

// Locales is the tree of message catalogues, one flat JSON file per
// language (en.json, ja.json, ...). The pages fetch them from
// /locales/<tag>.json; the server reads the same files for mail, receipts and
// the policy page, so adding a language is adding one file.
func Locales() fs.FS {
	sub, err := fs.Sub(files, "static/locales")
	if err != nil {
		panic(err) // the embedded tree always has static/locales/
	}
	return sub
}

// Routes registers the pages and their assets on mux.
func Routes(mux *http.ServeMux) {
	root := Static()
	mux.Handle("GET /{$}", page(root, "index.html"))
	mux.Handle("GET /partners", page(root, "partners.html"))
	assets := http.FileServerFS(root)
	serveAsset := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		httpsec.SetPageHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		assets.ServeHTTP(w, r)
	})
	mux.Handle("GET /assets/", serveAsset)
	mux.Handle("GET /locales/", serveAsset)
}

func page(root fs.FS, name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(root, path.Clean(name))
		if err != nil {
			http.Error(w, "page not found", http.StatusNotFound)
			return
		}
		httpsec.SetPageHeaders(w)
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write(b)
	})
}
