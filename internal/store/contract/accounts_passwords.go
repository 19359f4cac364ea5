package contract

import (
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
)

// lostNotice is the notice the tests hand VerifyEmail for evicted accounts.
var lostNotice = accounts.Notice{Kind: accounts.NoticeEmailClaimed, At: at(5 * ms)}

// verify calls VerifyEmail with lostNotice and returns the verified id.
func (e *env) verify(tokenHash string, now time.Time) (string, error) {
	e.t.Helper()
	res, err := e.b.Accounts().VerifyEmail(e.ctx, tokenHash, now, lostNotice)
	return res.UserID, err
}

// verified verifies an account's email and fails unless it worked.
func (e *env) verified(id, tokenHash string) {
	e.t.Helper()
	got, err := e.verify(tokenHash, at(0))
	e.must(err, "VerifyEmail(%s)", id)
	if got != id {
		e.t.Fatalf("VerifyEmail(%s) = %q", id, got)
	}
}

// testVerifyEmailEvicts: the first to verify wins; the accounts holding the
// address unverified lose it (email, index, pending verification) and get
// the notice; others are untouched.
func testVerifyEmailEvicts(e *env) {
	s := e.b.Accounts()
	winner := e.createAccount("u-win")
	losers := []accounts.Record{e.createAccount("u-lose-1"), e.createAccount("u-lose-2")}
	bystander := e.createAccount("u-by")
	for _, id := range []string{"u-lose-1", "u-lose-2"} {
		ok, err := s.UpdateAccount(e.ctx, id, accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("sealed:" + id),
			Index: winner.EmailIndex, Verification: &accounts.Verification{TokenHash: "vt-" + id, ExpiresAt: at(time.Hour)}}})
		e.must(err, "UpdateAccount(%s)", id)
		e.wantBool("UpdateAccount", true, ok)
	}
	res, err := s.VerifyEmail(e.ctx, winner.Verification.TokenHash, at(0), lostNotice)
	e.must(err, "VerifyEmail")
	e.equal("VerifyEmail", accounts.VerifiedEmail{UserID: "u-win", Evicted: []string{"u-lose-1", "u-lose-2"}}, res)
	winner.EmailVerified, winner.Verification = true, nil
	e.equal("the winner", &winner, e.account("u-win"))
	for _, l := range losers {
		l.Email, l.EmailIndex, l.Verification, l.Notices = nil, "", nil, []accounts.Notice{lostNotice}
		e.equal("a loser "+l.ID, &l, e.account(l.ID))
	}
	e.equal("a bystander", &bystander, e.account("u-by"))
	// The losers' tokens are gone with their address.
	if id, err := e.verify("vt-u-lose-1", at(0)); err != nil || id != "" {
		e.t.Errorf("VerifyEmail with an evicted account's token = %q, %v; want \"\"", id, err)
	}
	// A second eviction appends to the notices.
	ok, err := s.UpdateAccount(e.ctx, "u-lose-1", accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("x"),
		Index: "bidx-u-by", Verification: &accounts.Verification{TokenHash: "vt-again", ExpiresAt: at(time.Hour)}}})
	e.must(err, "UpdateAccount")
	e.wantBool("UpdateAccount", true, ok)
	e.verified("u-by", bystander.Verification.TokenHash)
	if r := e.account("u-lose-1"); len(r.Notices) != 2 || r.Email != nil {
		e.t.Errorf("after a second eviction: notices %v, email %q", r.Notices, r.Email)
	}
}

// testVerifyEmailVerifiedElsewhere: a token for an address another account
// verified meanwhile fails like an unknown one and changes nothing.
func testVerifyEmailVerifiedElsewhere(e *env) {
	s := e.b.Accounts()
	first := e.createAccount("u-first")
	e.verified("u-first", first.Verification.TokenHash)
	first.EmailVerified, first.Verification = true, nil
	late := e.createAccount("u-late")
	ok, err := s.UpdateAccount(e.ctx, "u-late", accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("sealed:late"),
		Index: first.EmailIndex, Verification: &accounts.Verification{TokenHash: "vt-late", ExpiresAt: at(time.Hour)}}})
	e.must(err, "UpdateAccount")
	e.wantBool("UpdateAccount", true, ok)
	late = *e.account("u-late")
	res, err := s.VerifyEmail(e.ctx, "vt-late", at(0), lostNotice)
	e.must(err, "VerifyEmail of an address verified elsewhere")
	e.equal("VerifyEmail of an address verified elsewhere", accounts.VerifiedEmail{}, res)
	e.equal("the late account", &late, e.account("u-late"))
	e.equal("the first account", &first, e.account("u-first"))
}

