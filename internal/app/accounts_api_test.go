package app_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

const registerMutation = `mutation($in: RegisterInput!) {
  register(input: $in) { token expiresAt user { id username role email emailVerified profile { birthYear country gender language } createdAt } }
}`

const meQuery = `{ me { id username email profile { country } } }`

// countUsers counts every stored account: those in use (EachAccount) and
// those whose erasure began and did not finish (Erasing), so an erasure
// that stopped half-way still counts.
func countUsers(t *testing.T, s *apptest.Server) int64 {
	t.Helper()
	ctx := context.Background()
	var n int64
	if err := s.Store().Accounts().EachAccount(ctx, func(*accounts.Record) error { n++; return nil }); err != nil {
		t.Fatalf("count users: %v", err)
	}
	erasing, err := s.Store().Accounts().Erasing(ctx)
	if err != nil {
		t.Fatalf("count users being erased: %v", err)
	}
	return n + int64(len(erasing))
}

func TestRegisterLoginMeLogout(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Client()
	r := c.Do(t, registerMutation, map[string]any{"in": map[string]any{
		"username": "Alice.Example", "password": "correct horse battery", "email": "alice@Example.org",
		"profile": map[string]any{"birthYear": 1990, "country": "de", "gender": "FEMALE", "language": "EN"},
	}})
	var reg struct {
		Register struct {
			Token string
			User  struct {
				ID, Username, Role string
				Email              *string
				Profile            struct {
					BirthYear         *int
					Country, Language *string
					Gender            *string
				}
			}
		}
	}
	r.Decode(t, &reg)
	u := reg.Register.User
	if u.Username != "Alice.Example" || u.Role != "USER" || u.Email == nil || *u.Email != "alice@example.org" {
		t.Fatalf("registered user = %+v", u)
	}
	if *u.Profile.Country != "DE" || *u.Profile.Language != "en" || *u.Profile.BirthYear != 1990 || *u.Profile.Gender != "FEMALE" {
		t.Fatalf("profile not normalized: %+v", u.Profile)
	}
	if !strings.HasPrefix(reg.Register.Token, "cgs_") || len(reg.Register.Token) < 40 {
		t.Fatalf("token %q is not an opaque 256-bit token", reg.Register.Token)
	}

	// Sign in again with the username in another case, by Bearer token.
	bearer := s.Client()
	r = bearer.Do(t, `mutation { login(username: "alice.example", password: "correct horse battery") { token user { username } } }`, nil)
	var login struct{ Login struct{ Token string } }
	r.Decode(t, &login)
	bearer.Token = login.Login.Token
	var me struct {
		Me *struct{ ID, Username string }
	}
	bearer.Do(t, meQuery, nil).Decode(t, &me)
	if me.Me == nil || me.Me.ID != u.ID {
		t.Fatalf("me by bearer = %+v, want %s", me.Me, u.ID)
	}

	// The registering client is signed in by its cookie alone.
	me.Me = nil
	c.Do(t, meQuery, nil).Decode(t, &me)
	if me.Me == nil || me.Me.Username != "Alice.Example" {
		t.Fatalf("me by cookie = %+v", me.Me)
	}
	var out struct{ Logout bool }
	c.Do(t, `mutation { logout }`, nil).Decode(t, &out)
	if !out.Logout {
		t.Fatal("logout returned false for a signed-in session")
	}
	c.Do(t, meQuery, nil).Decode(t, &me)
	if me.Me != nil {
		t.Fatalf("me after logout = %+v, want null", me.Me)
	}
	// The cookie session is revoked server-side, not just forgotten by the client.
	replay := s.Client()
	replay.Token = reg.Register.Token
	replay.Do(t, meQuery, nil).Decode(t, &me)
	if me.Me != nil {
		t.Fatal("a logged-out token still authenticates")
	}
	// The other session is unaffected.
	bearer.Do(t, meQuery, nil).Decode(t, &me)
	if me.Me == nil {
		t.Fatal("logout ended an unrelated session")
	}
}

