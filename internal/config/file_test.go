package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/policy"
)

func TestNoConfigFileGivesDefaults(t *testing.T) {
	f, err := config.LoadFile("")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]policy.Mechanism{
		"newsletter": policy.OptIn, "surveys": policy.OptIn,
		"aggregate_statistics": policy.OptOut, "essential": policy.NoticeOnly,
	}
	if got := f.Catalog.IDs(); strings.Join(got, ",") != "newsletter,surveys,aggregate_statistics,essential" {
		t.Fatalf("default purposes %v", got)
	}
	for id, m := range want {
		p, _ := f.Catalog.Get(id)
		if p.Mechanism != m || p.Description == "" {
			t.Errorf("%s: %+v", id, p)
		}
	}
	sv, _ := f.Catalog.Get("surveys")
	if strings.Join(sv.DataCategories, ",") != "user.contact.email,user.demographic.age_band,user.demographic.country" {
		t.Errorf("surveys categories %v", sv.DataCategories)
	}
	nl, _ := f.Catalog.Get("newsletter")
	if strings.Join(nl.DataCategories, ",") != "user.contact.email" {
		t.Errorf("newsletter categories %v", nl.DataCategories)
	}
	ag, _ := f.Catalog.Get("aggregate_statistics")
	if len(ag.DataCategories) != 4 || len(ag.ThirdParties) == 0 {
		t.Errorf("aggregate_statistics %+v", ag)
	}
	if f.Policy.Version != "1" || f.Controller.Name == "" {
		t.Errorf("defaults %+v %+v", f.Policy, f.Controller)
	}
}

