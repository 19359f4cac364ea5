package app_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
)

// A person's whole life cycle — sign-up with personal data, corrections,
// a delivery to a processor, a failed delivery, mail, erasure — logged at
// debug level leaves no email or profile value in the logs.
func TestLogsHoldNoPersonalData(t *testing.T) {
	mp := mailpittest.Start(t)
	failing := true
	var fmu sync.Mutex
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmu.Lock()
		defer fmu.Unlock()
		if failing { // the first attempt fails, so the retry path logs too
			failing = false
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	path := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf("processors:\n  - name: hook\n    type: webhook\n    purpose: surveys\n    fields: [user.contact.email, user.demographic.country, user.demographic.age_band]\n    settings: {url: %q}\n", receiver.URL)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := apptest.ConfigOn(t, apptest.Kind())
	cfg.ConfigFile, cfg.OutboxPoll, cfg.SMTPURL = path, 10*time.Millisecond, mp.SMTPURL()
	var logs apptest.LockedBuffer
	s := apptest.StartWithLogger(t, cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	c := s.Client()
	r := c.Do(t, registerMutation, map[string]any{"in": map[string]any{
		"username": "private-person", "password": "correct horse battery", "email": "hidden.mailbox@example.net",
		"profile": map[string]any{"birthYear": 1964, "country": "IS", "gender": "OTHER", "language": "is"},
	}})
	if len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	for _, q := range []string{
		`mutation { updateProfile(input: {country: "FO", language: "fo"}) { id } }`,
		`mutation { setEmail(email: "second.secret@example.net") { id } }`,
		`mutation { grantConsent(purpose: "surveys") { receipt } }`,
		`mutation { updateProfile(input: {country: "NOPE"}) { id } }`, // a refused input is logged as nothing personal either
	} {
		c.Do(t, q, nil)
	}
	mp.WaitFor(t, "second.secret@example.net", 15*time.Second)
	waitFor(t, func() bool { return len(items(t, s, "DONE")) >= 1 }, "the delivery after a failed attempt")
	if r := c.Do(t, `mutation { deleteMyAccount(password: "correct horse battery") }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	s.Close()

	out := logs.String()
	if !strings.Contains(out, `"level":"DEBUG"`) {
		t.Fatal("no debug lines captured; the check below would prove nothing")
	}
	secrets := []*regexp.Regexp{
		// The birth year as a number of its own: the same digits inside a
		// timestamp's nanoseconds (".437196422Z") or a port are not it.
		regexp.MustCompile(`(^|\D)1964(\D|$)`),
	}
	for _, s := range []string{"hidden.mailbox", "second.secret", "example.net", `"IS"`, `"FO"`, "NOPE", "correct horse battery"} {
		secrets = append(secrets, regexp.MustCompile(regexp.QuoteMeta(s)))
	}
	for _, secret := range secrets {
		if loc := secret.FindStringIndex(out); loc != nil {
			i := loc[0]
			t.Errorf("logs contain %q: …%s…", secret, out[max(0, i-200):min(len(out), i+100)])
		}
	}
}