func TestSessionCookieAttributes(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Client()
	r := c.Do(t, registerMutation, map[string]any{"in": map[string]any{"username": "cookie", "password": "correct horse battery"}})
	if len(r.Errors) > 0 {
		t.Fatalf("register: %s", r.Raw)
	}
	var cookie *http.Cookie
	for _, h := range r.Header.Values("Set-Cookie") {
		cs, err := http.ParseSetCookie(h)
		if err == nil && cs.Name == "cg_session" {
			cookie = cs
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Value == "" {
		t.Fatalf("session cookie = %+v", cookie)
	}
}

func TestUsernameUniqueIgnoringCase(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	s.Register(t, "Bob")
	r := s.Client().Do(t, registerMutation, map[string]any{"in": map[string]any{"username": "bOB", "password": "another password"}})
	if r.Code() != "CONFLICT" || r.Field() != "input.username" {
		t.Fatalf("duplicate username: code %q field %q: %s", r.Code(), r.Field(), r.Raw)
	}
	if n := countUsers(t, s); n != 1 {
		t.Fatalf("%d users stored, want 1", n)
	}
}

func TestConcurrentRegistrationsOfOneUsername(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	const n = 50
	codes := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.Client().Do(t, registerMutation, map[string]any{"in": map[string]any{
				"username": "Racer", "password": fmt.Sprintf("password number %d", i)}})
			codes[i] = r.Code()
		}()
	}
	wg.Wait()
	ok, conflicts := 0, 0
	for _, c := range codes {
		switch c {
		case "":
			ok++
		case "CONFLICT":
			conflicts++
		default:
			t.Errorf("unexpected code %q", c)
		}
	}
	if ok != 1 || conflicts != n-1 {
		t.Fatalf("%d succeeded and %d conflicted; want 1 and %d", ok, conflicts, n-1)
	}
	if c := countUsers(t, s); c != 1 {
		t.Fatalf("%d users stored, want 1", c)
	}
}

func TestBadInputsChangeNothing(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	reg := func(in map[string]any) []byte {
		return []byte(fmt.Sprintf(`{"query": %q, "variables": {"in": %s}}`, registerMutation, mustJSON(in)))
	}
	var aliases strings.Builder
	aliases.WriteString("{")
	for i := range 20 { // 20 long pages of history: under the field cap, over the cost limit
		fmt.Fprintf(&aliases, " a%d: me { consentHistory(first: 100) { edges { node { hash } } } }", i)
	}
	aliases.WriteString(" }")
	cases := []struct {
		name        string
		contentType string
		body        []byte
		status      int
		code, field string
	}{
		{"short password", "application/json", reg(map[string]any{"username": "valid", "password": "short"}), 200, "BAD_USER_INPUT", "input.password"},
		{"long password", "application/json", reg(map[string]any{"username": "valid", "password": strings.Repeat("p", 129)}), 200, "BAD_USER_INPUT", "input.password"},
		{"bad username chars", "application/json", reg(map[string]any{"username": "al ice!", "password": "correct horse battery"}), 200, "BAD_USER_INPUT", "input.username"},
		{"short username", "application/json", reg(map[string]any{"username": "al", "password": "correct horse battery"}), 200, "BAD_USER_INPUT", "input.username"},
		{"unknown country", "application/json", reg(map[string]any{"username": "valid", "password": "correct horse battery", "profile": map[string]any{"country": "XY"}}), 200, "BAD_USER_INPUT", "input.profile.country"},
		{"bad language", "application/json", reg(map[string]any{"username": "valid", "password": "correct horse battery", "profile": map[string]any{"language": "english"}}), 200, "BAD_USER_INPUT", "input.profile.language"},
		{"future birth year", "application/json", reg(map[string]any{"username": "valid", "password": "correct horse battery", "profile": map[string]any{"birthYear": 2030}}), 200, "BAD_USER_INPUT", "input.profile.birthYear"},
		{"bad email", "application/json", reg(map[string]any{"username": "valid", "password": "correct horse battery", "email": "not-an-address"}), 200, "BAD_USER_INPUT", "input.email"},
		{"malformed JSON", "application/json", []byte(`{"query": "mutation { register(`), 400, "BAD_REQUEST", ""},
		{"oversized body", "application/json", []byte(`{"query": "` + strings.Repeat(" ", 70<<10) + `{ me { id } }"}`), 413, "PAYLOAD_TOO_LARGE", ""},
		{"over complexity limit", "application/json", []byte(fmt.Sprintf(`{"query": %q}`, aliases.String())), 0, "COMPLEXITY_LIMIT_EXCEEDED", ""},
		{"introspection off", "application/json", []byte(`{"query": "{ __schema { types { name } } }"}`), 0, "GRAPHQL_VALIDATION_FAILED", ""},
		{"syntax error", "application/json", []byte(`{"query": "mutation { register(input: "}`), 0, "GRAPHQL_PARSE_FAILED", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.Client().Post(t, tc.contentType, tc.body)
			if r.Code() != tc.code || r.Field() != tc.field {
				t.Fatalf("got code %q field %q (status %d), want %q %q: %s", r.Code(), r.Field(), r.Status, tc.code, tc.field, r.Raw)
			}
			if tc.status != 0 && r.Status != tc.status {
				t.Errorf("status %d, want %d", r.Status, tc.status)
			}
			if strings.Contains(string(r.Raw), "correct horse") {
				t.Errorf("error response echoes the password: %s", r.Raw)
			}
		})
	}
	if n := countUsers(t, s); n != 0 {
		t.Fatalf("bad inputs wrote %d users", n)
	}
}

