package app

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"

	"github.com/consentgraph/consentgraph/internal/httpsec"
	"github.com/consentgraph/consentgraph/internal/i18n"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/web"
)

var privacyPage = template.Must(template.New("privacy").Parse(web.PrivacyTemplate()))

type privacyPurpose struct {
	ID, Name, Description, Basis, Data, Recipients string
}

type privacyLanguage struct {
	Tag, Name string
	Current   bool
}

// servePrivacy renders the default privacy policy at /privacy from the
// configuration the code enforces: the controller, the policy version in
// force, each purpose with its data and recipients (static third parties
// and the processors bound to it), and the user's rights. It is written in
// the language ?lang= names, else the one Accept-Language prefers, with
// links to the page in every other language.
func (a *App) servePrivacy(w http.ResponseWriter, r *http.Request) {
	texts := a.File.Texts
	// the middleware has negotiated Accept-Language already
	lang := texts.Pick(r.URL.Query().Get("lang"), i18n.FromContext(r.Context()))
	t := func(key string, pairs ...string) string {
		params := i18n.Params{}
		for i := 0; i+1 < len(pairs); i += 2 {
			params[pairs[i]] = pairs[i+1]
		}
		return texts.T(lang, key, params)
	}
	sep := t("privacy.listSeparator")
	current := a.Consent.Policy()
	var purposes []privacyPurpose
	for _, p := range a.Consent.Purposes() {
		cats := make([]string, len(p.DataCategories))
		for i, c := range p.DataCategories {
			// A category without a name in the catalogues shows its id.
			if cats[i] = t("common.category." + c); cats[i] == "common.category."+c {
				cats[i] = c
			}
		}
		recipients := append(p.ThirdPartiesIn(lang), a.processorNames(p.ID)...)
		purposes = append(purposes, privacyPurpose{
			ID: p.ID, Name: p.NameIn(lang), Description: p.DescriptionIn(lang), Basis: t("privacy.basis." + string(p.Mechanism)),
			Data: strings.Join(cats, sep), Recipients: strings.Join(recipients, sep),
		})
	}
	var langs []privacyLanguage
	for _, l := range texts.Languages() {
		langs = append(langs, privacyLanguage{Tag: l, Name: texts.Name(l), Current: l == lang})
	}
	controller := a.File.Controller
	if controller.Contact == policy.DefaultController().Contact {
		controller.Contact = "" // "see the privacy policy" says nothing on the policy itself
	}
	var buf bytes.Buffer
	err := privacyPage.Execute(&buf, map[string]any{
		"Lang":       lang,
		"Languages":  langs,
		"T":          t,
		"Link":       func(key, href, labelKey string) template.HTML { return linked(t(key), href, t(labelKey)) },
		"Controller": controller,
		"Policy":     current,
		"Published":  current.PublishedAt.UTC().Format(t("server.dateLayout")),
		"Purposes":   purposes,
	})
	if err != nil {
		a.log.ErrorContext(r.Context(), "render privacy page", "err", err)
		http.Error(w, "the privacy policy could not be shown", http.StatusInternalServerError)
		return
	}
	httpsec.SetPageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", lang)
	w.Header().Set("Vary", "Accept-Language")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(buf.Bytes())
}

// linked escapes a translated sentence and makes its {link} placeholder a
// link, so translators place the link where their grammar wants it.
func linked(text, href, label string) template.HTML {
	before, after, ok := strings.Cut(text, "{link}")
	esc := template.HTMLEscapeString
	if !ok {
		return template.HTML(esc(text)) //nolint:gosec // escaped above
	}
	return template.HTML(esc(before) + `<a href="` + esc(href) + `">` + esc(label) + `</a>` + esc(after)) //nolint:gosec // every part escaped
}
