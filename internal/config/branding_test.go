package config_test

import (
	"math"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/config"
)

func TestBrandingDefaults(t *testing.T) {
	f, err := config.LoadFile("")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Branding{Name: "Consentgraph", AccentColor: "#1f5fbf", PolicyURL: "/privacy"}
	if f.Branding != want {
		t.Errorf("defaults without a file: %+v, want %+v", f.Branding, want)
	}
	// Without a branding name the controller's name is shown, whichever
	// section comes first in the file.
	f, err = config.ParseFile("c.yaml", []byte("branding:\n  accentColor: \"#0B6E4F\"\ncontroller:\n  name: Example GmbH\n  contact: DPO\n"))
	if err != nil {
		t.Fatal(err)
	}
	want = config.Branding{Name: "Example GmbH", AccentColor: "#0b6e4f", PolicyURL: "/privacy"}
	if f.Branding != want {
		t.Errorf("branding %+v, want %+v", f.Branding, want)
	}
	if f.Branding.LogoOrigin() != "" {
		t.Errorf("logo origin without a logo: %q", f.Branding.LogoOrigin())
	}
}

func TestBrandingFromFile(t *testing.T) {
	f, err := config.ParseFile("c.yaml", []byte(`
controller:
  name: Example GmbH
  contact: DPO
branding:
  name: Example Shop
  logoUrl: https://cdn.example.org:8443/img/logo.svg?v=2
  accentColor: "#C0392B"
  policyUrl: https://example.org/privacy
`))
	if err != nil {
		t.Fatal(err)
	}
	b := f.Branding
	want := config.Branding{Name: "Example Shop", LogoURL: "https://cdn.example.org:8443/img/logo.svg?v=2",
		AccentColor: "#c0392b", PolicyURL: "https://example.org/privacy"}
	if b != want {
		t.Errorf("branding %+v, want %+v", b, want)
	}
	if got := b.LogoOrigin(); got != "https://cdn.example.org:8443" {
		t.Errorf("logo origin %q", got)
	}
	if got := b.DarkerAccent(); got != "#992d22" {
		t.Errorf("darker accent %q", got)
	}
	f, err = config.ParseFile("c.yaml", []byte("branding:\n  logoUrl: /assets/logo.svg\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Branding.LogoURL != "/assets/logo.svg" || f.Branding.LogoOrigin() != "" {
		t.Errorf("same-origin logo: %+v origin %q", f.Branding, f.Branding.LogoOrigin())
	}
}

// Each bad value stops start-up with the key and the reason.
func TestBrandingRefusesBadValues(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`accentColor: "#ffcc00"`, `branding.accentColor: #ffcc00 has contrast 1.51:1 on white; at least 4.5:1 is needed`},
		// Just below the line: 4.478 must be refused and not shown as 4.5.
		{`accentColor: "#777777"`, `branding.accentColor: #777777 has contrast 4.47:1 on white; at least 4.5:1 is needed`},
		{`accentColor: "#fff"`, `branding.accentColor: "#fff" is not a colour of the form #rrggbb`},
		{`accentColor: blue`, `branding.accentColor: "blue" is not a colour of the form #rrggbb`},
		{`accentColor: "#12345g"`, `not a colour of the form #rrggbb`},
		{`logoUrl: http://cdn.example.org/logo.png`, `branding.logoUrl: "http://cdn.example.org/logo.png" must be an absolute https:// URL, or a path on this server starting with /`},
		{`logoUrl: //cdn.example.org/logo.png`, `branding.logoUrl: "//cdn.example.org/logo.png" must be an absolute https:// URL`},
		{`logoUrl: javascript:alert(1)`, `branding.logoUrl: "javascript:alert(1)" must be an absolute https:// URL`},
		{`logoUrl: https://user:pw@cdn.example.org/logo.png`, `branding.logoUrl: "https://user:pw@cdn.example.org/logo.png" must be an absolute https:// URL`},
		{`logoUrl: "https://cdn.example.org;script-src/x.png"`, `branding.logoUrl: "https://cdn.example.org;script-src/x.png" must be an absolute https:// URL`},
		{`logoUrl: logo.png`, `branding.logoUrl: "logo.png" must be an absolute https:// URL`},
		{`policyUrl: /privacy`, `branding.policyUrl: "/privacy" must be an absolute https:// URL`},
		{`policyUrl: "https://example.org/a\"b"`, `branding.policyUrl: "https://example.org/a\"b" must be an absolute https:// URL`},
		{`name: "  "`, `branding.name: must not be empty`},
		{`name: ` + strings.Repeat("x", 101), `branding.name: must be at most 100 characters`},
		{`colour: "#000000"`, `branding.colour: unknown key (known: accentColor, logoUrl, name, policyUrl)`},
		{`accentColor: [1]`, `branding.accentColor: want a string`},
	} {
		_, err := config.ParseFile("c.yaml", []byte("branding:\n  "+tc.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := config.ParseFile("c.yaml", []byte("branding: plain\n")); err == nil || !strings.Contains(err.Error(), "branding: want a mapping") {
		t.Errorf("branding as a string: %v", err)
	}
}

// The contrast formula against values published with WCAG's own examples
// and common tools.
func TestContrastRatio(t *testing.T) {
	white, black := [3]uint8{255, 255, 255}, [3]uint8{0, 0, 0}
	for _, tc := range []struct {
		a, b [3]uint8
		want float64
	}{
		{black, white, 21},
		{white, white, 1},
		{[3]uint8{0x76, 0x76, 0x76}, white, 4.54},
		{[3]uint8{0xff, 0xcc, 0x00}, white, 1.51},
		{[3]uint8{0x1f, 0x5f, 0xbf}, white, 6.09},
		{white, [3]uint8{0x1f, 0x5f, 0xbf}, 6.09},
	} {
		if got := config.ContrastRatio(tc.a, tc.b); math.Abs(got-tc.want) > 0.005 {
			t.Errorf("contrast %v on %v: %.3f, want %.2f", tc.a, tc.b, got, tc.want)
		}
	}
}
