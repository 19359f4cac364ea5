package app_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

func TestInputLimitsReachNoResolver(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	anon := s.Client()
	cases := []struct {
		name  string
		c     *apptest.Client
		query string
		vars  map[string]any
		field string
	}{
		{"huge password at login", anon, `mutation($p: String!) { login(username: "alice", password: $p) { token } }`,
			map[string]any{"p": strings.Repeat("p", 2000)}, "password"},
		{"control character in a username", anon, `mutation($u: String!) { register(input: {username: $u, password: "correct horse battery"}) { token } }`,
			map[string]any{"u": "ali\x1bce"}, "input.username"},
		{"nested profile field too long", anon, `mutation($c: String) { register(input: {username: "bob", password: "correct horse battery", profile: {country: $c}}) { token } }`,
			map[string]any{"c": strings.Repeat("D", 50)}, "input.profile.country"},
		{"bidi override in a partner name", admin, `mutation($n: String!) { createPartner(name: $n, epsilonBudget: 1, budgetPeriodDays: 30) { apiKey } }`,
			map[string]any{"n": "Acme\u202eevil"}, "name"},
		{"too many purposes to reconsent", admin, `mutation($r: [ID!]) { publishPolicy(version: "9", url: "https://example.org/p", reconsent: $r) { version } }`,
			map[string]any{"r": make([]string, 101)}, "reconsent"},
		{"a receipt that is not a JWS", anon, `query($r: String!) { verifyReceipt(receipt: $r) { valid } }`,
			map[string]any{"r": "a b c"}, "receipt"},
	}
	for _, c := range cases {
		r := c.c.Do(t, c.query, c.vars)
		if r.Code() != "BAD_USER_INPUT" || r.Field() != c.field {
			t.Errorf("%s: want BAD_USER_INPUT on %s, got %s", c.name, c.field, r.Raw)
		}
	}
	// The dump is JSON: a stored control character would show escaped.
	got := s.Dump(t)
	for _, refused := range []string{"ali\x1bce", "Acme\u202eevil"} {
		escaped, _ := json.Marshal(refused)
		if strings.Contains(got, refused) || strings.Contains(got, strings.Trim(string(escaped), `"`)) {
			t.Fatalf("refused input %q was stored", refused)
		}
	}
}
