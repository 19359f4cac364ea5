package config

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Branding is how the pages and the consent widget present the operator
// (the `branding:` section of the --config file):
//
//	branding:
//	  name: Example Shop            # default: the controller's name
//	  logoUrl: https://cdn.example.org/logo.svg   # or a path on this server; default: none
//	  accentColor: "#1f5fbf"        # links, buttons, the widget; at least 4.5:1 on white
//	  policyUrl: https://example.org/privacy      # default: the built-in /privacy page
type Branding struct {
	// Name is the operator's name shown in the pages' header and the
	// widget. Without one in the file it is the controller's name.
	Name string
	// LogoURL is an https URL or a path on this server; empty for none.
	LogoURL string
	// AccentColor is #rrggbb in lower case.
	AccentColor string
	// PolicyURL is the privacy policy the pages link to.
	PolicyURL string
}

// DefaultAccentColor is the accent of the stock look (app.css --brand).
const DefaultAccentColor = "#1f5fbf"

// DefaultPolicyURL is the policy page the server renders itself.
const DefaultPolicyURL = "/privacy"

// MinAccentContrast is WCAG 2's minimum contrast for normal text (1.4.3):
// the accent colours links and the white text on buttons.
const MinAccentContrast = 4.5

// LogoOrigin is the origin of an external logo (https://host[:port]), which
// the pages' CSP must allow as an image source; empty for a logo on this
// server or none.
func (b Branding) LogoOrigin() string {
	if !strings.HasPrefix(b.LogoURL, "https://") {
		return ""
	}
	u, err := url.Parse(b.LogoURL)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

var brandingKeys = []string{"accentColor", "logoUrl", "name", "policyUrl"}

// parseBranding reads the section; the name falls back to the controller's
// in finishBranding, once the whole file (in any key order) is read.
func parseBranding(f *File, path string, v any) error {
	b := &f.Branding
	return walkMapping(path, v, brandingKeys, func(key, keyPath string, v any) error {
		s, err := scalarString(keyPath, v)
		if err != nil {
			return err
		}
		s = strings.TrimSpace(s)
		switch key {
		case "name":
			if s == "" {
				return fieldErr(keyPath, "must not be empty (leave the key out to use the controller's name)")
			}
			if len(s) > 100 {
				return fieldErr(keyPath, "must be at most 100 characters")
			}
			b.Name = s
		case "logoUrl":
			if err := checkLogoURL(s); err != nil {
				return fieldErr(keyPath, "%s", err)
			}
			b.LogoURL = s
		case "accentColor":
			c, err := checkAccent(s)
			if err != nil {
				return fieldErr(keyPath, "%s", err)
			}
			b.AccentColor = c
		case "policyUrl":
			if err := checkHTTPSURL(s); err != nil {
				return fieldErr(keyPath, "%s", err)
			}
			b.PolicyURL = s
		}
		return nil
	})
}

func finishBranding(f *File) {
	if f.Branding.Name == "" {
		f.Branding.Name = f.Controller.Name
	}
}

func defaultBranding() Branding {
	return Branding{AccentColor: DefaultAccentColor, PolicyURL: DefaultPolicyURL}
}

// checkLogoURL accepts an absolute https URL or a path on this server
// ("/static/logo.svg"); the page CSP allows exactly that origin.
func checkLogoURL(s string) error {
	if strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "" || u.Host != "" || strings.ContainsAny(s, "\\ \"'<>") {
			return fmt.Errorf("%q is not a valid path on this server", s)
		}
		return nil
	}
	if err := checkHTTPSURL(s); err != nil {
		return fmt.Errorf("%w, or a path on this server starting with /", err)
	}
	return nil
}

// hostPattern is a DNS name or IPv4 address with an optional port: nothing
// that could end a CSP source expression (the logo's origin goes into the
// page CSP).
var hostPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$`)

// checkHTTPSURL accepts only absolute https URLs with a host and without
// credentials or characters that would need escaping in HTML or CSS.
func checkHTTPSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || !hostPattern.MatchString(u.Host) || u.User != nil || u.Opaque != "" ||
		strings.ContainsAny(s, "\\ \"'<>") {
		return fmt.Errorf("%q must be an absolute https:// URL", s)
	}
	if len(s) > 2000 {
		return fmt.Errorf("must be at most 2000 characters")
	}
	return nil
}

// checkAccent parses #rrggbb and refuses a colour whose contrast with white
// is below MinAccentContrast, naming the measured ratio.
func checkAccent(s string) (string, error) {
	rgb, ok := parseHex(s)
	if !ok {
		return "", fmt.Errorf("%q is not a colour of the form #rrggbb", s)
	}
	s = strings.ToLower(s)
	ratio := ContrastRatio(rgb, [3]uint8{255, 255, 255})
	if ratio < MinAccentContrast {
		// Truncated, not rounded: 4.496 must not read as 4.50 in a refusal.
		shown := math.Floor(ratio*100) / 100
		return "", fmt.Errorf("%s has contrast %s:1 on white; at least %s:1 is needed (WCAG 2, 1.4.3), pick a darker colour",
			s, strconv.FormatFloat(shown, 'f', -1, 64), strconv.FormatFloat(MinAccentContrast, 'f', -1, 64))
	}
	return s, nil
}

func parseHex(s string) ([3]uint8, bool) {
	var rgb [3]uint8
	if len(s) != 7 || s[0] != '#' {
		return rgb, false
	}
	for i := range 3 {
		v, err := strconv.ParseUint(s[1+2*i:3+2*i], 16, 8)
		if err != nil {
			return rgb, false
		}
		rgb[i] = uint8(v)
	}
	return rgb, true
}

// ContrastRatio is WCAG 2's contrast ratio (L1 + 0.05) / (L2 + 0.05) of two
// sRGB colours, from 1 (equal) to 21 (black on white).
func ContrastRatio(a, b [3]uint8) float64 {
	la, lb := relativeLuminance(a), relativeLuminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// relativeLuminance follows WCAG 2's definition (sRGB linearised, weighted
// 0.2126, 0.7152, 0.0722).
func relativeLuminance(c [3]uint8) float64 {
	lin := func(v uint8) float64 {
		s := float64(v) / 255
		if s <= 0.04045 {
			return s / 12.92
		}
		return math.Pow((s+0.055)/1.055, 2.4)
	}
	return 0.2126*lin(c[0]) + 0.7152*lin(c[1]) + 0.0722*lin(c[2])
}

// DarkerAccent is the accent at 80 % brightness, for hover states (darker
// keeps the contrast on white above the accent's own).
func (b Branding) DarkerAccent() string {
	rgb, ok := parseHex(b.AccentColor)
	if !ok {
		return b.AccentColor
	}
	return fmt.Sprintf("#%02x%02x%02x", int(rgb[0])*4/5, int(rgb[1])*4/5, int(rgb[2])*4/5)
}
