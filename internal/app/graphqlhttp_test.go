package app_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

type rawResult struct {
	status int
	header http.Header
	body   map[string]any
}

func send(t *testing.T, method, u, contentType, accept, body string) rawResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := rawResult{status: res.StatusCode, header: res.Header}
	if err := json.Unmarshal(b, &out.body); err != nil {
		t.Fatalf("%s %s: body is not JSON: %s", method, u, b)
	}
	return out
}

func TestGraphQLOverHTTPStatusCodes(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	u := s.URL + "/graphql"
	const gqlResp = "application/graphql-response+json"
	cases := []struct {
		name, accept, body string
		status             int
		contentType        string
	}{
		{"parse error, graphql-response+json", gqlResp, `{"query":"{ policy { version"}`, 400, gqlResp},
		{"validation error, graphql-response+json", gqlResp, `{"query":"{ nope }"}`, 400, gqlResp},
		{"variable error, graphql-response+json", gqlResp, `{"query":"query($n: Int){ auditLog(first: $n) { edges { cursor } } }","variables":{"n":"many"}}`, 400, gqlResp},
		{"success, graphql-response+json", gqlResp, `{"query":"{ policy { version } }"}`, 200, gqlResp},
		{"parse error, json", "application/json", `{"query":"{ policy { version"}`, 200, "application/json"},
		{"validation error, json", "application/json", `{"query":"{ nope }"}`, 200, "application/json"},
		{"no Accept means json", "", `{"query":"{ nope }"}`, 200, "application/json"},
		{"body is not JSON", "application/json", `not json`, 400, "application/json"},
		// No batching: each operation is a request of its own, so the abuse
		// limits see every one.
		{"batched request", "application/json", `[{"query":"mutation { logout }"},{"query":"mutation { logout }"}]`, 400, "application/json"},
	}
	for _, c := range cases {
		r := send(t, http.MethodPost, u, "application/json", c.accept, c.body)
		if r.status != c.status || !strings.HasPrefix(r.header.Get("Content-Type"), c.contentType) {
			t.Errorf("%s: status %d, Content-Type %q; want %d, %s (%v)", c.name, r.status, r.header.Get("Content-Type"), c.status, c.contentType, r.body)
		}
		if c.status != 200 || strings.Contains(c.name, "error") {
			if errs, _ := r.body["errors"].([]any); len(errs) == 0 {
				t.Errorf("%s: no errors in %v", c.name, r.body)
			}
		}
	}
	if r := send(t, http.MethodPost, u, "text/plain", "", `{ policy { version } }`); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: status %d, want 415", r.status)
	}
	if r := send(t, http.MethodPut, u, "application/json", "", `{"query":"{ policy { version } }"}`); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT: status %d, Allow %q", r.status, r.header.Get("Allow"))
	}
	r := send(t, http.MethodGet, u+"?query="+url.QueryEscape(`mutation { logout }`), "", gqlResp, "")
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Errorf("mutation over GET: status %d, Allow %q", r.status, r.header.Get("Allow"))
	}
}

func TestAutomaticPersistedQueriesOverGET(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	query := `{ policy { version } }`
	sum := sha256.Sum256([]byte(query))
	ext := `{"persistedQuery":{"version":1,"sha256Hash":"` + hex.EncodeToString(sum[:]) + `"}}`
	byHash := s.URL + "/graphql?extensions=" + url.QueryEscape(ext)

	r := send(t, http.MethodGet, byHash, "", "", "")
	errs, _ := r.body["errors"].([]any)
	if len(errs) == 0 || !strings.Contains(mustJSON(errs), "PERSISTED_QUERY_NOT_FOUND") {
		t.Fatalf("unknown hash: want PERSISTED_QUERY_NOT_FOUND, got %v", r.body)
	}
	r = send(t, http.MethodGet, byHash+"&query="+url.QueryEscape(query), "", "", "")
	if r.body["data"] == nil {
		t.Fatalf("registering the query: %v", r.body)
	}
	r = send(t, http.MethodGet, byHash, "", "", "")
	if r.status != 200 || !strings.Contains(mustJSON(r.body), `"version"`) {
		t.Fatalf("by hash only: status %d %v", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "public") {
		t.Fatalf("an anonymous GET query should be cacheable, Cache-Control %q", cc)
	}
	bad := `{"persistedQuery":{"version":1,"sha256Hash":"` + strings.Repeat("0", 64) + `"}}`
	r = send(t, http.MethodGet, s.URL+"/graphql?extensions="+url.QueryEscape(bad)+"&query="+url.QueryEscape(`{ purposes { id } }`), "", "", "")
	if r.body["data"] != nil {
		t.Fatalf("a query whose hash does not match was accepted: %v", r.body)
	}

	c := s.Register(t, "apq-user")
	req, _ := http.NewRequest(http.MethodGet, byHash, nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("a signed-in GET must not be cached, Cache-Control %q", cc)
	}
}
