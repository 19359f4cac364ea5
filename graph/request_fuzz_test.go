package graph_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"

	"github.com/consentgraph/consentgraph/graph"
	"github.com/consentgraph/consentgraph/internal/fuzzcorpus"
)

// The server's default limits (internal/config) and parser token cap
// (internal/app's parserTokens).
const (
	maxFields     = 500
	maxDepth      = 12
	maxComplexity = 5000
	parserTokens  = 10_000
)

// requestLimits is the part of the server's GraphQL handler that reads a
// request: CheckParams, gqlgen's GET and POST transports, the query cache,
// persisted queries and every limit checked before execution, in
// internal/app's order. Execution is replaced by an answer of {} that
// first checks what the limits let through, so nothing here needs the
// services or the store.
func requestLimits(t *testing.T) http.Handler {
	srv := handler.New(graph.NewExecutableSchema(graph.Config{
		Resolvers:  &graph.Resolver{},
		Complexity: graph.Costs(),
		Directives: graph.Directives(func(context.Context, string) error { return nil }),
	}))
	graph.UseRequestLimits(srv, graph.RequestLimits{MaxFields: maxFields, MaxDepth: maxDepth,
		MaxComplexity: maxComplexity, ParserTokens: parserTokens, CacheSize: 100})
	srv.AroundOperations(func(ctx context.Context, _ graphql.OperationHandler) graphql.ResponseHandler {
		oc := graphql.GetOperationContext(ctx)
		if n := graph.CountFields(oc.Doc, maxFields); n > maxFields {
			t.Errorf("an operation of more than %d fields passed the field cap: %q", maxFields, oc.RawQuery)
		}
		if c := extension.GetComplexityStats(ctx); c == nil || c.Complexity > maxComplexity {
			t.Errorf("an operation over the complexity limit (stats %+v) passed: %q", c, oc.RawQuery)
		}
		return graphql.OneShot(&graphql.Response{Data: json.RawMessage(`{}`)})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := graph.CheckParams(r); err != nil {
			if err.Error() == "" {
				t.Errorf("CheckParams refused %s %s without a reason", r.Method, r.URL)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": err.Error(), "extensions": map[string]any{"code": "BAD_REQUEST"}}}})
			return
		}
		srv.ServeHTTP(w, r)
	})
}

// FuzzGraphQLRequest sends arbitrary bodies (POST) and query strings (GET)
// through the request checks and limits of the server's GraphQL handler:
// the answer is always a JSON GraphQL response with a status below 500,
// every error has a message, and no operation over the field, depth or
// complexity limit gets through. Seeds: testdata/fuzz/FuzzGraphQLRequest,
// which internal/app's TestGraphQLRequestCorpus also sends to a whole real
// server.
func FuzzGraphQLRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, post bool, body string) {
		rec := httptest.NewRecorder()
		requestLimits(t).ServeHTTP(rec, fuzzcorpus.GraphQLRequest(post, body))
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var out struct {
			Data   json.RawMessage `json:"data"`
			Errors []struct {
				Message string `json:"message"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer to %q is not JSON (status %d): %q", body, rec.Code, rec.Body)
		}
		if len(out.Data) == 0 && len(out.Errors) == 0 {
			t.Fatalf("answer to %q has neither data nor errors: %s", body, rec.Body)
		}
		for _, e := range out.Errors {
			if e.Message == "" {
				t.Fatalf("answer to %q has an error without a message: %s", body, rec.Body)
			}
		}
	})
}
