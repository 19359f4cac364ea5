package smtpnewsletter_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/plugintest"
	"github.com/consentgraph/consentgraph/plugins/smtpnewsletter"
)

// deliver builds an instance with settings, delivers to email and returns
// the mail Mailpit received.
func deliver(t *testing.T, mp *mailpittest.Server, email string, settings map[string]any) (*smtpnewsletter.Processor, mailpittest.Message) {
	t.Helper()
	settings["smtpURL"] = mp.SMTPURL()
	p, err := smtpnewsletter.New(plugintest.NewEnv(t, smtpnewsletter.Type, "letters", settings))
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Deliver(context.Background(), plugins.Request{ID: "w-" + strings.ReplaceAll(email, "@", "-"), Subject: "s-" + email, Attempt: 1,
		Fields: map[string]string{plugins.CategoryEmail: email}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Link == nil || res.Link.State != plugins.LinkPendingConfirmation {
		t.Fatalf("link after the mail: %+v", res.Link)
	}
	return p.(*smtpnewsletter.Processor), mp.WaitFor(t, email, 10*time.Second)
}

// inOrder fails unless every part occurs in s, each after the one before.
func inOrder(t *testing.T, what, s string, parts ...string) {
	t.Helper()
	at := 0
	for _, p := range parts {
		i := strings.Index(s[at:], p)
		if i < 0 {
			t.Errorf("%s: %q missing (or out of order) in %q", what, p, s)
			return
		}
		at += i + len(p)
	}
}

const linkPrefix = "http://consentgraph.test/plugins/letters/confirm?token="

// The confirmation mail through a real SMTP server: by default in English
// and Japanese in one mail (English first, a separator line between, the
// subject joined and MIME-encoded); in the configured languages' order;
// in one language when the settings give one; and the confirmation page
// answers in the mail's languages.
func TestConfirmationMailLanguages(t *testing.T) {
	mp := mailpittest.Start(t)

	p, m := deliver(t, mp, "both@example.org", map[string]any{})
	const subject = "Please confirm your subscription to our newsletter / ニュースレターの購読確認のお願い"
	if m.Subject != subject {
		t.Errorf("subject = %q, want %q", m.Subject, subject)
	}
	if raw := m.Header("Subject"); !strings.Contains(raw, "=?utf-8?") {
		t.Errorf("the Subject header is not MIME-encoded: %q", raw)
	}
	inOrder(t, "default body", m.Text, "you asked to receive our newsletter", linkPrefix, "――――",
		"ニュースレターの購読お申し込みを受け付けました", linkPrefix, "購読は開始されません。")
	if n := strings.Count(m.Text, linkPrefix); n != 2 {
		t.Errorf("the link occurs %d times, want once per language", n)
	}
	token := strings.Fields(m.Text[strings.Index(m.Text, linkPrefix)+len(linkPrefix):])[0]
	page := httptest.NewRecorder()
	p.Handler().ServeHTTP(page, httptest.NewRequest(http.MethodGet, "/plugins/letters/confirm?token="+token, nil))
	body, _ := io.ReadAll(page.Result().Body)
	if page.Code != http.StatusOK {
		t.Fatalf("confirm answered %d: %s", page.Code, body)
	}
	inOrder(t, "confirmation page", string(body), "your subscription to our newsletter is confirmed", "ニュースレターの購読が確定しました")
	again := httptest.NewRecorder()
	p.Handler().ServeHTTP(again, httptest.NewRequest(http.MethodGet, "/plugins/letters/confirm?token="+token, nil))
	if body, _ := io.ReadAll(again.Result().Body); again.Code != http.StatusNotFound || !strings.Contains(string(body), "この確認リンクは無効") {
		t.Errorf("a used link answered %d: %s", again.Code, body)
	}

	_, m = deliver(t, mp, "ordered@example.org", map[string]any{
		"languages": []any{"ja", "en"},
		"listName":  map[string]any{"en": "the Example letter", "ja": "Exampleレター"},
		"subject":   map[string]any{"en": "Confirm {list}", "ja": "{list}の確認"},
	})
	if m.Subject != "Exampleレターの確認 / Confirm the Example letter" {
		t.Errorf("ordered subject = %q", m.Subject)
	}
	inOrder(t, "ordered body", m.Text, "Exampleレターの購読お申し込み", linkPrefix, "――――", "you asked to receive the Example letter", linkPrefix)

	_, m = deliver(t, mp, "one@example.org", map[string]any{
		"listName": "Weekly", "subject": "Confirm {list}",
		"text": "Open {link} to receive {list}.",
	})
	if m.Subject != "Confirm Weekly" {
		t.Errorf("single-language subject = %q", m.Subject)
	}
	if !strings.HasPrefix(m.Text, "Open "+linkPrefix) || !strings.Contains(m.Text, " to receive Weekly.") ||
		strings.Contains(m.Text, "――") || strings.Count(m.Text, linkPrefix) != 1 {
		t.Errorf("single-language body = %q", m.Text)
	}
	if strings.ContainsFunc(m.Text+m.Subject, func(r rune) bool { return r > 0x7f }) {
		t.Errorf("a single English setting gave a mail with other scripts: %q", m.Text)
	}

	_, m = deliver(t, mp, "ja@example.org", map[string]any{
		"text": map[string]any{"ja": "{list}の購読は {link} から確定できます。"},
	})
	if m.Subject != "ニュースレターの購読確認のお願い" || strings.Contains(m.Text, "Hello") || !strings.Contains(m.Text, "ニュースレターの購読は "+linkPrefix) {
		t.Errorf("Japanese only: subject %q, body %q", m.Subject, m.Text)
	}
}

// Bad texts stop start-up, naming the setting.
func TestBadTextSettings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings map[string]any
		want     string
	}{
		{"unknown shape", map[string]any{"subject": []any{"a"}}, "settings.subject: want a text or a mapping"},
		{"empty text", map[string]any{"text": ""}, "settings.text must not be empty"},
		{"empty language", map[string]any{"listName": map[string]any{"en": "A", "ja": " "}}, "settings.listName.ja must not be empty"},
		{"no link", map[string]any{"text": "Welcome to {list}."}, "settings.text must contain {link}"},
		{"no link in ja", map[string]any{"text": map[string]any{"en": "{link}", "ja": "確認してください"}}, "settings.text.ja must contain {link}"},
		{"unknown placeholder", map[string]any{"subject": "Hi {name}"}, "settings.subject: unknown placeholder {name}"},
		{"language missing", map[string]any{"subject": map[string]any{"en": "A"}, "text": map[string]any{"en": "{link}", "ja": "{link}"}}, "settings.subject.ja is required"},
		{"no built-in text", map[string]any{"languages": []any{"fr"}}, `settings.listName: there is no built-in text in "fr"`},
		{"not a language", map[string]any{"subject": map[string]any{"English": "A"}}, `settings.subject.English: "English" is not a language tag`},
		{"two-line subject", map[string]any{"subject": "A\nB"}, "settings.subject must be one line"},
		{"no languages", map[string]any{"languages": []any{}}, "settings.languages must name at least one language"},
		{"languages twice", map[string]any{"languages": []any{"en", "en"}}, `settings.languages[1]: "en" is named twice`},
		{"languages not a tag", map[string]any{"languages": []any{"Japanese"}}, `settings.languages[0]: "Japanese" is not a language tag`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.settings["smtpURL"] = "smtp://127.0.0.1:2525?from=news@example.org"
			_, err := smtpnewsletter.New(plugintest.NewEnv(t, smtpnewsletter.Type, "letters", tc.settings))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
