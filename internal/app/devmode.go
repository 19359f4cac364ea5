package app

import (
	"bytes"
	"net/http"

	"github.com/vektah/gqlparser/v2/formatter"

	"github.com/consentgraph/consentgraph/graph"
	"github.com/consentgraph/consentgraph/web"
)

// devRoutes adds what --dev offers tools and people exploring the API: the
// explorer page at GET /graphql for a browser, and the schema as SDL at
// GET /schema.graphql. Outside --dev neither is registered.
func (a *App) devRoutes(mux *http.ServeMux, api http.Handler) http.Handler {
	sdl := SchemaSDL()
	mux.HandleFunc("GET /schema.graphql", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(sdl)
	})
	web.ExplorerRoutes(mux)
	page := web.ExplorerPage()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if web.WantsHTML(r) {
			page.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// SchemaSDL prints the served schema, as gqlgen parsed it from
// schema/*.graphqls, in the SDL formatter's canonical form.
func SchemaSDL() []byte {
	var buf bytes.Buffer
	formatter.NewFormatter(&buf).FormatSchema(graph.NewExecutableSchema(graph.Config{}).Schema())
	return buf.Bytes()
}
