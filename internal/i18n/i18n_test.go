package i18n_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/consentgraph/consentgraph/internal/i18n"
)

func catalogues(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

func testBundle(t *testing.T) *i18n.Bundle {
	t.Helper()
	b, err := i18n.Load(catalogues(map[string]string{
		"en.json": `{"_meta.name": "English", "greet": "Hello, {name}!", "items.one": "{count} item", "items.other": "{count} items",
			"only.en": "English only", "open": "{unclosed"}`,
		"ja.json": `{"_meta.name": "日本語", "greet": "こんにちは、{name}さん", "items.other": "{count} 件"}`,
		"pl.json": `{"_meta.name": "Polski", "items.one": "{count} plik", "items.few": "{count} pliki", "items.many": "{count} plików",
			"items.other": "{count} pliku"}`,
		"README.md": "not a catalogue",
	}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadListsTheFilesThatExist(t *testing.T) {
	b := testBundle(t)
	if got := b.Languages(); !slices.Equal(got, []string{"en", "ja", "pl"}) {
		t.Fatalf("Languages() = %v, want en first, then the other files", got)
	}
	if b.Name("ja") != "日本語" || !b.Has("pl") || b.Has("de") {
		t.Fatalf("Name/Has: %q %v %v", b.Name("ja"), b.Has("pl"), b.Has("de"))
	}
}

func TestLoadRefusesBrokenCatalogues(t *testing.T) {
	cases := map[string]struct {
		files map[string]string
		want  string
	}{
		"bad JSON":         {map[string]string{"en.json": `{"_meta.name": "English",}`}, "en.json: not a JSON object"},
		"no name":          {map[string]string{"en.json": `{"a": "b"}`}, "en.json: _meta.name"},
		"empty name":       {map[string]string{"en.json": `{"_meta.name": "  "}`}, "en.json: _meta.name"},
		"nested":           {map[string]string{"en.json": `{"_meta.name": "English", "a": {"b": "c"}}`}, `key "a": want a string`},
		"not an object":    {map[string]string{"en.json": `["English"]`}, "en.json: not a JSON object"},
		"no English":       {map[string]string{"ja.json": `{"_meta.name": "日本語"}`}, "en.json is missing"},
		"bad file name":    {map[string]string{"en.json": `{"_meta.name": "English"}`, "japanese.json": `{"_meta.name": "x"}`}, "japanese.json: the file name must be a BCP 47"},
		"non-canonical":    {map[string]string{"en.json": `{"_meta.name": "English"}`, "JA.json": `{"_meta.name": "x"}`}, `JA.json: the file name must be the canonical tag "ja"`},
		"tag disagrees":    {map[string]string{"en.json": `{"_meta.name": "English", "_meta.tag": "de"}`}, `_meta.tag "de" does not match`},
		"second file errs": {map[string]string{"en.json": `{"_meta.name": "English"}`, "ja.json": `{"_meta.name": 1}`}, "ja.json:"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := i18n.Load(catalogues(c.files))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	b := testBundle(t)
	cases := map[string]string{
		"":                             "en",
		"ja":                           "ja",
		"ja-JP,ja;q=0.9,en-US;q=0.8":   "ja",
		"en-US,en;q=0.9,ja;q=0.8":      "en",
		"de-DE,de;q=0.9":               "en", // nothing available fits: the fallback
		"de-DE,de;q=0.9,ja;q=0.5":      "ja", // the first available one the reader accepts
		"fr;q=0.2,ja;q=0.9":            "ja", // by quality, not order
		";;;garbage==":                 "en",
		"pl-PL":                        "pl",
		"*":                            "en",
		strings.Repeat("x-y-z,", 50):   "en",
		"zh-Hant-TW,zh;q=0.9,ja;q=0.1": "ja",
	}
	for header, want := range cases {
		if got := b.Negotiate(header); got != want {
			t.Errorf("Negotiate(%q) = %q, want %q", header, got, want)
		}
	}
}

func TestPick(t *testing.T) {
	b := testBundle(t)
	if got := b.Pick("de", "ja"); got != "ja" {
		t.Errorf("Pick(de, ja) = %q: a language without a catalogue must be skipped", got)
	}
	if got := b.Pick("pl", "ja"); got != "pl" {
		t.Errorf("Pick(pl, ja) = %q, want the first", got)
	}
	if got := b.Pick("", "de"); got != "en" {
		t.Errorf("Pick(\"\", de) = %q, want the fallback", got)
	}
}

func TestTranslate(t *testing.T) {
	b := testBundle(t)
	cases := []struct {
		lang, key string
		params    i18n.Params
		want      string
	}{
		{"en", "greet", i18n.Params{"name": "Ann"}, "Hello, Ann!"},
		{"ja", "greet", i18n.Params{"name": "花子"}, "こんにちは、花子さん"},
		{"ja", "only.en", nil, "English only"},                     // missing in ja: English
		{"de", "greet", i18n.Params{"name": "Jo"}, "Hello, Jo!"},   // no catalogue: English
		{"ja", "nowhere", nil, "nowhere"},                          // missing everywhere: the key
		{"en", "greet", nil, "Hello, {name}!"},                     // a forgotten parameter shows
		{"en", "greet", i18n.Params{"other": 1}, "Hello, {name}!"}, // so does an unknown one
		{"en", "open", i18n.Params{"x": 1}, "{unclosed"},
		{"en", "items", i18n.Params{"count": 1}, "1 item"},
		{"en", "items", i18n.Params{"count": 0}, "0 items"},
		{"en", "items", i18n.Params{"count": 2}, "2 items"},
		{"ja", "items", i18n.Params{"count": 1}, "1 件"}, // Japanese has one form
		{"pl", "items", i18n.Params{"count": 1}, "1 plik"},
		{"pl", "items", i18n.Params{"count": 3}, "3 pliki"},
		{"pl", "items", i18n.Params{"count": 5}, "5 plików"},
		{"pl", "items", i18n.Params{"count": 22}, "22 pliki"},
		{"pl", "items", i18n.Params{"count": int64(25)}, "25 plików"},
	}
	for _, c := range cases {
		if got := b.T(c.lang, c.key, c.params); got != c.want {
			t.Errorf("T(%s, %s, %v) = %q, want %q", c.lang, c.key, c.params, got, c.want)
		}
	}
}

func TestMissing(t *testing.T) {
	b := testBundle(t)
	m := b.Missing()
	if !slices.Equal(m["ja"], []string{"only.en", "open"}) {
		t.Errorf("Missing()[ja] = %v, want [only.en open] (items counts as present: ja has its one form)", m["ja"])
	}
	if !slices.Contains(m["pl"], "greet") || slices.Contains(m["pl"], "items") {
		t.Errorf("Missing()[pl] = %v", m["pl"])
	}
}

func TestMiddlewareStoresTheNegotiatedLanguage(t *testing.T) {
	b := testBundle(t)
	var got string
	h := b.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = i18n.FromContext(r.Context()) }))
	for header, want := range map[string]string{"ja-JP": "ja", "de": "en", "": ""} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if header != "" {
			r.Header.Set("Accept-Language", header)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != want {
			t.Errorf("Accept-Language %q: context language %q, want %q", header, got, want)
		}
	}
	if i18n.FromContext(context.Background()) != "" || i18n.FromContext(i18n.WithLanguage(context.Background(), "ja")) != "ja" {
		t.Error("WithLanguage/FromContext")
	}
}
