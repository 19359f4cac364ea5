package e2e_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

// logoSVG is the operator's logo, served from another origin over HTTPS as
// a CDN would serve it.
const logoSVG = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">` +
	`<rect width="64" height="64" rx="12" fill="#0b6e4f"/><circle cx="32" cy="32" r="16" fill="#fff"/></svg>`

// TestBrowserBranding drives web/e2e/branding.mjs: a server started with a
// branding config shows, on both pages, at 1280×800 and 390×844, in English
// and Japanese, the logo (from its own https origin, allowed by the page
// CSP), the operator's name, the policy link, the sentence naming the
// controller and the accent colour (computed styles), with axe on each state.
func TestBrowserBranding(t *testing.T) {
	t.Parallel() // its own server and browser
	root, node, chromium := browserTools(t)
	logos := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/logo.svg" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		_, _ = io.WriteString(w, logoSVG)
	}))
	t.Cleanup(logos.Close)
	logoURL := logos.URL + "/logo.svg"

	cfg := "controller:\n  name: Example KK\n  contact: Data protection officer\n  email: privacy@example.jp\n  jurisdiction: JP\n" +
		"branding:\n  name: Example Shop\n  logoUrl: " + logoURL + "\n  accentColor: \"#0b6e4f\"\n  policyUrl: https://example.org/privacy\n"
	s := apptest.Start(t, func(c *config.Config) { c.ConfigFile = apptest.WriteConfig(t, cfg) })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := filepath.Join(root, "test-output")
	runBrowserScript(t, ctx, node, root, chromium, "branding.mjs", []string{"BASE_URL=" + s.URL,
		"OPERATOR_NAME=Example Shop", "CONTROLLER_NAME=Example KK", "CONTROLLER_EMAIL=privacy@example.jp",
		"LOGO_URL=" + logoURL, "ACCENT=#0b6e4f", "POLICY_URL=https://example.org/privacy"}, "branding: ok")
	for _, page := range []string{"center", "partners"} {
		for _, lang := range []string{"en", "ja"} {
			for _, size := range []string{"1280x800", "390x844"} {
				name := "branding-" + page + "-" + lang + "-" + size
				if fi, err := os.Stat(filepath.Join(out, name+".png")); err != nil || fi.Size() == 0 {
					t.Errorf("screenshot %s.png missing: %v", name, err)
				}
			}
		}
	}
}
