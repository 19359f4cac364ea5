// Package web holds the Privacy Center (/) and the partner console
// (/partners): static pages embedded in the binary that use the GraphQL API
// the way any other frontend does. There is no build step; the scripts are
// plain ES modules, and nothing is inline, so a strict Content Security
// Policy (script-src 'self', no inline handlers) fits them.
package web

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"sort"
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
	mux.Handle("GET /locales/index.json", http.HandlerFunc(serveLocaleIndex))
	mux.Handle("GET /locales/", serveAsset)
}

// Language is one entry of /locales/index.json: a catalogue's tag and its
// name in its own language (for the switcher).
type Language struct {
	Tag  string `json:"tag"`
	Name string `json:"name"`
}

// Languages lists the catalogues under static/locales, sorted by tag. It is
// read from the files themselves, so adding a language is adding its file.
func Languages() ([]Language, error) {
	entries, err := fs.ReadDir(Locales(), ".")
	if err != nil {
		return nil, fmt.Errorf("read locales: %w", err)
	}
	var out []Language
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") || name == "index.json" {
			continue
		}
		b, err := fs.ReadFile(Locales(), name)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		var meta struct {
			Tag  string `json:"_meta.tag"`
			Name string `json:"_meta.name"`
		}
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, fmt.Errorf("locale %s: %w", name, err)
		}
		if meta.Tag != strings.TrimSuffix(name, ".json") || meta.Name == "" {
			return nil, fmt.Errorf("locale %s: _meta.tag %q and _meta.name %q must name the file's language", name, meta.Tag, meta.Name)
		}
		out = append(out, Language{Tag: meta.Tag, Name: meta.Name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tag < out[j].Tag })
	return out, nil
}

// serveLocaleIndex is GET /locales/index.json: the languages the pages can
// offer, computed from the embedded catalogues.
func serveLocaleIndex(w http.ResponseWriter, _ *http.Request) {
	langs, err := Languages()
	if err != nil {
		http.Error(w, "locales unreadable", http.StatusInternalServerError)
		return
	}
	httpsec.SetPageHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_ = json.NewEncoder(w).Encode(langs)
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
