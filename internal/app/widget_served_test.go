package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

// TestWidgetScriptIsServedForOtherSites checks what a host page relies on
// when it includes /embed/consent.js: a JavaScript type that survives
// nosniff, caching with revalidation, a resource policy that lets other
// origins load it, CORS answers only for --cors-origins, and a script
// without what a strict host CSP would block.
func TestWidgetScriptIsServedForOtherSites(t *testing.T) {
	const allowed, other = "http://shop.example.org", "http://evil.example.net"
	s, _ := apptest.StartWithAdmin(t, func(c *config.Config) { c.CORSOrigins = []string{allowed} })

	get := func(origin, etag string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/embed/consent.js", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	res := get(allowed, "")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || len(body) < 1000 {
		t.Fatalf("status %d, %d bytes", res.StatusCode, len(body))
	}
	h := res.Header
	for name, want := range map[string]string{
		"Content-Type":                     "text/javascript; charset=utf-8",
		"X-Content-Type-Options":           "nosniff",
		"Cross-Origin-Resource-Policy":     "cross-origin",
		"Access-Control-Allow-Origin":      allowed,
		"Access-Control-Allow-Credentials": "true",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if cc := h.Get("Cache-Control"); !strings.Contains(cc, "max-age=") || !strings.Contains(cc, "must-revalidate") {
		t.Errorf("Cache-Control %q: want a short max-age with revalidation", cc)
	}
	if res := get(allowed, h.Get("ETag")); res.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with the ETag: status %d, want 304", res.StatusCode)
	}
	if got := get(other, "").Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("an origin outside --cors-origins got Access-Control-Allow-Origin %q", got)
	}
	// The GraphQL API the widget calls answers the other origin's preflight
	// without permission, so a site that is not allowed cannot read a
	// visitor's state even though it can load the script.
	req, _ := http.NewRequest(http.MethodOptions, s.URL+"/graphql", nil)
	req.Header.Set("Origin", other)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if got := pre.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("graphql preflight from %s allowed: %q", other, got)
	}
	// What a strict host CSP (no unsafe-inline, no unsafe-eval) would block,
	// and the one thing the widget must never do.
	for _, bad := range []string{"eval(", "new Function", "innerHTML", "insertAdjacentHTML", "document.write",
		"document.cookie", ".style.", "'style'", "createElement('style')", "setTimeout('"} {
		if strings.Contains(string(body), bad) {
			t.Errorf("the widget uses %q", bad)
		}
	}
}
