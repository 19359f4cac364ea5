package web

import (
	"embed"
	"net/http"
	"strings"

	"github.com/consentgraph/consentgraph/internal/httpsec"
)

// The development explorer (GET /graphql for a browser in --dev): a small
// page of our own rather than GraphiQL, so nothing is fetched from a CDN
// and it runs under PageCSP like the other pages.
//
//go:embed explorer
var explorer embed.FS

// WantsHTML reports whether r is a browser's navigation to an endpoint: a
// GET whose Accept asks for HTML ahead of any JSON answer. GraphQL clients
// that send GET ask for JSON and are not matched.
func WantsHTML(r *http.Request) bool {
	if r.Method != http.MethodGet || r.URL.RawQuery != "" {
		return false
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		media, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.ToLower(strings.TrimSpace(media)) {
		case "text/html", "application/xhtml+xml":
			return true
		case "application/json", "application/graphql-response+json":
			return false
		}
	}
	return false
}

// ExplorerPage serves the explorer's HTML.
func ExplorerPage() http.Handler { return page(explorer, "explorer/index.html") }

// ExplorerRoutes registers the explorer's assets, /_dev/explorer.{js,css}.
// Only --dev calls it.
func ExplorerRoutes(mux *http.ServeMux) {
	for name, ctype := range map[string]string{"explorer.js": "text/javascript; charset=utf-8", "explorer.css": "text/css; charset=utf-8"} {
		b, err := explorer.ReadFile("explorer/" + name)
		if err != nil {
			panic(err) // embedded above
		}
		mux.HandleFunc("GET /_dev/"+name, func(w http.ResponseWriter, _ *http.Request) {
			httpsec.SetPageHeaders(w)
			h := w.Header()
			h.Set("Content-Type", ctype)
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Content-Type-Options", "nosniff")
			_, _ = w.Write(b)
		})
	}
}
