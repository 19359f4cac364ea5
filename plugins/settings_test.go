package plugins_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/plugins"
)

type nested struct {
	Host string `setting:"host,required"`
	Port int    `setting:"port"`
}

type decoded struct {
	APIKey  string            `setting:"apiKey,required"`
	ListID  string            `setting:"listId,required"`
	Count   int               `setting:"count"`
	Ratio   float64           `setting:"ratio"`
	On      bool              `setting:"on"`
	Timeout time.Duration     `setting:"timeout"`
	Tags    []string          `setting:"tags"`
	Headers map[string]string `setting:"headers"`
	Server  nested            `setting:"server"`
	Servers []nested          `setting:"servers"`
	Limit   *int              `setting:"limit"`
	Skipped string            `setting:"-"`
	Default string            `setting:"default"`
}

func TestDecodeSettings(t *testing.T) {
	env := plugins.Env{Settings: map[string]any{
		"apiKey":      "k",
		"listId":      uint64(1234), // YAML gives an unquoted number
		"count":       "7",          // ${NAME} always gives a string
		"ratio":       uint64(2),
		"on":          "true",
		"timeout":     "1m30s",
		"tags":        []any{"a", uint64(2)},
		"headers":     map[string]any{"X-A": "1", "X-B": int64(-2)},
		"server":      map[string]any{"host": "h", "port": uint64(25)},
		"servers":     []any{map[string]any{"host": "h2"}},
		"limit":       uint64(3),
		"description": "the core's own key: ignored",
	}}
	got := decoded{Default: "kept"}
	if err := plugins.DecodeSettings(env, &got); err != nil {
		t.Fatal(err)
	}
	three := 3
	want := decoded{
		APIKey: "k", ListID: "1234", Count: 7, Ratio: 2, On: true, Timeout: 90 * time.Second,
		Tags: []string{"a", "2"}, Headers: map[string]string{"X-A": "1", "X-B": "-2"},
		Server: nested{Host: "h", Port: 25}, Servers: []nested{{Host: "h2"}}, Limit: &three, Default: "kept",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestDecodeSettingsRefuses(t *testing.T) {
	base := func() map[string]any { return map[string]any{"apiKey": "k", "listId": "l"} }
	for _, tc := range []struct {
		name   string
		change func(map[string]any)
		want   []string
	}{
		{"unknown key", func(m map[string]any) { m["lisId"] = "x" }, []string{"settings.lisId", "known: apiKey,", "listId"}},
		{"missing required", func(m map[string]any) { delete(m, "apiKey") }, []string{"settings.apiKey is required"}},
		{"empty required", func(m map[string]any) { m["listId"] = "" }, []string{"settings.listId must not be empty"}},
		{"bad duration", func(m map[string]any) { m["timeout"] = "soon" }, []string{"settings.timeout", "duration"}},
		{"bare number as duration", func(m map[string]any) { m["timeout"] = uint64(30) }, []string{"settings.timeout", "duration"}},
		{"fraction as int", func(m map[string]any) { m["count"] = 1.5 }, []string{"settings.count", "whole number"}},
		{"list as string", func(m map[string]any) { m["apiKey"] = []any{"a"} }, []string{"settings.apiKey", "want a string, got a list"}},
		{"nested unknown", func(m map[string]any) { m["server"] = map[string]any{"host": "h", "prot": 1} }, []string{"settings.server.prot", "known: host, port"}},
		{"nested required", func(m map[string]any) { m["server"] = map[string]any{} }, []string{"settings.server.host is required"}},
		{"bad bool", func(m map[string]any) { m["on"] = "yes please" }, []string{"settings.on", "true or false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.change(m)
			var d decoded
			err := plugins.DecodeSettings(plugins.Env{Settings: m}, &d)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	var d decoded
	if err := plugins.DecodeSettings(plugins.Env{}, d); err == nil {
		t.Error("a non-pointer was accepted")
	}
}

func TestDeprecatedSettingHelpersAcceptDescription(t *testing.T) {
	env := plugins.Env{Settings: map[string]any{"url": "u", plugins.DescriptionSetting: "shown instead"}}
	if err := plugins.CheckSettings(env, "url"); err != nil {
		t.Fatal(err)
	}
	if err := plugins.CheckSettings(env); err == nil {
		t.Fatal("unknown key accepted")
	}
}

// A Text setting takes one string or a mapping of language tag to string;
// any other shape, an empty text and a key that is no language tag stop
// start-up with the setting named.
func TestDecodeSettingsText(t *testing.T) {
	type cfg struct {
		Subject plugins.Text `setting:"subject"`
		Title   plugins.Text `setting:"title"`
		Unset   plugins.Text `setting:"unset"`
	}
	var c cfg
	err := plugins.DecodeSettings(plugins.Env{Settings: map[string]any{
		"subject": "Please confirm",
		"title":   map[string]any{"ja": "確認", "en": "Confirm"},
	}}, &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.PerLanguage() || c.Subject.Languages() != nil {
		t.Errorf("a plain string decoded as per language: %+v", c.Subject)
	}
	if s, ok := c.Subject.In("ja"); !ok || s != "Please confirm" {
		t.Errorf("plain text in ja = %q, %v", s, ok)
	}
	if got := c.Title.Languages(); !reflect.DeepEqual(got, []string{"en", "ja"}) {
		t.Errorf("languages = %v", got)
	}
	if s, ok := c.Title.In("ja"); !ok || s != "確認" {
		t.Errorf("title in ja = %q, %v", s, ok)
	}
	if s, ok := c.Title.In("fr"); ok {
		t.Errorf("a per-language text without fr gave %q for fr", s)
	}
	if !c.Unset.IsZero() || c.Title.IsZero() {
		t.Errorf("IsZero: unset %v, title %v", c.Unset.IsZero(), c.Title.IsZero())
	}

	for _, tc := range []struct {
		value any
		want  string
	}{
		{[]any{"a", "b"}, "settings.subject: want a text or a mapping of language tag to text, such as {en: ..., ja: ...}, got a list"},
		{uint64(3), "settings.subject: want a text or a mapping"},
		{"  ", "settings.subject must not be empty"},
		{map[string]any{}, "settings.subject: want a text or a mapping of language tag to text, such as {en: ..., ja: ...}, got an empty mapping"},
		{map[string]any{"en": "x", "ja": ""}, "settings.subject.ja must not be empty"},
		{map[string]any{"en": map[string]any{"a": "b"}}, "settings.subject.en: want a text, got a mapping"},
		{map[string]any{"english": "x"}, `settings.subject.english: "english" is not a language tag such as en or ja`},
	} {
		var c cfg
		err := plugins.DecodeSettings(plugins.Env{Settings: map[string]any{"subject": tc.value}}, &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%#v: got %v, want %q", tc.value, err, tc.want)
		}
	}
}

// Titles come in the reader's language when the plugin gave one, else in
// English.
func TestTitleIn(t *testing.T) {
	a := plugins.Action{ID: "x", Title: "Resend", Titles: map[string]string{"ja": "再送"}}
	for lang, want := range map[string]string{"ja": "再送", "en": "Resend", "": "Resend", "fr": "Resend"} {
		if got := a.TitleIn(lang); got != want {
			t.Errorf("action TitleIn(%q) = %q, want %q", lang, got, want)
		}
	}
	it := plugins.LinkItem{Titles: map[string]string{"en": "Survey", "ja": "アンケート"}}
	if it.TitleIn("de") != "Survey" || it.TitleIn("ja") != "アンケート" {
		t.Errorf("item titles: de %q, ja %q", it.TitleIn("de"), it.TitleIn("ja"))
	}
	if old := (plugins.LinkItem{Title: "Survey"}); old.TitleIn("ja") != "Survey" {
		t.Errorf("an item without titles gives %q", old.TitleIn("ja"))
	}
}
