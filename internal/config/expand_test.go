package config_test

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/config"
)

func TestExpandProcessorSettings(t *testing.T) {
	f, err := config.ParseFile("c.yaml", []byte(`
processors:
  - name: news
    type: mailchimp
    settings:
      apiKey: ${MC_KEY}
      listId: 1234
      baseURL: https://${MC_DC}.api.mailchimp.com
      literal: "cost $${NOT_A_VAR}"
  - name: crm
    type: http
    settings:
      headers: {Authorization: "Bearer ${CRM_TOKEN}", X-Plain: plain}
      urls: ["${CRM_URL}/a", plain]
`))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MC_KEY": "k-us21", "MC_DC": "us21", "CRM_TOKEN": "tok", "CRM_URL": "https://crm"}
	var logs bytes.Buffer
	if err := f.ExpandProcessorSettings(func(k string) string { return env[k] }, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"apiKey": "k-us21", "listId": uint64(1234), "baseURL": "https://us21.api.mailchimp.com", "literal": "cost ${NOT_A_VAR}"}
	if got := f.Processors[0].Settings; !reflect.DeepEqual(got, want) {
		t.Errorf("news settings %#v, want %#v", got, want)
	}
	crm := f.Processors[1].Settings
	if h := crm["headers"].(map[string]any); h["Authorization"] != "Bearer tok" || h["X-Plain"] != "plain" {
		t.Errorf("headers %v", h)
	}
	if u := crm["urls"].([]any); u[0] != "https://crm/a" || u[1] != "plain" {
		t.Errorf("urls %v", u)
	}
	if logs.Len() != 0 {
		t.Errorf("warned although every secret comes from the environment: %s", logs.String())
	}
}

func TestExpandProcessorSettingsMissingAndClearSecrets(t *testing.T) {
	f, err := config.ParseFile("c.yaml", []byte(`
processors:
  - name: news
    type: mailchimp
    settings: {apiKey: "${MC_KEY}", listId: L}
  - name: hook
    type: webhook
    settings: {url: https://h.example.org, secret: whsec_abc, auth: {token: "${HOOK_TOKEN}"}}
  - name: mail
    type: smtp_newsletter
    settings: {smtpURL: "smtp://u:pw@mail.example.org:587?from=a@example.org"}
`))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	err = f.ExpandProcessorSettings(func(string) string { return "" }, slog.New(slog.NewTextHandler(&logs, nil)))
	if err == nil {
		t.Fatal("missing variables accepted")
	}
	for _, want := range []string{
		"config file c.yaml", "processors[0] (news): settings.apiKey: environment variable MC_KEY is not set",
		"processors[1] (hook): settings.auth.token: environment variable HOOK_TOKEN is not set",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for _, want := range []string{"processors[1] (hook)", "setting=settings.secret", "processors[2] (mail)", "setting=settings.smtpURL"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no clear-secret warning with %q in %s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "settings.url") || strings.Contains(logs.String(), "listId") {
		t.Errorf("warned about a setting that is no secret: %s", logs.String())
	}
}
