package app

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"

	"github.com/consentgraph/consentgraph/internal/httpsec"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/web"
)

var privacyPage = template.Must(template.New("privacy").Parse(web.PrivacyTemplate()))

type privacyPurpose struct {
	Name, Description, Basis, Data, Recipients string
}

// servePrivacy renders the default privacy policy at /privacy from the
// configuration the code enforces: the controller, the policy version in
// force, each purpose with its data and recipients (static third parties
// and the processors bound to it), and the user's rights.
func (a *App) servePrivacy(w http.ResponseWriter, r *http.Request) {
	current := a.Consent.Policy()
	var purposes []privacyPurpose
	for _, p := range a.Consent.Purposes() {
		pp := privacyPurpose{Name: p.ID, Description: p.Description, Data: strings.Join(p.DataCategories, ", ")}
		switch p.Mechanism {
		case policy.OptIn:
			pp.Basis = "Only with your consent; it is off until you turn it on."
		case policy.OptOut:
			pp.Basis = "On unless you object; you can turn it off at any time (Global Privacy Control turns off purposes that share data)."
		case policy.NoticeOnly:
			pp.Basis = "Needed to provide the service; it cannot be turned off."
		}
		recipients := append(append([]string(nil), p.ThirdParties...), a.processorNames(p.ID)...)
		pp.Recipients = strings.Join(recipients, ", ")
		purposes = append(purposes, pp)
	}
	var buf bytes.Buffer
	err := privacyPage.Execute(&buf, map[string]any{
		"Controller": a.File.Controller,
		"Policy":     current,
		"Published":  current.PublishedAt.UTC().Format("2 January 2006"),
		"Purposes":   purposes,
	})
	if err != nil {
		a.log.ErrorContext(r.Context(), "render privacy page", "err", err)
		http.Error(w, "the privacy policy could not be shown", http.StatusInternalServerError)
		return
	}
	httpsec.SetPageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(buf.Bytes())
}
