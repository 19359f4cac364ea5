package app_test

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/outbox"
)

// A processor bound to an OPT_OUT purpose receives a new user's data from
// sign-up on (consent is in force by default), but not for a user who signed
// up with Global Privacy Control, and it is told to forget on withdrawal.
func TestOptOutPurposeProcessorsDeliverFromSignUp(t *testing.T) {
	rc := newReceiver()
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: stats-hook
    type: webhook
    purpose: aggregate_statistics
    fields: [user.demographic.country]
    settings: {url: %q}
`, srv.URL))
	d := s.App.Outbox.Dispatcher("optout", fast)

	plain := s.Register(t, "defaulted")
	gpc := s.Client()
	gpc.Header.Set("Sec-GPC", "1")
	if r := gpc.Do(t, `mutation { register(input: {username: "private-by-signal", password: "correct horse battery"}) { token } }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	drain(t, s, d, 10*time.Second)
	if n := rc.effects(); n != 1 {
		t.Fatalf("%d deliveries after two sign-ups (one with GPC), want 1", n)
	}
	if r := plain.Do(t, `mutation { withdrawConsent(purpose: "aggregate_statistics") { receipt } }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	drain(t, s, d, 10*time.Second)
	if n := rc.effects(); n != 2 {
		t.Fatalf("%d requests after the withdrawal, want the delivery and a forget", n)
	}
}

// A policy version that asks for consent again stops earlier grants from
// counting; the processors holding those users' data are told to forget,
// except for users who grant again before the forget runs.
func TestReconsentTellsProcessorsToForget(t *testing.T) {
	rc := newReceiver()
	s, _ := webhookServer(t, rc, "")
	d := s.App.Outbox.Dispatcher("reconsent", fast)
	stays := s.Register(t, "grants-again")
	goes := s.Register(t, "does-not-return")
	for _, c := range []*apptest.Client{stays, goes} {
		changeConsent(t, c, true, "surveys")
	}
	drain(t, s, d, 10*time.Second)
	if n := rc.effects(); n != 2 {
		t.Fatalf("%d deliveries, want 2", n)
	}
	admin := adminClient(t, s)
	if r := admin.Do(t, `mutation { publishPolicy(version: "2", url: "https://example.org/privacy/v2", reconsent: ["surveys"]) { version } }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	changeConsent(t, stays, true, "surveys") // grants again under version 2
	drain(t, s, d, 10*time.Second)
	forgets := 0
	for _, it := range items(t, s, outbox.Done) {
		if it.Action == outbox.Forget {
			forgets++
		}
	}
	if forgets != 1 {
		t.Fatalf("%d forgets done after reconsent, want 1 (only the user who did not grant again)", forgets)
	}
}
