package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// A processor that received someone's data is told to forget them even when
// the server stops right after the erasure, before any dispatcher ran: the
// forget was stored with the erasure and goes out after the restart.
func TestErasureForgetSurvivesRestart(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []map[string]any
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev map[string]any
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	path := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf("processors:\n  - name: hook\n    type: webhook\n    purpose: surveys\n    fields: [user.demographic.country]\n    settings: {url: %q}\n", receiver.URL)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := apptest.ConfigOn(t, apptest.Kind()) // a store of its own, kept across restarts
	cfg.ConfigFile, cfg.OutboxPoll = path, 20*time.Millisecond

	s := apptest.StartWith(t, cfg)
	c := s.Register(t, "forgettable")
	if r := c.Do(t, `mutation { updateProfile(input: {country: "NL"}) { id } grantConsent(purpose: "surveys") { receipt } }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(events) == 1 }, "the delivery")

	// Stop dispatching, erase, and stop the server at once.
	s.Close()
	cfg.OutboxPoll = -1
	s = apptest.StartWith(t, cfg)
	login := s.Client()
	var out struct{ Login struct{ Token string } }
	login.Do(t, `mutation { login(username: "forgettable", password: "correct horse battery") { token } }`, nil).Decode(t, &out)
	login.Token = out.Login.Token
	if r := login.Do(t, `mutation { deleteMyAccount(password: "correct horse battery") }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	s.Close()

	cfg.OutboxPoll = 20 * time.Millisecond
	s = apptest.StartWith(t, cfg)
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(events) == 2 }, "the forget after the restart")
	mu.Lock()
	defer mu.Unlock()
	subject := func(ev map[string]any) string {
		d, _ := ev["data"].(map[string]any)
		s, _ := d["subject"].(string)
		return s
	}
	first, second := events[0], events[1]
	if first["type"] != "subject.delivered" || second["type"] != "subject.forgotten" ||
		subject(first) == "" || subject(first) != subject(second) {
		t.Fatalf("want a delivery then a forget for the same pseudonym, got %v then %v", first, second)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
