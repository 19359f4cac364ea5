package contacts_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/plugintest"

	"example.com/processor-module/contacts"
)

// fakeAPI follows the contacts API of the package comment.
type fakeAPI struct {
	mu       sync.Mutex
	contacts map[string]map[string]string
	writes   int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer s3cret" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/v1/health" {
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/v1/contacts/")
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	var body map[string]string
	_ = json.NewDecoder(r.Body).Decode(&body)
	c, exists := f.contacts[id]
	switch {
	case r.Method == http.MethodPut:
		if !exists || !equal(c, body) {
			f.writes++
		}
		f.contacts[id] = body
	case !exists:
		w.WriteHeader(http.StatusNotFound)
	case r.Method == http.MethodPatch:
		if c["status"] != body["status"] {
			f.writes++
		}
		c["status"] = body["status"]
	case r.Method == http.MethodDelete:
		delete(f.contacts, id)
		f.writes++
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestConformance(t *testing.T) {
	fake := &fakeAPI{contacts: map[string]map[string]string{}}
	plugintest.Conformance(t, plugintest.Options{
		Type:     contacts.Type,
		Provider: fake,
		Settings: func(baseURL string) map[string]any {
			return map[string]any{"token": "s3cret", "baseURL": baseURL, "timeout": "5s"}
		},
		Holds: func(r plugins.Request) bool {
			fake.mu.Lock()
			defer fake.mu.Unlock()
			c, ok := fake.contacts[r.Subject]
			return ok && c["status"] == "subscribed"
		},
		Effects:         func() int { fake.mu.Lock(); defer fake.mu.Unlock(); return fake.writes },
		RateLimitHeader: contacts.RateLimitHeader,
	})
}

func TestSettingsAreChecked(t *testing.T) {
	_, factory, _ := plugins.Lookup(contacts.Type)
	for _, s := range []map[string]any{
		{},                                     // token missing
		{"token": "t", "timeout": "soon"},      // not a duration
		{"token": "t", "baseUrl": "https://x"}, // typo: baseURL
	} {
		if _, err := factory(plugintest.NewEnv(t, contacts.Type, "c", s)); err == nil {
			t.Errorf("settings %v accepted", s)
		}
	}
	if _, err := factory(plugintest.NewEnv(t, contacts.Type, "c", map[string]any{"token": "t", "description": "Our CRM"})); err != nil {
		t.Errorf("the core's description setting refused: %v", err)
	}
}
