// Package i18n holds the server's side of translation: the message
// catalogues the pages also read (one flat JSON file per language, e.g.
// en.json, ja.json), language negotiation from Accept-Language, and message
// lookup with placeholders and plurals.
//
// The supported languages are whatever catalogue files exist: nothing in Go
// lists them, so adding a language is adding one file. English (en) is
// required; it is the fallback for a language nobody asked for and for a
// key missing in a catalogue.
package i18n

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/text/feature/plural"
	"golang.org/x/text/language"
)

// Fallback is the language every catalogue falls back to; its catalogue
// must exist.
const Fallback = "en"

// NameKey is the key of a language's own name ("日本語"); every catalogue
// must have it.
const NameKey = "_meta.name"

// Bundle is the set of loaded catalogues. It is immutable and safe for
// concurrent use.
type Bundle struct {
	// langs are the catalogue tags, Fallback first, then sorted.
	langs []string
	// tags are the parsed langs, for the plural rules.
	tags    map[string]language.Tag
	msgs    map[string]map[string]string
	matcher language.Matcher
}

// Load reads and validates every *.json file at the root of fsys. Each
// must be one flat JSON object of strings, named by its BCP 47 tag in
// canonical form, with a non-empty _meta.name; en.json must exist. Any
// problem is an error naming the file, so a server with a broken catalogue
// refuses to start instead of showing raw keys.
func Load(fsys fs.FS) (*Bundle, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("message catalogues: %w", err)
	}
	b := &Bundle{msgs: map[string]map[string]string{}}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".json" {
			continue
		}
		lang := strings.TrimSuffix(name, ".json")
		msgs, err := loadFile(fsys, name, lang)
		if err != nil {
			errs = append(errs, fmt.Errorf("message catalogue %s: %w", name, err))
			continue
		}
		b.msgs[lang] = msgs
		b.langs = append(b.langs, lang)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if _, ok := b.msgs[Fallback]; !ok {
		return nil, fmt.Errorf("message catalogues: %s.json is missing; it is the fallback of every other language", Fallback)
	}
	slices.SortFunc(b.langs, func(x, y string) int {
		switch {
		case x == y:
			return 0
		case x == Fallback:
			return -1
		case y == Fallback:
			return 1
		}
		return strings.Compare(x, y)
	})
	b.tags = make(map[string]language.Tag, len(b.langs))
	ordered := make([]language.Tag, len(b.langs))
	for i, l := range b.langs {
		ordered[i] = language.Make(l)
		b.tags[l] = ordered[i]
	}
	// The first tag is the matcher's default: English when nothing the
	// reader accepts is available.
	b.matcher = language.NewMatcher(ordered)
	return b, nil
}

func loadFile(fsys fs.FS, name, lang string) (map[string]string, error) {
	tag, err := language.Parse(lang)
	if err != nil {
		return nil, fmt.Errorf("the file name must be a BCP 47 language tag: %w", err)
	}
	if tag.String() != lang {
		return nil, fmt.Errorf("the file name must be the canonical tag %q", tag.String())
	}
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	msgs := make(map[string]string, len(raw))
	var errs []error
	for k, v := range raw {
		s, ok := v.(string)
		if !ok {
			errs = append(errs, fmt.Errorf("key %q: want a string (catalogues are flat: dotted keys, string values)", k))
			continue
		}
		if k == "" {
			errs = append(errs, errors.New("an empty key"))
			continue
		}
		msgs[k] = s
	}
	if strings.TrimSpace(msgs[NameKey]) == "" {
		errs = append(errs, fmt.Errorf("%s (the language's own name) is missing or empty", NameKey))
	}
	if t, ok := msgs["_meta.tag"]; ok && t != lang {
		errs = append(errs, fmt.Errorf("_meta.tag %q does not match the file name", t))
	}
	return msgs, errors.Join(errs...)
}

// Languages returns the available language tags, Fallback first.
func (b *Bundle) Languages() []string { return slices.Clone(b.langs) }

// Has reports whether lang has a catalogue.
func (b *Bundle) Has(lang string) bool {
	_, ok := b.msgs[lang]
	return ok
}

// Name is the language's own name, e.g. "日本語" for ja.
func (b *Bundle) Name(lang string) string { return b.msgs[lang][NameKey] }

// Negotiate picks the available language that best fits an
// Accept-Language header; an empty, unparsable or unmatched header gives
// Fallback. A regional variant (ja-JP) gets its language (ja).
func (b *Bundle) Negotiate(acceptLanguage string) string {
	_, i := language.MatchStrings(b.matcher, acceptLanguage)
	return b.langs[i]
}

