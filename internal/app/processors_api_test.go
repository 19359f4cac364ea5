package app_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/app"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/providerfakes"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/example"
	"github.com/consentgraph/consentgraph/plugins/mailchimp"
	"github.com/consentgraph/consentgraph/plugins/smtpnewsletter"
	"github.com/consentgraph/consentgraph/plugins/webhook"
)

// startWithProcessors runs a server whose config file holds yaml, with no
// background dispatcher: tests drive their own.
func startWithProcessors(t *testing.T, yaml string, opts ...apptest.Option) *apptest.Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	opts = append([]apptest.Option{func(c *config.Config) {
		c.ConfigFile, c.OutboxPoll = path, -1
		c.AdminUsername, c.AdminPassword = "root", "root password 123"
	}}, opts...)
	// Processors receive only verified addresses: users verify theirs
	// through the mail (userWithData).
	s, _ := startWithMail(t, opts...)
	return s
}

// fast is a dispatcher tuning for tests: short leases and backoffs.
var fast = outbox.Tuning{PollInterval: 5 * time.Millisecond, Lease: 2 * time.Second, CallTimeout: 300 * time.Millisecond,
	BaseBackoff: 5 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, MaxAttempts: 200, Workers: 4, SweepInterval: 50 * time.Millisecond}

// drain runs dispatcher d until no item is PENDING (or fails after timeout).
func drain(t *testing.T, s *apptest.Server, d *outbox.Dispatcher, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := s.App.Outbox.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Once(ctx); err != nil {
			t.Fatal(err)
		}
		if len(items(t, s, outbox.Pending)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("items still pending after %s: %+v", timeout, items(t, s, outbox.Pending))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func items(t *testing.T, s *apptest.Server, st outbox.State) []outbox.Item {
	t.Helper()
	var all []outbox.Item
	var after *string
	for {
		p, err := s.App.Outbox.List(context.Background(), &st, ptr(100), after)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Nodes...)
		if !p.HasNext {
			return all
		}
		after = &p.Nodes[len(p.Nodes)-1].ID
	}
}

func ptr[T any](v T) *T { return &v }

func adminClient(t *testing.T, s *apptest.Server) *apptest.Client {
	t.Helper()
	c := s.Client()
	var login struct{ Login struct{ Token string } }
	c.Do(t, `mutation { login(username: "root", password: "root password 123") { token } }`, nil).Decode(t, &login)
	c.Token = login.Login.Token
	return c
}

func userWithData(t *testing.T, s *apptest.Server, name string, email bool) (*apptest.Client, string) {
	t.Helper()
	c := s.Register(t, name)
	if email {
		if r := c.Do(t, `mutation($e: String) { setEmail(email: $e) { id } }`, map[string]any{"e": name + "@example.org"}); len(r.Errors) > 0 {
			t.Fatalf("setEmail: %s", r.Raw)
		}
		verifyMailed(t, s, name+"@example.org")
	}
	var me struct{ UpdateProfile struct{ ID string } }
	c.Do(t, `mutation { updateProfile(input: {birthYear: 1990, country: "DE", gender: FEMALE, language: "de"}) { id } }`, nil).Decode(t, &me)
	return c, me.UpdateProfile.ID
}

const twoExamples = `
processors:
  - name: crm-a
    type: example
    purpose: surveys
    fields: [user.contact.email, user.demographic.country]
  - name: crm-b
    type: example
    purpose: surveys
    fields: [user.demographic.age_band]
`

func TestOnlyDeclaredFieldsAndPseudonymsPerProcessor(t *testing.T) {
	s := startWithProcessors(t, twoExamples)
	c, id := userWithData(t, s, "fields_ann", true)
	changeConsent(t, c, true, "surveys")
	drain(t, s, s.App.Outbox.Dispatcher("t", fast), 10*time.Second)

	a, b := example.Instance("crm-a").Contacts(), example.Instance("crm-b").Contacts()
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("want one contact each, got %v and %v", a, b)
	}
	var subA, subB string
	for k, v := range a {
		subA = k
		want := map[string]string{"user.contact.email": "fields_ann@example.org", "user.demographic.country": "DE"}
		if fmt.Sprint(v) != fmt.Sprint(want) {
			t.Errorf("crm-a got %v, want exactly %v", v, want)
		}
	}
	for k, v := range b {
		subB = k
		if len(v) != 1 || v["user.demographic.age_band"] == "" {
			t.Errorf("crm-b got %v, want only the age band", v)
		}
	}
	if subA == subB || subA == id || subB == id || strings.Contains(subA+subB, id) {
		t.Errorf("pseudonyms must differ per processor and hide the user id: %q %q (id %q)", subA, subB, id)
	}
	// The user sees the disclosures; everyone sees the processors.
	var me struct {
		Me struct {
			Disclosures struct {
				Edges []struct {
					Node struct {
						Processor, Purpose, Action string
						Fields                     []string
					}
				}
			}
			Consents []struct {
				Purpose struct{ ID string }
				Notes   []string
			}
		}
	}
	c.Do(t, `{ me { disclosures { edges { node { processor purpose fields action at } } } consents { purpose { id } notes } } }`, nil).Decode(t, &me)
	got := map[string][]string{}
	for _, e := range me.Me.Disclosures.Edges {
		if e.Node.Action != "DELIVERED" || e.Node.Purpose != "surveys" {
			t.Errorf("disclosure %+v", e.Node)
		}
		got[e.Node.Processor] = e.Node.Fields
	}
	if fmt.Sprint(got) != fmt.Sprint(map[string][]string{"crm-a": {"user.contact.email", "user.demographic.country"}, "crm-b": {"user.demographic.age_band"}}) {
		t.Errorf("disclosures %v", got)
	}
	var pub struct {
		Processors []struct{ Name, Type, Purpose string }
		Purposes   []struct {
			ID         string
			Processors []struct{ Name string }
		}
	}
	s.Client().Do(t, `{ processors { name type purpose dataCategories description enabled } purposes { id processors { name } } }`, nil).Decode(t, &pub)
	if len(pub.Processors) != 2 || pub.Processors[0].Name != "crm-a" || pub.Processors[1].Type != "example" {
		t.Errorf("processors %+v", pub.Processors)
	}
	for _, p := range pub.Purposes {
		if (p.ID == "surveys") != (len(p.Processors) == 2) {
			t.Errorf("purpose %s lists %v", p.ID, p.Processors)
		}
	}
	// Nothing stored holds the personal values in clear.
	if dump := s.Dump(t); strings.Contains(dump, "fields_ann@example.org") {
		t.Error("the email is stored in clear somewhere")
	}
	// A profile change of a delivered field is delivered again.
	c.Do(t, `mutation { updateProfile(input: {country: "FR"}) { id } }`, nil)
	drain(t, s, s.App.Outbox.Dispatcher("t", fast), 10*time.Second)
	if f, _ := example.Instance("crm-a").Contact(subA); f["user.demographic.country"] != "FR" {
		t.Errorf("country not updated at crm-a: %v", f)
	}
	// The export contains the disclosures.
	var ex struct{ ExportMyData struct{ Document string } }
	c.Do(t, `{ exportMyData { document } }`, nil).Decode(t, &ex)
	if !strings.Contains(ex.ExportMyData.Document, `"disclosures"`) || !strings.Contains(ex.ExportMyData.Document, "crm-b") {
		t.Error("export lacks disclosures")
	}
}

