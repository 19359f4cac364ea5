package config

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/consentgraph/consentgraph/internal/i18n"
)

// A catalogue that leaves a shipped purpose's text empty stops start-up
// with the reason instead of serving an empty description.
func TestEmptyShippedTranslationIsAnError(t *testing.T) {
	b, err := i18n.Load(fstest.MapFS{
		"en.json": {Data: []byte(`{"_meta.name": "English"}`)},
		"ko.json": {Data: []byte(`{"_meta.name": "한국어", "server.purpose.newsletter.description": " "}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = defaultFile(b)
	if err == nil || !strings.Contains(err.Error(), "purposes.newsletter.description.ko: must not be empty") {
		t.Fatalf("defaultFile: %v", err)
	}
	// A third language is one file: its texts reach the shipped purposes.
	b, err = i18n.Load(fstest.MapFS{
		"en.json": {Data: []byte(`{"_meta.name": "English"}`)},
		"ko.json": {Data: []byte(`{"_meta.name": "한국어", "server.purpose.newsletter.description": "뉴스레터를 이메일로 보내 드립니다."}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := defaultFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := f.Catalog.Get("newsletter"); p.DescriptionIn("ko") != "뉴스레터를 이메일로 보내 드립니다." || p.DescriptionIn("en") != "Sending you our newsletter by email." {
		t.Errorf("ko: %q, en: %q", p.DescriptionIn("ko"), p.DescriptionIn("en"))
	}
}
