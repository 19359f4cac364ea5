package all_test

import (
	"maps"
	"slices"
	"testing"

	"github.com/consentgraph/consentgraph/plugins"
	_ "github.com/consentgraph/consentgraph/plugins/all"
	"github.com/consentgraph/consentgraph/plugins/plugintest"
)

// minimal holds the smallest valid settings of every built-in type.
var minimal = map[string]map[string]any{
	"example": {},
	"http": {
		"deliver": map[string]any{"method": "PUT", "url": "https://crm.example.org/contacts/{{.Subject}}"},
		"forget":  map[string]any{"method": "DELETE", "url": "https://crm.example.org/contacts/{{.Subject}}"},
	},
	"mailchimp":       {"apiKey": "k-us1", "listId": uint64(1234)},
	"smtp_newsletter": {"smtpURL": "smtp://127.0.0.1:2525?from=news@example.org"},
	"surveymonkey":    {"token": "t", "listId": "CL"},
	"webhook":         {"url": "https://hooks.example.org/in"},
}

// The description override is read by the core (it replaces the
// manifest's description); every plugin must accept it, and still refuse
// keys it does not know.
func TestEveryBuiltinAcceptsTheDescriptionSetting(t *testing.T) {
	if got, want := plugins.Types(), slices.Sorted(maps.Keys(minimal)); !slices.Equal(got, want) {
		t.Fatalf("built-in types %v; this test knows %v: add the new one", got, want)
	}
	for typ, settings := range minimal {
		_, factory, _ := plugins.Lookup(typ)
		s := maps.Clone(settings)
		s[plugins.DescriptionSetting] = "Shown to users instead of the manifest's text"
		if _, err := factory(plugintest.NewEnv(t, typ, "p", s)); err != nil {
			t.Errorf("%s refuses description: %v", typ, err)
		}
		s["descriptoin"] = "typo"
		if _, err := factory(plugintest.NewEnv(t, typ, "p", s)); err == nil {
			t.Errorf("%s accepts an unknown setting", typ)
		}
	}
}