// testVerifyEmailConcurrent: 50 accounts verify one address at once;
// exactly one wins, and every other account no longer holds it.
func testVerifyEmailConcurrent(e *env) {
	s := e.b.Accounts()
	ids := make([]string, concurrency)
	for i := range concurrency {
		ids[i] = fmt.Sprintf("u-vr-%02d", i)
		e.createAccount(ids[i])
		ok, err := s.UpdateAccount(e.ctx, ids[i], accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("s"),
			Index: "bidx-race", Verification: &accounts.Verification{TokenHash: "vt-" + ids[i], ExpiresAt: at(time.Hour)}}})
		e.must(err, "UpdateAccount")
		e.wantBool("UpdateAccount", true, ok)
	}
	won := make([]bool, concurrency)
	errs := e.parallel(concurrency, func(i int) error {
		id, err := e.verify("vt-"+ids[i], at(0))
		won[i] = id != ""
		return err
	})
	winners := 0
	for i, err := range errs {
		e.must(err, "VerifyEmail #%d", i)
		if won[i] {
			winners++
		}
	}
	if winners != 1 {
		e.t.Errorf("%d concurrent verifications of one address succeeded, want 1", winners)
	}
	holders := 0
	for i, id := range ids {
		r := e.account(id)
		if r.EmailIndex == "bidx-race" {
			holders++
			if !won[i] || !r.EmailVerified {
				e.t.Errorf("%s holds the address (verified %v) but did not win", id, r.EmailVerified)
			}
		}
	}
	if holders != 1 {
		e.t.Errorf("%d accounts hold the address after the race, want 1", holders)
	}
}

func testAccountByVerifiedEmail(e *env) {
	s := e.b.Accounts()
	a := e.createAccount("u-bv")
	r, err := s.AccountByVerifiedEmail(e.ctx, a.EmailIndex)
	e.must(err, "AccountByVerifiedEmail(unverified)")
	if r != nil {
		e.t.Errorf("AccountByVerifiedEmail of an unverified index = %s, want nil", r.ID)
	}
	e.verified("u-bv", a.Verification.TokenHash)
	a.EmailVerified, a.Verification = true, nil
	r, err = s.AccountByVerifiedEmail(e.ctx, a.EmailIndex)
	e.must(err, "AccountByVerifiedEmail")
	e.equal("AccountByVerifiedEmail", &a, r)
	ok, err := s.MarkErasing(e.ctx, "u-bv", at(0))
	e.must(err, "MarkErasing")
	e.wantBool("MarkErasing", true, ok)
	if r, err = s.AccountByVerifiedEmail(e.ctx, a.EmailIndex); err != nil || r != nil {
		e.t.Errorf("AccountByVerifiedEmail of an account being erased = %v, %v; want nil", r, err)
	}
}

