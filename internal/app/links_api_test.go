package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/providerfakes"
)

type linkView struct {
	Processor struct{ Name string }
	State     string
	Items     []struct {
		Kind, Title string
		URL         *string
		ExpiresAt   *time.Time
	}
	Details   map[string]any
	UpdatedAt *time.Time
	Actions   []struct{ ID, Title string }
}

const linksQuery = `{ me { processorLinks { processor { name } state items { kind title url expiresAt } details updatedAt actions { id title } } } }`

// linkOf returns the caller's link with processor.
func linkOf(t *testing.T, c *apptest.Client, processor string) linkView {
	t.Helper()
	var out struct {
		Me struct{ ProcessorLinks []linkView }
	}
	c.Do(t, linksQuery, nil).Decode(t, &out)
	for _, l := range out.Me.ProcessorLinks {
		if l.Processor.Name == processor {
			return l
		}
	}
	t.Fatalf("no link with %s in %+v", processor, out.Me.ProcessorLinks)
	return linkView{}
}

func confirmLinkIn(t *testing.T, m mailpittest.Message, prefix string) string {
	t.Helper()
	i := strings.Index(m.Text, prefix)
	if i < 0 {
		t.Fatalf("no confirmation link in %q", m.Text)
	}
	return strings.Fields(m.Text[i+len(prefix):])[0]
}

