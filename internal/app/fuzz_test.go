package app_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// FuzzGraphQLRequest sends arbitrary bodies (POST) and query strings (GET)
// through the whole HTTP stack of a real server: the answer is always a
// JSON GraphQL response with a status below 500 and the security headers,
// whatever arrives. Seeds: below and testdata/fuzz/FuzzGraphQLRequest.
func FuzzGraphQLRequest(f *testing.F) {
	s := apptest.Start(f)
	h := s.App.Handler()
	for _, seed := range []string{
		`{"query":"{ policy { version } }"}`,
		`{"query":"query($r: String!) { verifyReceipt(receipt: $r) { valid } }","variables":{"r":"a.b.c"}}`,
		`{"query":"mutation { login(username: \"x\", password: \"y\") { token } }"}`,
		`{"query":"{ policy { version","variables":[]}`,
		`{"query":"{ __schema { types { name } } }"}`,
		`{"query":1,"variables":"x","operationName":{}}`,
		`{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"00"}}}`,
		`{"query":"{ me { id } }","operationName":"nope"}`,
		`[{"query":"{ policy { version } }"}]`,
		`{"query":"query { a: policy { version } b: policy { version } }"}`,
		"\x00\xff{",
	} {
		f.Add(true, seed)
		f.Add(false, seed)
	}
	f.Fuzz(func(t *testing.T, post bool, body string) {
		var req *http.Request
		if post {
			req = httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
		} else {
			var p map[string]any
			q := url.Values{"query": {body}}
			if json.Unmarshal([]byte(body), &p) == nil {
				q = url.Values{}
				for k, v := range p {
					b, _ := json.Marshal(v)
					if str, ok := v.(string); ok {
						b = []byte(str)
					}
					q.Set(k, string(b))
				}
			}
			req = httptest.NewRequest(http.MethodGet, "/graphql?"+q.Encode(), nil)
		}
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
	})
}