func TestWithdrawalBeforeDispatchDeliversNothing(t *testing.T) {
	s := startWithProcessors(t, strings.ReplaceAll(twoExamples, "crm-", "wd-"))
	c, _ := userWithData(t, s, "wd_bob", true)
	crm := example.Instance("wd-a")
	changeConsent(t, c, true, "surveys")
	changeConsent(t, c, false, "surveys")
	d := s.App.Outbox.Dispatcher("t", fast)
	drain(t, s, d, 10*time.Second)
	if crm.Applied() != 0 || len(crm.Contacts()) != 0 {
		t.Fatalf("withdrawn before dispatch, yet the processor got %d effects: %v", crm.Applied(), crm.Contacts())
	}
	if n := len(items(t, s, outbox.Skipped)); n != 4 {
		t.Errorf("want 4 skipped items (2 processors × deliver+forget), got %d", n)
	}
	// Granted and delivered, then withdrawn: exactly one forget follows.
	changeConsent(t, c, true, "surveys")
	drain(t, s, d, 10*time.Second)
	if len(crm.Contacts()) != 1 {
		t.Fatalf("not delivered: %v", crm.Contacts())
	}
	changeConsent(t, c, false, "surveys")
	drain(t, s, d, 10*time.Second)
	if len(crm.Contacts()) != 0 || crm.Applied() != 2 {
		t.Errorf("want deliver + forget (2 effects), got %d and contacts %v", crm.Applied(), crm.Contacts())
	}
	var me struct {
		Me struct {
			Disclosures struct {
				Edges []struct {
					Node struct{ Processor, Action string }
				}
			}
		}
	}
	c.Do(t, `{ me { disclosures(first: 10) { edges { node { processor action } } } } }`, nil).Decode(t, &me)
	if e := me.Me.Disclosures.Edges; len(e) != 4 || e[0].Node.Action != "FORGOTTEN" {
		t.Errorf("disclosures, newest first: %+v", e)
	}
}

func TestErasureTellsProcessorsToForget(t *testing.T) {
	s := startWithProcessors(t, strings.ReplaceAll(twoExamples, "crm-", "er-"))
	c, id := userWithData(t, s, "er_cat", true)
	changeConsent(t, c, true, "surveys")
	d := s.App.Outbox.Dispatcher("t", fast)
	drain(t, s, d, 10*time.Second)
	if len(example.Instance("er-a").Contacts()) != 1 {
		t.Fatal("not delivered")
	}
	admin := adminClient(t, s)
	if r := admin.Do(t, `mutation($id: ID!) { eraseUser(id: $id) }`, map[string]any{"id": id}); len(r.Errors) > 0 {
		t.Fatalf("erase: %s", r.Raw)
	}
	drain(t, s, d, 10*time.Second)
	if len(example.Instance("er-a").Contacts()) != 0 || len(example.Instance("er-b").Contacts()) != 0 {
		t.Error("processors still hold the erased user")
	}
}

