package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

// registerWith signs up with an email and returns the client and the raw
// answer (errors included).
func registerWith(t *testing.T, s *apptest.Server, username, email string) (*apptest.Client, *apptest.Response) {
	t.Helper()
	c := s.Client()
	r := c.Do(t, `mutation($in: RegisterInput!) { register(input: $in) { token user { id email emailVerified } } }`,
		map[string]any{"in": map[string]any{"username": username, "password": "correct horse battery", "email": email}})
	var out struct{ Register struct{ Token string } }
	if len(r.Errors) == 0 {
		r.Decode(t, &out)
		c.Token = out.Register.Token
	}
	return c, r
}

// shape is an answer with its ids, tokens and times blanked, so that two
// answers can be compared for what they tell.
func shape(r *apptest.Response) string {
	var v any
	_ = json.Unmarshal(r.Raw, &v)
	var walk func(any) any
	walk = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k, e := range x {
				switch k {
				case "id", "token", "email", "expiresAt", "createdAt":
					x[k] = "…"
				default:
					x[k] = walk(e)
				}
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		}
		return x
	}
	b, _ := json.Marshal(walk(v))
	return string(b)
}

// TestEmailSquatting: an attacker signs up first with the victim's address;
// the victim's own sign-up works, the victim verifies through the mail, and
// the attacker's account loses the address with a notice. No answer along
// the way tells whether the address was in use.
func TestEmailSquatting(t *testing.T) {
	s, mp := startWithMail(t)
	attacker, ra := registerWith(t, s, "attacker", "victim@example.org")
	if len(ra.Errors) > 0 {
		t.Fatalf("attacker's sign-up: %s", ra.Raw)
	}
	// The attacker cannot verify: the mail went to the victim's mailbox.
	squatMail := mp.WaitFor(t, "victim@example.org", 15*time.Second)
	tokenIn(t, squatMail, "cgv_")

	victim, rv := registerWith(t, s, "victim", "victim@example.org")
	_, rf := registerWith(t, s, "fresh", "fresh@example.org") // an address nobody uses
	if len(rv.Errors) > 0 {
		t.Fatalf("victim's sign-up refused: %s", rv.Raw)
	}
	if shape(rv) != shape(rf) {
		t.Errorf("sign-up answers differ with the address in use:\n%s\n%s", shape(rv), shape(rf))
	}
	// setEmail answers the same too.
	probe := s.Register(t, "prober")
	a := probe.Do(t, `mutation { setEmail(email: "victim@example.org") { email emailVerified } }`, nil)
	b := probe.Do(t, `mutation { setEmail(email: "unused@example.org") { email emailVerified } }`, nil)
	if shape(a) != shape(b) || len(a.Errors) > 0 {
		t.Errorf("setEmail answers differ with the address in use:\n%s\n%s", a.Raw, b.Raw)
	}
	probe.Do(t, `mutation { setEmail(email: null) { id } }`, nil).Decode(t, new(any))

	// The victim's verification mail (the newest to the address) works.
	var token string
	for range 3 { // the attacker's, the victim's and the prober's mails
		m := mp.WaitFor(t, "victim@example.org", 15*time.Second)
		if strings.Contains(m.Text, "cgv_") {
			token = tokenIn(t, m, "cgv_")
			if token != tokenIn(t, squatMail, "cgv_") {
				break
			}
		}
	}
	var ok struct{ VerifyEmail bool }
	s.Client().Do(t, `mutation($t: String!) { verifyEmail(token: $t) }`, map[string]any{"t": token}).Decode(t, &ok)
	type me struct {
		Me struct {
			Email         *string
			EmailVerified bool
			Notices       []struct{ Kind string }
		}
	}
	var vm, am me
	victim.Do(t, `{ me { email emailVerified notices { kind } } }`, nil).Decode(t, &vm)
	if vm.Me.Email == nil || *vm.Me.Email != "victim@example.org" || !vm.Me.EmailVerified {
		t.Fatalf("victim after verification: %+v", vm.Me)
	}
	attacker.Do(t, `{ me { email emailVerified notices { kind at } } }`, nil).Decode(t, &am)
	if am.Me.Email != nil || len(am.Me.Notices) != 1 || am.Me.Notices[0].Kind != "EMAIL_CLAIMED_BY_ANOTHER_ACCOUNT" {
		t.Fatalf("attacker after the victim verified: %+v", am.Me)
	}
	// The attacker's own (leaked) token no longer verifies anything.
	if r := s.Client().Do(t, `mutation($t: String!) { verifyEmail(token: $t) }`,
		map[string]any{"t": tokenIn(t, squatMail, "cgv_")}); r.Code() != "BAD_USER_INPUT" {
		t.Errorf("attacker's token after the victim verified: %s", r.Raw)
	}
	// Dismissing clears the notice.
	attacker.Do(t, `mutation { dismissNotices }`, nil).Decode(t, new(any))
	attacker.Do(t, `{ me { email emailVerified notices { kind } } }`, nil).Decode(t, &am)
	if len(am.Me.Notices) != 0 {
		t.Errorf("notices after dismissal: %+v", am.Me.Notices)
	}
}

