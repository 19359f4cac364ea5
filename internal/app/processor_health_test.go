package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Admins see each processor's cached health; the check runs in the
// background, and a user's request never reaches the provider.
func TestProcessorHealthForAdmins(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	var checks atomic.Int32
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			checks.Add(1)
			if !healthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}
	}))
	defer provider.Close()
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: hook
    type: webhook
    purpose: surveys
    fields: [user.demographic.country]
    settings: {url: %q, healthURL: %q, description: "Our survey partner"}
  - name: mem
    type: example
`, provider.URL+"/in", provider.URL+"/healthz"))
	admin := adminClient(t, s)
	type proc struct {
		Name        string
		Description string
		Health      *struct {
			Ok        bool
			CheckedAt time.Time
			Message   *string
		}
	}
	var got struct{ Processors []proc }
	deadline := time.Now().Add(10 * time.Second)
	for {
		admin.Do(t, `{ processors { name description health { ok checkedAt message } } }`, nil).Decode(t, &got)
		if got.Processors[0].Health != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	hook, mem := got.Processors[0], got.Processors[1]
	if hook.Health == nil || !hook.Health.Ok || hook.Health.Message != nil || hook.Health.CheckedAt.IsZero() {
		t.Fatalf("hook health %+v", hook.Health)
	}
	if hook.Description != "Our survey partner" {
		t.Errorf("description override not shown: %q", hook.Description)
	}
	if mem.Health != nil {
		t.Errorf("a plugin without a health check has health %+v", mem.Health)
	}

	// A failing provider shows after the next background check.
	healthy.Store(false)
	if err := s.App.Outbox.CheckHealth(t.Context()); err != nil {
		t.Fatal(err)
	}
	admin.Do(t, `{ processors { name description health { ok checkedAt message } } }`, nil).Decode(t, &got)
	if h := got.Processors[0].Health; h == nil || h.Ok || h.Message == nil || !strings.Contains(*h.Message, "503") {
		t.Fatalf("failing provider shown as %+v", h)
	}

	// Reading health asks the cache, not the provider; and only admins may.
	before := checks.Load()
	user, _ := userWithData(t, s, "health_ann", false)
	if r := user.Do(t, `{ processors { name health { ok } } }`, nil); r.Code() != "FORBIDDEN" {
		t.Errorf("a user read processor health: %s", r.Raw)
	}
	admin.Do(t, `{ processors { health { ok } } }`, nil).Decode(t, new(any))
	if checks.Load() != before {
		t.Error("reading health called the provider")
	}
}
