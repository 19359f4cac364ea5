package smtpnewsletter

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/text/language"

	"github.com/consentgraph/consentgraph/plugins"
)

// The built-in texts of the confirmation mail, per language. {list} is the
// list name and {link} the confirmation link.
var (
	defaultListName = map[string]string{
		"en": "our newsletter",
		"ja": "ニュースレター",
	}
	defaultSubject = map[string]string{
		"en": "Please confirm your subscription to {list}",
		"ja": "{list}の購読確認のお願い",
	}
	defaultText = map[string]string{
		"en": "Hello,\n\nyou asked to receive {list}. Please confirm by opening this link:\n\n{link}\n\n" +
			"If you did not ask for it, ignore this mail: you will not be subscribed.\n",
		"ja": "{list}の購読お申し込みを受け付けました。\n次のリンクを開いて、購読を確定してください。\n\n{link}\n\n" +
			"お申し込みに心当たりがない場合は、このメールを破棄してください。購読は開始されません。\n",
	}
	// The confirmation page's answers, per language.
	pageConfirmed = map[string]string{
		"en": "Thank you: your subscription to {list} is confirmed.",
		"ja": "ありがとうございます。{list}の購読が確定しました。",
	}
	pageInvalid = map[string]string{
		"en": "This confirmation link is invalid or was already used.",
		"ja": "この確認リンクは無効か、すでに使われています。",
	}
	pageError = map[string]string{
		"en": "Something went wrong; please try again later.",
		"ja": "エラーが発生しました。しばらくしてからもう一度お試しください。",
	}
)

// defaultLanguages are the mail's languages when no setting names any.
var defaultLanguages = []string{"en", "ja"}

// separator parts the languages of one mail's body.
const separator = "\n――――――――――――――――――――\n\n"

// subjectJoin joins the languages of one subject.
const subjectJoin = " / "

// mailTexts are the confirmation mail's texts in each of its languages, in
// the order they appear in the mail.
type mailTexts struct {
	langs    []string
	list     map[string]string
	subject  map[string]string // with {list} filled in
	template map[string]string // with {list} filled in, {link} left
}

var placeholder = regexp.MustCompile(`\{[^{}\s]*\}`)

// checkPlaceholders refuses placeholders outside allowed and, when
// needLink, a template without {link}.
func checkPlaceholders(path, s string, allowed []string, needLink bool) error {
	for _, p := range placeholder.FindAllString(s, -1) {
		if !slices.Contains(allowed, p) {
			return fmt.Errorf("%s: unknown placeholder %s (known: %s)", path, p, strings.Join(allowed, ", "))
		}
	}
	if needLink && !strings.Contains(s, "{link}") {
		return fmt.Errorf("%s must contain {link}, where the confirmation link goes", path)
	}
	return nil
}

// resolveTexts decides the mail's languages and texts from the settings.
//
// The languages are, in this order of precedence: the languages setting;
// else those of the settings given per language (English first, then the
// others by tag, since a config mapping's order does not reach the
// plugin); else one language when subject or text is a plain string (the
// operator wrote the mail in the language of their choice; unset texts
// then take the English defaults, as before per-language texts existed);
// else English and Japanese. A plain string is the same in every language.
func resolveTexts(langs []string, list, subject, text plugins.Text) (*mailTexts, error) {
	byLang := []struct {
		key string
		t   plugins.Text
	}{{"listName", list}, {"subject", subject}, {"text", text}}
	var errs []error
	if langs != nil {
		if len(langs) == 0 {
			return nil, errors.New("settings.languages must name at least one language")
		}
		for i, l := range langs {
			if tag, err := language.Parse(l); err != nil || tag.String() != l {
				errs = append(errs, fmt.Errorf("settings.languages[%d]: %q is not a language tag such as en or ja", i, l))
			} else if slices.Index(langs, l) != i {
				errs = append(errs, fmt.Errorf("settings.languages[%d]: %q is named twice", i, l))
			}
		}
	} else {
		for _, s := range byLang {
			for _, l := range s.t.Languages() {
				if !slices.Contains(langs, l) {
					langs = append(langs, l)
				}
			}
		}
		slices.SortFunc(langs, func(a, b string) int {
			switch {
			case a == b:
				return 0
			case a == "en":
				return -1
			case b == "en":
				return 1
			}
			return strings.Compare(a, b)
		})
		switch {
		case len(langs) > 0:
		case !subject.IsZero() || !text.IsZero():
			langs = []string{""} // one plain language
		default:
			langs = defaultLanguages
		}
	}
	pick := func(key string, t plugins.Text, defaults map[string]string, lang string) string {
		if s, ok := t.In(lang); ok {
			return s
		}
		if t.PerLanguage() {
			errs = append(errs, fmt.Errorf("settings.%s.%s is required: the mail is sent in %s", key, lang, strings.Join(langs, ", ")))
			return ""
		}
		def := lang
		if def == "" {
			def = "en"
		}
		if s, ok := defaults[def]; ok {
			return s
		}
		errs = append(errs, fmt.Errorf("settings.%s: there is no built-in text in %q, give one ({%s: ...})", key, lang, lang))
		return ""
	}
	m := &mailTexts{langs: langs, list: map[string]string{}, subject: map[string]string{}, template: map[string]string{}}
	for _, lang := range langs {
		at := func(key string) string {
			if lang == "" {
				return "settings." + key
			}
			return "settings." + key + "." + lang
		}
		l := pick("listName", list, defaultListName, lang)
		if err := checkPlaceholders(at("listName"), l, nil, false); err != nil {
			errs = append(errs, err)
		}
		s := pick("subject", subject, defaultSubject, lang)
		if err := checkPlaceholders(at("subject"), s, []string{"{list}"}, false); err != nil {
			errs = append(errs, err)
		}
		if strings.ContainsAny(s, "\r\n") {
			errs = append(errs, fmt.Errorf("%s must be one line", at("subject")))
		}
		tx := pick("text", text, defaultText, lang)
		if err := checkPlaceholders(at("text"), tx, []string{"{list}", "{link}"}, true); err != nil {
			errs = append(errs, err)
		}
		m.list[lang] = l
		m.subject[lang] = strings.ReplaceAll(s, "{list}", l)
		m.template[lang] = strings.ReplaceAll(tx, "{list}", l)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Subject is every language's subject, joined, each once.
func (m *mailTexts) Subject() string {
	var parts []string
	for _, l := range m.langs {
		if !slices.Contains(parts, m.subject[l]) {
			parts = append(parts, m.subject[l])
		}
	}
	return strings.Join(parts, subjectJoin)
}

// Body is every language's text with link filled in, separated.
func (m *mailTexts) Body(link string) string {
	parts := make([]string, 0, len(m.langs))
	for _, l := range m.langs {
		s := strings.TrimRight(strings.ReplaceAll(m.template[l], "{link}", link), "\n") + "\n"
		if !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, separator)
}

// page is a confirmation page answer in every language of the mail (the
// built-in text, English for a language without one), one per line.
func (m *mailTexts) page(texts map[string]string) string {
	var lines []string
	for _, l := range m.langs {
		s, ok := texts[l]
		if !ok {
			s = texts["en"]
		}
		list := m.list[l]
		s = strings.ReplaceAll(s, "{list}", list)
		if !slices.Contains(lines, s) {
			lines = append(lines, s)
		}
	}
	return strings.Join(lines, "\n")
}
