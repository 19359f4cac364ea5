package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/outbox"
)

// fakeBrevo follows Brevo's contacts API (developers.brevo.com, v3):
// api-key header; POST /v3/contacts {email, ext_id, attributes, listIds,
// updateEnabled} answers 201 {"id"} on create and 204 on update;
// PUT /v3/contacts/{identifier}?identifierType=ext_id updates (204);
// DELETE /v3/contacts/{identifier}?identifierType=ext_id answers 204, or
// 404 when there is no such contact; a rate limit answers 429 with the
// x-sib-ratelimit-* headers (reset in seconds).
type fakeBrevo struct {
	mu       sync.Mutex
	nextID   int
	contacts map[int]map[string]any // id → contact
	keys     []string               // Idempotency-Key of each accepted request
	calls    []string
	throttle int
}

func (f *fakeBrevo) find(r *http.Request, identifier string) (int, bool) {
	for id, c := range f.contacts {
		switch r.URL.Query().Get("identifierType") {
		case "ext_id":
			if c["ext_id"] == identifier {
				return id, true
			}
		case "", "contact_id":
			if strconv.Itoa(id) == identifier || c["email"] == identifier {
				return id, true
			}
		}
	}
	return 0, false
}

func (f *fakeBrevo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("api-key") != "xkeysib-test" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"code":"unauthorized","message":"Key not found"}`))
		return
	}
	f.calls = append(f.calls, r.Method+" "+r.URL.RequestURI())
	w.Header().Set("x-sib-ratelimit-limit", "10")
	if f.throttle > 0 {
		f.throttle--
		w.Header().Set("x-sib-ratelimit-remaining", "0")
		w.Header().Set("x-sib-ratelimit-reset", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"code":"too_many_requests","message":"rate limited"}`))
		return
	}
	w.Header().Set("x-sib-ratelimit-remaining", "9")
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&body) != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code":"invalid_parameter","message":"bad JSON"}`))
			return
		}
	}
	f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
	identifier, one := strings.CutPrefix(r.URL.EscapedPath(), "/v3/contacts/")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v3/contacts":
		email, _ := body["email"].(string)
		if email == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code":"missing_parameter","message":"email is missing"}`))
			return
		}
		for id, c := range f.contacts {
			if c["email"] == email {
				if body["updateEnabled"] != true {
					w.WriteHeader(http.StatusBadRequest)
					_, _ = w.Write([]byte(`{"code":"duplicate_parameter","message":"Contact already exist"}`))
					return
				}
				body["id"] = id
				f.contacts[id] = body
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		f.nextID++
		f.contacts[f.nextID] = body
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"id":%d}`, f.nextID)
	case one && (r.Method == http.MethodPut || r.Method == http.MethodDelete):
		id, ok := f.find(r, unescape(identifier))
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"code":"document_not_found","message":"Contact does not exist"}`))
			return
		}
		if r.Method == http.MethodDelete {
			delete(f.contacts, id)
		} else if unlink, ok := body["unlinkListIds"].([]any); ok {
			lists, _ := f.contacts[id]["listIds"].([]any)
			f.contacts[id]["listIds"] = slices.DeleteFunc(lists, func(l any) bool { return slices.Contains(unlink, l) })
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func unescape(s string) string {
	out, err := urlPathUnescape(s)
	if err != nil {
		return s
	}
	return out
}

func brevoConfig(url string) string {
	return fmt.Sprintf(`
processors:
  - name: brevo
    type: http
    purpose: newsletter
    fields: [user.contact.email]
    requires: [user.contact.email]
    settings:
      headers: {api-key: xkeysib-test}
      deliver:
        method: POST
        url: "%[1]s/v3/contacts"
        body: '{"email": {{index .Fields "user.contact.email"}}, "ext_id": {{.Subject}}, "listIds": [7], "updateEnabled": true}'
        refFrom: id
      forget: {method: PUT, url: "%[1]s/v3/contacts/{{.Subject}}?identifierType=ext_id", body: '{"unlinkListIds": [7]}'}
      erase: {method: DELETE, url: "%[1]s/v3/contacts/{{.Subject}}?identifierType=ext_id"}
      rateLimitResetHeader: x-sib-ratelimit-reset
`, url)
}

// TestHTTPConnectorWaitsForWhatTheInstanceRequires: Brevo refuses a
// contact without an email (400, which would be DEAD), so the instance says
// requires: [user.contact.email]; a user without a verified address waits,
// and is delivered once they verify it.
func TestHTTPConnectorWaitsForWhatTheInstanceRequires(t *testing.T) {
	fake := &fakeBrevo{contacts: map[int]map[string]any{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s := startWithProcessors(t, brevoConfig(srv.URL))
	c, _ := userWithData(t, s, "brevo_unverified", false)
	d := s.App.Outbox.Dispatcher("t", fast)
	changeConsent(t, c, true, "newsletter")
	if r := c.Do(t, `mutation { setEmail(email: "brevo_unverified@example.org") { id } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("setEmail: %s", r.Raw)
	}
	if _, err := d.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	waiting := items(t, s, outbox.Waiting)
	if len(waiting) != 1 || waiting[0].Note != outbox.NeedsVerifiedEmail {
		t.Fatalf("want one item waiting for a verified email, got %+v", waiting)
	}
	fake.mu.Lock()
	calls := len(fake.calls)
	fake.mu.Unlock()
	if calls != 0 {
		t.Fatalf("Brevo was called %d times for a user without a verified address", calls)
	}
	verifyMailed(t, s, "brevo_unverified@example.org")
	drain(t, s, d, 15*time.Second)
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.contacts) != 1 {
		t.Fatalf("after verification Brevo holds %v", fake.contacts)
	}
	if dead := items(t, s, outbox.Dead); len(dead) != 0 {
		t.Errorf("dead items: %+v", dead)
	}
}

func TestHTTPConnectorBrevo(t *testing.T) {
	fake := &fakeBrevo{contacts: map[int]map[string]any{}, throttle: 1}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s := startWithProcessors(t, brevoConfig(srv.URL))
	c, id := userWithData(t, s, "brevo_ann", true)
	ctx := context.Background()
	d := s.App.Outbox.Dispatcher("t", fast)

	// Grant: created after the 429, whose x-sib-ratelimit-reset was honoured.
	start := time.Now()
	changeConsent(t, c, true, "newsletter")
	drain(t, s, d, 15*time.Second)
	if time.Since(start) < 900*time.Millisecond {
		t.Errorf("the 429 with x-sib-ratelimit-reset: 1 was not honoured (done after %s)", time.Since(start))
	}
	subject, err := s.App.Outbox.Pseudonym(ctx, "brevo", id)
	if err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	contact := fake.contacts[1]
	fake.mu.Unlock()
	if contact["email"] != "brevo_ann@example.org" || contact["ext_id"] != subject || fmt.Sprint(contact["listIds"]) != "[7]" {
		t.Fatalf("contact at Brevo: %v", contact)
	}
	done := items(t, s, outbox.Done)
	if len(done) != 1 || done[0].LastError != "" || !slices.Contains(fake.keys, done[0].ID) {
		t.Fatalf("done items %+v; idempotency keys sent %v", done, fake.keys)
	}
	if r, err := s.Store().Outbox().Recipient(ctx, id); err != nil || r.Procs["brevo"].Ref != "1" {
		t.Fatalf("the contact id was not kept as Ref: %+v, %v", r, err)
	}

	// Withdraw: unlinked from the list by ext_id.
	changeConsent(t, c, false, "newsletter")
	drain(t, s, d, 10*time.Second)
	fake.mu.Lock()
	lists := fmt.Sprint(fake.contacts[1]["listIds"])
	fake.mu.Unlock()
	if lists != "[]" {
		t.Fatalf("after withdrawal the contact is still in lists %s", lists)
	}

	// Grant again: Brevo answers the update with 204 and no id; the Ref stays.
	changeConsent(t, c, true, "newsletter")
	drain(t, s, d, 10*time.Second)
	if r, err := s.Store().Outbox().Recipient(ctx, id); err != nil || r.Procs["brevo"].Ref != "1" {
		t.Fatalf("an update without id lost the Ref: %+v, %v", r, err)
	}

	// Erase: deleted for good.
	if r := adminClient(t, s).Do(t, `mutation($id: ID!) { eraseUser(id: $id) }`, map[string]any{"id": id}); len(r.Errors) > 0 {
		t.Fatalf("erase: %s", r.Raw)
	}
	drain(t, s, d, 10*time.Second)
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.contacts) != 0 {
		t.Errorf("Brevo still holds %v after erasure", fake.contacts)
	}
	want := []string{"POST /v3/contacts", "POST /v3/contacts", "PUT /v3/contacts/" + subject + "?identifierType=ext_id",
		"POST /v3/contacts", "DELETE /v3/contacts/" + subject + "?identifierType=ext_id"}
	if !slices.Equal(fake.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", fake.calls, want)
	}
	if dead := items(t, s, outbox.Dead); len(dead) != 0 {
		t.Errorf("dead items: %+v", dead)
	}
}

// fakeListmonk follows listmonk's subscribers API (listmonk.app/docs/apis):
// BasicAuth or "Authorization: token user:token"; POST /api/subscribers
// {email, name, status, lists, attribs, preconfirm_subscriptions} answers
// 200 {"data": {"id", …}} or 409 when the e-mail exists; PUT and DELETE
// /api/subscribers/{id} (numeric); POST /api/subscribers/query/delete
// {"query": SQL expression} deletes the matching subscribers.
type fakeListmonk struct {
	mu     sync.Mutex
	nextID int
	subs   map[int]map[string]any
	calls  []string
}

var attribQuery = regexp.MustCompile(`^subscribers\.attribs->>'consentgraph_subject' = '([A-Za-z0-9_-]+)'$`)

func (f *fakeListmonk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	user, pass, basic := r.BasicAuth()
	if !(basic && user == "api_user" && pass == "lm-token") && r.Header.Get("Authorization") != "token api_user:lm-token" {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"invalid API credentials"}`))
		return
	}
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if json.NewDecoder(r.Body).Decode(&body) != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"message":"invalid JSON"}`))
			return
		}
	}
	rest, _ := strings.CutPrefix(r.URL.Path, "/api/subscribers")
	id, idErr := strconv.Atoi(strings.TrimPrefix(rest, "/"))
	switch {
	case r.Method == http.MethodPost && rest == "":
		for _, s := range f.subs {
			if s["email"] == body["email"] {
				w.WriteHeader(http.StatusConflict)
				_, _ = w.Write([]byte(`{"message":"E-mail already exists."}`))
				return
			}
		}
		f.nextID++
		body["id"] = f.nextID
		f.subs[f.nextID] = body
		_ = json.NewEncoder(w).Encode(map[string]any{"data": body})
	case r.Method == http.MethodPost && rest == "/query/delete":
		m := attribQuery.FindStringSubmatch(fmt.Sprint(body["query"]))
		if m == nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"message":"invalid query"}`))
			return
		}
		for id, s := range f.subs {
			if a, _ := s["attribs"].(map[string]any); a["consentgraph_subject"] == m[1] {
				delete(f.subs, id)
			}
		}
		_, _ = w.Write([]byte(`{"data":true}`))
	case r.Method == http.MethodPut && idErr == nil:
		if _, ok := f.subs[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"Subscriber not found."}`))
			return
		}
		body["id"] = id
		f.subs[id] = body
		_ = json.NewEncoder(w).Encode(map[string]any{"data": body})
	case r.Method == http.MethodDelete && idErr == nil:
		delete(f.subs, id)
		_, _ = w.Write([]byte(`{"data":true}`))
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func listmonkConfig(url string) string {
	return fmt.Sprintf(`
