package config

import (
	"strings"
	"testing"
)

func TestProcessorsSection(t *testing.T) {
	f, err := ParseFile("c.yaml", []byte(`
processors:
  - name: news
    type: mailchimp
    purpose: newsletter
    fields: [user.contact.email]
    settings: {apiKey: k-us1, listId: L, nested: {a: [1, 2]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Processors) != 1 || f.Processors[0].Name != "news" || f.Processors[0].Settings["listId"] != "L" {
		t.Fatalf("%+v", f.Processors)
	}
	if _, ok := f.Processors[0].Settings["nested"].(map[string]any); !ok {
		t.Errorf("nested settings are not plain maps: %T", f.Processors[0].Settings["nested"])
	}
	bad := map[string]string{
		"processors[0].fields[0]: purpose \"newsletter\" does not allow \"user.demographic.country\"": `
processors: [{name: a, type: webhook, purpose: newsletter, fields: [user.demographic.country]}]`,
		"processors[0].purpose: \"nope\" is not a purpose": `
processors: [{name: a, type: webhook, purpose: nope}]`,
		"processors[1].name: \"a\" is used twice": `
processors: [{name: a, type: webhook}, {name: a, type: webhook}]`,
		"processors[0].colour: unknown key": `
processors: [{name: a, type: webhook, colour: red}]`,
		"processors[0].type: is required": `
processors: [{name: a}]`,
		`processors[0].settings.description.ko: "ko" is not a language with a message catalogue`: `
processors: [{name: a, type: webhook, settings: {description: {en: Hook, ko: 훅}}}]`,
		"processors[0].settings.description.en: is required": `
processors: [{name: a, type: webhook, settings: {description: {ja: フック}}}]`,
	}
	for want, y := range bad {
		_, err := ParseFile("c.yaml", []byte(y))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q, got %v", want, err)
		}
	}
}

func TestProcessorDescriptionPerLanguage(t *testing.T) {
	f, err := ParseFile("c.yaml", []byte(`
processors:
  - name: news
    type: webhook
    settings:
      url: https://example.org/hook
      description: {en: Our own mailing list., ja: 自社のメーリングリスト。}
  - name: plain
    type: webhook
    settings: {url: "https://example.org/b", description: One text.}
`))
	if err != nil {
		t.Fatal(err)
	}
	news, plain := f.Processors[0], f.Processors[1]
	// Plugins and the core keep reading one string: the English one.
	if news.Settings["description"] != "Our own mailing list." || news.Descriptions["ja"] != "自社のメーリングリスト。" {
		t.Errorf("news: %v %v", news.Settings["description"], news.Descriptions)
	}
	if plain.Settings["description"] != "One text." || plain.Descriptions != nil {
		t.Errorf("plain: %v %v", plain.Settings["description"], plain.Descriptions)
	}
}
