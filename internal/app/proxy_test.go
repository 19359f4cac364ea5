package app_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

// registerVia signs a new user up with the given extra headers, as a
// browser behind a proxy would, and returns the response.
func registerVia(t *testing.T, s *apptest.Server, username string, headers map[string]string) *http.Response {
	t.Helper()
	body := `{"query":"mutation { register(input: {username: \"` + username + `\", password: \"correct horse battery\"}) { token } }"}`
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"token"`) {
		t.Fatalf("register %s: %d %s", username, res.StatusCode, b)
	}
	return res
}

func sessionCookie(t *testing.T, res *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range res.Cookies() {
		if c.Name == "cg_session" {
			return c
		}
	}
	t.Fatalf("no session cookie in %v", res.Header.Values("Set-Cookie"))
	return nil
}

func TestSecureCookieAndHSTSBehindAProxy(t *testing.T) {
	trusting := apptest.Start(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.0/8", "::1/128"} })
	untrusting := apptest.Start(t)
	public := apptest.Start(t, func(c *config.Config) { c.PublicURL = "https://privacy.example.org" })
	for i, tc := range []struct {
		name    string
		server  *apptest.Server
		headers map[string]string
		secure  bool
	}{
		{"trusted proxy says https", trusting, map[string]string{"X-Forwarded-Proto": "https"}, true},
		{"trusted proxy, plain http", trusting, nil, false},
		{"trusted proxy appends http after a client's https", trusting, map[string]string{"X-Forwarded-Proto": "https, http"}, false},
		{"untrusted peer claims https", untrusting, map[string]string{"X-Forwarded-Proto": "https"}, false},
		{"https public URL alone", public, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := registerVia(t, tc.server, fmt.Sprintf("proxy-user-%d", i), tc.headers)
			if c := sessionCookie(t, res); c.Secure != tc.secure || !c.HttpOnly {
				t.Errorf("session cookie Secure=%v HttpOnly=%v, want Secure=%v", c.Secure, c.HttpOnly, tc.secure)
			}
			if hsts := res.Header.Get("Strict-Transport-Security"); (hsts != "") != tc.secure {
				t.Errorf("HSTS %q, want it sent: %v", hsts, tc.secure)
			}
		})
	}
}

func getMetrics(t *testing.T, s *apptest.Server, headers map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/metrics", nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestMetricsAreNotPublic(t *testing.T) {
	t.Run("with a token", func(t *testing.T) {
		s := apptest.Start(t, func(c *config.Config) { c.MetricsToken = "metrics-secret-1" })
		for _, h := range []map[string]string{nil, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic metrics-secret-1"}} {
			if code, body := getMetrics(t, s, h); code != http.StatusUnauthorized || strings.Contains(body, "consentgraph_") {
				t.Errorf("%v: %d %.80s", h, code, body)
			}
		}
		if code, body := getMetrics(t, s, map[string]string{"Authorization": "Bearer metrics-secret-1"}); code != http.StatusOK || !strings.Contains(body, "consentgraph_") {
			t.Errorf("with the token: %d %.200s", code, body)
		}
	})
	t.Run("without a token only loopback", func(t *testing.T) {
		s := apptest.Start(t)
		if code, body := getMetrics(t, s, nil); code != http.StatusOK || !strings.Contains(body, "consentgraph_") {
			t.Errorf("from loopback: %d %.200s", code, body)
		}
		// A proxy on this machine forwarding a remote client must not open it.
		proxied := apptest.Start(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.0/8", "::1/128"} })
		if code, body := getMetrics(t, proxied, map[string]string{"X-Forwarded-For": "203.0.113.9"}); code != http.StatusForbidden || strings.Contains(body, "consentgraph_") {
			t.Errorf("remote client through a local proxy: %d %.200s", code, body)
		}
		// A client's own X-Forwarded-For is not believed from an untrusted peer.
		if code, _ := getMetrics(t, s, map[string]string{"X-Forwarded-For": "203.0.113.9"}); code != http.StatusOK {
			t.Errorf("loopback client with a forged header: %d", code)
		}
	})
}
