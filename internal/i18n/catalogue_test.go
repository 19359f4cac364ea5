package i18n_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/consentgraph/consentgraph/internal/i18n"
	"github.com/consentgraph/consentgraph/web"
)

var placeholder = regexp.MustCompile(`\{[A-Za-z0-9_]+\}`)

// TestShippedCataloguesAreComplete is the completeness check of
// docs/i18n.md: the catalogues the binary embeds load, every language has
// every English key (plurals in its own forms), and each translation uses
// exactly the placeholders of its English text.
func TestShippedCataloguesAreComplete(t *testing.T) {
	b, err := i18n.Load(web.Locales())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Languages()) < 2 {
		t.Fatalf("only %v ship", b.Languages())
	}
	for lang, keys := range b.Missing() {
		if len(keys) > 0 {
			t.Errorf("%s.json lacks %d keys of en.json: %v", lang, len(keys), keys)
		}
	}
	en := map[string][]string{}
	for _, lang := range b.Languages() {
		for _, key := range keysOf(t, b, lang) {
			s, _ := b.Lookup(lang, key)
			got := placeholders(s)
			if lang == i18n.Fallback {
				en[key] = got
				continue
			}
			want, ok := en[pluralBase(key)]
			if !ok {
				want, ok = en[key]
			}
			if ok && !slices.Equal(got, want) {
				t.Errorf("%s.json %s uses placeholders %v, en.json %v", lang, key, got, want)
			}
		}
	}
}

func placeholders(s string) []string {
	out := placeholder.FindAllString(s, -1)
	slices.Sort(out)
	return slices.Compact(out)
}

// pluralBase maps "x.few" to the English "x.other", whose placeholders
// every form shares.
func pluralBase(key string) string {
	for _, s := range []string{".zero", ".one", ".two", ".few", ".many"} {
		if len(key) > len(s) && key[len(key)-len(s):] == s {
			return key[:len(key)-len(s)] + ".other"
		}
	}
	return key
}

func keysOf(t *testing.T, b *i18n.Bundle, lang string) []string {
	t.Helper()
	keys := b.Keys(lang)
	if len(keys) == 0 {
		t.Fatalf("%s has no keys", lang)
	}
	return keys
}
