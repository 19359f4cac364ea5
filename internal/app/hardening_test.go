package app_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/httpsec"
)

func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("%s: Content-Security-Policy %q", what, csp)
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	s := apptest.Start(t)
	for _, path := range []string{"/healthz", "/.well-known/jwks.json", "/no-such-page", "/graphql?query=%7Bpolicy%7Bversion%7D%7D", "/export"} {
		res, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		checkSecurityHeaders(t, "GET "+path, res.Header)
		if res.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("GET %s: HSTS over plain HTTP", path)
		}
	}
	r := s.Client().Post(t, "application/json", []byte(`{"query": "{ policy { version"}`))
	checkSecurityHeaders(t, "POST /graphql with a parse error", r.Header)
}

func TestHTTPSWithHSTSAndSecureCookie(t *testing.T) {
	s := apptest.Start(t)
	cert, _, err := httpsec.DevCertificate("")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s.App.Handler())
	hs.TLS = httpsec.TLSConfig()
	hs.TLS.Certificates = []tls.Certificate{cert}
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	hs.StartTLS()
	defer hs.Close()
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := client.Post(hs.URL+"/graphql", "application/json",
		strings.NewReader(`{"query":"mutation { register(input: {username: \"tls-user\", password: \"correct horse battery\"}) { token } }"}`))
	if err != nil {
		t.Fatalf("HTTPS with the dev certificate: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("register over HTTPS: status %d", res.StatusCode)
	}
	if h := res.Header.Get("Strict-Transport-Security"); !strings.Contains(h, "max-age=") {
		t.Errorf("no HSTS over HTTPS: %q", h)
	}
	checkSecurityHeaders(t, "HTTPS register", res.Header)
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "cg_session" {
			session = c
		}
	}
	if session == nil || !session.Secure || !session.HttpOnly {
		t.Fatalf("session cookie over HTTPS must be Secure and HttpOnly: %+v", session)
	}

	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if res, err := old.Get(hs.URL + "/healthz"); err == nil {
		res.Body.Close()
		t.Fatal("a TLS 1.1 client was served")
	}
	weak := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}}}
	if res, err := weak.Get(hs.URL + "/healthz"); err == nil {
		res.Body.Close()
		t.Fatal("a client offering only a CBC cipher suite was served")
	}
}

func limited(perMinute, authPerMinute, partnerPerMinute int) apptest.Option {
	return func(c *config.Config) {
		c.RateLimits = true
		c.MutationsPerMinute, c.AuthPerMinute, c.PartnerPerMinute = perMinute, authPerMinute, partnerPerMinute
	}
}

func checkRateLimited(t *testing.T, what string, r *apptest.Response) {
	t.Helper()
	if r.Code() != "RATE_LIMITED" {
		t.Fatalf("%s: want RATE_LIMITED, got %s", what, r.Raw)
	}
	secs, _ := r.Errors[0].Extensions["retryAfterSeconds"].(float64)
	if secs < 1 {
		t.Fatalf("%s: no retryAfterSeconds: %s", what, r.Raw)
	}
	if h, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || h < 1 {
		t.Fatalf("%s: Retry-After header %q", what, r.Header.Get("Retry-After"))
	}
}

const logoutMutation = `mutation { logout }`

