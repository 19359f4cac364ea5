package surveymonkey_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/plugintest"
	"github.com/consentgraph/consentgraph/plugins/surveymonkey"
)

// fakeAPI follows the SurveyMonkey API v3 contacts documentation:
// POST /v3/contact_lists/{id}/contacts, PATCH and DELETE /v3/contacts/{id}.
type fakeAPI struct {
	mu       sync.Mutex
	contacts map[string]map[string]any
	next     int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v3/contact_lists/1234/contacts":
		f.next++
		id := fmt.Sprint(1000 + f.next)
		body["id"] = id
		f.contacts[id] = body
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(body)
	case strings.HasPrefix(r.URL.Path, "/v3/contacts/"):
		id := strings.TrimPrefix(r.URL.Path, "/v3/contacts/")
		c, ok := f.contacts[id]
		switch {
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			return
		case r.Method == http.MethodDelete:
			delete(f.contacts, id)
		case r.Method == http.MethodPatch:
			for k, v := range body {
				c[k] = v
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestConformance(t *testing.T) {
	fake := &fakeAPI{contacts: map[string]map[string]any{}}
	plugintest.Conformance(t, plugintest.Options{
		Type: surveymonkey.Type, Provider: fake,
		Settings: func(baseURL string) map[string]any {
			// listId unquoted in YAML is a number; it must still work.
			return map[string]any{"token": "tok", "listId": uint64(1234), "baseURL": baseURL}
		},
		Holds: func(r plugins.Request) bool {
			fake.mu.Lock()
			defer fake.mu.Unlock()
			for _, c := range fake.contacts {
				if c["email"] == r.Fields[plugins.CategoryEmail] {
					return true
				}
			}
			return false
		},
		Effects: func() int { fake.mu.Lock(); defer fake.mu.Unlock(); return fake.next },
	})
}