func TestDepthLimit(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *config.Config) { c.MaxDepth = 3 })
	r := s.Client().Do(t, `{ me { profile { country } } }`, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("depth 3 refused: %s", r.Raw)
	}
	r = s.Client().Do(t, `query { ...F } fragment F on Query { me { profile { country { x } } } }`, nil)
	if r.Code() != "GRAPHQL_VALIDATION_FAILED" {
		t.Fatalf("invalid selection: %s", r.Raw)
	}
	r = s.Client().Do(t, `query { me { ...P } } fragment P on User { profile { ... on Profile { country } } } `, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("fragments counted as depth: %s", r.Raw)
	}
	s2 := apptest.Start(t, func(c *config.Config) { c.MaxDepth = 2 })
	r = s2.Client().Do(t, `query { me { ...P } } fragment P on User { profile { country } }`, nil)
	if r.Code() != "DEPTH_LIMIT_EXCEEDED" {
		t.Fatalf("depth 3 at limit 2: %s", r.Raw)
	}
}

func TestLoginDoesNotRevealUsernames(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	s.Register(t, "carol")
	wrongPassword := s.Client().Do(t, `mutation { login(username: "carol", password: "not her password") { token } }`, nil)
	unknownUser := s.Client().Do(t, `mutation { login(username: "nobody-here", password: "not her password") { token } }`, nil)
	invalidName := s.Client().Do(t, `mutation { login(username: "x", password: "not her password") { token } }`, nil)
	for _, r := range []*apptest.Response{unknownUser, invalidName} {
		if r.Code() != "UNAUTHENTICATED" || r.Errors[0].Message != wrongPassword.Errors[0].Message || r.Status != wrongPassword.Status {
			t.Fatalf("answers differ: %s vs %s", wrongPassword.Raw, r.Raw)
		}
	}
}

func TestRestartKeepsAccounts(t *testing.T) {
	t.Parallel()
	cfg := apptest.ConfigOn(t, apptest.Kind()) // a store of its own, kept across restarts
	s := apptest.StartWith(t, cfg)
	s.Register(t, "persistent")
	s.Close()

	s = apptest.StartWith(t, cfg)
	r := s.Client().Do(t, `mutation { login(username: "persistent", password: "correct horse battery") { user { username } } }`, nil)
	var out struct {
		Login struct{ User struct{ Username string } }
	}
	r.Decode(t, &out)
	if out.Login.User.Username != "persistent" {
		t.Fatalf("after restart: %s", r.Raw)
	}
}

