package e2e_test

import (
	"context"
	"fmt"
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

// corsApp is a frontend on its own origin: a page that loads urql from
// the npm package's ESM files (an import map, no CDN, no bundler) and
// web/e2e/cors-app.mjs, under a CSP that lets it call only the two APIs.
type corsApp struct {
	e2e  string       // web/e2e
	apis atomic.Value // "API NO_HEADER_API", known once they run
}

// The modules the import map names, each a file of an installed package.
var corsAppModules = map[string]string{
	"@urql/core":          "@urql/core/dist/urql-core.mjs",
	"@urql/core (chunk)":  "@urql/core/dist/urql-core-chunk.mjs",
	"wonka":               "wonka/dist/wonka.mjs",
	"@0no-co/graphql.web": "@0no-co/graphql.web/dist/graphql.web.mjs",
}

const corsAppNonce = "cors-app-test-nonce"

const corsAppPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Another origin: an urql app</title>
<script type="importmap" nonce="` + corsAppNonce + `">
{"imports": {"@urql/core": "/npm/@urql/core/dist/urql-core.mjs", "wonka": "/npm/wonka/dist/wonka.mjs",
 "@0no-co/graphql.web": "/npm/@0no-co/graphql.web/dist/graphql.web.mjs"}}
</script>
<script src="/env.js"></script>
<script type="module" src="/app.mjs"></script></head>
<body><h1>An urql app on another origin</h1><p>API: APIS</p><p id="state">loading</p><ol id="log"></ol></body></html>`

func (a *corsApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	apis := a.apis.Load().(string)
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self' 'nonce-"+corsAppNonce+"'; connect-src "+apis+
		"; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	switch p := r.URL.Path; {
	case p == "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = fmt.Fprint(w, strings.Replace(corsAppPage, "APIS", apis, 1))
	case p == "/env.js":
		// urql's ESM files read process.env.NODE_ENV, which a bundler
		// would replace; an unbundled app defines it.
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = fmt.Fprint(w, `globalThis.process = { env: { NODE_ENV: "production" } };`)
	case p == "/app.mjs":
		a.file(w, r, filepath.Join(a.e2e, "cors-app.mjs"))
	case strings.HasPrefix(p, "/npm/"):
		for _, f := range corsAppModules {
			if p == "/npm/"+f {
				a.file(w, r, filepath.Join(a.e2e, "node_modules", filepath.FromSlash(f)))
				return
			}
		}
		http.NotFound(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (a *corsApp) file(w http.ResponseWriter, r *http.Request, name string) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	http.ServeFile(w, r, name)
}

// TestBrowserCORSAppWithURQL: a browser app on another origin, using
// @urql/core with credentials and the apollographql-client-name header
// (allowed by --cors-headers), signs up, grants a purpose and reads it back
// through the API's session cookie; it reads X-Request-Id on every answer
// and Retry-After on a rate-limited one. Against an API whose
// --cors-headers lacks the header, chromium's preflight blocks the request
// while the same query without it passes. The two origins differ in port
// only (same site), as an app and its API on subdomains do: the API's
// SameSite=Lax session cookie is sent. From localhost (another site than
// 127.0.0.1) sign-up works but the cookie is not: me is null.
func TestBrowserCORSAppWithURQL(t *testing.T) {
	t.Parallel() // its own server and browser
	root, node, chromium := browserTools(t)
	e2e := filepath.Join(root, "web", "e2e")
	if _, err := os.Stat(filepath.Join(e2e, "node_modules", corsAppModules["@urql/core"])); err != nil {
		t.Fatalf("@urql/core is not installed: %v; run ./scripts/test.sh (npm ci in web/e2e)", err)
	}
	site := &corsApp{e2e: e2e}
	appSrv := httptest.NewServer(site)
	t.Cleanup(appSrv.Close)
	// The same app at localhost: allowed too, to show that the cookie,
	// not CORS, is what fails from another site.
	fromLocalhost := strings.Replace(appSrv.URL, "//127.0.0.1:", "//localhost:", 1)
	api := apptest.Start(t, func(c *config.Config) {
		c.CORSOrigins = []string{appSrv.URL, fromLocalhost}
		c.CORSHeaders = []string{"apollographql-client-name", "apollographql-client-version"}
		c.RateLimits = true
		c.MutationsPerMinute, c.AuthPerMinute, c.PartnerPerMinute = 100, 4, 100
	})
	noHeader := apptest.Start(t, func(c *config.Config) { c.CORSOrigins = []string{appSrv.URL} })
	site.apis.Store(api.URL + " " + noHeader.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runBrowserScript(t, ctx, node, root, chromium, "cors.mjs", []string{"APP_URL=" + appSrv.URL, "API_URL=" + api.URL,
		"API_NO_HEADER_URL=" + noHeader.URL}, "cors urql app: ok")
}