// fakeMailchimp follows the Marketing API v3 list members documentation.
type fakeMailchimp struct {
	mu       sync.Mutex
	members  map[string]map[string]any // hash → member
	calls    []string
	throttle int // answer this many requests with 429 first
	t        *testing.T
}

func (f *fakeMailchimp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, p, ok := r.BasicAuth(); !ok || u == "" || p != "key-us1" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == "/3.0/ping" { // the plugin's background health check
		_, _ = w.Write([]byte(`{"health_status": "Everything's Chimpy!"}`))
		return
	}
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	if f.throttle > 0 {
		f.throttle--
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	const prefix = "/3.0/lists/L1/members/"
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	hash, action, _ := strings.Cut(rest, "/")
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPut && action == "":
		m, ok := f.members[hash]
		if !ok {
			m = map[string]any{"email_address": body["email_address"], "status": body["status_if_new"]}
			f.members[hash] = m
		} else if st, ok := body["status"]; ok {
			m["status"] = st
		}
		_ = json.NewEncoder(w).Encode(m)
	case r.Method == http.MethodPatch && action == "":
		m, ok := f.members[hash]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		m["status"] = body["status"]
		_ = json.NewEncoder(w).Encode(m)
	case r.Method == http.MethodPost && action == "actions/delete-permanent":
		if _, ok := f.members[hash]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		delete(f.members, hash)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func TestMailchimpNeedsEmailThenDoubleOptInUnsubscribeAndDelete(t *testing.T) {
	fake := &fakeMailchimp{members: map[string]map[string]any{}, throttle: 1, t: t}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: news
    type: mailchimp
    settings: {apiKey: key-us1, listId: L1, baseURL: %q}
`, srv.URL))
	c := s.Register(t, "mc_dora")
	r := changeConsent(t, c, true, "newsletter")
	if !r.Consent.Granted {
		t.Fatal("grant not recorded")
	}
	var notes struct {
		GrantConsent struct{ Consent struct{ Notes []string } }
	}
	c.Do(t, `mutation { grantConsent(purpose: "newsletter") { consent { notes } } }`, nil).Decode(t, &notes)
	if !slices.Contains(notes.GrantConsent.Consent.Notes, "NEEDS_EMAIL") {
		t.Errorf("want a NEEDS_EMAIL note, got %v", notes.GrantConsent.Consent.Notes)
	}
	d := s.App.Outbox.Dispatcher("t", fast)
	drain(t, s, d, 10*time.Second)
	if w := items(t, s, outbox.Waiting); len(w) != 1 || w[0].Note != outbox.NeedsEmail {
		t.Fatalf("want one item waiting for an email, got %+v", w)
	}
	if len(fake.calls) != 0 {
		t.Fatalf("calls without an email: %v", fake.calls)
	}
	c.Do(t, `mutation { setEmail(email: "Dora@Example.org") { id } }`, nil)
	// An unverified address reaches no processor: the item waits for it.
	drain(t, s, d, 10*time.Second)
	if w := items(t, s, outbox.Waiting); len(w) != 1 || w[0].Note != outbox.NeedsVerifiedEmail {
		t.Fatalf("want one item waiting for a verified email, got %+v", w)
	}
	if len(fake.calls) != 0 {
		t.Fatalf("calls with an unverified email: %v", fake.calls)
	}
	verifyMailed(t, s, "Dora@example.org")
	start := time.Now()
	drain(t, s, d, 10*time.Second)
	var hash string
	fake.mu.Lock()
	var got map[string]any
	for h, m := range fake.members {
		got = m
		hash = h
	}
	calls := slices.Clone(fake.calls)
	fake.mu.Unlock()
	if got == nil || got["status"] != "pending" || got["email_address"] != "Dora@example.org" {
		t.Fatalf("member %v (calls %v)", got, calls)
	}
	if time.Since(start) < time.Second {
		t.Errorf("the 429 with Retry-After: 1 was not honoured (done after %s)", time.Since(start))
	}
	if want := "/3.0/lists/L1/members/" + mailchimp.MemberHash("dora@example.org"); hash != mailchimp.MemberHash("dora@example.org") || calls[len(calls)-1] != "PUT "+want {
		t.Errorf("calls %v", calls)
	}
	changeConsent(t, c, false, "newsletter")
	drain(t, s, d, 10*time.Second)
	fake.mu.Lock()
	st := fake.members[hash]["status"]
	fake.mu.Unlock()
	if st != "unsubscribed" {
		t.Errorf("after withdrawal status %v", st)
	}
	// Erasure after re-granting: permanent delete.
	changeConsent(t, c, true, "newsletter")
	drain(t, s, d, 10*time.Second)
	var me struct{ Me struct{ ID string } }
	c.Do(t, `{ me { id } }`, nil).Decode(t, &me)
	adminClient(t, s).Do(t, `mutation($id: ID!) { eraseUser(id: $id) }`, map[string]any{"id": me.Me.ID})
	drain(t, s, d, 10*time.Second)
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.members) != 0 {
		t.Errorf("member not deleted permanently: %v (calls %v)", fake.members, fake.calls)
	}
}

func TestSurveyMonkeyContacts(t *testing.T) {
	fake := providerfakes.NewSurveyMonkey("tok", "CL")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: surveys-sm
    type: surveymonkey
    fields: [user.contact.email, user.demographic.country]
    settings: {token: tok, listId: CL, baseURL: %q}
`, srv.URL))
	c, _ := userWithData(t, s, "sm_eve", false)
	c.Do(t, `mutation { setEmail(email: "sm_eve@example.org") { id } }`, nil).Decode(t, new(any))
	changeConsent(t, c, true, "surveys")
	d := s.App.Outbox.Dispatcher("t", fast)
	drain(t, s, d, 10*time.Second)
	// The address is not verified yet: no processor receives it, so the
	// delivery waits.
	waiting := len(fake.Contacts())
	if waiting != 0 || len(items(t, s, outbox.Waiting)) != 1 {
		t.Fatalf("before verification: %d contacts, %d waiting items; want 0 and 1", waiting, len(items(t, s, outbox.Waiting)))
	}
	verifyMailed(t, s, "sm_eve@example.org")
	drain(t, s, d, 10*time.Second)
	contacts := fake.Contacts()
	if len(contacts) != 1 {
		t.Fatalf("contacts %v", contacts)
	}
	for _, ct := range contacts {
		if ct["email"] != "sm_eve@example.org" || fmt.Sprint(ct["custom_fields"]) != "map[2:DE]" {
			t.Errorf("contact %v: want the email and the country only", ct)
		}
	}
	changeConsent(t, c, false, "surveys")
	drain(t, s, d, 10*time.Second)
	if left := fake.Contacts(); len(left) != 0 {
		t.Errorf("contact not deleted: %v", left)
	}
}

