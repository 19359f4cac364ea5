// Package web holds the Privacy Center (/) and the partner console
// (/partners): static pages embedded in the binary that use the GraphQL API
// the way any other frontend does. There is no build step; the scripts are
// plain ES modules, and nothing is inline, so a strict Content Security
// Policy (script-src 'self', no inline handlers) fits them.
package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/consentgraph/consentgraph/internal/httpsec"
	"github.com/consentgraph/consentgraph/internal/i18n"
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
	mux.Handle("GET /locales/index.json", http.HandlerFunc(serveLocaleIndex))
	mux.Handle("GET /locales/", serveAsset)
}

// Language is one entry of /locales/index.json: a catalogue's tag and its
// name in its own language (for the switcher).
type Language struct {
	Tag  string `json:"tag"`
	Name string `json:"name"`
}

// Texts is the message catalogues under static/locales, loaded and
// validated once per process (internal/i18n): the server's texts and the
// pages' language index both come from it.
var Texts = sync.OnceValues(func() (*i18n.Bundle, error) { return i18n.Load(Locales()) })

// Languages lists the catalogues, English first. It is read from the files
// themselves, so adding a language is adding its file.
func Languages() ([]Language, error) {
	b, err := Texts()
	if err != nil {
		return nil, err
	}
	var out []Language
	for _, tag := range b.Languages() {
		out = append(out, Language{Tag: tag, Name: b.Name(tag)})
	}
	return out, nil
}

// localeIndex is the body of /locales/index.json, encoded once: the
// embedded catalogues never change while the process runs.
var localeIndex = sync.OnceValues(func() ([]byte, error) {
	langs, err := Languages()
	if err != nil {
		return nil, err
	}
	return json.Marshal(langs)
})

// serveLocaleIndex is GET /locales/index.json: the languages the pages can
// offer, computed from the embedded catalogues.
func serveLocaleIndex(w http.ResponseWriter, _ *http.Request) {
	body, err := localeIndex()
	if err != nil {
		http.Error(w, "locales unreadable", http.StatusInternalServerError)
		return
	}
	httpsec.SetPageHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(body)
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
