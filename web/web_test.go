package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, path string) *http.Response {
	t.Helper()
	mux := http.NewServeMux()
	Routes(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

func TestPagesAndAssetsAreServed(t *testing.T) {
	for path, want := range map[string]string{
		"/":                   "text/html",
		"/?verify=abc":        "text/html",
		"/partners":           "text/html",
		"/assets/center.js":   "javascript",
		"/assets/gql.js":      "javascript",
		"/assets/partners.js": "javascript",
		"/assets/app.css":     "text/css",
		"/locales/en.json":    "application/json",
		"/locales/ja.json":    "application/json",
	} {
		res := serve(t, path)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), want) || len(body) == 0 {
			t.Errorf("GET %s: %d %q (%d bytes), want 200 %s", path, res.StatusCode, res.Header.Get("Content-Type"), len(body), want)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	for _, path := range []string{"/nope", "/assets/", "/assets/missing.js", "/index.html/../web.go", "/locales/", "/locales/xx.json"} {
		if res := serve(t, path); res.StatusCode == http.StatusOK {
			t.Errorf("GET %s answered 200", path)
		}
	}
}

// The pages must work under a strict CSP: no inline scripts, no inline
// event handlers, no inline styles, nothing from another origin.
func TestNothingInline(t *testing.T) {
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	handler := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	style := regexp.MustCompile(`(?i)<style|\sstyle\s*=`)
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`)
	n := 0
	err := fs.WalkDir(Static(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".html") {
			return err
		}
		n++
		b, err := fs.ReadFile(Static(), path)
		if err != nil {
			return err
		}
		s := string(b)
		for name, re := range map[string]*regexp.Regexp{"inline script": inlineScript, "inline event handler": handler,
			"inline style": style, "other origin": external} {
			if m := re.FindString(s); m != "" {
				t.Errorf("%s: %s: %q", path, name, m)
			}
		}
		for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(s, -1) {
			if !strings.Contains(m, `src="/assets/`) {
				t.Errorf("%s: script without a same-origin src: %s", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("checked %d pages, want 2", n)
	}
}