// receiver is a webhook endpoint that applies each webhook-id once.
type receiver struct {
	mu       sync.Mutex
	applied  map[string]int // webhook-id → times applied (must stay 1)
	requests int
	inflight map[string]int
	overlap  int
	fail     func(n int) (status int, sleep time.Duration)
	pause    time.Duration
}

func newReceiver() *receiver {
	return &receiver{applied: map[string]int{}, inflight: map[string]int{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("webhook-id")
	_, _ = io.Copy(io.Discard, r.Body)
	rc.mu.Lock()
	rc.requests++
	n := rc.requests
	rc.inflight[id]++
	if rc.inflight[id] > 1 {
		rc.overlap++
	}
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.inflight[id]--
		rc.mu.Unlock()
	}()
	if rc.pause > 0 {
		time.Sleep(rc.pause)
	}
	if rc.fail != nil {
		if status, sleep := rc.fail(n); status != 0 {
			time.Sleep(sleep)
			w.WriteHeader(status)
			return
		}
	}
	rc.mu.Lock()
	if _, seen := rc.applied[id]; !seen {
		rc.applied[id] = 0
	}
	rc.applied[id]++
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// effects counts distinct ids applied; duplicates are deliveries repeated
// after a lost answer, which the idempotency key makes harmless.
func (rc *receiver) effects() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.applied)
}