// Pick returns the first candidate that has a catalogue, else Fallback:
// e.g. Pick(profileLanguage, requestLanguage).
func (b *Bundle) Pick(candidates ...string) string {
	for _, c := range candidates {
		if b.Has(c) {
			return c
		}
	}
	return Fallback
}

// Params fill a message's {name} placeholders. The entry "count" (an
// integer) also picks the plural form.
type Params map[string]any

// T returns the message key in lang with its placeholders filled. A key
// missing in lang comes from Fallback; one missing there too is returned
// as the key itself, so it shows and a test can catch it. When params has
// an integer "count", the key's plural variants (key.one, key.other, and
// any CLDR form the language has: zero, two, few, many) are tried first,
// chosen by the CLDR plural rules of lang.
func (b *Bundle) T(lang, key string, params Params) string {
	if !b.Has(lang) {
		lang = Fallback
	}
	msg, ok := b.lookup(lang, key, params)
	if !ok && lang != Fallback {
		msg, ok = b.lookup(Fallback, key, params)
	}
	if !ok {
		return key
	}
	return Fill(msg, params)
}

// Lookup returns the message key of lang exactly as written (no fallback,
// no placeholders), and whether it exists.
func (b *Bundle) Lookup(lang, key string) (string, bool) {
	s, ok := b.msgs[lang][key]
	return s, ok
}

func (b *Bundle) lookup(lang, key string, params Params) (string, bool) {
	msgs := b.msgs[lang]
	if n, ok := count(params); ok {
		if s, ok := msgs[key+"."+pluralForm(b.tags[lang], n)]; ok {
			return s, true
		}
		if s, ok := msgs[key+".other"]; ok {
			return s, true
		}
	}
	s, ok := msgs[key]
	return s, ok
}

// pluralForm names the CLDR cardinal plural category of the integer n in
// lang, e.g. "one" for 1 in English and "other" for every n in Japanese.
func pluralForm(lang language.Tag, n int) string {
	if n < 0 {
		n = -n
	}
	switch plural.Cardinal.MatchPlural(lang, n, 0, 0, 0, 0) {
	case plural.Zero:
		return "zero"
	case plural.One:
		return "one"
	case plural.Two:
		return "two"
	case plural.Few:
		return "few"
	case plural.Many:
		return "many"
	default:
		return "other"
	}
}

func count(p Params) (int, bool) {
	switch n := p["count"].(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	default:
		return 0, false
	}
}

// Fill replaces each {name} of msg that params has; others stay as
// written, so a forgotten parameter shows instead of vanishing.
func Fill(msg string, params Params) string {
	if len(params) == 0 || !strings.Contains(msg, "{") {
		return msg
	}
	var out strings.Builder
	for {
		i := strings.IndexByte(msg, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(msg[i:], '}')
		if j < 0 {
			break
		}
		v, ok := params[msg[i+1:i+j]]
		out.WriteString(msg[:i])
		if ok {
			out.WriteString(format(v))
		} else {
			out.WriteString(msg[i : i+j+1])
		}
		msg = msg[i+j+1:]
	}
	out.WriteString(msg)
	return out.String()
}

func format(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	default:
		return fmt.Sprint(x)
	}
}

// Missing lists, per language, the keys Fallback has and that language
// lacks (plural variants count as one key: a language needs the forms of
// its own rules, not English's). The completeness test uses it.
func (b *Bundle) Missing() map[string][]string {
	out := map[string][]string{}
	base := plainKeys(b.msgs[Fallback])
	for _, lang := range b.langs[1:] {
		have := plainKeys(b.msgs[lang])
		for k := range base {
			if !have[k] {
				out[lang] = append(out[lang], k)
			}
		}
		slices.Sort(out[lang])
	}
	return out
}

var pluralSuffixes = []string{".zero", ".one", ".two", ".few", ".many", ".other"}

// plainKeys maps every key to itself without a plural suffix.
func plainKeys(msgs map[string]string) map[string]bool {
	out := make(map[string]bool, len(msgs))
	for k := range msgs {
		for _, s := range pluralSuffixes {
			if base, ok := strings.CutSuffix(k, s); ok {
				k = base
				break
			}
		}
		out[k] = true
	}
	return out
}

// Keys lists the keys of lang's catalogue, sorted.
func (b *Bundle) Keys(lang string) []string {
	keys := make([]string, 0, len(b.msgs[lang]))
	for k := range b.msgs[lang] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
