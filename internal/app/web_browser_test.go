package app_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
	"github.com/consentgraph/consentgraph/internal/seed"
)

// webhookReceiver is the third party the surveys processor delivers to.
type webhookReceiver struct {
	mu     sync.Mutex
	bodies []string
}

func (w *webhookReceiver) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	w.bodies = append(w.bodies, string(b))
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

func (w *webhookReceiver) received() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.bodies...)
}

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

// repoRoot is the module root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
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
// browserTools returns the repository root, node and chromium for the
// browser tests, failing (never skipping) when one is missing:
// scripts/test.sh installs them.
func browserTools(t *testing.T) (root, node, chromium string) {
	t.Helper()
	root = repoRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (it runs the browser tests): %v; run ./scripts/test.sh, which installs what is missing", err)
	}
	chromium = os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium is not installed at %s: %v; run ./scripts/test.sh (apt-get install chromium)", chromium, err)
	}
	if _, err := os.Stat(filepath.Join(root, "web", "e2e", "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed: %v; run ./scripts/test.sh (npm ci in web/e2e)", err)
	}
	return root, node, chromium
}

// runBrowserScript runs web/e2e/<script> with node against the servers
// named in env (OUT_DIR and CHROMIUM_PATH are added), fails the test when
// it fails or when its output lacks one of the wanted "…: ok" lines, and
// returns the output.
func runBrowserScript(t *testing.T, ctx context.Context, node, root, chromium, script string, env []string, wants ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, node, filepath.Join(root, "web", "e2e", script))
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), env...), "OUT_DIR="+filepath.Join(root, "test-output"), "CHROMIUM_PATH="+chromium)
	output, err := cmd.CombinedOutput()
	t.Logf("%s output:\n%s", script, output)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("%s timed out", script)
		}
		t.Fatalf("%s failed: %v", script, err)
	}
	for _, want := range wants {
		if !strings.Contains(string(output), want) {
			t.Errorf("%s output lacks %q", script, want)
		}
	}
	return string(output)
}

func TestBrowserPrivacyCenterAndPartnerConsole(t *testing.T) {
	t.Parallel() // its own server and browser
	root, node, chromium := browserTools(t)

	receiver := &webhookReceiver{}
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
	s, admin := partnerAdmin(t, func(c *config.Config) {
		c.DemographicsK = 5
		// A cap of 10 lowers the threshold enough that one answer has
		// more than 50 groups (the table's page) and three dimensions
		// have groups to label.
		c.DemographicsMaxEpsilon = 10
		c.ConfigFile = cfgFile
		c.SMTPURL = mp.SMTPURL()
	})
	_, pc := createPartner(t, s, admin, 100, 30)
	// The second partner, signed in after the first signs out, must
	// inherit nothing; its small budget trips the cost guard.
	var second struct{ CreatePartner struct{ APIKey string } }
	admin.Do(t, `mutation { createPartner(name: "Beta Analytics", epsilonBudget: 5, budgetPeriodDays: 30) { apiKey } }`, nil).Decode(t, &second)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := seed.Run(ctx, s.App, seed.Options{Users: 2400, Grants: 0, RandSeed: 7}); err != nil {
		t.Fatalf("seed: %v", err)
	}

	out := filepath.Join(root, "test-output")
	runBrowserScript(t, ctx, node, root, chromium, "browser.mjs", []string{"BASE_URL=" + s.URL, "PARTNER_KEY=" + pc.Token,
		"PARTNER_KEY_2=" + second.CreatePartner.APIKey, "ADMIN_TOKEN=" + admin.Token,
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
		got = receiver.received()
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