func follow(t *testing.T, s *apptest.Server, processor, token string) int {
	t.Helper()
	res, err := http.Get(s.URL + "/plugins/" + processor + "/confirm?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	return res.StatusCode
}

// The SMTP newsletter's double opt-in, as the user sees it in the API:
// PENDING_CONFIRMATION with a resend action after the mail, a second mail
// on request, ACTIVE once the link is followed, UNSUBSCRIBED after the
// withdrawal; in the export; gone after erasure; nobody else's.
func TestProcessorLinksSMTPNewsletter(t *testing.T) {
	mp := mailpittest.Start(t)
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: letters
    type: smtp_newsletter
    settings: {smtpURL: %q, listName: "the Example letter"}
`, mp.SMTPURL()), func(c *config.Config) { c.PublicURL = "http://public.example" })
	c, _ := userWithData(t, s, "ln_ann", true)
	other, _ := userWithData(t, s, "ln_bob", false)
	if l := linkOf(t, c, "letters"); l.State != "NONE" || l.UpdatedAt != nil || len(l.Actions) != 0 {
		t.Fatalf("before any delivery: %+v", l)
	}
	changeConsent(t, c, true, "newsletter")
	d := s.App.Outbox.Dispatcher("t", fast)
	drain(t, s, d, 20*time.Second)
	const prefix = "http://public.example/plugins/letters/confirm?token="
	first := confirmLinkIn(t, mp.WaitFor(t, "ln_ann@example.org", 10*time.Second), prefix)
	l := linkOf(t, c, "letters")
	if l.State != "PENDING_CONFIRMATION" || l.UpdatedAt == nil || len(l.Actions) != 1 || l.Actions[0].ID != "resendConfirmation" || l.Actions[0].Title == "" {
		t.Fatalf("after the confirmation mail: %+v", l)
	}
	if o := linkOf(t, other, "letters"); o.State != "NONE" {
		t.Errorf("another user sees %+v", o)
	}

	// Unknown processor or action: BAD_USER_INPUT, nothing queued.
	for _, q := range []string{
		`mutation { requestProcessorAction(processor: "nope", action: "resendConfirmation") }`,
		`mutation { requestProcessorAction(processor: "letters", action: "nope") }`,
	} {
		if r := c.Do(t, q, nil); len(r.Errors) == 0 || r.Errors[0].Extensions["code"] != "BAD_USER_INPUT" {
			t.Errorf("%s: %s", q, r.Raw)
		}
	}
	var req struct{ RequestProcessorAction bool }
	c.Do(t, `mutation { requestProcessorAction(processor: "letters", action: "resendConfirmation") }`, nil).Decode(t, &req)
	if !req.RequestProcessorAction {
		t.Fatal("requestProcessorAction answered false")
	}
	drain(t, s, d, 20*time.Second)
	second := confirmLinkIn(t, mp.WaitFor(t, "ln_ann@example.org", 10*time.Second), prefix)
	if second == first {
		t.Fatal("the resent mail carries the same link")
	}
	if got := follow(t, s, "letters", first); got != http.StatusNotFound {
		t.Errorf("the first link still works after a resend: %d", got)
	}
	if l := linkOf(t, c, "letters"); l.State != "PENDING_CONFIRMATION" {
		t.Errorf("after the resend: %+v", l)
	}
	if got := follow(t, s, "letters", second); got != http.StatusOK {
		t.Fatalf("the resent link answered %d", got)
	}
	if l := linkOf(t, c, "letters"); l.State != "ACTIVE" || len(l.Actions) != 0 {
		t.Errorf("after following the link: %+v", l)
	}
	if o := linkOf(t, other, "letters"); o.State != "NONE" {
		t.Errorf("another user sees %+v", o)
	}

	// The export holds the link.
	var ex struct{ ExportMyData struct{ Document string } }
	c.Do(t, `{ exportMyData { document } }`, nil).Decode(t, &ex)
	var doc struct {
		ProcessorLinks []struct{ Processor, State string } `json:"processorLinks"`
	}
	if err := json.Unmarshal([]byte(ex.ExportMyData.Document), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.ProcessorLinks) != 1 || doc.ProcessorLinks[0].Processor != "letters" || doc.ProcessorLinks[0].State != "ACTIVE" {
		t.Errorf("export processorLinks = %+v", doc.ProcessorLinks)
	}

	changeConsent(t, c, false, "newsletter")
	drain(t, s, d, 20*time.Second)
	if l := linkOf(t, c, "letters"); l.State != "UNSUBSCRIBED" {
		t.Errorf("after withdrawal: %+v", l)
	}
	// An action for a withdrawn purpose runs into consent: skipped, no mail.
	c.Do(t, `mutation { requestProcessorAction(processor: "letters", action: "resendConfirmation") }`, nil).Decode(t, &req)
	drain(t, s, d, 20*time.Second)
	skipped := 0
	for _, it := range items(t, s, outbox.Skipped) {
		if it.Action == outbox.Act {
			skipped++
		}
	}
	if skipped != 1 {
		t.Errorf("want the action after withdrawal skipped, got %d skipped actions", skipped)
	}

	// Erasure removes the user's links.
	id := meID(t, c)
	adminClient(t, s).Do(t, `mutation($id: ID!) { eraseUser(id: $id) }`, map[string]any{"id": id})
	drain(t, s, d, 20*time.Second)
	links, err := s.App.Outbox.UserLinks(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if !l.UpdatedAt.IsZero() {
			t.Errorf("erasure left a link: %+v", l)
		}
	}
}

// surveyMonkeyInvites adds SurveyMonkey's invitation endpoints (email
// collectors, their messages and recipients, as documented for API v3) to
// the contacts fake.
type surveyMonkeyInvites struct {
	*providerfakes.SurveyMonkey
	mu         sync.Mutex
	recipients map[string]string // contact id → recipient id
	// unnamed makes the collector nameless, so the item gets the
	// processor's own title.
	unnamed bool
}

func (f *surveyMonkeyInvites) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v3/collectors/") {
		f.SurveyMonkey.ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v3/collectors/CO/messages/MS/recipients/bulk":
		var body struct {
			ContactIDs []string `json:"contact_ids"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		out := map[string][]map[string]string{"succeeded": {}, "existing": {}, "invalid": {}, "duplicate": {}}
		for _, cid := range body.ContactIDs {
			if !f.Has(cid) {
				out["invalid"] = append(out["invalid"], map[string]string{"id": cid})
				continue
			}
			if rid, ok := f.recipients[cid]; ok {
				out["existing"] = append(out["existing"], map[string]string{"id": rid})
				continue
			}
			rid := "R" + cid
			f.recipients[cid] = rid
			out["succeeded"] = append(out["succeeded"], map[string]string{"id": rid})
		}
		_ = json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v3/collectors/CO/recipients/"):
		rid := strings.TrimPrefix(r.URL.Path, "/v3/collectors/CO/recipients/")
		_ = json.NewEncoder(w).Encode(map[string]string{"id": rid, "survey_link": "https://www.surveymonkey.com/r/XYZ?sm=" + rid})
	case r.Method == http.MethodGet && r.URL.Path == "/v3/collectors/CO":
		name := "Customer survey 2026"
		if f.unnamed {
			name = ""
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"id": "CO", "name": name, "type": "email", "close_date": "2026-12-31T23:00:00"})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// SurveyMonkey reports the user's survey invitation as an item.
func TestProcessorLinksSurveyMonkeyInvitation(t *testing.T) {
	fake := &surveyMonkeyInvites{SurveyMonkey: providerfakes.NewSurveyMonkey("tok", "CL"), recipients: map[string]string{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: surveys-sm
    type: surveymonkey
    fields: [user.contact.email]
    settings: {token: tok, listId: CL, baseURL: %q, collectorId: CO, messageId: MS}
`, srv.URL))
	c, _ := userWithData(t, s, "ln_sue", true)
	other, _ := userWithData(t, s, "ln_sam", false)
	changeConsent(t, c, true, "surveys")
	d := s.App.Outbox.Dispatcher("t", fast)
	drain(t, s, d, 20*time.Second)
	l := linkOf(t, c, "surveys-sm")
	if l.State != "ACTIVE" || len(l.Items) != 1 {
		t.Fatalf("after delivery: %+v", l)
	}
	it := l.Items[0]
	if it.Kind != "survey" || it.Title != "Customer survey 2026" || it.URL == nil || !strings.HasPrefix(*it.URL, "https://www.surveymonkey.com/r/XYZ?sm=R") ||
		it.ExpiresAt == nil || !it.ExpiresAt.Equal(time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("invitation item %+v", it)
	}
	if o := linkOf(t, other, "surveys-sm"); o.State != "NONE" || len(o.Items) != 0 {
		t.Errorf("another user sees %+v", o)
	}
	changeConsent(t, c, false, "surveys")
	drain(t, s, d, 20*time.Second)
	if l := linkOf(t, c, "surveys-sm"); l.State != "UNSUBSCRIBED" || len(l.Items) != 0 {
		t.Errorf("after withdrawal: %+v", l)
	}
}

// Action and item titles answer in the request's language (Accept-Language)
// when the processor gave one in it, else in English; the newsletter's
// per-language settings from the config file shape its mail.
func TestProcessorLinkTitlesFollowTheLanguage(t *testing.T) {
	mp := mailpittest.Start(t)
	fake := &surveyMonkeyInvites{SurveyMonkey: providerfakes.NewSurveyMonkey("tok", "CL"), recipients: map[string]string{}, unnamed: true}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: letters
    type: smtp_newsletter
    settings:
      smtpURL: %q
      languages: [ja, en]
      listName: {en: the Example letter, ja: Exampleレター}
  - name: surveys-sm
    type: surveymonkey
    fields: [user.contact.email]
    settings: {token: tok, listId: CL, baseURL: %q, collectorId: CO, messageId: MS}
`, mp.SMTPURL(), srv.URL))
	c, _ := userWithData(t, s, "ln_jun", true)
	changeConsent(t, c, true, "newsletter")
	changeConsent(t, c, true, "surveys")
	drain(t, s, s.App.Outbox.Dispatcher("t", fast), 20*time.Second)
	// Per-language settings reach the plugin through the config file.
	if m := mp.WaitFor(t, "ln_jun@example.org", 10*time.Second); m.Subject != "Exampleレターの購読確認のお願い / Please confirm your subscription to the Example letter" {
		t.Errorf("mail subject %q", m.Subject)
	}
	for _, tc := range []struct{ accept, action, item string }{
		{"ja", "確認メールを再送する", "アンケート"},
		{"ja-JP,ja;q=0.9,en;q=0.8", "確認メールを再送する", "アンケート"},
		{"en", "Resend the confirmation mail", "Survey"},
		{"", "Resend the confirmation mail", "Survey"},
	} {
		c.Header.Set("Accept-Language", tc.accept)
		if tc.accept == "" {
			c.Header.Del("Accept-Language")
		}
		l := linkOf(t, c, "letters")
		if len(l.Actions) != 1 || l.Actions[0].ID != "resendConfirmation" || l.Actions[0].Title != tc.action {
			t.Errorf("Accept-Language %q: actions %+v, want the title %q", tc.accept, l.Actions, tc.action)
		}
		sv := linkOf(t, c, "surveys-sm")
		if len(sv.Items) != 1 || sv.Items[0].Title != tc.item {
			t.Errorf("Accept-Language %q: items %+v, want the title %q", tc.accept, sv.Items, tc.item)
		}
	}
}

// A delivery that goes DEAD shows FAILED.
func TestProcessorLinkFailedWhenDead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest) // permanent: DEAD at once
	}))
	defer srv.Close()
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: hook
    type: webhook
    purpose: surveys
    fields: [user.demographic.country]
    settings: {url: %q}
`, srv.URL+"/hook"))
	c, _ := userWithData(t, s, "ln_dee", false)
	changeConsent(t, c, true, "surveys")
	d := s.App.Outbox.Dispatcher("t", fast)
	drain(t, s, d, 20*time.Second)
	if n := len(items(t, s, outbox.Dead)); n != 1 {
		t.Fatalf("%d dead items, want 1", n)
	}
	if l := linkOf(t, c, "hook"); l.State != "FAILED" || l.UpdatedAt == nil {
		t.Errorf("after a dead delivery: %+v", l)
	}
}
