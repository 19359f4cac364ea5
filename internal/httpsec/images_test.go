package httpsec_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/httpsec"
)

func TestAllowPageImagesOnlyWidensPagesImgSrc(t *testing.T) {
	const logo = "https://cdn.example.org"
	mux := http.NewServeMux()
	mux.Handle("/page", httpsec.Page(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<p>page</p>"))
	})))
	mux.HandleFunc("/api", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := httpsec.Headers(httpsec.AllowPageImages(logo, mux))

	get := func(path string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Header().Get("Content-Security-Policy")
	}
	page := get("/page")
	if !strings.Contains(page, "img-src 'self' data: "+logo+";") || page == httpsec.PageCSP {
		t.Errorf("page CSP does not allow the logo origin: %q", page)
	}
	// Only img-src changes: scripts, styles and connections stay same-origin.
	if strings.Count(page, logo) != 1 || !strings.Contains(page, "script-src 'self';") {
		t.Errorf("page CSP changed beyond img-src: %q", page)
	}
	if api := get("/api"); api != httpsec.APICSP {
		t.Errorf("API CSP %q, want %q", api, httpsec.APICSP)
	}
	if got := httpsec.PageCSPWithImages(""); got != httpsec.PageCSP {
		t.Errorf("without a logo origin: %q", got)
	}
}