func webhookServer(t *testing.T, rc http.Handler, extra string) (*apptest.Server, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: hook
    type: webhook
    purpose: surveys
    fields: [user.demographic.country]
    settings: {url: %q%s}
`, srv.URL, extra))
	return s, srv
}

func grantMany(t *testing.T, s *apptest.Server, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c := s.Register(t, fmt.Sprintf("%s%d", prefix, i))
			changeConsent(t, c, true, "surveys")
		}()
	}
	wg.Wait()
}

func TestFailingReceiverEveryItemDeliveredOnce(t *testing.T) {
	rc := newReceiver()
	rc.fail = func(n int) (int, time.Duration) {
		switch {
		case n%10 == 3: // a timeout: the dispatcher gives up at 300ms
			return http.StatusOK, 500 * time.Millisecond
		case n%10 < 3: // 30% failures
			return []int{500, 503, 429}[n%3], 0
		}
		return 0, 0
	}
	s, _ := webhookServer(t, rc, "")
	const n = 20
	grantMany(t, s, "flaky", n)
	drain(t, s, s.App.Outbox.Dispatcher("t", fast), 60*time.Second)
	done := items(t, s, outbox.Done)
	if len(done) != n || len(items(t, s, outbox.Dead)) != 0 {
		t.Fatalf("want %d items done, none dead; got %d done", n, len(done))
	}
	if rc.effects() != n {
		t.Errorf("want %d distinct effects, got %d", n, rc.effects())
	}
	for _, it := range done {
		if rc.applied[it.ID] == 0 {
			t.Errorf("item %s done but never applied", it.ID)
		}
	}
	if rc.requests <= n {
		t.Errorf("the receiver failed nothing? %d requests for %d items", rc.requests, n)
	}
}

func TestDispatcherRestartLosesAndDuplicatesNothing(t *testing.T) {
	rc := newReceiver()
	rc.pause = 20 * time.Millisecond
	s, _ := webhookServer(t, rc, "")
	const n = 16
	grantMany(t, s, "restart", n)
	ctx, cancel := context.WithCancel(context.Background())
	var first sync.WaitGroup
	first.Add(1)
	go func() {
		defer first.Done()
		s.App.Outbox.Dispatcher("first", fast).Run(ctx)
	}()
	for rc.effects() < 3 {
		time.Sleep(2 * time.Millisecond)
	}
	cancel() // stopped mid-run: some items are leased, some in flight
	first.Wait()
	if got := rc.effects(); got >= n {
		t.Fatalf("the first dispatcher finished everything (%d); the test proves nothing", got)
	}
	second := fast
	second.Lease = 200 * time.Millisecond // let the stopped dispatcher's leases expire soon
	drain(t, s, s.App.Outbox.Dispatcher("second", second), 30*time.Second)
	if got := len(items(t, s, outbox.Done)); got != n {
		t.Errorf("want %d done, got %d", n, got)
	}
	if rc.effects() != n {
		t.Errorf("want %d distinct effects, got %d", n, rc.effects())
	}
	if total := countDisclosures(t, s); total != n {
		t.Errorf("want %d disclosures, got %d", n, total)
	}
}

func TestTwoDispatchersNeverDeliverOneItemConcurrently(t *testing.T) {
	rc := newReceiver()
	rc.pause = 5 * time.Millisecond
	s, _ := webhookServer(t, rc, "")
	const n = 20
	grantMany(t, s, "twin", n)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, name := range []string{"replica-1", "replica-2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.App.Outbox.Dispatcher(name, fast).Run(ctx) // both share s.Store()
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for rc.effects() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.applied) != n || rc.overlap != 0 {
		t.Fatalf("want %d effects and no concurrent delivery of one item; got %d effects, %d overlaps", n, len(rc.applied), rc.overlap)
	}
	for id, k := range rc.applied {
		if k != 1 {
			t.Errorf("item %s delivered %d times", id, k)
		}
	}
	owners := map[string]bool{}
	for _, it := range items(t, s, outbox.Done) {
		owners[it.LeaseOwner] = true
	}
	if len(owners) != 2 {
		t.Logf("only %v delivered (allowed, but unusual)", owners)
	}
}

func TestWebhookSignaturesVerifyWithJWKS(t *testing.T) {
	type got struct {
		id, ts, sig, kid string
		body             []byte
	}
	ch := make(chan got, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- got{r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), r.Header.Get("webhook-key-id"), b}
	}))
	defer srv.Close()
	secret := []byte("0123456789abcdef0123456789abcdef")
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: signed
    type: webhook
    purpose: surveys
    fields: [user.demographic.country]
    settings: {url: %q, secret: "whsec_%s"}
`, srv.URL, base64.StdEncoding.EncodeToString(secret)))
	c, _ := userWithData(t, s, "sig_fay", true)
	changeConsent(t, c, true, "surveys")
	drain(t, s, s.App.Outbox.Dispatcher("t", fast), 10*time.Second)
	g := <-ch
	it := items(t, s, outbox.Done)
	if len(it) != 1 || g.id != it[0].ID {
		t.Fatalf("webhook-id %q is not the item id (%v)", g.id, it)
	}
	var p webhook.Payload
	if err := json.Unmarshal(g.body, &p); err != nil || p.Data.Fields["user.demographic.country"] != "DE" || len(p.Data.Fields) != 1 {
		t.Fatalf("payload %s", g.body)
	}
	// Fetch the public keys like any receiver would.
	res, err := http.Get(s.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var jwks struct {
		Keys []struct{ Kid, Kty, Crv, X string }
	}
	if err := json.NewDecoder(res.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	signed := webhook.SignedContent(g.id, g.ts, g.body)
	var v1a, v1 bool
	for _, part := range strings.Fields(g.sig) {
		ver, sig, _ := strings.Cut(part, ",")
		raw, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			t.Fatalf("signature %q", part)
		}
		switch ver {
		case "v1a":
			for _, k := range jwks.Keys {
				x, _ := base64.RawURLEncoding.DecodeString(k.X)
				if k.Kid == g.kid && k.Crv == "Ed25519" && ed25519.Verify(ed25519.PublicKey(x), signed, raw) {
					v1a = true
				}
			}
			tampered := append(slices.Clone(signed), ' ')
			for _, k := range jwks.Keys {
				x, _ := base64.RawURLEncoding.DecodeString(k.X)
				if ed25519.Verify(ed25519.PublicKey(x), tampered, raw) {
					t.Error("a tampered body verifies")
				}
			}
		case "v1":
			m := hmac.New(sha256.New, secret)
			m.Write(signed)
			v1 = hmac.Equal(m.Sum(nil), raw)
		}
	}
	if !v1a || !v1 {
		t.Errorf("signatures do not verify: v1a %v, v1 %v (%q)", v1a, v1, g.sig)
	}
}

