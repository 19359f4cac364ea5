package policy_test

import (
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/policy"
)

func TestCatalogRefusesDuplicatesAndInvalidPurposes(t *testing.T) {
	dup := append(policy.DefaultPurposes(), policy.Purpose{ID: policy.Newsletter, Mechanism: policy.OptIn, Description: "again"})
	if _, err := policy.NewCatalog(dup); err == nil || !strings.Contains(err.Error(), "purposes.newsletter: defined twice") {
		t.Fatalf("duplicate: %v", err)
	}
	bad := []policy.Purpose{{ID: "x", Mechanism: "SOMETIMES", Description: "d", DataCategories: []string{policy.CategoryEmail, policy.CategoryEmail}}}
	_, err := policy.NewCatalog(bad)
	if err == nil || !strings.Contains(err.Error(), "purposes.x.mechanism") || !strings.Contains(err.Error(), "purposes.x.dataCategories[1]: \"user.contact.email\" is listed twice") {
		t.Fatalf("invalid: %v", err)
	}
	c := policy.MustDefaultCatalog()
	p, _ := c.Get(policy.Surveys)
	p.DataCategories[0] = "changed"
	if again, _ := c.Get(policy.Surveys); again.DataCategories[0] != policy.CategoryEmail {
		t.Fatal("catalog handed out shared slices")
	}
}

func TestMechanismDefaults(t *testing.T) {
	if policy.OptIn.Default() || !policy.OptOut.Default() || !policy.NoticeOnly.Default() {
		t.Fatal("mechanism defaults")
	}
}

func TestValidateDocument(t *testing.T) {
	good := []policy.Document{{Version: "1", URL: "/privacy"}, {Version: "2024-06", URL: "https://example.org/p?v=2"}}
	for _, d := range good {
		if err := policy.ValidateDocument("", d); err != nil {
			t.Errorf("%+v: %v", d, err)
		}
	}
	bad := map[policy.Document]string{
		{Version: "", URL: "/p"}:                       "version",
		{Version: "1\n", URL: "/p"}:                    "version",
		{Version: strings.Repeat("9", 65), URL: "/p"}:  "version",
		{Version: "1", URL: "//evil.example/p"}:        "url",
		{Version: "1", URL: "javascript:alert(1)"}:     "url",
		{Version: "1", URL: "https://example.org/a b"}: "url",
		{Version: "1", URL: "https://"}:                "url",
	}
	for d, field := range bad {
		err := policy.ValidateDocument("", d)
		if err == nil || !strings.HasPrefix(err.Error(), field+":") {
			t.Errorf("%+v: %v, want an error on %s", d, err, field)
		}
	}
}
