package mailchimp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/mailchimp"
	"github.com/consentgraph/consentgraph/plugins/plugintest"
)

// fakeAPI follows the Marketing API v3 documentation for list members
// (PUT/PATCH /3.0/lists/{list}/members/{hash}, POST
// .../actions/delete-permanent) and GET /3.0/ping.
type fakeAPI struct {
	mu      sync.Mutex
	members map[string]map[string]any // hash → member
	created int
}

func newFakeAPI() *fakeAPI { return &fakeAPI{members: map[string]map[string]any{}} }

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, key, ok := r.BasicAuth(); !ok || key != "key-us1" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet && r.URL.Path == "/3.0/ping" {
		_, _ = w.Write([]byte(`{"health_status": "Everything's Chimpy!"}`))
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/3.0/lists/L1/members/")
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	hash, action, _ := strings.Cut(rest, "/")
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	m, exists := f.members[hash]
	switch {
	case r.Method == http.MethodPut && action == "":
		if !exists {
			m = map[string]any{"email_address": body["email_address"], "status": body["status_if_new"]}
			f.members[hash] = m
			f.created++
		} else if st, ok := body["status"]; ok {
			m["status"] = st
		}
		_ = json.NewEncoder(w).Encode(m)
	case r.Method == http.MethodPatch && action == "" && exists:
		m["status"] = body["status"]
		_ = json.NewEncoder(w).Encode(m)
	case r.Method == http.MethodPost && action == "actions/delete-permanent" && exists:
		delete(f.members, hash)
		w.WriteHeader(http.StatusNoContent)
	case !exists:
		w.WriteHeader(http.StatusNotFound)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// holds reports a member that is not unsubscribed.
func (f *fakeAPI) holds(r plugins.Request) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.members[mailchimp.MemberHash(r.Fields[plugins.CategoryEmail])]
	return ok && m["status"] != "unsubscribed"
}

func settings(baseURL string) map[string]any {
	return map[string]any{"apiKey": "key-us1", "listId": "L1", "baseURL": baseURL}
}

func TestConformance(t *testing.T) {
	fake := newFakeAPI()
	plugintest.Conformance(t, plugintest.Options{
		Type: mailchimp.Type, Provider: fake, Settings: settings, Holds: fake.holds,
		Effects: func() int { fake.mu.Lock(); defer fake.mu.Unlock(); return fake.created },
	})
}

func TestHealthAndSettings(t *testing.T) {
	fake := newFakeAPI()
	rec := plugintest.NewRecorder(t, fake)
	s := settings(rec.URL)
	s["listId"] = uint64(1234) // written unquoted in YAML
	s[plugins.DescriptionSetting] = "Our newsletter"
	_, factory, _ := plugins.Lookup(mailchimp.Type)
	p, err := factory(plugintest.NewEnv(t, mailchimp.Type, "news", s))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.(plugins.HealthChecker).Health(context.Background()); err != nil {
		t.Fatalf("healthy API: %v", err)
	}
	s["apiKey"] = "wrong-us1"
	p, _ = factory(plugintest.NewEnv(t, mailchimp.Type, "news", s))
	if err := p.(plugins.HealthChecker).Health(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("bad key: %v", err)
	}
	if got := rec.Requests(); got[0].Path != "/3.0/ping" {
		t.Errorf("health asked %s", got[0].Path)
	}
}
