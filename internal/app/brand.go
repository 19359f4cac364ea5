package app

import (
	"fmt"
	"net/http"

	"github.com/consentgraph/consentgraph/internal/httpsec"
)

// BrandCSSPath is the stylesheet with the operator's accent colour; the
// pages link it after app.css, whose colours are custom properties, so the
// accent applies without any inline style (the pages' CSP has none).
const BrandCSSPath = "/brand.css"

// brandCSS serves the branding's custom properties. The colours were
// validated (#rrggbb, contrast checked) when the config was read and do not
// change while the server runs, so the stylesheet is written once.
func (a *App) brandCSS() http.HandlerFunc {
	b := a.File.Branding
	css := []byte(fmt.Sprintf("/* branding.accentColor from the --config file */\n:root {\n  --brand: %s;\n  --brand-dark: %s;\n}\n",
		b.AccentColor, b.DarkerAccent()))
	return func(w http.ResponseWriter, _ *http.Request) {
		httpsec.SetPageHeaders(w)
		h := w.Header()
		h.Set("Content-Type", "text/css; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(css)
	}
}