func TestAdminOutboxRetryAndProcessorSwitch(t *testing.T) {
	rc := newReceiver()
	rc.fail = func(int) (int, time.Duration) { return http.StatusBadRequest, 0 } // permanent
	s, _ := webhookServer(t, rc, "")
	c := s.Register(t, "adm_gus")
	changeConsent(t, c, true, "surveys")
	drain(t, s, s.App.Outbox.Dispatcher("t", fast), 10*time.Second)
	admin := adminClient(t, s)
	var out struct {
		Outbox struct {
			Edges []struct {
				Node struct {
					ID, State, LastError string
					Attempts             int
				}
			}
		}
	}
	admin.Do(t, `{ outbox(state: DEAD) { edges { node { id state attempts lastError } } } }`, nil).Decode(t, &out)
	if len(out.Outbox.Edges) != 1 || out.Outbox.Edges[0].Node.Attempts != 1 || !strings.Contains(out.Outbox.Edges[0].Node.LastError, "400") {
		t.Fatalf("want one DEAD item after one attempt (400 is permanent): %+v", out.Outbox.Edges)
	}
	if r := c.Do(t, `{ outbox { edges { node { id } } } }`, nil); r.Code() != "FORBIDDEN" {
		t.Errorf("a user read the outbox: %s", r.Raw)
	}
	rc.fail = nil
	id := out.Outbox.Edges[0].Node.ID
	var retried struct{ RetryDelivery struct{ State string } }
	admin.Do(t, `mutation($id: ID!) { retryDelivery(id: $id) { state } }`, map[string]any{"id": id}).Decode(t, &retried)
	if retried.RetryDelivery.State != "PENDING" {
		t.Fatalf("retry: %+v", retried)
	}
	// A disabled processor gets nothing until enabled again.
	var sw struct{ SetProcessorEnabled struct{ Enabled bool } }
	admin.Do(t, `mutation { setProcessorEnabled(name: "hook", enabled: false) { enabled } }`, nil).Decode(t, &sw)
	if sw.SetProcessorEnabled.Enabled {
		t.Fatal("not disabled")
	}
	d := s.App.Outbox.Dispatcher("t", fast)
	if n, err := d.Once(context.Background()); err != nil || n != 0 {
		t.Fatalf("a disabled processor's item was claimed (%d, %v)", n, err)
	}
	admin.Do(t, `mutation { setProcessorEnabled(name: "hook", enabled: true) { enabled } }`, nil)
	drain(t, s, d, 10*time.Second)
	if rc.effects() != 1 {
		t.Errorf("retried item not delivered")
	}
	var audit struct {
		AuditLog struct {
			Edges []struct {
				Node struct{ Action, Subject string }
			}
		}
	}
	admin.Do(t, `{ auditLog(first: 20) { edges { node { action subject } } } }`, nil).Decode(t, &audit)
	var switches int
	for _, e := range audit.AuditLog.Edges {
		if e.Node.Action == "processor_enabled" && e.Node.Subject == "hook" {
			switches++
		}
	}
	if switches != 2 {
		t.Errorf("want 2 audited processor switches, got %d", switches)
	}
}

