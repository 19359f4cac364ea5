package app

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/vektah/gqlparser/v2/formatter"

	"github.com/consentgraph/consentgraph/graph"
	"github.com/consentgraph/consentgraph/web"
)

// devRoutes adds what --dev offers tools and people exploring the API:
// GraphiQL (or, in a binary built without it, the explorer) at GET /graphql
// for a browser, and the schema as SDL at
// GET /schema.graphql. Outside --dev neither is registered.
func (a *App) devRoutes(mux *http.ServeMux, api http.Handler) http.Handler {
	sdl := SchemaSDL()
	mux.HandleFunc("GET /schema.graphql", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(sdl)
	})
	web.GraphiQLRoutes(mux)
	page := web.GraphiQLPage()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if web.WantsHTML(r) {
			page.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// SchemaSDL prints the served schema, as gqlgen parsed it from
// schema/*.graphqls, in the SDL formatter's canonical form, with a blank
// line between definitions for people reading it (and the explorer's
// filter, which shows whole definitions).
func SchemaSDL() []byte {
	var buf bytes.Buffer
	formatter.NewFormatter(&buf).FormatSchema(graph.NewExecutableSchema(graph.Config{}).Schema())
	return separateDefinitions(buf.Bytes())
}

// separateDefinitions puts a blank line before every top-level definition
// of sdl (before its description, when it has one). It follows
// descriptions and the nesting of braces and parentheses; the formatter
// writes no braces inside strings of ours.
func separateDefinitions(sdl []byte) []byte {
	var out bytes.Buffer
	depth, inDesc, afterDesc := 0, false, false
	for i, line := range strings.Split(strings.TrimRight(string(sdl), "\n"), "\n") {
		top := depth == 0 && !inDesc
		if top && i > 0 && !afterDesc && line != "" && line[0] != ' ' && line[0] != '\t' {
			out.WriteByte('\n')
		}
		out.WriteString(line)
		out.WriteByte('\n')
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, `"""`) || inDesc:
			if strings.Count(line, `"""`)%2 == 1 {
				inDesc = !inDesc
			}
			afterDesc = !inDesc && depth == 0
		case strings.HasPrefix(trimmed, `"`):
			afterDesc = depth == 0
		default:
			afterDesc = false
			depth += strings.Count(line, "{") + strings.Count(line, "(") - strings.Count(line, "}") - strings.Count(line, ")")
		}
	}
	return out.Bytes()
}
