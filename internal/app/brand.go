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

// serveBrandCSS writes the branding's custom properties. The colours were
// validated (#rrggbb, contrast checked) when the config was read, so they
// go into the stylesheet as they are.
func (a *App) serveBrandCSS(w http.ResponseWriter, _ *http.Request) {
	b := a.File.Branding
	httpsec.SetPageHeaders(w)
	h := w.Header()
	h.Set("Content-Type", "text/css; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	_, _ = fmt.Fprintf(w, "/* branding.accentColor from the --config file */\n:root {\n  --brand: %s;\n  --brand-dark: %s;\n}\n",
		b.AccentColor, b.DarkerAccent())
}
