package plugins

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"golang.org/x/text/language"
)

// Text is a setting people read (a mail subject, a list name), given in the
// config either as one string, the same in every language, or as a mapping
// of language tag to string, the shape of purpose descriptions:
//
//	subject: Please confirm your subscription
//	subject: {en: Please confirm your subscription, ja: 購読の確認をお願いします}
//
// DecodeSettings fills a Text field from either shape and refuses any other
// (a list, a number, an empty mapping, an empty text, a key that is not a
// language tag), naming the setting.
type Text struct {
	// Plain is the text given as one string; "" when given per language.
	Plain string
	// ByLanguage is the text per language tag; nil when given as one string.
	ByLanguage map[string]string
}

// PlainText is a Text with the same string in every language.
func PlainText(s string) Text { return Text{Plain: s} }

// IsZero reports whether the setting was not given.
func (t Text) IsZero() bool { return t.Plain == "" && len(t.ByLanguage) == 0 }

// PerLanguage reports whether the text was given per language.
func (t Text) PerLanguage() bool { return len(t.ByLanguage) > 0 }

// Languages lists the tags of a per-language text, sorted; nil for a plain one.
func (t Text) Languages() []string {
	if len(t.ByLanguage) == 0 {
		return nil
	}
	out := make([]string, 0, len(t.ByLanguage))
	for l := range t.ByLanguage {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// In returns the text for lang: its own text, else the plain one; ok is
// false when neither exists.
func (t Text) In(lang string) (s string, ok bool) {
	if s, ok := t.ByLanguage[lang]; ok {
		return s, true
	}
	return t.Plain, t.Plain != ""
}

var textType = reflect.TypeFor[Text]()

// decodeText reads a Text from a string or a mapping of language tag to
// string.
func decodeText(path string, raw any) (Text, error) {
	const shape = "want a text or a mapping of language tag to text, such as {en: ..., ja: ...}"
	switch x := raw.(type) {
	case string:
		if strings.TrimSpace(x) == "" {
			return Text{}, fmt.Errorf("%s must not be empty", path)
		}
		return Text{Plain: x}, nil
	case map[string]any:
		if len(x) == 0 {
			return Text{}, fmt.Errorf("%s: %s, got an empty mapping", path, shape)
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := Text{ByLanguage: make(map[string]string, len(x))}
		for _, k := range keys {
			kp := path + "." + k
			tag, err := language.Parse(k)
			if err != nil || tag.String() != k {
				return Text{}, fmt.Errorf("%s: %q is not a language tag such as en or ja", kp, k)
			}
			s, ok := x[k].(string)
			if !ok {
				return Text{}, fmt.Errorf("%s: want a text, got a %s", kp, kindName(x[k]))
			}
			if strings.TrimSpace(s) == "" {
				return Text{}, fmt.Errorf("%s must not be empty", kp)
			}
			out.ByLanguage[k] = s
		}
		return out, nil
	}
	return Text{}, fmt.Errorf("%s: %s, got a %s", path, shape, kindName(raw))
}
