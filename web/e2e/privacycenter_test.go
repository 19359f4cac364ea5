package e2e_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
	"github.com/consentgraph/consentgraph/internal/seed"
)

// verificationLinks answers GET /?to=ADDRESS with the path and query of the
// verification (or, with kind, another) link mailed to that address (through the real SMTP server),
// so the browser can follow it on the test server's own port.
func verificationLinks(mp *mailpittest.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to := r.URL.Query().Get("to")
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		defer cancel()
		for {
			list, err := mp.Messages(ctx)
			for _, m := range list {
				if err != nil || len(m.To) == 0 || !strings.EqualFold(m.To[0].Address, to) {
					continue
				}
				full, err := mp.Get(ctx, m.ID)
				if err != nil {
					break
				}
				// ?kind=confirm asks for the newsletter's confirmation link
				// instead, from the newest such mail (the list is newest first).
				// ?kind=reset asks for the newest password reset link.
				marker := "/?verify="
				switch r.URL.Query().Get("kind") {
				case "confirm":
					marker = "/plugins/letters/confirm?token="
				case "reset":
					marker = "/?reset="
				}
				if i := strings.Index(full.Text, marker); i >= 0 {
					_, _ = io.WriteString(w, strings.Fields(full.Text[i:])[0])
					return
				}
			}
			select {
			case <-ctx.Done():
				http.Error(w, "no verification mail to "+to, http.StatusNotFound)
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

// TestBrowserPrivacyCenterAndPartnerConsole drives the two pages in a real
// headless chromium (web/e2e/browser.mjs, playwright-core) against the real
// server: sign up without an email, grant surveys, see the delivery to the
// webhook processor, verify and download the receipt, download the export,
// delete the account; then a partner asks for AGE_BAND on seeded
// users; with the SMTP newsletter, see its confirmation pending, ask for
// the mail again and see it active once the link is followed. Screenshots
// go to test-output/. scripts/test.sh installs chromium
// and the npm packages; a missing one fails this test, it is never skipped.
func TestBrowserPrivacyCenterAndPartnerConsole(t *testing.T) {
	t.Parallel() // its own server and browser
	root, node, chromium := browserTools(t)

	receiver := &apptest.Recorder{}
	hook := httptest.NewServer(receiver)
	t.Cleanup(hook.Close)
	cfgFile := filepath.Join(t.TempDir(), "consentgraph.yaml")
	yaml := "processors:\n" +
		"  - name: survey-hook\n    type: webhook\n    purpose: surveys\n" +
		"    fields: [user.demographic.age_band, user.demographic.country]\n" +
		"    settings: {url: \"" + hook.URL + "/hook\"}\n"
	mp := mailpittest.Start(t)
	// The SMTP newsletter, so the page shows a pending confirmation that
	// becomes active once its mailed link is followed.
	yaml += "  - name: letters\n    type: smtp_newsletter\n    settings: {smtpURL: \"" + mp.SMTPURL() + "\"}\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	mailLinks := httptest.NewServer(verificationLinks(mp))
	t.Cleanup(mailLinks.Close)
	s, admin := apptest.StartWithAdmin(t, func(c *config.Config) {
		c.DemographicsK = 5
		// A cap of 10 lowers the threshold enough that one answer has
		// more than 50 groups (the table's page) and three dimensions
		// have groups to label.
		c.DemographicsMaxEpsilon = 10
		c.ConfigFile = cfgFile
		c.SMTPURL = mp.SMTPURL()
	})
	partnerKey := newPartnerKey(t, admin, "Acme Research", 100)
	// The second partner, signed in after the first signs out, must
	// inherit nothing; its small budget trips the cost guard.
	secondKey := newPartnerKey(t, admin, "Beta Analytics", 5)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := seed.Run(ctx, s.App, seed.Options{Users: 2400, Grants: 0, RandSeed: 7}); err != nil {
		t.Fatalf("seed: %v", err)
	}

	out := filepath.Join(root, "test-output")
	runBrowserScript(t, ctx, node, root, chromium, "browser.mjs", []string{"BASE_URL=" + s.URL, "PARTNER_KEY=" + partnerKey,
		"PARTNER_KEY_2=" + secondKey, "ADMIN_TOKEN=" + admin.Token,
		"EXPECT_PROCESSOR=survey-hook", "EXPECT_NEWSLETTER=letters", "MAIL_LINKS=" + mailLinks.URL},
		"privacy center: ok", "password pages: ok", "partner console: ok", "languages: ok")
	// The older walk runs in both languages; each of its states is
	// screenshotted at both sizes.
	for _, state := range []string{"center-signed-out", "center-signup-error", "center-signed-in", "center-consent-saving",
		"center-consents", "center-email-confirmed", "center-links", "center-phone", "center-policy-changed",
		"center-delete-error", "center-deleted", "center-notice", "center-password-error", "center-password-short",
		"center-password-changed", "center-forgot", "center-reset", "center-reset-short", "center-session-ended",
		"center-reset-used", "partners-signin-error", "partners-result", "partners-paged", "partners-3d",
		"partners-phone", "partners-over-budget"} {
		for _, lang := range []string{"en", "ja"} {
			for _, size := range []string{"1280x800", "390x844"} {
				name := state + "-" + lang + "-" + size + ".png"
				if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
					t.Errorf("screenshot %s missing: %v", name, err)
				}
			}
		}
	}
	// Each language at each size, for every state of the language walk.
	for _, state := range []string{"center-signed-out", "center-forgot", "center-signed-in", "center-exported",
		"center-receipt", "center-deleted", "partners-signin-error", "partners-result", "partners-over-budget"} {
		for _, lang := range []string{"en", "ja"} {
			for _, size := range []string{"1280x800", "390x844"} {
				name := "lang-" + state + "-" + lang + "-" + size + ".png"
				if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
					t.Errorf("screenshot %s missing: %v", name, err)
				}
			}
		}
	}
	// The page showed the delivery; the receiver has it, with only the
	// declared fields, and after the erasure it is told to forget.
	deadline := time.Now().Add(20 * time.Second)
	var got []string
	for {
		got = receiver.Bodies()
		all := strings.Join(got, "\n")
		if strings.Contains(all, "subject.delivered") && strings.Contains(all, "subject.forgotten") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook did not receive a delivery and a forget request; got:\n%s", all)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, b := range got {
		if strings.Contains(b, "subject.delivered") && !strings.Contains(b, `"DE"`) {
			t.Errorf("the delivery lacks the country the user gave: %s", b)
		}
		if strings.Contains(b, "correct horse") || strings.Contains(b, "ada_") {
			t.Errorf("the webhook received the password or the username: %s", b)
		}
	}
}

// newPartnerKey creates a partner with a budget of epsilon over 30 days
// and returns its API key.
func newPartnerKey(t *testing.T, admin *apptest.Client, name string, epsilon float64) string {
	t.Helper()
	var out struct{ CreatePartner struct{ APIKey string } }
	admin.Do(t, `mutation($n: String!, $e: Float!) { createPartner(name: $n, epsilonBudget: $e, budgetPeriodDays: 30) { apiKey } }`,
		map[string]any{"n": name, "e": epsilon}).Decode(t, &out)
	return out.CreatePartner.APIKey
}
