package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "data" || c.MongoDBURI != "" || c.Dev || c.Argon2MemoryKiB != 19456 ||
		c.DemographicsDelta != 1e-9 || c.DemographicsMaxEpsilon != 1 {
		t.Fatalf("defaults: %+v", c)
	}
}

// Links in mail use the public URL: an address on every interface must not
// turn into "http://:8080".
func TestPublicURLDefaultsToAnAddressABrowserCanOpen(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		":8080":          "http://127.0.0.1:8080",
		"0.0.0.0:9000":   "http://127.0.0.1:9000",
		"[::]:9000":      "http://127.0.0.1:9000",
		"example.org:80": "http://example.org:80",
	} {
		c, err := Load([]string{"--addr", addr}, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.PublicURL != want {
			t.Errorf("--addr %s: public URL %q, want %q", addr, c.PublicURL, want)
		}
	}
	c, err := Load([]string{"--addr", ":8080", "--public-url", "https://privacy.example.org/"}, env(nil), io.Discard)
	if err != nil || c.PublicURL != "https://privacy.example.org" {
		t.Errorf("--public-url: %q, %v", c.PublicURL, err)
	}
}

func TestFlagBeatsEnvironment(t *testing.T) {
	c, err := Load([]string{"--addr", "127.0.0.1:9999"}, env(map[string]string{
		"CONSENTGRAPH_ADDR": "127.0.0.1:7777", "CONSENTGRAPH_SESSION_TTL": "2h",
		"CONSENTGRAPH_CORS_ORIGINS": "https://a.example, https://b.example", "CONSENTGRAPH_DEV": "true",
		"CONSENTGRAPH_DEMOGRAPHICS_DELTA": "1e-6", "CONSENTGRAPH_DEMOGRAPHICS_MAX_EPSILON": "0.5",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9999" || c.SessionTTL != 2*time.Hour || len(c.CORSOrigins) != 2 || !c.Dev ||
		c.DemographicsDelta != 1e-6 || c.DemographicsMaxEpsilon != 0.5 {
		t.Fatalf("got %+v", c)
	}
}

func TestBadSettingsNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"CONSENTGRAPH_SESSION_TTL": "forever"}, "CONSENTGRAPH_SESSION_TTL"},
		{nil, map[string]string{"CONSENTGRAPH_MAX_DEPTH": "deep"}, "CONSENTGRAPH_MAX_DEPTH"},
		{nil, map[string]string{"CONSENTGRAPH_ADMIN_USERNAME": "root"}, "ADMIN_PASSWORD"},
		{[]string{"--cors-origins", "example.org"}, nil, "cors-origins"},
		{[]string{"--log-level", "loud"}, nil, "log-level"},
		{[]string{"stray"}, nil, "unexpected argument"},
		{nil, map[string]string{"CONSENTGRAPH_DEMOGRAPHICS_DELTA": "tiny"}, "CONSENTGRAPH_DEMOGRAPHICS_DELTA"},
		{[]string{"--demographics-delta", "0"}, nil, "demographics-delta"},
		{[]string{"--demographics-delta", "0.01"}, nil, "demographics-delta"},
		{[]string{"--demographics-max-epsilon", "0"}, nil, "demographics-max-epsilon"},
		{[]string{"--demographics-max-epsilon", "-1"}, nil, "demographics-max-epsilon"},
		{[]string{"--demographics-max-epsilon", "11"}, nil, "demographics-max-epsilon"},
	} {
		_, err := Load(tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: err %v, want mention of %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestCORSOriginsMustBeExact(t *testing.T) {
	for _, o := range []string{"http://*", "https://*.example.com", "*", "https://app.example.com/", "https://app.example.com/path",
		"app.example.com", "https://App.example.com", "https://user@app.example.com", "https://app.example.com?x=1", "https://"} {
		_, err := Load([]string{"--cors-origins", o}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "cors-origins") {
			t.Errorf("%q accepted (err %v)", o, err)
		}
	}
	c, err := Load([]string{"--cors-origins", "https://app.example.com, http://localhost:3000"}, func(string) string { return "" }, io.Discard)
	if err != nil || len(c.CORSOrigins) != 2 {
		t.Fatalf("exact origins refused: %v %v", c.CORSOrigins, err)
	}
}

func TestCORSHeadersMustBeHeaderNames(t *testing.T) {
	c, err := Load([]string{"--cors-headers", "apollographql-client-name, X-Trace"}, func(string) string { return "" }, io.Discard)
	if err != nil || len(c.CORSHeaders) != 2 {
		t.Fatalf("valid header names refused: %v %v", c.CORSHeaders, err)
	}
	for _, h := range []string{"bad header", "x:y", "ü"} {
		if _, err := Load([]string{"--cors-headers", h}, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "cors-headers") {
			t.Errorf("%q accepted (err %v)", h, err)
		}
	}
}
