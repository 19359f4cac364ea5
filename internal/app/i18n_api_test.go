package app_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
)

// i18nConfig gives one shipped purpose a text per language, another one
// text for all, adds a purpose with English only, and leaves the rest to
// the shipped translations.
const i18nConfig = `
purposes:
  newsletter:
    description:
      en: Our monthly letter about new features.
      ja: 新機能をお知らせする月刊のお便りです。
  surveys:
    description: Surveys in English for everyone.
  research:
    mechanism: OPT_IN
    description: {en: Research with a partner university.}
processors:
  - name: letters
    type: webhook
    purpose: newsletter
    settings:
      url: https://hooks.example.org/letters
      description: {en: Our mailing list service., ja: 自社のメーリングリストサービスです。}
`

// inLanguage returns a client that sends Accept-Language: lang (none for "").
func inLanguage(c *apptest.Client, lang string) *apptest.Client {
	if lang != "" {
		c.Header.Set("Accept-Language", lang)
	}
	return c
}

func TestPurposeDescriptionsFollowAcceptLanguage(t *testing.T) {
	s := startWithProcessors(t, i18nConfig)
	const q = `{ purposes { id name description } }`
	descriptions := func(lang string) map[string]string {
		var out struct {
			Purposes []struct{ ID, Name, Description string }
		}
		inLanguage(s.Client(), lang).Do(t, q, nil).Decode(t, &out)
		m := map[string]string{}
		for _, p := range out.Purposes {
			m[p.ID] = p.Description
			m[p.ID+".name"] = p.Name
		}
		return m
	}
	en := map[string]string{
		"newsletter":                "Our monthly letter about new features.",
		"surveys":                   "Surveys in English for everyone.",
		"research":                  "Research with a partner university.",
		"aggregate_statistics":      "Counting you in generic aggregated demographics (never linked to you, small groups suppressed, noise added) that partners and advertisers may see.",
		"essential":                 "Running your account: signing you in, keeping it secure and answering your requests.",
		"newsletter.name":           "Newsletter",
		"research.name":             "Research", // made from the id
		"aggregate_statistics.name": "Aggregate statistics",
	}
	ja := map[string]string{
		"newsletter":                "新機能をお知らせする月刊のお便りです。",
		"surveys":                   "Surveys in English for everyone.",    // one text for every language
		"research":                  "Research with a partner university.", // no Japanese given: English
		"aggregate_statistics":      "提携先や広告主が閲覧できる、一般的な属性別の集計にあなたを含めます（あなた個人と結び付けられることはなく、少人数のグループは表示されず、数値にはノイズが加えられます）。",
		"essential":                 "アカウントの運用に利用します（ログイン、アカウントの安全の確保、お問い合わせへの対応）。",
		"newsletter.name":           "ニュースレター",
		"research.name":             "Research",
		"aggregate_statistics.name": "集計統計",
	}
	for header, want := range map[string]map[string]string{
		"":                        en,
		"en-GB":                   en,
		"de-DE,de;q=0.9":          en, // no German catalogue: the fallback
		"ja":                      ja,
		"ja-JP,ja;q=0.9,en;q=0.8": ja,
		"de,ja;q=0.5":             ja, // the best language that exists
	} {
		got := descriptions(header)
		for id, text := range want {
			if got[id] != text {
				t.Errorf("Accept-Language %q: %s = %q, want %q", header, id, got[id], text)
			}
		}
	}

	// Anonymous GET answers may be cached; they differ by language now.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?query="+url.QueryEscape(q), nil)
	req.Header.Set("Accept-Language", "ja")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "アカウントの運用") || !strings.Contains(res.Header.Get("Vary"), "Accept-Language") {
		t.Errorf("cacheable GET in Japanese: Vary %q, body %s", res.Header.Get("Vary"), body)
	}

	// A processor's description per language, where the Privacy Center
	// shows it: beside its purpose.
	for header, want := range map[string]string{"ja": "自社のメーリングリストサービスです。", "en": "Our mailing list service.", "": "Our mailing list service."} {
		var out struct {
			Purposes []struct {
				ID         string
				Processors []struct{ Name, Description string }
			}
		}
		inLanguage(s.Register(t, "proc-"+header), header).Do(t, `{ purposes { id processors { name description } } }`, nil).Decode(t, &out)
		found := false
		for _, p := range out.Purposes {
			for _, pr := range p.Processors {
				if p.ID == "newsletter" && pr.Name == "letters" {
					found = pr.Description == want
				}
			}
		}
		if !found {
			t.Errorf("Accept-Language %q: the letters processor is not described as %q: %+v", header, want, out.Purposes)
		}
	}

	// The Privacy Center and the consent widget read purposes through the
	// user's consents: the same texts.
	c := inLanguage(s.Register(t, "hanako"), "ja")
	var me struct {
		Me struct {
			Consents []struct {
				Purpose struct{ ID, Description string }
			}
		}
	}
	c.Do(t, `{ me { consents { purpose { id description } } } }`, nil).Decode(t, &me)
	if len(me.Me.Consents) != len(descriptions(""))/2 { // one description and one name per purpose
		t.Fatalf("%d consents", len(me.Me.Consents))
	}
	for _, cs := range me.Me.Consents {
		if cs.Purpose.Description != ja[cs.Purpose.ID] {
			t.Errorf("me.consents %s = %q, want %q", cs.Purpose.ID, cs.Purpose.Description, ja[cs.Purpose.ID])
		}
	}
	var granted struct {
		GrantConsent struct {
			Consent struct{ Purpose struct{ Description string } }
		}
	}
	c.Do(t, `mutation { grantConsent(purpose: "newsletter") { consent { purpose { description } } } }`, nil).Decode(t, &granted)
	if got := granted.GrantConsent.Consent.Purpose.Description; got != ja["newsletter"] {
		t.Errorf("grantConsent's purpose: %q", got)
	}
}

