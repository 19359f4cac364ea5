package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/plugintest"
	"github.com/consentgraph/consentgraph/plugins/webhook"
)

// receiver is a Standard Webhooks consumer: it applies each webhook-id
// once and keeps, per subject, whether it was last delivered or forgotten.
type receiver struct {
	mu      sync.Mutex
	seen    map[string]bool
	holding map[string]bool
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	id := r.Header.Get("webhook-id")
	if id == "" || r.Header.Get("webhook-signature") == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if !rc.seen[id] {
		var p webhook.Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.seen[id] = true
		rc.holding[p.Data.Subject] = p.Type == "subject.delivered"
	}
	w.WriteHeader(http.StatusNoContent)
}

func TestConformance(t *testing.T) {
	rc := &receiver{seen: map[string]bool{}, holding: map[string]bool{}}
	plugintest.Conformance(t, plugintest.Options{
		Type: webhook.Type, Provider: rc,
		Settings: func(baseURL string) map[string]any {
			return map[string]any{"url": baseURL + "/hook", "secret": "whsec_c2VjcmV0"}
		},
		Holds:   func(r plugins.Request) bool { rc.mu.Lock(); defer rc.mu.Unlock(); return rc.holding[r.Subject] },
		Effects: func() int { rc.mu.Lock(); defer rc.mu.Unlock(); return len(rc.seen) },
	})
}

func TestHealth(t *testing.T) {
	rec := plugintest.NewRecorder(t, nil)
	_, factory, _ := plugins.Lookup(webhook.Type)
	build := func(s map[string]any) plugins.HealthChecker {
		t.Helper()
		p, err := factory(plugintest.NewEnv(t, webhook.Type, "hook", s))
		if err != nil {
			t.Fatal(err)
		}
		return p.(plugins.HealthChecker)
	}
	ctx := context.Background()
	if err := build(map[string]any{"url": rec.URL}).Health(ctx); err != nil || len(rec.Requests()) != 0 {
		t.Fatalf("without healthURL: %v, %d requests", err, len(rec.Requests()))
	}
	p := build(map[string]any{"url": rec.URL, "healthURL": rec.URL + "/healthz"})
	if err := p.Health(ctx); err != nil {
		t.Fatal(err)
	}
	rec.Respond(plugintest.Response{Status: http.StatusServiceUnavailable})
	if err := p.Health(ctx); err == nil {
		t.Fatal("503 is healthy")
	}
	if got := rec.Requests(); got[0].Method != http.MethodGet || got[0].Path != "/healthz" {
		t.Errorf("asked %s %s", got[0].Method, got[0].Path)
	}
}
