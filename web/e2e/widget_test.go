package e2e_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

// hostSite is the operator's own site on another origin: a page with a
// strict CSP that includes the widget with one script tag, and a script of
// the site that follows consentgraph:change.
type hostSite struct {
	consent atomic.Value // the consent service's origin, known once it runs
}

// hostCSP allows scripts from the site and the consent service, calls only
// to the consent service and styles only from the site itself: no inline
// anything, no eval.
func (h *hostSite) csp() string {
	c := h.consent.Load().(string)
	return "default-src 'none'; script-src 'self' " + c + "; connect-src " + c + "; style-src 'self'; img-src 'self'; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

const hostPage = `<!doctype html>
<html LANG><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Example shop</title><link rel="stylesheet" href="/site.css"></head>
<body><header><h1>Example shop</h1></header>
<main><p>Hand-made things. This page belongs to the operator, not to the consent service.</p>
<p id="site-stats">Statistics script: waiting for the visitor's choices.</p>
<p id="site-state"></p></main>
<script src="/site.js"></script>
<script src="CONSENT/embed/consent.js"DATALANG></script>
</body></html>`

// The site's own script: it starts or stops its statistics script as the
// widget reports, the way the README tells operators to.
const siteJS = `document.addEventListener('consentgraph:change', (e) => {
  const d = e.detail;
  document.getElementById('site-stats').textContent = 'Statistics script: ' + (d.purposes.aggregate_statistics ? 'running' : 'stopped') + '.';
  document.getElementById('site-state').textContent = Object.entries(d.purposes).map(([k, v]) => k + '=' + (v ? 'on' : 'off')).join(' ');
});`

const siteCSS = `body { font: 16px/1.5 Georgia, serif; margin: 0 auto; max-width: 720px; padding: 24px; color: #222; }`

func (h *hostSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", h.csp())
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch r.URL.Path {
	case "/":
		// ?lang= sets the page's <html lang> ("none" leaves it out), ?wlang=
		// the widget tag's data-lang: the widget's three sources of language.
		q := r.URL.Query()
		langAttr, dataLang := `lang="en"`, ""
		if l := q.Get("lang"); l == "none" {
			langAttr = ""
		} else if l != "" {
			langAttr = `lang="` + html.EscapeString(l) + `"`
		}
		if l := q.Get("wlang"); l != "" {
			dataLang = ` data-lang="` + html.EscapeString(l) + `"`
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, strings.NewReplacer("CONSENT", h.consent.Load().(string), "LANG", langAttr, "DATALANG", dataLang).Replace(hostPage))
	case "/site.js":
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = io.WriteString(w, siteJS)
	case "/site.css":
		w.Header().Set("Content-Type", "text/css")
		_, _ = io.WriteString(w, siteCSS)
	default:
		http.NotFound(w, r)
	}
}

// TestBrowserConsentWidget drives the widget (web/e2e/widget.mjs) in
// headless chromium on a page of another origin with a strict CSP, in
// English and in Japanese: anonymous explanation and links, the signed-in
// state, a change by keyboard with its receipt and event, the ledger entry,
// opening once per policy version, Global Privacy Control, the operator's
// name and accent colour, the choice of language (data-lang, <html lang>,
// the browser's languages), no cookie of its own and no CSP violation. The two origins differ only in port: cross-origin but
// same-site, as a site and its consent service on a subdomain are, so the
// SameSite=Lax session cookie reaches the widget's requests.
func TestBrowserConsentWidget(t *testing.T) {
	t.Parallel() // its own server and browser
	root, node, chromium := browserTools(t)

	site := &hostSite{}
	hostSrv := httptest.NewServer(site)
	t.Cleanup(hostSrv.Close)
	// Branded, so the widget's name and accent can be told from the stock ones.
	brandFile := apptest.WriteConfig(t, "branding:\n  name: Example Shop\n  accentColor: \"#0b6e4f\"\n")
	s, admin := apptest.StartWithAdmin(t, func(c *config.Config) {
		c.CORSOrigins = []string{hostSrv.URL}
		c.ConfigFile = brandFile
	})
	site.consent.Store(s.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := filepath.Join(root, "test-output")
	runBrowserScript(t, ctx, node, root, chromium, "widget.mjs", []string{"BASE_URL=" + s.URL, "HOST_URL=" + hostSrv.URL,
		"ADMIN_TOKEN=" + admin.Token, "OPERATOR_NAME=Example Shop", "ACCENT=#0b6e4f"}, "consent widget: ok")
	// Every state in both languages, named by language and size.
	for _, lang := range []string{"en", "ja"} {
		for _, name := range []string{"1280x800-anonymous", "1280x800-collapsed", "1280x800-signed-in", "1280x800-receipt",
			"1280x800-new-policy", "390x844-anonymous-gpc", "390x844-signed-in-gpc"} {
			name = "widget-" + lang + "-" + name
			if fi, err := os.Stat(filepath.Join(out, name+".png")); err != nil || fi.Size() == 0 {
				t.Errorf("screenshot %s.png missing: %v", name, err)
			}
		}
	}
}
