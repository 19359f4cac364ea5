package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/httpsec"
)

const brandedConfig = `
controller:
  name: Example KK
  contact: Data protection officer
  email: privacy@example.jp
  jurisdiction: JP
branding:
  name: Example Shop
  logoUrl: https://cdn.example.org/logo.svg
  accentColor: "#0B6E4F"
  policyUrl: https://example.org/privacy
`

type operatorAnswer struct {
	Operator struct {
		Name        string
		LogoURL     *string
		AccentColor string
		PolicyURL   string
		Controller  struct {
			Name         string
			Email        *string
			Jurisdiction *string
		}
	}
}

const operatorQuery = `{ operator { name logoUrl accentColor policyUrl controller { name email jurisdiction } } }`

// Anyone may ask who runs the service, over plain HTTP and without signing
// in; what the file leaves out is null.
func TestOperatorOverHTTP(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) { c.ConfigFile = apptest.WriteConfig(t, brandedConfig) })
	var got operatorAnswer
	s.Client().Do(t, operatorQuery, nil).Decode(t, &got)
	o := got.Operator
	if o.Name != "Example Shop" || o.LogoURL == nil || *o.LogoURL != "https://cdn.example.org/logo.svg" ||
		o.AccentColor != "#0b6e4f" || o.PolicyURL != "https://example.org/privacy" {
		t.Errorf("operator %+v", o)
	}
	c := o.Controller
	if c.Name != "Example KK" || c.Email == nil || *c.Email != "privacy@example.jp" || c.Jurisdiction == nil || *c.Jurisdiction != "JP" {
		t.Errorf("controller %+v", c)
	}

	plain := apptest.Start(t)
	var def operatorAnswer
	res := plain.Client().Do(t, operatorQuery, nil)
	res.Decode(t, &def)
	o = def.Operator
	if o.Name != "Consentgraph" || o.LogoURL != nil || o.AccentColor != "#1f5fbf" || o.PolicyURL != "/privacy" {
		t.Errorf("default operator %+v", o)
	}
	if o.Controller.Email != nil || o.Controller.Jurisdiction != nil || !strings.Contains(string(res.Raw), `"email":null`) {
		t.Errorf("unset controller fields are not null: %s", res.Raw)
	}
}

// The accent reaches the pages through /brand.css, and the page CSP allows
// the logo's origin for images, and nothing else more.
func TestBrandStylesheetAndLogoCSP(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config) { c.ConfigFile = apptest.WriteConfig(t, brandedConfig) })
	get := func(path string) (*http.Response, string) {
		t.Helper()
		res, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	res, css := get("/brand.css")
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("/brand.css: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if !strings.Contains(css, "--brand: #0b6e4f;") || !strings.Contains(css, "--brand-dark: #08583f;") {
		t.Errorf("/brand.css lacks the accent:\n%s", css)
	}
	for _, p := range []string{"/", "/partners", "/privacy"} {
		res, _ := get(p)
		want := httpsec.PageCSPWithImages("https://cdn.example.org")
		if got := res.Header.Get("Content-Security-Policy"); got != want {
			t.Errorf("%s CSP %q, want %q", p, got, want)
		}
	}
	if res, _ := get("/healthz"); res.Header.Get("Content-Security-Policy") != httpsec.APICSP {
		t.Errorf("/healthz CSP widened: %q", res.Header.Get("Content-Security-Policy"))
	}
	// Without an external logo the pages keep the stock policy.
	plain := apptest.Start(t)
	res2, err := http.Get(plain.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if got := res2.Header.Get("Content-Security-Policy"); got != httpsec.PageCSP {
		t.Errorf("stock page CSP %q", got)
	}
}

// A low-contrast accent stops start-up, with the key, the measured ratio
// and what is needed.
func TestLowContrastAccentRefusesToStart(t *testing.T) {
	cfg := apptest.Config(t)
	cfg.ConfigFile = apptest.WriteConfig(t, "branding:\n  accentColor: \"#ffcc00\"\n")
	a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		_ = a.Close(context.Background())
		t.Fatal("started with an accent of 1.5:1 on white")
	}
	want := "branding.accentColor: #ffcc00 has contrast 1.51:1 on white; at least 4.5:1 is needed"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q\nwant it to contain %q", err, want)
	}
	// A sufficient accent starts.
	cfg = apptest.Config(t)
	cfg.ConfigFile = apptest.WriteConfig(t, "branding:\n  accentColor: \"#d14900\"\n") // 4.50:1
	if a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("an accent of 4.50:1 was refused: %v", err)
	} else {
		_ = a.Close(context.Background())
	}
}
