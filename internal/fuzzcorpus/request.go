package fuzzcorpus

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
)

// GraphQLRequest is the request FuzzGraphQLRequest's input (post, body)
// stands for, the same in the fuzz target and in the whole-server replay:
// the body as a JSON POST to /graphql, or (post false) its JSON object's
// members as GET query parameters, or the whole body as the query when it
// is not an object.
func GraphQLRequest(post bool, body string) *http.Request {
	if post {
		req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		return req
	}
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
	return httptest.NewRequest(http.MethodGet, "/graphql?"+q.Encode(), nil)
}