func TestSMTPNewsletterDoubleOptInWithMailpit(t *testing.T) {
	mp := mailpittest.Start(t) // offers STARTTLS
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: letters
    type: smtp_newsletter
    settings: {smtpURL: %q, listName: "the Example letter"}
`, mp.SMTPURL()), func(c *config.Config) { c.PublicURL = "http://public.example" })
	c, _ := userWithData(t, s, "mp_hal", true)
	changeConsent(t, c, true, "newsletter")
	d := s.App.Outbox.Dispatcher("t", fast)
	drain(t, s, d, 20*time.Second)
	msg := mp.WaitFor(t, "mp_hal@example.org", 10*time.Second)
	if !strings.Contains(msg.Subject, "confirm") {
		t.Errorf("subject %q", msg.Subject)
	}
	const prefix = "http://public.example/plugins/letters/confirm?token="
	i := strings.Index(msg.Text, prefix)
	if i < 0 {
		t.Fatalf("no confirmation link in %q", msg.Text)
	}
	token := strings.Fields(msg.Text[i+len(prefix):])[0]
	p, _ := s.App.Outbox.Processor("letters")
	nl := p.Impl.(*smtpnewsletter.Processor)
	subject, err := s.App.Outbox.Pseudonym(context.Background(), "letters", meID(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if sub, _ := nl.Subscriber(context.Background(), subject); sub == nil || sub.Confirmed {
		t.Fatalf("want an unconfirmed subscriber before the link is followed, got %+v", sub)
	}
	res, err := http.Get(s.URL + "/plugins/letters/confirm?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("confirm link answered %d", res.StatusCode)
	}
	if sub, _ := nl.Subscriber(context.Background(), subject); sub == nil || !sub.Confirmed {
		t.Fatalf("not confirmed: %+v", sub)
	}
	if res, _ := http.Get(s.URL + "/plugins/letters/confirm?token=" + token); res.StatusCode != http.StatusNotFound {
		t.Errorf("a used link answered %d", res.StatusCode)
	}
	changeConsent(t, c, false, "newsletter")
	drain(t, s, d, 20*time.Second)
	if sub, _ := nl.Subscriber(context.Background(), subject); sub != nil {
		t.Errorf("withdrawal left the subscriber: %+v", sub)
	}
	if strings.Contains(s.Dump(t), "mp_hal@example.org") {
		t.Error("the address is stored in clear")
	}
}

func meID(t *testing.T, c *apptest.Client) string {
	t.Helper()
	var me struct{ Me struct{ ID string } }
	c.Do(t, `{ me { id } }`, nil).Decode(t, &me)
	return me.Me.ID
}

// actionless declares an action in its manifest but cannot run it.
type actionless struct{}

func (actionless) Deliver(context.Context, plugins.Request) (plugins.Result, error) {
	return plugins.Result{}, nil
}
func (actionless) Forget(context.Context, plugins.Request) error { return nil }

func init() {
	plugins.Register(plugins.Manifest{Type: "test_actionless", Purpose: "surveys", DataCategories: []string{plugins.CategoryCountry},
		Actions: []plugins.Action{{ID: "poke", Title: "Poke"}}},
		func(plugins.Env) (plugins.Processor, error) { return actionless{}, nil })
}

// closing records each Close of its instances, by name.
type closing struct {
	name   string
	closed *sync.Map
}

func (closing) Deliver(context.Context, plugins.Request) (plugins.Result, error) {
	return plugins.Result{}, nil
}
func (closing) Forget(context.Context, plugins.Request) error { return nil }
func (c closing) Close(context.Context) error {
	c.closed.Store(c.name, true)
	return nil
}

var closedInstances sync.Map

func init() {
	plugins.Register(plugins.Manifest{Type: "test_closing", Purpose: "surveys", DataCategories: []string{plugins.CategoryCountry}},
		func(env plugins.Env) (plugins.Processor, error) {
			return closing{name: env.Name, closed: &closedInstances}, nil
		})
}

// TestProcessorsAreClosedAtShutdown: a processor implementing plugins.Closer
// is closed when the server stops, and not before.
func TestProcessorsAreClosedAtShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "closing.yaml")
	if err := os.WriteFile(path, []byte(`processors: [{name: closer-a, type: test_closing}, {name: closer-b, type: test_closing}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := apptest.ConfigOn(t, apptest.Kind())
	cfg.ConfigFile = path
	a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"closer-a", "closer-b"} {
		if _, ok := closedInstances.Load(n); ok {
			t.Fatalf("%s closed while the server runs", n)
		}
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"closer-a", "closer-b"} {
		if _, ok := closedInstances.Load(n); !ok {
			t.Errorf("%s was not closed at shutdown", n)
		}
	}
}

func TestBadProcessorConfigurationStopsStartUp(t *testing.T) {
	cases := map[string]string{
		`unknown type "fax"`:                                                         `processors: [{name: a, type: fax, purpose: newsletter}]`,
		`settings.url is required`:                                                   `processors: [{name: a, type: webhook, purpose: surveys}]`,
		`settings.colour is not a setting`:                                           `processors: [{name: a, type: webhook, purpose: surveys, settings: {url: "http://x", colour: red}}]`,
		`purpose "newsletter" does not allow "user.demographic.country"`:             `processors: [{name: a, type: webhook, purpose: newsletter, fields: [user.demographic.country]}]`,
		`type surveymonkey needs "user.contact.email"`:                               `processors: [{name: a, type: surveymonkey, fields: [user.demographic.country], settings: {token: t, listId: L}}]`,
		`type mailchimp does not use "user.demographic.country"`:                     `processors: [{name: a, type: mailchimp, purpose: surveys, fields: [user.demographic.country], settings: {apiKey: k-us1, listId: L}}]`,
		`requires: "user.contact.email" is not one of the instance's fields`:         `processors: [{name: a, type: webhook, purpose: surveys, fields: [user.demographic.country], requires: [user.contact.email], settings: {url: "http://x"}}]`,
		`type test_actionless declares actions but does not implement plugins.Actor`: `processors: [{name: a, type: test_actionless}]`,
		`environment variable CG_TEST_UNSET_TOKEN is not set`:                        `processors: [{name: a, type: webhook, purpose: surveys, settings: {url: "http://x/${CG_TEST_UNSET_TOKEN}"}}]`,
	}
	for want, y := range cases {
		path := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := apptest.ConfigOn(t, apptest.Kind())
		cfg.ConfigFile = path
		a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			_ = a.Close(context.Background())
			t.Errorf("started with %s", y)
			continue
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not say %q (in %s)", err, want, path)
		}
	}
}

