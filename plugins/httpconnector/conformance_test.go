package httpconnector_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/plugins"
	_ "github.com/consentgraph/consentgraph/plugins/httpconnector"
	"github.com/consentgraph/consentgraph/plugins/plugintest"
)

// contactsAPI is the simplest provider the connector is made for: a
// contact per subject, PUT to create or replace it (the same body twice
// changes nothing), DELETE to remove it (404 when there is none).
type contactsAPI struct {
	mu       sync.Mutex
	contacts map[string]string
	changes  int
}

func (c *contactsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	subject, ok := strings.CutPrefix(r.URL.Path, "/contacts/")
	if !ok || r.Header.Get("Authorization") != "Bearer t0ken" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		if c.contacts[subject] != string(body) {
			c.contacts[subject] = string(body)
			c.changes++
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		if _, ok := c.contacts[subject]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		delete(c.contacts, subject)
		c.changes++
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// TestConformance runs the plugin author's conformance kit on a declared
// connector, as an operator's configuration would set it up.
func TestConformance(t *testing.T) {
	var api *contactsAPI
	plugintest.Conformance(t, plugintest.Options{
		Type: "http",
		Provider: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			api.ServeHTTP(w, r)
		}),
		Settings: func(base string) map[string]any {
			api = &contactsAPI{contacts: map[string]string{}}
			return map[string]any{
				"headers": map[string]any{"Authorization": "Bearer t0ken"},
				"deliver": map[string]any{"method": "PUT", "url": base + "/contacts/{{.Subject}}",
					"body": `{"email": {{index .Fields "user.contact.email"}}}`},
				"forget":               map[string]any{"method": "DELETE", "url": base + "/contacts/{{.Subject}}"},
				"rateLimitResetHeader": "x-ratelimit-reset",
			}
		},
		Fields: func(subject string) map[string]string {
			return map[string]string{plugins.CategoryEmail: subject + "@example.org"}
		},
		Holds: func(d plugins.Request) bool {
			api.mu.Lock()
			defer api.mu.Unlock()
			_, ok := api.contacts[d.Subject]
			return ok
		},
		Effects: func() int {
			api.mu.Lock()
			defer api.mu.Unlock()
			return api.changes
		},
		RateLimitHeader: "x-ratelimit-reset",
		RateLimitValue:  "7",
		RateLimitWait:   7 * time.Second,
	})
}
