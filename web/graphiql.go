package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// GraphiQL's assets: built from npm by scripts/build-graphiql.sh into
// graphiql/dist (not committed; a README keeps the directory so this
// compiles). The page and its stylesheet are ours.
//
//go:embed graphiql/dist graphiql/page.html graphiql/page.css
var graphiql embed.FS

// GraphiQLCSP is the policy of the GraphiQL page and its assets in --dev.
// It differs from PageCSP only where GraphiQL's editor (Monaco) needs it:
// inline styles it injects, workers and fonts from this origin. Nothing
// comes from another origin.
const GraphiQLCSP = "default-src 'none'; script-src 'self'; worker-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// HasGraphiQL reports whether this binary was built with GraphiQL's assets.
func HasGraphiQL() bool { return hasGraphiQL(graphiql) }

func hasGraphiQL(fsys fs.FS) bool {
	_, err := fs.Stat(fsys, "graphiql/dist/graphiql.js")
	return err == nil
}

// GraphiQLPage serves GraphiQL's HTML, or the explorer when the binary has
// no GraphiQL build (the explorer then says how to get one).
func GraphiQLPage() http.Handler { return graphiqlPage(graphiql) }

func graphiqlPage(fsys fs.FS) http.Handler {
	if !hasGraphiQL(fsys) {
		return ExplorerPage()
	}
	b := mustRead(fsys, "graphiql/page.html")
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		setGraphiQLHeaders(w, "text/html; charset=utf-8")
		_, _ = w.Write(b)
	})
}

// GraphiQLRoutes registers GraphiQL's assets under /_dev/graphiql/ (and the
// explorer's, the fallback). Only --dev calls it.
func GraphiQLRoutes(mux *http.ServeMux) {
	ExplorerRoutes(mux)
	if !HasGraphiQL() {
		return
	}
	dist, err := fs.Sub(graphiql, "graphiql/dist")
	if err != nil {
		panic(err)
	}
	// Read once: fs.ReadFile copies an embedded file, and Monaco's are large.
	assets := map[string][]byte{}
	entries, err := fs.ReadDir(dist, ".")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			assets[e.Name()] = mustRead(dist, e.Name())
		}
	}
	assets["page.css"] = mustRead(graphiql, "graphiql/page.css")
	mux.HandleFunc("GET /_dev/graphiql/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		b, ok := assets[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		setGraphiQLHeaders(w, contentType(name))
		_, _ = w.Write(b)
	})
}

func setGraphiQLHeaders(w http.ResponseWriter, ctype string) {
	h := w.Header()
	h.Set("Content-Security-Policy", GraphiQLCSP)
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".ttf":
		return "font/ttf"
	case ".woff2":
		return "font/woff2"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// mustRead reads an embedded file that is known to be there.
func mustRead(fsys fs.FS, name string) []byte {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		panic(err) // embedded
	}
	return b
}