func TestSignUpWithEmailSendsTheVerificationMail(t *testing.T) {
	s, mp := startWithMail(t)
	c, r := registerWith(t, s, "newcomer", "newcomer@example.org")
	if len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	verifyMailed(t, s, "newcomer@example.org")
	var me struct{ Me struct{ EmailVerified bool } }
	c.Do(t, `{ me { emailVerified } }`, nil).Decode(t, &me)
	if !me.Me.EmailVerified {
		t.Fatal("the mailed token did not verify the sign-up address")
	}
	_ = mp
}

// TestPasswordResetThroughRealMailpit: request, mail, reset; old sessions
// end, the new password works, the token works once, and an expired token
// is refused.
func TestPasswordResetThroughRealMailpit(t *testing.T) {
	s, mp := startWithMail(t, func(c *config.Config) { c.PasswordResetTTL = 2 * time.Second })
	old, _ := registerWith(t, s, "forgetful", "forgetful@example.org")
	verifyMailed(t, s, "forgetful@example.org")
	other := s.Client()
	var lo struct{ Login struct{ Token string } }
	other.Do(t, `mutation { login(username: "forgetful", password: "correct horse battery") { token } }`, nil).Decode(t, &lo)
	other.Token = lo.Login.Token

	ask := func(addr string) {
		t.Helper()
		var out struct{ RequestPasswordReset bool }
		s.Client().Do(t, `mutation($e: String!) { requestPasswordReset(email: $e) }`, map[string]any{"e": addr}).Decode(t, &out)
		if !out.RequestPasswordReset {
			t.Fatal("requestPasswordReset answered false")
		}
	}
	ask("nobody@example.org") // answers the same; no mail
	ask("Forgetful@Example.org")
	token := tokenIn(t, mp.WaitFor(t, "forgetful@example.org", 15*time.Second), "cgr_")

	reset := func(tok, pw string) *apptest.Response {
		return s.Client().Do(t, `mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }`,
			map[string]any{"t": tok, "p": pw})
	}
	if r := reset(token, "qwerty123456"); r.Code() != "BAD_USER_INPUT" || r.Field() != "newPassword" {
		t.Fatalf("a common password: %s", r.Raw)
	}
	if r := reset(token, "a brand new secret"); len(r.Errors) > 0 {
		t.Fatalf("reset: %s", r.Raw)
	}
	for _, c := range []*apptest.Client{old, other} {
		if r := c.Do(t, `{ me { id } }`, nil); string(r.Data) != `{"me":null}` {
			t.Errorf("a session survived the reset: %s", r.Raw)
		}
	}
	if r := s.Client().Do(t, `mutation { login(username: "forgetful", password: "a brand new secret") { token } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("login with the new password: %s", r.Raw)
	}
	if r := reset(token, "yet another secret"); r.Code() != "BAD_USER_INPUT" || r.Field() != "token" {
		t.Fatalf("token used twice: %s", r.Raw)
	}
	if r := reset("cgr_unknown-token-0000000000", "yet another secret"); r.Code() != "BAD_USER_INPUT" || r.Field() != "token" {
		t.Fatalf("unknown token: %s", r.Raw)
	}
	// A new request replaces the pending token; an expired one is refused.
	ask("forgetful@example.org")
	first := tokenIn(t, mp.WaitFor(t, "forgetful@example.org", 15*time.Second), "cgr_")
	ask("forgetful@example.org")
	second := tokenIn(t, mp.WaitFor(t, "forgetful@example.org", 15*time.Second), "cgr_")
	if r := reset(first, "yet another secret"); r.Code() != "BAD_USER_INPUT" {
		t.Fatalf("a replaced token: %s", r.Raw)
	}
	time.Sleep(2100 * time.Millisecond)
	if r := reset(second, "yet another secret"); r.Code() != "BAD_USER_INPUT" || r.Field() != "token" {
		t.Fatalf("an expired token: %s", r.Raw)
	}
	// A password change voids a reset mailed before it.
	ask("forgetful@example.org")
	pending := tokenIn(t, mp.WaitFor(t, "forgetful@example.org", 15*time.Second), "cgr_")
	owner := s.Client()
	var in struct{ Login struct{ Token string } }
	owner.Do(t, `mutation { login(username: "forgetful", password: "a brand new secret") { token } }`, nil).Decode(t, &in)
	owner.Token = in.Login.Token
	if r := owner.Do(t, `mutation { changePassword(currentPassword: "a brand new secret", newPassword: "changed by the owner") }`, nil); len(r.Errors) > 0 {
		t.Fatalf("changePassword: %s", r.Raw)
	}
	if r := reset(pending, "the attacker's choice"); r.Code() != "BAD_USER_INPUT" || r.Field() != "token" {
		t.Fatalf("a reset token mailed before a password change still worked: %s", r.Raw)
	}
	// Nothing was ever mailed to the unknown address.
	list, err := mp.Messages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		for _, to := range m.To {
			if to.Address == "nobody@example.org" {
				t.Errorf("a reset mail went to an address without an account")
			}
		}
	}
}

func TestUnverifiedAddressGetsNoResetMail(t *testing.T) {
	s, mp := startWithMail(t)
	registerWith(t, s, "unsure", "unsure@example.org")
	mp.WaitFor(t, "unsure@example.org", 15*time.Second) // the verification mail, not followed
	var out struct{ RequestPasswordReset bool }
	s.Client().Do(t, `mutation { requestPasswordReset(email: "unsure@example.org") }`, nil).Decode(t, &out)
	if !out.RequestPasswordReset {
		t.Fatal("requestPasswordReset answered false")
	}
	time.Sleep(time.Second) // the mail would go out after the answer
	s.App.Accounts.Wait()
	list, err := mp.Messages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d mails, want only the verification mail", len(list))
	}
}

func TestChangePasswordEndsOtherSessions(t *testing.T) {
	s := apptest.Start(t)
	here := s.Register(t, "changer")
	there := s.Client()
	var lo struct{ Login struct{ Token string } }
	there.Do(t, `mutation { login(username: "changer", password: "correct horse battery") { token } }`, nil).Decode(t, &lo)
	there.Token = lo.Login.Token
	change := func(cur, next string) *apptest.Response {
		return here.Do(t, `mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }`,
			map[string]any{"c": cur, "n": next})
	}
	if r := change("not my password", "a brand new secret"); r.Code() != "BAD_USER_INPUT" || r.Field() != "currentPassword" {
		t.Fatalf("wrong current password: %s", r.Raw)
	}
	if r := change("correct horse battery", "qwertyuiop"); r.Code() != "BAD_USER_INPUT" || r.Field() != "newPassword" {
		t.Fatalf("common new password: %s", r.Raw)
	}
	if r := change("correct horse battery", "a brand new secret"); len(r.Errors) > 0 {
		t.Fatalf("change: %s", r.Raw)
	}
	if r := here.Do(t, `{ me { username } }`, nil); !strings.Contains(string(r.Data), "changer") {
		t.Errorf("the current session ended: %s", r.Raw)
	}
	if r := there.Do(t, `{ me { username } }`, nil); string(r.Data) != `{"me":null}` {
		t.Errorf("another session survived: %s", r.Raw)
	}
	if r := s.Client().Do(t, `mutation { login(username: "changer", password: "a brand new secret") { token } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("login with the new password: %s", r.Raw)
	}
	if r := s.Client().Do(t, `mutation { changePassword(currentPassword: "x", newPassword: "a brand new secret") }`, nil); r.Code() != "UNAUTHENTICATED" {
		t.Errorf("anonymous changePassword: %s", r.Raw)
	}
}

