package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// CheckParams refuses a request that is not a well-formed GraphQL-over-HTTP
// request before gqlgen sees it (the GraphQL-over-HTTP specification allows 400 for invalid
// parameters; gqlgen would answer "no operation provided" as a validation
// error): query, operationName, variables and extensions of the right
// JSON types, and a query or a persisted query's hash.
func CheckParams(r *http.Request) error {
	var query, operationName, variables, extensions json.RawMessage
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if !q.Has("query") && !q.Has("extensions") {
			return errors.New("the request has no query parameter")
		}
		return nil
	case http.MethodPost:
		if r.Header.Get("Upgrade") != "" || r.Body == nil {
			return nil
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return errors.New("could not read the request body")
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var params map[string]json.RawMessage
		if err := json.Unmarshal(body, &params); err != nil {
			return errors.New("the body must be a JSON object with a query")
		}
		query, operationName, variables, extensions = params["query"], params["operationName"], params["variables"], params["extensions"]
	default:
		return nil
	}
	is := func(v json.RawMessage, kinds string) bool {
		v = bytes.TrimSpace(v)
		if len(v) == 0 {
			return true // absent
		}
		switch v[0] {
		case '"':
			return bytes.ContainsRune([]byte(kinds), 's')
		case '{':
			return bytes.ContainsRune([]byte(kinds), 'o')
		case 'n':
			return bytes.ContainsRune([]byte(kinds), 'n')
		}
		return false
	}
	switch {
	case !is(query, "sn"):
		return errors.New("query must be a string")
	case !is(operationName, "sn"):
		return errors.New("operationName must be a string or null")
	case !is(variables, "on"):
		return errors.New("variables must be an object or null")
	case !is(extensions, "on"):
		return errors.New("extensions must be an object or null")
	case len(bytes.TrimSpace(query)) == 0 && len(bytes.TrimSpace(extensions)) == 0:
		return errors.New("the request has no query")
	}
	return nil
}