func testPasswordReset(e *env) {
	s := e.b.Accounts()
	want := e.createAccount("u-reset")
	other := e.createAccount("u-reset-other")
	ok, err := s.SetPasswordReset(e.ctx, "u-absent", accounts.Verification{TokenHash: "r0", ExpiresAt: at(time.Hour)})
	e.must(err, "SetPasswordReset(absent)")
	e.wantBool("SetPasswordReset(absent)", false, ok)
	for _, tok := range []string{"r1", "r2"} { // the second replaces the first
		ok, err = s.SetPasswordReset(e.ctx, "u-reset", accounts.Verification{TokenHash: tok, ExpiresAt: at(time.Hour)})
		e.must(err, "SetPasswordReset(%s)", tok)
		e.wantBool("SetPasswordReset", true, ok)
	}
	want.PasswordReset = &accounts.Verification{TokenHash: "r2", ExpiresAt: at(time.Hour)}
	e.equal("account with a pending reset", &want, e.account("u-reset"))
	_, err = s.PasswordFailed(e.ctx, "u-reset", at(ms))
	e.must(err, "PasswordFailed")
	for _, c := range []struct {
		tok string
		now time.Time
	}{{"r1", at(0)}, {"r2", at(time.Hour)}, {"nope", at(0)}} {
		id, err := s.ResetPassword(e.ctx, c.tok, c.now, "$argon2id$reset")
		e.must(err, "ResetPassword(%s)", c.tok)
		if id != "" {
			e.t.Errorf("ResetPassword(%s at %s) = %q, want \"\" (replaced, expired or unknown)", c.tok, c.now, id)
		}
	}
	id, err := s.ResetPassword(e.ctx, "r2", at(time.Hour-ms), "$argon2id$reset")
	e.must(err, "ResetPassword")
	if id != "u-reset" {
		e.t.Errorf("ResetPassword = %q, want u-reset", id)
	}
	want.PasswordReset, want.PasswordHash = nil, "$argon2id$reset"
	e.equal("account after the reset (failures cleared)", &want, e.account("u-reset"))
	if id, err := s.ResetPassword(e.ctx, "r2", at(0), "$argon2id$again"); err != nil || id != "" {
		e.t.Errorf("ResetPassword with a used token = %q, %v; want \"\"", id, err)
	}
	e.equal("the other account", &other, e.account("u-reset-other"))
	// No reset for an account being erased.
	ok, err = s.SetPasswordReset(e.ctx, "u-reset-other", accounts.Verification{TokenHash: "r3", ExpiresAt: at(time.Hour)})
	e.must(err, "SetPasswordReset")
	e.wantBool("SetPasswordReset", true, ok)
	ok, err = s.MarkErasing(e.ctx, "u-reset-other", at(0))
	e.must(err, "MarkErasing")
	e.wantBool("MarkErasing", true, ok)
	if id, err := s.ResetPassword(e.ctx, "r3", at(0), "$argon2id$x"); err != nil || id != "" {
		e.t.Errorf("ResetPassword of an account being erased = %q, %v; want \"\"", id, err)
	}
}

func testPasswordFailures(e *env) {
	s := e.b.Accounts()
	want := e.createAccount("u-fail")
	for i := 1; i <= 3; i++ {
		n, err := s.PasswordFailed(e.ctx, "u-fail", at(time.Duration(i)*time.Second))
		e.must(err, "PasswordFailed #%d", i)
		if n != i {
			e.t.Errorf("PasswordFailed #%d = %d", i, n)
		}
	}
	want.PasswordFailures, want.LastPasswordFailure = 3, at(3*time.Second)
	e.equal("account after three failures", &want, e.account("u-fail"))
	// Concurrent failures are all counted (aliases, replicas).
	errs := e.parallel(concurrency, func(int) error {
		_, err := s.PasswordFailed(e.ctx, "u-fail", at(4*time.Second))
		return err
	})
	for _, err := range errs {
		e.must(err, "PasswordFailed")
	}
	if r := e.account("u-fail"); r.PasswordFailures != 3+concurrency {
		e.t.Errorf("after %d concurrent failures the count is %d, want %d", concurrency, r.PasswordFailures, 3+concurrency)
	}
	e.must(s.ClearPasswordFailures(e.ctx, "u-fail"), "ClearPasswordFailures")
	want.PasswordFailures, want.LastPasswordFailure = 0, time.Time{}
	e.equal("account after clearing", &want, e.account("u-fail"))
	e.must(s.ClearPasswordFailures(e.ctx, "u-fail"), "ClearPasswordFailures again")
	if n, err := s.PasswordFailed(e.ctx, "u-absent", at(0)); err != nil || n != 0 {
		e.t.Errorf("PasswordFailed(absent) = %d, %v; want 0", n, err)
	}
}

// testNoticesRoundTrip: notices written at sign-up (a copy of a store)
// read back, and ClearNotices removes them.
func testNoticesRoundTrip(e *env) {
	s := e.b.Accounts()
	na := newAccount("u-notes", "notes")
	na.Account.Notices = []accounts.Notice{lostNotice, {Kind: accounts.NoticeEmailClaimed, At: at(time.Hour)}}
	na.Account.PasswordReset = &accounts.Verification{TokenHash: "r", ExpiresAt: at(time.Hour)}
	na.Account.PasswordFailures, na.Account.LastPasswordFailure = 2, at(time.Second)
	e.must(s.CreateAccount(e.ctx, na), "CreateAccount")
	e.equal("account with notices", &na.Account, e.account("u-notes"))
	e.must(s.ClearNotices(e.ctx, "u-notes"), "ClearNotices")
	na.Account.Notices = nil
	e.equal("account after ClearNotices", &na.Account, e.account("u-notes"))
}
