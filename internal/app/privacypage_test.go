package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestDefaultPrivacyPage: /privacy is the policy the code enforces, not a
// 404, and receipts link to it with an absolute URL and no empty
// jurisdiction.
func TestDefaultPrivacyPage(t *testing.T) {
	t.Parallel()
	s := startWithProcessors(t, `
controller:
  name: Example Shop GmbH
  email: privacy@shop.example
processors:
  - name: survey-crm
    type: webhook
    purpose: surveys
    fields: [user.demographic.country]
    settings: {url: "https://crm.example.org/hook"}
`)
	res, err := http.Get(s.URL + "/privacy")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	page := string(body)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /privacy: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("the page lacks the pages' CSP: %q", csp)
	}
	for _, want := range []string{"Example Shop GmbH", "privacy@shop.example", "newsletter", "surveys", "aggregate_statistics",
		"survey-crm", "user.demographic.country", "Version 1", "Only with your consent"} {
		if !strings.Contains(page, want) {
			t.Errorf("the policy page does not say %q", want)
		}
	}
	if strings.Contains(page, "Jurisdiction") {
		t.Error("an unset jurisdiction is shown")
	}

	c := s.Register(t, "policy-reader")
	var out struct{ GrantConsent struct{ Receipt string } }
	c.Do(t, `mutation { grantConsent(purpose: "newsletter") { receipt } }`, nil).Decode(t, &out)
	claims := receiptClaims(t, out.GrantConsent.Receipt)
	if u, _ := claims["policyUrl"].(string); !strings.HasPrefix(u, "http") || !strings.HasSuffix(u, "/privacy") {
		t.Errorf("receipt policyUrl %q: want an absolute URL of /privacy", u)
	}
	if j, ok := claims["jurisdiction"]; ok {
		t.Errorf("receipt carries jurisdiction %q though none is configured", j)
	}
}
