package app_test

import (
	"io"
	"net/http"
	"regexp"
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
		"survey-crm", "Data used: email address, age band, country.", "Version 1", "Only with your consent", `<html lang="en">`} {
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

// getPrivacy fetches /privacy with the query and Accept-Language given.
func getPrivacy(t *testing.T, base, query, acceptLanguage string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/privacy"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if acceptLanguage != "" {
		req.Header.Set("Accept-Language", acceptLanguage)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /privacy%s: %d %s", query, res.StatusCode, body)
	}
	return res, string(body)
}

// TestPrivacyPageInEveryLanguage: /privacy is written in the language
// ?lang= names, else Accept-Language's, with <html lang>, the configured
// per-language purpose texts, and links to the page in the other languages.
func TestPrivacyPageInEveryLanguage(t *testing.T) {
	s := startWithProcessors(t, i18nConfig+`
controller:
  name: Example 株式会社
  address: 東京都千代田区1-1
`)
	cases := []struct{ query, header, lang string }{
		{"", "ja-JP,ja;q=0.9", "ja"},
		{"?lang=ja", "en-US", "ja"},
		{"?lang=en", "ja", "en"},
		{"?lang=xx", "ja", "ja"}, // no such catalogue: Accept-Language decides
		{"", "", "en"},
		{"", "de", "en"},
	}
	for _, c := range cases {
		res, page := getPrivacy(t, s.URL, c.query, c.header)
		if !strings.Contains(page, `<html lang="`+c.lang+`">`) || res.Header.Get("Content-Language") != c.lang {
			t.Errorf("%s with %q: not in %s (Content-Language %q)", c.query, c.header, c.lang, res.Header.Get("Content-Language"))
		}
		if !strings.Contains(res.Header.Get("Vary"), "Accept-Language") {
			t.Errorf("%s with %q: Vary %q", c.query, c.header, res.Header.Get("Vary"))
		}
		if strings.Contains(page, "privacy.") || strings.Contains(page, "{") {
			t.Errorf("%s with %q: an untranslated key or placeholder shows:\n%s", c.query, c.header, page)
		}
	}

	_, ja := getPrivacy(t, s.URL, "?lang=ja", "")
	for _, want := range []string{
		"<title>プライバシーポリシー · Example 株式会社</title>",
		"<h1>Example 株式会社のプライバシーポリシー</h1>",
		"新機能をお知らせする月刊のお便りです。",              // configured Japanese text
		"Surveys in English for everyone.", // one text for every language
		"Research with a partner university.",
		"アカウントの運用に利用します", // shipped translation
		"同意をいただいた場合にのみ利用します。",
		"利用するデータ：メールアドレス、年齢層、国",
		"<dt>所在地</dt><dd>東京都千代田区1-1</dd>",
		"提供先：提携先および広告主（匿名の集計値のみ）",
		`<a href="/">プライバシーセンター</a>で、保有しているデータを確認・訂正し`,
		`公開ログ（<a href="/.well-known/consent-log">同意ログ</a>）に記録されます。`,
		`<a href="/privacy?lang=en" hreflang="en" lang="en">English</a>`,
		`<span lang="ja" aria-current="page">日本語</span>`,
		`<link rel="alternate" hreflang="en" href="/privacy?lang=en">`,
	} {
		if !strings.Contains(ja, want) {
			t.Errorf("the Japanese page lacks %q", want)
		}
	}
	if !regexp.MustCompile(`バージョン 1（\d{4}年\d{1,2}月\d{1,2}日 施行）`).MatchString(ja) {
		t.Error("the Japanese page does not give the version and date in Japanese form")
	}
	if strings.Contains(ja, "Only with your consent") || strings.Contains(ja, "Our monthly letter") {
		t.Error("the Japanese page shows English where a translation exists")
	}

	_, en := getPrivacy(t, s.URL, "", "")
	if strings.Contains(en, "see the privacy policy") {
		t.Error("the policy page refers readers to the privacy policy (the default contact)")
	}
	for _, want := range []string{
		"<h1>Privacy policy of Example 株式会社</h1>",
		"Our monthly letter about new features.",
		`<a href="/privacy?lang=ja" hreflang="ja" lang="ja">日本語</a>`,
		`<span lang="en" aria-current="page">English</span>`,
		`in the <a href="/">Privacy Center</a>.`,
	} {
		if !strings.Contains(en, want) {
			t.Errorf("the English page lacks %q", want)
		}
	}
}
