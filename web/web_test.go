package web

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
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
		"/locales/index.json": "application/json",
		"/assets/i18n.js":     "javascript",
		"/assets/names.js":    "javascript",
		"/assets/codes.js":    "javascript",
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

func TestLocaleIndexListsEveryCatalogue(t *testing.T) {
	res := serve(t, "/locales/index.json")
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /locales/index.json: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var got []Language
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	files, err := fs.Glob(Locales(), "*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(files) || len(got) < 2 {
		t.Fatalf("index lists %v for the files %v", got, files)
	}
	names := map[string]string{}
	for _, l := range got {
		names[l.Tag] = l.Name
	}
	if names["en"] != "English" || names["ja"] != "日本語" {
		t.Fatalf("index: %v", got)
	}
}

// Every catalogue holds exactly the keys of en.json (the pages', the
// widget's, mail, receipts and the policy page's alike), none empty, and
// the same {placeholders} per key: a key missing in one language would show
// English (or the key) to its readers.
func TestCataloguesHaveTheSameKeys(t *testing.T) {
	load := func(name string) map[string]string {
		b, err := fs.ReadFile(Locales(), name)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s is not one flat object of strings: %v", name, err)
		}
		return m
	}
	en := load("en.json")
	files, _ := fs.Glob(Locales(), "*.json")
	placeholder := regexp.MustCompile(`\{[a-zA-Z]+\}`)
	holes := func(s string) string {
		p := placeholder.FindAllString(s, -1)
		sort.Strings(p)
		return strings.Join(slices.Compact(p), ",")
	}
	for _, f := range files {
		if f == "en.json" {
			continue
		}
		other := load(f)
		for k, v := range en {
			ov, ok := other[k]
			switch {
			case !ok:
				t.Errorf("%s lacks %q (en: %q)", f, k, v)
			case strings.TrimSpace(ov) == "":
				t.Errorf("%s: %q is empty", f, k)
			case !strings.HasPrefix(k, "_meta.") && holes(ov) != holes(v):
				t.Errorf("%s: %q has placeholders %q, en.json %q", f, k, holes(ov), holes(v))
			}
		}
		for k := range other {
			if _, ok := en[k]; !ok {
				t.Errorf("%s has %q, which en.json lacks", f, k)
			}
		}
	}
}

// A Japanese page text that is the English one was not translated: every
// page key (common., center., partners., error.) with words in English
// must read differently in ja.json.
func TestPageTextsAreTranslated(t *testing.T) {
	read := func(name string) map[string]string {
		b, err := fs.ReadFile(Locales(), name)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	en, ja := read("en.json"), read("ja.json")
	words := regexp.MustCompile(`[A-Za-z]{3,}`)
	placeholders := regexp.MustCompile(`\{[a-zA-Z]+\}`)
	n := 0
	for k, v := range en {
		if !strings.HasPrefix(k, "common.") && !strings.HasPrefix(k, "center.") && !strings.HasPrefix(k, "partners.") && !strings.HasPrefix(k, "error.") {
			continue
		}
		n++
		if words.MatchString(placeholders.ReplaceAllString(v, "")) && ja[k] == v {
			t.Errorf("ja.json %q is the English text %q", k, v)
		}
	}
	if n < 200 {
		t.Fatalf("only %d page keys in en.json", n)
	}
}