func TestMutationsAreRateLimitedPerIP(t *testing.T) {
	s := apptest.Start(t, limited(10, 100, 100)) // burst 5
	c := s.Client()
	for i := range 5 {
		if r := c.Do(t, logoutMutation, nil); len(r.Errors) > 0 {
			t.Fatalf("mutation %d within the burst: %s", i, r.Raw)
		}
	}
	checkRateLimited(t, "sixth mutation", c.Do(t, logoutMutation, nil))
	// Another client on the same IP shares the budget; queries are not charged.
	checkRateLimited(t, "other client, same IP", s.Client().Do(t, logoutMutation, nil))
	if r := c.Do(t, `{ policy { version } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("queries are not mutation-limited: %s", r.Raw)
	}
}

func TestAliasedMutationsCountOneByOne(t *testing.T) {
	s := apptest.Start(t, limited(10, 100, 100)) // burst 5
	c := s.Client()
	aliased := func(n int) string {
		var b strings.Builder
		b.WriteString("mutation {")
		for i := range n {
			b.WriteString(" m" + strconv.Itoa(i) + `: logout`)
		}
		b.WriteString(" }")
		return b.String()
	}
	r := c.Do(t, aliased(6), nil)
	checkRateLimited(t, "six aliases when five are allowed", r)
	if !strings.Contains(r.Errors[0].Message, "at most 5") {
		t.Fatalf("message should name the cap: %s", r.Raw)
	}
	if r := c.Do(t, aliased(3), nil); len(r.Errors) > 0 {
		t.Fatalf("three aliases: %s", r.Raw)
	}
	checkRateLimited(t, "three more aliases (6 of 5)", c.Do(t, `mutation { ...f } fragment f on Mutation { a: logout b: logout c: logout }`, nil))
}

func TestRegisterAndLoginAreLimitedPerIP(t *testing.T) {
	s := apptest.Start(t, limited(1000, 10, 100)) // 5 sign-ups or sign-ins at once
	for i := range 5 {
		s.Register(t, "burst-"+strconv.Itoa(i))
	}
	r := s.Client().Do(t, `mutation { register(input: {username: "one-too-many", password: "correct horse battery"}) { token } }`, nil)
	checkRateLimited(t, "sixth sign-up", r)
	checkRateLimited(t, "login after five sign-ups", s.Client().Do(t, `mutation { login(username: "burst-0", password: "correct horse battery") { token } }`, nil))
}

func TestFailedLoginsBackOffWithoutLockingOut(t *testing.T) {
	s := apptest.Start(t, limited(1000, 1000, 100))
	s.Register(t, "victim")
	login := func(pw string) *apptest.Response {
		return s.Client().Do(t, `mutation($p: String!) { login(username: "victim", password: $p) { token } }`, map[string]any{"p": pw})
	}
	for i := range 4 { // three free failures, the fourth starts a 1s wait
		if r := login("wrong password!"); r.Code() != "UNAUTHENTICATED" {
			t.Fatalf("failure %d: %s", i+1, r.Raw)
		}
	}
	r := login("wrong password!")
	checkRateLimited(t, "attempt during the back-off", r)
	checkRateLimited(t, "the right password during the back-off", login("correct horse battery"))
	// A refused attempt does not extend the wait: after it the owner gets in.
	time.Sleep(1100 * time.Millisecond)
	if r := login("correct horse battery"); len(r.Errors) > 0 {
		t.Fatalf("owner after the back-off: %s", r.Raw)
	}
	// Success resets the account: the next failure is free again.
	if r := login("wrong password!"); r.Code() != "UNAUTHENTICATED" {
		t.Fatalf("failure after a success: %s", r.Raw)
	}
	// An unknown username is slowed down the same way (no hint it is unknown).
	for range 4 {
		s.Client().Do(t, `mutation { login(username: "nobody-here", password: "wrong password!") { token } }`, nil)
	}
	checkRateLimited(t, "unknown username", s.Client().Do(t, `mutation { login(username: "nobody-here", password: "x") { token } }`, nil))
}

func TestPartnerKeysHaveTheirOwnRate(t *testing.T) {
	s, admin := apptest.StartWithAdmin(t, limited(1000, 1000, 10)) // burst 5
	_, partner := createPartner(t, s, admin, 3, 30)
	for i := range 5 {
		if r := partner.Do(t, partnerMeQuery, nil); len(r.Errors) > 0 {
			t.Fatalf("partner request %d: %s", i, r.Raw)
		}
	}
	checkRateLimited(t, "sixth partner request", partner.Do(t, partnerMeQuery, nil))
	if r := admin.Do(t, `{ partners { totalCount } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("the admin is not limited by the partner's rate: %s", r.Raw)
	}
}

func TestGetIsOnlyForQueries(t *testing.T) {
	s := apptest.Start(t)
	res, err := http.Get(s.URL + "/graphql?query=" + url.QueryEscape(`mutation { logout }`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "POST" {
		t.Fatalf("mutation over GET: status %d, Allow %q; want 405 and POST", res.StatusCode, res.Header.Get("Allow"))
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?query="+url.QueryEscape(`{ policy { version } }`), nil)
	req.Header.Set("Accept", "application/graphql-response+json")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/graphql-response+json") {
		t.Fatalf("query over GET: status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// Behind a trusted load balancer each client gets its own limits; an
// untrusted peer cannot dodge its limit by forging X-Forwarded-For.
func TestTrustedProxyClientAddress(t *testing.T) {
	signup := func(s *apptest.Server, name, xff string) *apptest.Response {
		c := s.Client()
		if xff != "" {
			c.Header.Set("X-Forwarded-For", xff)
		}
		return c.Do(t, `mutation($u: String!) { register(input: {username: $u, password: "correct horse battery"}) { token } }`, map[string]any{"u": name})
	}
	behindLB := apptest.Start(t, limited(1000, 10, 100), func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} })
	for i := range 5 {
		if r := signup(behindLB, "lb-a-"+strconv.Itoa(i), "203.0.113.7"); len(r.Errors) > 0 {
			t.Fatalf("sign-up %d of client A: %s", i, r.Raw)
		}
	}
	checkRateLimited(t, "client A's sixth sign-up", signup(behindLB, "lb-a-6", "203.0.113.7"))
	// Client B behind the same balancer has its own budget; a forged hop on
	// the left of the list does not change who B is.
	if r := signup(behindLB, "lb-b-0", "203.0.113.7, 198.51.100.9"); len(r.Errors) > 0 {
		t.Fatalf("client B was limited by client A's sign-ups: %s", r.Raw)
	}

	direct := apptest.Start(t, limited(1000, 10, 100))
	for i := range 5 {
		if r := signup(direct, "d-"+strconv.Itoa(i), "198.51.100."+strconv.Itoa(i)); len(r.Errors) > 0 {
			t.Fatalf("sign-up %d: %s", i, r.Raw)
		}
	}
	checkRateLimited(t, "untrusted peer forging X-Forwarded-For", signup(direct, "d-6", "192.0.2.99"))
}