// TestPasswordGuessesShareOneBackOff: login, deleteMyAccount and
// changePassword count against one back-off kept with the account, and
// aliases in one request do not multiply the guesses.
func TestPasswordGuessesShareOneBackOff(t *testing.T) {
	s := apptest.Start(t) // the per-replica login limiter is off: this is the account's own
	c := s.Register(t, "target")
	guesses := func(from, n int) string {
		var b strings.Builder
		b.WriteString("mutation {")
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&b, ` a%d: deleteMyAccount(password: "guess number %d")`, i, i)
		}
		b.WriteString(" }")
		return b.String()
	}
	// 29 guesses in one request cost more than one request may.
	if r := c.Do(t, guesses(0, 29), nil); r.Code() != "COMPLEXITY_LIMIT_EXCEEDED" {
		t.Fatalf("29 aliased password checks in one request: %.300s", r.Raw)
	}
	// In requests of four aliases each, still only four are checked.
	wrong, limited := 0, 0
	for from := 0; from < 29; from += 4 {
		r := c.Do(t, guesses(from, min(4, 29-from)), nil)
		for _, e := range r.Errors {
			switch e.Extensions["code"] {
			case "BAD_USER_INPUT":
				wrong++
			case "RATE_LIMITED":
				limited++
				if secs, _ := e.Extensions["retryAfterSeconds"].(float64); secs < 1 {
					t.Errorf("no retry-after hint: %v", e.Extensions)
				}
				if h, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || h < 1 {
					t.Errorf("RATE_LIMITED without a Retry-After header: %q", r.Header.Get("Retry-After"))
				}
			}
		}
	}
	if wrong != 4 || limited != 25 {
		t.Fatalf("29 aliased guesses: %d checked, %d refused; want 4 and 25", wrong, limited)
	}
	// The same back-off holds for sign-in (even with the right password)
	// and for changePassword.
	if r := s.Client().Do(t, `mutation { login(username: "target", password: "correct horse battery") { token } }`, nil); r.Code() != "RATE_LIMITED" {
		t.Fatalf("login during the back-off: %s", r.Raw)
	}
	if r := c.Do(t, `mutation { changePassword(currentPassword: "correct horse battery", newPassword: "a brand new secret") }`, nil); r.Code() != "RATE_LIMITED" {
		t.Fatalf("changePassword during the back-off: %s", r.Raw)
	}
	// After the wait, the right password gets in and ends the run.
	time.Sleep(1100 * time.Millisecond)
	if r := s.Client().Do(t, `mutation { login(username: "target", password: "correct horse battery") { token } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("login after the back-off: %s", r.Raw)
	}
	if r := c.Do(t, `mutation { changePassword(currentPassword: "wrong one again", newPassword: "a brand new secret") }`, nil); r.Code() != "BAD_USER_INPUT" {
		t.Fatalf("a first failure after a success is checked: %s", r.Raw)
	}
}

func TestCommonPasswordRefusedAtSignUp(t *testing.T) {
	s := apptest.Start(t)
	r := s.Client().Do(t, `mutation { register(input: {username: "lazy", password: "Password123"}) { token } }`, nil)
	if r.Code() != "BAD_USER_INPUT" || r.Field() != "input.password" {
		t.Fatalf("common password: %s", r.Raw)
	}
	if out := s.Dump(t); strings.Contains(out, "lazy") {
		t.Error("a refused sign-up left a record")
	}
}

// TestRefusedSignUpLeavesNoDataKey: a sign-up refused for a taken username
// leaves no orphaned data key behind.
func TestRefusedSignUpLeavesNoDataKey(t *testing.T) {
	s := apptest.Start(t)
	s.Register(t, "taken")
	before := strings.Count(s.Dump(t), "\n")
	r := s.Client().Do(t, `mutation { register(input: {username: "TAKEN", password: "correct horse battery"}) { token } }`, nil)
	if r.Code() != "CONFLICT" {
		t.Fatalf("taken username: %s", r.Raw)
	}
	if after := strings.Count(s.Dump(t), "\n"); after != before {
		t.Errorf("the refused sign-up left %d records behind", after-before)
	}
}

// TestUnverifiedEmailReachesNoProcessor: a webhook that declared the email
// gets the other fields while the address is unverified, and the address
// only once verified.
func TestUnverifiedEmailReachesNoProcessor(t *testing.T) {
	rec := &apptest.Recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := startWithProcessors(t, fmt.Sprintf(`
processors:
  - name: hook
    type: webhook
    purpose: surveys
    fields: [user.contact.email, user.demographic.country]
    settings: {url: %q}
`, srv.URL))
	c, _ := userWithData(t, s, "hook_gus", false)
	c.Do(t, `mutation { setEmail(email: "hook_gus@example.org") { id } }`, nil).Decode(t, new(any))
	changeConsent(t, c, true, "surveys")
	d := s.App.Outbox.Dispatcher("t", fast)
	drain(t, s, d, 10*time.Second)
	got := strings.Join(rec.Bodies(), "\n")
	if !strings.Contains(got, "DE") || strings.Contains(got, "hook_gus@example.org") {
		t.Fatalf("deliveries before verification: %s", got)
	}
	verifyMailed(t, s, "hook_gus@example.org")
	drain(t, s, d, 10*time.Second)
	if got := strings.Join(rec.Bodies(), "\n"); !bytes.Contains([]byte(got), []byte("hook_gus@example.org")) {
		t.Fatalf("no delivery of the verified address: %s", got)
	}
}
