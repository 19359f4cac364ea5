package app_test

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/fuzzcorpus"
)

// TestGraphQLRequestCorpus sends the seed corpus of graph's
// FuzzGraphQLRequest (graph/testdata/fuzz/FuzzGraphQLRequest) as bodies
// (POST) and query strings (GET) through the whole HTTP stack of a real
// server: the answer is always a JSON GraphQL response with a status below
// 500 and the security headers. The fuzzing itself runs on the graph
// package's request checks and limits, which build without the store.
func TestGraphQLRequestCorpus(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	h := s.App.Handler()
	corpus, err := fuzzcorpus.Read("../../graph/testdata/fuzz/FuzzGraphQLRequest")
	if err != nil {
		t.Fatal(err)
	}
	if len(corpus) == 0 {
		t.Fatal("the corpus is empty")
	}
	for _, in := range corpus {
		post, body := in[0].(bool), in[1].(string)
		req := fuzzcorpus.GraphQLRequest(post, body)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var out struct {
			Data   json.RawMessage   `json:"data"`
			Errors []json.RawMessage `json:"errors"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer to %q is not JSON (status %d): %q", body, rec.Code, rec.Body)
		}
		if len(out.Data) == 0 && len(out.Errors) == 0 {
			t.Fatalf("answer to %q has neither data nor errors: %s", body, rec.Body)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("answer to %q lacks the security headers", body)
		}
	}
}