// TestReceiptsInTheReadersLanguage: a receipt's human text (purpose,
// termination) and its language claim follow the request's language, the
// machine-readable claims do not, and an outside verifier with only the
// JWKS accepts receipts in either language.
func TestReceiptsInTheReadersLanguage(t *testing.T) {
	s := startWithProcessors(t, i18nConfig)
	set := jwksFromServer(t, s)
	cases := []struct {
		header, lang, purpose, termination string
	}{
		{"ja-JP", "ja", "新機能をお知らせする月刊のお便りです。", "撤回されるか、アカウントが削除されるまで"},
		{"en-US", "en", "Our monthly letter about new features.", "until withdrawn or the account is deleted"},
		{"", "en", "Our monthly letter about new features.", "until withdrawn or the account is deleted"},
		{"fr", "en", "Our monthly letter about new features.", "until withdrawn or the account is deleted"},
	}
	for i, tc := range cases {
		c := inLanguage(s.Register(t, "reader"+string(rune('a'+i))), tc.header)
		var out struct{ GrantConsent struct{ Receipt string } }
		c.Do(t, `mutation { grantConsent(purpose: "newsletter") { receipt } }`, nil).Decode(t, &out)
		claims, _, err := verifyWithJWKS(t, set, out.GrantConsent.Receipt)
		if err != nil {
			t.Fatalf("%q: go-jose with the JWKS rejects the receipt: %v", tc.header, err)
		}
		p := claims["services"].([]any)[0].(map[string]any)["purposes"].([]any)[0].(map[string]any)
		if claims["language"] != tc.lang || p["purpose"] != tc.purpose || p["termination"] != tc.termination {
			t.Errorf("Accept-Language %q: language %v, purpose %q, termination %q; want %s, %q, %q",
				tc.header, claims["language"], p["purpose"], p["termination"], tc.lang, tc.purpose, tc.termination)
		}
		if claims["purpose"] != "newsletter" || claims["action"] != "GRANT" || claims["mechanism"] != "OPT_IN" || p["purposeCategory"].([]any)[0] != "newsletter" {
			t.Errorf("%q: machine-readable claims changed with the language: %v", tc.header, claims)
		}
		var check struct {
			VerifyReceipt struct {
				Valid   bool
				Purpose *string
			}
		}
		s.Client().Do(t, `query($r: String!) { verifyReceipt(receipt: $r) { valid purpose } }`, map[string]any{"r": out.GrantConsent.Receipt}).Decode(t, &check)
		if !check.VerifyReceipt.Valid || check.VerifyReceipt.Purpose == nil || *check.VerifyReceipt.Purpose != "newsletter" {
			t.Errorf("%q: verifyReceipt %+v", tc.header, check.VerifyReceipt)
		}
	}

	// Why a receipt is not valid is said in the asker's language too.
	c0 := inLanguage(s.Register(t, "forger"), "")
	var orig struct{ GrantConsent struct{ Receipt string } }
	c0.Do(t, `mutation { grantConsent(purpose: "newsletter") { receipt } }`, nil).Decode(t, &orig)
	parts := strings.Split(orig.GrantConsent.Receipt, ".")
	sig := []byte(parts[2])
	if sig[5] == 'A' { // another base64url letter, early enough to change a byte
		sig[5] = 'B'
	} else {
		sig[5] = 'A'
	}
	forged := parts[0] + "." + parts[1] + "." + string(sig)
	for _, tc := range []struct{ header, receipt, reason string }{
		{"ja", forged, "署名が内容と一致しません。このレシートは改ざんされたか、偽造されたものです"},
		{"en", forged, "the signature does not match the content: the receipt was altered or forged"},
		{"ja-JP", "hello", "コンパクト形式の JWS による同意レシートではありません："},
	} {
		var bad struct {
			VerifyReceipt struct {
				Valid  bool
				Reason *string
			}
		}
		inLanguage(s.Client(), tc.header).Do(t, `query($r: String!) { verifyReceipt(receipt: $r) { valid reason } }`,
			map[string]any{"r": tc.receipt}).Decode(t, &bad)
		if bad.VerifyReceipt.Valid || bad.VerifyReceipt.Reason == nil || !strings.HasPrefix(*bad.VerifyReceipt.Reason, tc.reason) {
			t.Errorf("verifyReceipt in %q: %+v, want a reason starting %q", tc.header, bad.VerifyReceipt, tc.reason)
		}
	}

	// The essential purpose's default receipt ends with the account.
	c := inLanguage(s.Register(t, "essential-reader"), "ja")
	var out struct{ GrantConsent struct{ Receipt string } }
	c.Do(t, `mutation { grantConsent(purpose: "essential") { receipt } }`, nil).Decode(t, &out)
	claims, _, err := verifyWithJWKS(t, set, out.GrantConsent.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	p := claims["services"].([]any)[0].(map[string]any)["purposes"].([]any)[0].(map[string]any)
	c.Do(t, `mutation { withdrawConsent(purpose: "aggregate_statistics") { receipt } }`, nil).Decode(t, &struct{}{})
	var agg struct{ GrantConsent struct{ Receipt string } }
	c.Do(t, `mutation { grantConsent(purpose: "aggregate_statistics") { receipt } }`, nil).Decode(t, &agg)
	aggClaims, _, err := verifyWithJWKS(t, set, agg.GrantConsent.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	ap := aggClaims["services"].([]any)[0].(map[string]any)["purposes"].([]any)[0].(map[string]any)
	if ap["thirdPartyName"] != "提携先および広告主（匿名の集計値のみ）" || ap["thirdPartyDisclosure"] != true {
		t.Errorf("aggregate_statistics receipt in Japanese names its third party %v", ap["thirdPartyName"])
	}
	if p["termination"] != "アカウントが削除されるまで" || p["purpose"] != "アカウントの運用に利用します（ログイン、アカウントの安全の確保、お問い合わせへの対応）。" {
		t.Errorf("essential receipt in Japanese: %v", p)
	}
}

// TestMailInTheRecipientsLanguage sends every account mail through a real
// Mailpit: the profile's language wins when it has a catalogue, else the
// request's, else English; Japanese subjects arrive MIME-encoded (7-bit
// headers) and decode to the exact text.
func TestMailInTheRecipientsLanguage(t *testing.T) {
	s, mp := startWithMail(t)
	register := func(user, addr, profileLang, header string) {
		t.Helper()
		in := map[string]any{"username": user, "password": "correct horse battery", "email": addr}
		if profileLang != "" {
			in["profile"] = map[string]any{"language": profileLang}
		}
		inLanguage(s.Client(), header).Do(t, registerMutation, map[string]any{"in": in}).Decode(t, &struct{}{})
	}
	expect := func(addr, subject, lang string, phrases ...string) mailpittest.Message {
		t.Helper()
		m := mp.WaitFor(t, addr, 15*time.Second)
		if m.Subject != subject || m.Header("Content-Language") != lang {
			t.Errorf("mail to %s: subject %q (%s), want %q (%s)", addr, m.Subject, m.Header("Content-Language"), subject, lang)
		}
		for _, p := range phrases {
			if !strings.Contains(m.Text, p) {
				t.Errorf("mail to %s lacks %q:\n%s", addr, p, m.Text)
			}
		}
		head, _, _ := strings.Cut(string(m.Raw), "\r\n\r\n")
		for _, line := range strings.Split(head, "\r\n") {
			if len(line) > 998 || strings.ContainsFunc(line, func(r rune) bool { return r > 127 }) {
				t.Errorf("mail to %s: header line not 7-bit clean or too long: %q", addr, line)
			}
		}
		if lang == "ja" && !strings.Contains(strings.ToLower(m.Headers["Subject"][0]), "=?utf-8?b?") {
			t.Errorf("mail to %s: raw Subject %q is not an encoded-word", addr, m.Headers["Subject"])
		}
		return m
	}
	const jaVerify, enVerify = "メールアドレスの確認", "Confirm your email address"

	register("hanako", "hanako@example.jp", "ja", "")
	m := expect("hanako@example.jp", jaVerify, "ja", "確認するには、次のリンクを開いてください。", "cgv_", "— Consentgraph")
	register("taro", "taro@example.jp", "", "ja-JP,ja;q=0.9")
	tm := expect("taro@example.jp", jaVerify, "ja", "プライバシーセンターで次のコードを入力してください。")
	register("klaus", "klaus@example.de", "de", "ja") // no German catalogue: the request's language
	expect("klaus@example.de", jaVerify, "ja")
	register("emma", "emma@example.org", "en", "ja") // the profile wins
	expect("emma@example.org", enVerify, "en", "To confirm it, open:")
	register("nobody", "nobody@example.org", "", "")
	expect("nobody@example.org", enVerify, "en")

	// A reset asked for without any language: the profile's.
	var ok struct{ VerifyEmail bool }
	s.Client().Do(t, `mutation($t: String!) { verifyEmail(token: $t) }`, map[string]any{"t": tokenIn(t, m, "cgv_")}).Decode(t, &ok)
	s.Client().Do(t, `mutation { requestPasswordReset(email: "hanako@example.jp") }`, nil).Decode(t, &struct{}{})
	expect("hanako@example.jp", "パスワードの再設定", "ja", "このコードは一度だけ、30 分以内に限り使えます。", "cgr_")

	// Without a profile language, a reset (mailed after the request has
	// answered) follows the language of the request that asked for it.
	s.Client().Do(t, `mutation($t: String!) { verifyEmail(token: $t) }`, map[string]any{"t": tokenIn(t, tm, "cgv_")}).Decode(t, &ok)
	inLanguage(s.Client(), "ja").Do(t, `mutation { requestPasswordReset(email: "taro@example.jp") }`, nil).Decode(t, &struct{}{})
	expect("taro@example.jp", "パスワードの再設定", "ja", "30 分以内")
	inLanguage(s.Client(), "en").Do(t, `mutation { requestPasswordReset(email: "taro@example.jp") }`, nil).Decode(t, &struct{}{})
	expect("taro@example.jp", "Reset your password", "en", "The code works once, within 30 minutes.")

	// Someone adds Hanako's verified address in English: the note goes to
	// Hanako, in her language.
	other := inLanguage(s.Register(t, "intruder"), "en")
	other.Do(t, `mutation { setEmail(email: "hanako@example.jp") { email } }`, nil).Decode(t, &struct{}{})
	expect("hanako@example.jp", "お使いのメールアドレスを別のアカウントに登録しようとする操作がありました", "ja", "おそらくあなたのアカウント")
}

// TestCrossOriginPagesMaySendTheirLanguage: the consent widget on an
// allowed origin sends Accept-Language with its requests. Browsers skip
// the preflight for it only while its value is short and plain, so a
// preflight that names it must be allowed.
func TestCrossOriginPagesMaySendTheirLanguage(t *testing.T) {
	const origin = "https://shop.example.org"
	s := apptest.Start(t, func(c *config.Config) { c.CORSOrigins = []string{origin} })
	req, _ := http.NewRequest(http.MethodOptions, s.URL+"/graphql", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "accept-language,content-type")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), "accept-language") {
		t.Fatalf("a preflight naming Accept-Language was refused: %v", res.Header)
	}
	var out struct {
		Purposes []struct{ Description string }
	}
	c := inLanguage(s.Client(), "ja")
	c.Header.Set("Origin", origin)
	c.Do(t, `{ purposes { description } }`, nil).Decode(t, &out)
	if len(out.Purposes) == 0 || out.Purposes[0].Description != "ニュースレターをメールでお送りします。" {
		t.Fatalf("cross-origin request in Japanese: %+v", out.Purposes)
	}
}