func TestSecretsNeverStoredInClear(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Client()
	var reg struct{ Register struct{ Token string } }
	c.Do(t, registerMutation, map[string]any{"in": map[string]any{
		"username": "secretive", "password": "correct horse battery", "email": "secretive.person@example.org",
		"profile": map[string]any{"birthYear": 1977, "country": "NZ", "gender": "NON_BINARY", "language": "mi"},
	}}).Decode(t, &reg)
	dump := s.Dump(t)
	token := strings.TrimPrefix(reg.Register.Token, "cgs_")
	for _, secret := range []string{token, "correct horse battery", "secretive.person", "example.org", "NON_BINARY", `"NZ"`} {
		if strings.Contains(dump, secret) {
			t.Errorf("database holds %q in clear", secret)
		}
	}
	// The birth year as a value of its own, not four digits inside a hash
	// or an id in hex or base64 (of which the dump holds thousands).
	if year := regexp.MustCompile(`(^|[^0-9A-Za-z+/=_-])1977([^0-9A-Za-z+/=_-]|$)`); year.MatchString(dump) {
		t.Errorf("database holds the birth year in clear: %q", year.FindString(dump))
	}
	if !strings.Contains(dump, "secretive") {
		t.Fatal("dump does not contain the user at all; the check above proves nothing")
	}
}

func TestFirstAdminFromConfiguration(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *config.Config) {
		c.AdminUsername, c.AdminPassword = "root-admin", "admin password 123"
	})
	r := s.Client().Do(t, `mutation { login(username: "root-admin", password: "admin password 123") { user { role } } }`, nil)
	var out struct {
		Login struct{ User struct{ Role string } }
	}
	r.Decode(t, &out)
	if out.Login.User.Role != "ADMIN" {
		t.Fatalf("admin role = %q", out.Login.User.Role)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("%s = %d", path, res.StatusCode)
		}
	}
	_ = s.App.Store.Close(context.Background())
	res, err := http.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with the store gone = %d, want 503", res.StatusCode)
	}
}

func TestCORSAllowList(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *config.Config) { c.CORSOrigins = []string{"https://app.example.org"} })
	preflight := func(origin string) string {
		req, _ := http.NewRequest(http.MethodOptions, s.URL+"/graphql", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header.Get("Access-Control-Allow-Origin")
	}
	if got := preflight("https://app.example.org"); got != "https://app.example.org" {
		t.Fatalf("allowed origin got %q", got)
	}
	if got := preflight("https://evil.example.com"); got != "" {
		t.Fatalf("foreign origin got %q", got)
	}
}

// A browser app on an allowed origin can send the extra headers its client
// library adds (--cors-headers) and read the request id and Retry-After.
func TestCORSForBrowserApps(t *testing.T) {
	t.Parallel()
	const origin = "https://app.example.org"
	s := apptest.Start(t, func(c *config.Config) {
		c.CORSOrigins = []string{origin}
		c.CORSHeaders = []string{"apollographql-client-name", "apollographql-client-version"}
	})
	preflight := func(headers string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, s.URL+"/graphql", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", headers)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := preflight("apollographql-client-name,content-type"); res.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), "apollographql-client-name") {
		t.Fatalf("a configured extra header was not allowed: %v", res.Header)
	}
	if res := preflight("content-type,x-not-configured"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("an unconfigured header was allowed: %v", res.Header)
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", strings.NewReader(`{"query":"{ policy { version } }"}`))
	req.Header.Set("Origin", origin)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	exposed := strings.ToLower(res.Header.Get("Access-Control-Expose-Headers"))
	for _, h := range []string{"x-request-id", "retry-after"} {
		if !strings.Contains(exposed, h) {
			t.Errorf("%s is not exposed to scripts: %q", h, exposed)
		}
	}
}

func TestGETRunsQueriesButNotMutations(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	get := func(q string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?query="+urlQueryEscape(q), nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := get("{ me { id } }"); res.StatusCode != 200 {
		t.Fatalf("GET query = %d", res.StatusCode)
	}
	if res := get(`mutation { register(input: {username: "viaget", password: "correct horse battery"}) { token } }`); res.StatusCode < 400 {
		t.Fatalf("GET mutation = %d", res.StatusCode)
	}
	if n := countUsers(t, s); n != 0 {
		t.Fatal("a GET request created an account")
	}
}