// Work items committed with a consent change reach the queue exactly once,
// however a crash cuts the relay short. On MongoDB the change commits in one
// write of the user document, with the items embedded in it and a relay
// tag, and the relay moves them to the queue; the embedded store commits
// them into the queue in the change's own transaction. Both are checked
// through the port: after a sweep nothing waits to be relayed, and every
// item is queued once.
func TestRelayRecoversItemsLeftInTheUserDocument(t *testing.T) {
	s := startWithProcessors(t, strings.ReplaceAll(twoExamples, "crm-", "rl-"))
	c, id := userWithData(t, s, "rl_ida", true)
	changeConsent(t, c, true, "surveys")
	ctx := context.Background()
	queue := s.Store().Outbox()
	// The write hook put the items into the consent change and the relay
	// moved them: nothing waits to be relayed.
	if n := len(items(t, s, outbox.Pending)); n != 2 {
		t.Fatalf("want 2 pending items after the grant, got %d", n)
	}
	if n, err := queue.Relay(ctx, id); err != nil || n != 0 {
		t.Fatalf("relay after the grant found %d users with items waiting (err %v), want 0", n, err)
	}
	// A crash right after a consent change: the change committed with its
	// item, the relay never ran.
	p, _ := s.App.Outbox.Processor("rl-a")
	now := time.Now().UTC().Truncate(time.Millisecond)
	it := outbox.Item{ID: s.App.Outbox.NewID(), UserID: id, Processor: p.Name, Purpose: p.Purpose, Action: outbox.Deliver,
		Cause: "test", State: outbox.Pending, NextAt: now, CreatedAt: now, UpdatedAt: now}
	leftByCrash(t, s, it)
	for i := range 2 { // the sweep is idempotent
		if _, err := s.App.Outbox.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := queue.Relay(ctx, ""); err != nil || n != 0 {
			t.Fatalf("after sweep %d, %d users still have items waiting (err %v)", i+1, n, err)
		}
	}
	if got, err := queue.Item(ctx, it.ID); err != nil || got == nil || got.State != outbox.Pending || got.UserID != id {
		t.Fatalf("the item left by the crash is not queued: %+v, %v", got, err)
	}
	// Relaying again after a crash between insert and unset duplicates
	// nothing (only MongoDB has the two places to be between).
	if s.App.Store.Kind() == "mongodb" {
		leftByCrash(t, s, it)
		if err := s.App.Outbox.RelayUser(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := queue.Enqueue(ctx, it); err != nil || ok {
		t.Fatalf("enqueueing the item a second time: %v, %v; want refused", ok, err)
	}
	if n := len(items(t, s, outbox.Pending)); n != 3 {
		t.Errorf("want 3 pending items, got %d", n)
	}
	if n, err := queue.Relay(ctx, id); err != nil || n != 0 {
		t.Errorf("items left to relay: %d users (err %v)", n, err)
	}
}

// leftByCrash stores it as a consent change that committed and crashed
// before its relay leaves it: on MongoDB embedded in the user document
// under a relay tag (as the adapter lays it out, docs.go), on the embedded
// store in the queue, where the change's transaction put it.
func leftByCrash(t *testing.T, s *apptest.Server, it outbox.Item) {
	t.Helper()
	ms := func(tm time.Time) int64 { return tm.UnixMilli() }
	storetest.Tamper(t, s.Store(), `INSERT INTO outbox_items (id, user_id, processor, purpose, action, erase, ref, cause, state,
		attempts, next_at, lease_until, lease_owner, last_error, note, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, 0, '', ?, ?, 0, ?, 0, '', '', '', ?, ?)`,
		[]any{it.ID, it.UserID, it.Processor, it.Purpose, string(it.Action), it.Cause, string(it.State), ms(it.NextAt), ms(it.CreatedAt), ms(it.UpdatedAt)},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			doc := bson.D{{Key: "_id", Value: it.ID}, {Key: "userId", Value: it.UserID}, {Key: "processor", Value: it.Processor},
				{Key: "purpose", Value: it.Purpose}, {Key: "action", Value: string(it.Action)}, {Key: "cause", Value: it.Cause},
				{Key: "state", Value: string(it.State)}, {Key: "attempts", Value: 0}, {Key: "nextAt", Value: it.NextAt},
				{Key: "leaseUntil", Value: time.Time{}}, {Key: "createdAt", Value: it.CreatedAt}, {Key: "updatedAt", Value: it.UpdatedAt}}
			return modified(db.Collection("users").UpdateOne(ctx, bson.D{{Key: "_id", Value: it.UserID}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "outbox." + it.ID, Value: doc}, {Key: "relay", Value: "crashed-" + it.ID}}}}))
		})
}

// countDisclosures counts every disclosure recorded for any account.
func countDisclosures(t *testing.T, s *apptest.Server) int64 {
	t.Helper()
	ctx := context.Background()
	var n int64
	err := s.Store().Accounts().EachAccount(ctx, func(r *accounts.Record) error {
		ds, err := s.Store().Outbox().Disclosures(ctx, r.ID, "", 0)
		n += int64(len(ds))
		return err
	})
	if err != nil {
		t.Fatalf("count disclosures: %v", err)
	}
	return n
}