func TestConfigFileChangesAndAddsPurposes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "consentgraph.yaml")
	err := os.WriteFile(path, []byte(`
controller:
  name: Example GmbH
  contact: Data protection officer
  email: privacy@example.org
  jurisdiction: DE
policy:
  version: 7
  url: https://example.org/privacy
purposes:
  newsletter:
    description: Our monthly letter.
  research:
    mechanism: OPT_IN
    description: Studies by our partner university.
    dataCategories: [user.contact.email, user.demographic.age_band]
    thirdParties: [Example University]
  aggregate_statistics:
    mechanism: OPT_IN
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Catalog.IDs(), ","); got != "newsletter,surveys,aggregate_statistics,essential,research" {
		t.Fatalf("purposes %s", got)
	}
	nl, _ := f.Catalog.Get("newsletter")
	if nl.Description != "Our monthly letter." || nl.Mechanism != policy.OptIn || len(nl.DataCategories) != 1 {
		t.Errorf("changed newsletter %+v", nl)
	}
	rs, _ := f.Catalog.Get("research")
	if rs.Mechanism != policy.OptIn || len(rs.DataCategories) != 2 || rs.ThirdParties[0] != "Example University" {
		t.Errorf("added research %+v", rs)
	}
	ag, _ := f.Catalog.Get("aggregate_statistics")
	if ag.Mechanism != policy.OptIn {
		t.Errorf("aggregate_statistics mechanism %s", ag.Mechanism)
	}
	if f.Policy.Version != "7" || f.Policy.URL != "https://example.org/privacy" {
		t.Errorf("policy %+v", f.Policy)
	}
	if f.Controller.Name != "Example GmbH" || f.Controller.Email != "privacy@example.org" || f.Controller.Language != "en" {
		t.Errorf("controller %+v", f.Controller)
	}
}

func TestInvalidConfigFileNamesTheBadKey(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"unknown top-level key":  {"purposes: {}\nprocesors: {}\n", `procesors: unknown key`},
		"bad mechanism":          {"purposes:\n  newsletter:\n    mechanism: MAYBE\n", `purposes.newsletter.mechanism: "MAYBE" is not one of OPT_IN, OPT_OUT, NOTICE_ONLY`},
		"unknown purpose field":  {"purposes:\n  newsletter:\n    mechanisms: OPT_IN\n", `purposes.newsletter.mechanisms: unknown key`},
		"unknown category":       {"purposes:\n  surveys:\n    dataCategories: [user.contact.phone]\n", `purposes.surveys.dataCategories[0]: "user.contact.phone" is not a known data category`},
		"new purpose incomplete": {"purposes:\n  research:\n    mechanism: OPT_IN\n", `purposes.research.description: is required for a new purpose`},
		"bad purpose id":         {"purposes:\n  Research.Studies:\n    mechanism: OPT_IN\n    description: x\n", `purposes.Research.Studies: purpose id`},
		"purpose not a mapping":  {"purposes:\n  newsletter: yes\n", `purposes.newsletter: want a mapping`},
		"categories not a list":  {"purposes:\n  newsletter:\n    dataCategories: user.contact.email\n", `purposes.newsletter.dataCategories: want a list`},
		"bad policy url":         {"policy:\n  url: privacy.html\n", `policy.url:`},
		"policy float version":   {"policy:\n  version: 1.10\n", `policy.version: want a string`},
		"controller unknown":     {"controller:\n  nmae: x\n", `controller.nmae: unknown key`},
		"controller empty name":  {"controller:\n  name: \"\"\n", `controller.name: must not be empty`},
		"not a mapping":          {"- a\n- b\n", `must be a mapping`},
		"not YAML":               {"purposes: [\n", `not valid YAML`},
		"duplicate purpose":      {"purposes:\n  research: {mechanism: OPT_IN, description: a}\n  research: {mechanism: OPT_IN, description: b}\n", `mapping key "research" already defined`},
		"description language without catalogue": {"purposes:\n  newsletter:\n    description: {en: Letters, de: Briefe}\n",
			`purposes.newsletter.description.de: "de" is not a language with a message catalogue (available: en, ja`},
		"description without English": {"purposes:\n  newsletter:\n    description: {ja: ニュースレター}\n",
			`purposes.newsletter.description.en: is required`},
		"empty translation":               {"purposes:\n  newsletter:\n    description: {en: Letters, ja: \"  \"}\n", `purposes.newsletter.description.ja: must not be empty`},
		"name language without catalogue": {"purposes:\n  newsletter:\n    name: {en: Letters, xx: y}\n", `purposes.newsletter.name.xx: "xx" is not a language`},
		"empty name":                      {"purposes:\n  newsletter:\n    name: {en: \"\", ja: レター}\n", `purposes.newsletter.name.en: must not be empty`},
		"translation not a string":        {"purposes:\n  newsletter:\n    description: {en: Letters, ja: [a]}\n", `purposes.newsletter.description.ja: want a string`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := config.ParseFile("test.yaml", []byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml") {
				t.Fatalf("error %q does not contain %q and the file name", err, c.want)
			}
		})
	}
}

func TestEmptyConfigFileAndMissingFile(t *testing.T) {
	f, err := config.ParseFile("empty.yaml", []byte("# nothing here\n"))
	if err != nil || len(f.Purposes) != 4 {
		t.Fatalf("empty file: %v %v", f, err)
	}
	if _, err := config.LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestPurposeDescriptionPerLanguage(t *testing.T) {
	f, err := config.ParseFile("c.yaml", []byte(`
purposes:
  newsletter:
    description: Our monthly letter.
  surveys:
    description:
      en: Studies, by mail.
      ja: メールでの調査。
  research:
    mechanism: OPT_IN
    name: {en: Research, ja: 研究}
    description: {en: Research with a university.}
    thirdParties: [Example University]
  panel:
    mechanism: OPT_IN
    name: Panel
    description: A panel.
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		// A plain string is every language's text, also over a shipped translation.
		"newsletter": {"en": "Our monthly letter.", "ja": "Our monthly letter.", "xx": "Our monthly letter."},
		"surveys":    {"en": "Studies, by mail.", "ja": "メールでの調査。", "": "Studies, by mail."},
		// A language the mapping leaves out reads English.
		"research": {"en": "Research with a university.", "ja": "Research with a university."},
		// Unconfigured shipped purposes keep the catalogues' translations.
		"aggregate_statistics": {"ja": "提携先や広告主が閲覧できる、一般的な属性別の集計にあなたを含めます（あなた個人と結び付けられることはなく、少人数のグループは表示されず、数値にはノイズが加えられます）。"},
	}
	for id, byLang := range want {
		p, ok := f.Catalog.Get(id)
		if !ok {
			t.Fatalf("no purpose %s", id)
		}
		for lang, text := range byLang {
			if got := p.DescriptionIn(lang); got != text {
				t.Errorf("%s in %q: %q, want %q", id, lang, got, text)
			}
		}
	}
	if p, _ := f.Catalog.Get("aggregate_statistics"); len(p.ThirdPartiesIn("ja")) != 1 || p.ThirdPartiesIn("ja")[0] == p.ThirdParties[0] {
		t.Errorf("the shipped third party is not translated: %v", p.ThirdPartiesIn("ja"))
	}
	if p, _ := f.Catalog.Get("research"); len(p.ThirdPartiesIn("ja")) != 1 || p.ThirdPartiesIn("ja")[0] != "Example University" {
		t.Errorf("configured third parties in ja: %v", p.ThirdPartiesIn("ja"))
	}
	names := map[string]map[string]string{
		"research":   {"en": "Research", "ja": "研究", "ko": "Research"},
		"panel":      {"en": "Panel", "ja": "Panel"},
		"newsletter": {"en": "Newsletter", "ja": "ニュースレター"}, // shipped names stay when only the description changes
	}
	for id, byLang := range names {
		p, _ := f.Catalog.Get(id)
		for lang, want := range byLang {
			if got := p.NameIn(lang); got != want {
				t.Errorf("%s name in %s: %q, want %q", id, lang, got, want)
			}
		}
	}
	if p, _ := f.Catalog.Get("surveys"); p.Description != "Studies, by mail." {
		t.Errorf("Description (the English fallback) = %q", p.Description)
	}
}

// TestShippedDescriptionsMatchTheCatalogue: the English catalogue text of
// a shipped purpose is the one the policy package defines, so the two
// sources cannot drift apart, and every shipped purpose is translated.
func TestShippedDescriptionsMatchTheCatalogue(t *testing.T) {
	f := config.DefaultFile()
	for _, p := range policy.DefaultPurposes() {
		got, ok := f.Texts.Lookup("en", config.ShippedDescriptionKey(p.ID))
		if !ok || got != p.Description {
			t.Errorf("en.json %s = %q, want the shipped %q", config.ShippedDescriptionKey(p.ID), got, p.Description)
		}
		for _, lang := range f.Texts.Languages() {
			for _, key := range []string{config.ShippedDescriptionKey(p.ID), config.ShippedNameKey(p.ID)} {
				if _, ok := f.Texts.Lookup(lang, key); !ok {
					t.Errorf("%s.json has no %s", lang, key)
				}
			}
		}
		c, _ := f.Catalog.Get(p.ID)
		if c.DescriptionIn("ja") == p.Description {
			t.Errorf("%s is not translated into Japanese", p.ID)
		}
		for i, name := range p.ThirdParties {
			if got, _ := f.Texts.Lookup("en", config.ShippedThirdPartyKey(p.ID, i)); got != name {
				t.Errorf("en.json %s = %q, want the shipped %q", config.ShippedThirdPartyKey(p.ID, i), got, name)
			}
			if ja := c.ThirdPartiesIn("ja"); len(ja) != len(p.ThirdParties) || ja[i] == name {
				t.Errorf("%s's third parties are not translated into Japanese: %v", p.ID, ja)
			}
		}
	}
}
