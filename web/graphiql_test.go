package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

// A binary built without GraphiQL's assets serves the explorer at the same
// place, and the explorer says how to build GraphiQL; with them, GraphiQL
// under its own CSP.
func TestGraphiQLFallsBackToTheExplorer(t *testing.T) {
	page, err := fs.ReadFile(graphiql, "graphiql/page.html")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(fsys fs.FS) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		graphiqlPage(fsys).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/graphql", nil))
		return rec
	}
	without := fstest.MapFS{"graphiql/page.html": {Data: page}, "graphiql/dist/README.txt": {Data: []byte("x")}}
	rec := serve(without)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "scripts/build-graphiql.sh") ||
		!strings.Contains(rec.Body.String(), "/_dev/explorer.js") || rec.Header().Get("Content-Security-Policy") == GraphiQLCSP {
		t.Errorf("without GraphiQL: %d %v\n%s", rec.Code, rec.Header(), rec.Body)
	}
	with := fstest.MapFS{"graphiql/page.html": {Data: page}, "graphiql/dist/graphiql.js": {Data: []byte("//")}}
	rec = serve(with)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "/_dev/graphiql/graphiql.js") ||
		rec.Header().Get("Content-Security-Policy") != GraphiQLCSP {
		t.Errorf("with GraphiQL: %d %v\n%s", rec.Code, rec.Header(), rec.Body)
	}
}