processors:
  - name: listmonk
    type: http
    purpose: newsletter
    fields: [user.contact.email]
    settings:
      headers: {Authorization: "token api_user:lm-token"}
      deliver:
        method: '{{if .Ref}}PUT{{else}}POST{{end}}'
        url: '%[1]s/api/subscribers{{if .Ref}}/{{.Ref}}{{end}}'
        body: '{"email": {{index .Fields "user.contact.email"}}, "name": {{.Subject}}, "status": "enabled", "lists": [3], "attribs": {"consentgraph_subject": {{.Subject}}}, "preconfirm_subscriptions": false}'
        refFrom: data.id
        accept: [409]
      forget:
        method: '{{if .Ref}}DELETE{{else}}POST{{end}}'
        url: '%[1]s/api/subscribers/{{if .Ref}}{{.Ref}}{{else}}query/delete{{end}}'
        body: '{{if not .Ref}}{"query": {{printf "subscribers.attribs->>''consentgraph_subject'' = ''%%s''" .Subject}}}{{end}}'
`, url)
}

func TestHTTPConnectorListmonk(t *testing.T) {
	fake := &fakeListmonk{subs: map[int]map[string]any{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s := startWithProcessors(t, listmonkConfig(srv.URL))
	ctx := context.Background()
	d := s.App.Outbox.Dispatcher("t", fast)

	// Grant → POST, the id kept as Ref; withdraw → DELETE by that id.
	c, id := userWithData(t, s, "lm_ann", true)
	changeConsent(t, c, true, "newsletter")
	drain(t, s, d, 10*time.Second)
	if r, err := s.Store().Outbox().Recipient(ctx, id); err != nil || r.Procs["listmonk"].Ref != "1" {
		t.Fatalf("Ref after the delivery: %+v, %v", r, err)
	}
	fake.mu.Lock()
	if sub := fake.subs[1]; sub["email"] != "lm_ann@example.org" || sub["status"] != "enabled" || fmt.Sprint(sub["lists"]) != "[3]" {
		t.Errorf("subscriber %v", sub)
	}
	fake.mu.Unlock()
	changeConsent(t, c, false, "newsletter")
	drain(t, s, d, 10*time.Second)

	// The answer to an earlier POST was lost (the subscriber exists, its id
	// unknown): the repeat's 409 is accepted, and the withdrawal deletes by
	// the subject kept in attribs.
	c2, id2 := userWithData(t, s, "lm_bob", true)
	subject2, err := s.App.Outbox.Pseudonym(ctx, "listmonk", id2)
	if err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	fake.nextID++
	fake.subs[fake.nextID] = map[string]any{"email": "lm_bob@example.org", "attribs": map[string]any{"consentgraph_subject": subject2}}
	fake.mu.Unlock()
	changeConsent(t, c2, true, "newsletter")
	drain(t, s, d, 10*time.Second)
	changeConsent(t, c2, false, "newsletter")
	drain(t, s, d, 10*time.Second)

	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.subs) != 0 {
		t.Errorf("listmonk still holds %v", fake.subs)
	}
	want := []string{"POST /api/subscribers", "DELETE /api/subscribers/1", "POST /api/subscribers", "POST /api/subscribers/query/delete"}
	if !slices.Equal(fake.calls, want) {
		t.Errorf("calls %q, want %q", fake.calls, want)
	}
	if dead := items(t, s, outbox.Dead); len(dead) != 0 {
		t.Errorf("dead items: %+v", dead)
	}
}
