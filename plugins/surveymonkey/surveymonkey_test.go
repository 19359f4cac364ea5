package surveymonkey_test

import (
	"testing"

	"github.com/consentgraph/consentgraph/internal/providerfakes"
	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/plugintest"
	"github.com/consentgraph/consentgraph/plugins/surveymonkey"
)

func TestConformance(t *testing.T) {
	fake := providerfakes.NewSurveyMonkey("tok", "1234")
	plugintest.Conformance(t, plugintest.Options{
		Type: surveymonkey.Type, Provider: fake,
		Settings: func(baseURL string) map[string]any {
			// listId unquoted in YAML is a number; it must still work.
			return map[string]any{"token": "tok", "listId": uint64(1234), "baseURL": baseURL}
		},
		Holds: func(r plugins.Request) bool {
			for _, c := range fake.Contacts() {
				if c["email"] == r.Fields[plugins.CategoryEmail] {
					return true
				}
			}
			return false
		},
		Effects: fake.Created,
	})
}
