package httpconnector_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/httpconnector"
)

func settingsOf(t *testing.T, y string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A user's value cannot change the request's shape: in the URL it is one
// percent-encoded segment, in the body one JSON string.
func TestValuesAreEscapedWhereTheyLand(t *testing.T) {
	var gotPath, gotQuery, gotBody, gotKey string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery, gotKey = r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Idempotency-Key")
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	p, err := httpconnector.New(plugins.Env{Name: "crm", HTTPClient: srv.Client(), Settings: settingsOf(t, `
deliver: {method: PUT, url: "`+srv.URL+`/contacts/{{.Subject}}?c={{index .Fields \"user.demographic.country\"}}", body: '{"email": {{index .Fields "user.contact.email"}}, "explicit": {{json .Subject}}}'}
forget: {method: DELETE, url: "`+srv.URL+`/contacts/{{.Subject}}"}
`)})
	if err != nil {
		t.Fatal(err)
	}
	evil := `x"}, "admin": true, "y": {"z": "{{.ID}}`
	_, err = p.Deliver(context.Background(), plugins.Request{ID: "item-1", Subject: "../../admin?x=1#", Fields: map[string]string{
		"user.contact.email": evil, "user.demographic.country": "DE&admin=1",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/contacts/..%2F..%2Fadmin%3Fx%3D1%23" || gotQuery != "c=DE%26admin%3D1" || gotKey != "item-1" {
		t.Errorf("path %q query %q key %q", gotPath, gotQuery, gotKey)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(gotBody), &body); err != nil || len(body) != 2 || body["email"] != evil || body["explicit"] != "../../admin?x=1#" {
		t.Errorf("body %s (%v): the value escaped its JSON string", gotBody, err)
	}
}

func TestBadConfigurationIsAStartUpError(t *testing.T) {
	ok := `forget: {method: DELETE, url: "https://x.example/{{.Subject}}"}`
	cases := map[string]string{
		"deliver and settings.forget are required": ok,
		"settings.deliver":                         ok + "\ndeliver: {method: PUT, url: \"https://x.example/{{.Subjct}}\"}",
		"function \"nope\" not defined":            ok + "\ndeliver: {method: PUT, url: \"https://x.example/{{nope .Subject}}\"}",
		"body is not valid JSON":                   ok + "\ndeliver: {method: PUT, url: \"https://x.example/\", body: '{\"email\": {{.Subject}}'}",
		"not one of":                               ok + "\ndeliver: {method: FETCH, url: \"https://x.example/\"}",
		"not an absolute http(s) URL":              ok + "\ndeliver: {method: PUT, url: \"/contacts\"}",
		"unknown field \"colour\"":                 ok + "\ncolour: red\ndeliver: {method: PUT, url: \"https://x.example/\"}",
		"refFrom is only read":                     "forget: {method: DELETE, url: \"https://x.example/\", refFrom: id}\ndeliver: {method: PUT, url: \"https://x.example/\"}",
		"not a valid header":                       ok + "\nheaders: {\"Bad Name\": x}\ndeliver: {method: PUT, url: \"https://x.example/\"}",
	}
	for want, y := range cases {
		_, err := httpconnector.New(plugins.Env{Name: "crm", Settings: settingsOf(t, y)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("settings %s: error %v, want one saying %q", y, err, want)
		}
	}
}
