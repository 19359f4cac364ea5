package contract

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/work"
)

func accountsTests() []contractTest {
	return []contractTest{
		{"accounts/create-and-read", testCreateAndRead},
		{"accounts/create-without-email-or-profile", testCreateWithoutEmail},
		{"accounts/create-with-initial-consent-and-work", testCreateWithConsentAndWork},
		{"accounts/username-unique-under-50-writers", testUsernameUniqueConcurrent},
		{"accounts/verified-email-unique-under-50-writers", testEmailUniqueConcurrent},
		{"accounts/unverified-email-belongs-to-nobody", testUnverifiedEmailShared},
		{"accounts/set-password-hash", testSetPasswordHash},
		{"accounts/update-profile", testUpdateProfile},
		{"accounts/update-email", testUpdateEmail},
		{"accounts/update-email-to-a-verified-one", testUpdateEmailTaken},
		{"accounts/update-email-under-50-writers", testUpdateEmailConcurrent},
		{"accounts/verify-email", testVerifyEmail},
		{"accounts/verify-email-evicts-unverified-holders", testVerifyEmailEvicts},
		{"accounts/verify-email-verified-elsewhere", testVerifyEmailVerifiedElsewhere},
		{"accounts/verify-email-under-50-verifiers", testVerifyEmailConcurrent},
		{"accounts/account-by-verified-email", testAccountByVerifiedEmail},
		{"accounts/password-reset", testPasswordReset},
		{"accounts/password-failures", testPasswordFailures},
		{"accounts/notices-round-trip", testNoticesRoundTrip},
		{"accounts/mark-erasing", testMarkErasing},
		{"accounts/erasing-account-keeps-password-hash", testErasingKeepsPassword},
		{"accounts/each-account-in-id-order", testEachAccountOrder},
		{"accounts/import", testImportAccounts},
		{"accounts/import-taken-fails", testImportAccountsTaken},
	}
}

func testCreateAndRead(e *env) {
	s := e.b.Accounts()
	na := newAccount("u-create", "Alice")
	e.must(s.CreateAccount(e.ctx, na), "CreateAccount")
	admin := newAccount("u-admin", "Root")
	admin.Account.Role = auth.RoleAdmin
	admin.Account.EmailVerified = true
	admin.Account.Verification = nil
	e.must(s.CreateAccount(e.ctx, admin), "CreateAccount(admin)")
	// The seed site is Japanese: usernames are not ASCII.
	ja := newAccount("u-ja", "山田　太郎")
	ja.Account.UsernameKey = "山田 太郎"
	e.must(s.CreateAccount(e.ctx, ja), "CreateAccount(山田)")
	r, err := s.AccountByUsername(e.ctx, "山田 太郎")
	e.must(err, "AccountByUsername(山田 太郎)")
	e.equal("AccountByUsername(山田 太郎)", &ja.Account, r)

	e.equal("Account(u-create)", &na.Account, e.account("u-create"))
	e.equal("Account(u-admin)", &admin.Account, e.account("u-admin"))

	r, err = s.AccountByUsername(e.ctx, "alice")
	e.must(err, "AccountByUsername(alice)")
	e.equal("AccountByUsername(alice)", &na.Account, r)

	r, err = s.Account(e.ctx, "u-nobody")
	e.must(err, "Account of an absent id")
	if r != nil {
		e.t.Errorf("Account(u-nobody) = %+v, want nil", r)
	}
	// The username key is what is looked up, not the display username.
	for _, key := range []string{"Alice", "nobody", ""} {
		r, err = s.AccountByUsername(e.ctx, key)
		e.must(err, "AccountByUsername(%q)", key)
		if r != nil {
			e.t.Errorf("AccountByUsername(%q) = %s, want nil", key, r.ID)
		}
	}
	// A new account is not being erased; its consent is the zero state.
	ids, err := s.Erasing(e.ctx)
	e.must(err, "Erasing")
	if len(ids) != 0 {
		e.t.Errorf("Erasing() = %v, want none", ids)
	}
	e.checkState("u-create", consent.Stored{})
}

func testCreateWithoutEmail(e *env) {
	s := e.b.Accounts()
	// Accounts without an email share the empty index: it must not clash.
	var want []accounts.Record
	for i := range 3 {
		na := newAccount(fmt.Sprintf("u-noemail-%d", i), fmt.Sprintf("bare%d", i))
		na.Account.Email, na.Account.EmailIndex, na.Account.Verification = nil, "", nil
		na.Account.Profile = accounts.SealedProfile{}
		e.must(s.CreateAccount(e.ctx, na), "CreateAccount of a second account without email (%d)", i)
		want = append(want, na.Account)
	}
	for _, w := range want {
		e.equal("Account("+w.ID+")", &w, e.account(w.ID))
	}
}

func testCreateWithConsentAndWork(e *env) {
	s := e.b.Accounts()
	c := newChain("u-gpc")
	c.add("newsletter", false, 1, at(17*ms))
	c.add("surveys", false, 1, at(17*ms))
	na := newAccount("u-gpc", "gpc")
	na.Consent = c.initial()
	na.Work = []work.Item{
		newItem("w-gpc-1", "u-gpc", "webhook", at(20*ms)),
		newItem("w-gpc-2", "u-gpc", "mailchimp", at(21*ms)),
	}
	na.Work[1].Action, na.Work[1].Cause = work.Forget, "signup"
	e.must(s.CreateAccount(e.ctx, na), "CreateAccount with initial consent and work")

	e.checkState("u-gpc", c.stored())
	e.equal("Events(u-gpc)", c.events, e.events("u-gpc"))
	ev, err := e.b.Consent().Event(e.ctx, "u-gpc", 2)
	e.must(err, "Event(u-gpc, 2)")
	e.equal("Event(u-gpc, 2)", &c.events[1], ev)

	// The sign-up's work reaches the queue, at the latest after a relay.
	e.relay("u-gpc")
	for _, w := range na.Work {
		e.equal("Item("+w.ID+") after the sign-up", w, e.item(w.ID))
	}
	e.relay("u-gpc")
	e.equal("queued items after relaying twice", []string{"w-gpc-1", "w-gpc-2"}, itemIDs(e.allItems("")))
}

// uniqueCreate runs 50 concurrent sign-ups that differ in id but share
// one unique field, and checks that exactly one won, every loser got
// wantErr, and nothing of a loser was stored.
func uniqueCreate(e *env, wantErr error, mutate func(i int, na *accounts.NewAccount)) {
	e.t.Helper()
	s := e.b.Accounts()
	build := func(i int) accounts.NewAccount {
		id := fmt.Sprintf("u-race-%02d", i)
		na := newAccount(id, fmt.Sprintf("racer%02d", i))
		c := newChain(id)
		c.add("newsletter", false, 1, at(ms))
		na.Consent = c.initial()
		na.Work = []work.Item{newItem("w-race-"+id, id, "webhook", at(ms))}
		mutate(i, &na)
		return na
	}
	errs := e.parallel(concurrency, func(i int) error { return s.CreateAccount(e.ctx, build(i)) })
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			e.t.Errorf("CreateAccount #%d and #%d both succeeded with the same unique field", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, wantErr):
			e.t.Errorf("CreateAccount #%d: %v, want an error that is %v", i, err, wantErr)
		}
	}
	if winner < 0 {
		e.t.Fatalf("none of %d concurrent CreateAccount calls succeeded", concurrency)
	}
	e.relay("")
	for i := range concurrency {
		na := build(i)
		id := na.Account.ID
		r, err := s.Account(e.ctx, id)
		e.must(err, "Account(%s)", id)
		st := e.state(id)
		evs := e.events(id)
		it, err := e.b.Outbox().Item(e.ctx, na.Work[0].ID)
		e.must(err, "Item(%s)", na.Work[0].ID)
		if i == winner {
			e.equal("the winner's account", &na.Account, r)
			e.equal("the winner's events", na.Consent.Events, evs)
			if it == nil {
				e.t.Errorf("the winner's work item %s is missing", na.Work[0].ID)
			}
			continue
		}
		if r != nil || st != nil || len(evs) != 0 || it != nil {
			e.t.Errorf("loser #%d left something behind: account %v, consent state %v, %d events, work item %v",
				i, r != nil, st != nil, len(evs), it != nil)
		}
	}
	var n int
	e.must(s.EachAccount(e.ctx, func(*accounts.Record) error { n++; return nil }), "EachAccount")
	if n != 1 {
		e.t.Errorf("EachAccount saw %d accounts, want 1", n)
	}
	if items := e.allItems(""); len(items) != 1 {
		e.t.Errorf("queue holds %d items (%v), want only the winner's", len(items), itemIDs(items))
	}
}

func testUsernameUniqueConcurrent(e *env) {
	uniqueCreate(e, accounts.ErrUsernameTaken, func(i int, na *accounts.NewAccount) {
		na.Account.Username = fmt.Sprintf("Same%d", i%2) // display forms differ, the key does not
		na.Account.UsernameKey = "samename"
	})
}

// testEmailUniqueConcurrent: a verified address (an import, an admin)
// belongs to one account.
func testEmailUniqueConcurrent(e *env) {
	uniqueCreate(e, accounts.ErrEmailTaken, func(i int, na *accounts.NewAccount) {
		na.Account.EmailIndex = "bidx-shared"
		na.Account.EmailVerified, na.Account.Verification = true, nil
	})
}

// testUnverifiedEmailShared: an unverified address belongs to nobody, so
// any number of accounts may hold it, beside one that holds it verified.
func testUnverifiedEmailShared(e *env) {
	s := e.b.Accounts()
	owner := newAccount("u-owner", "owner")
	owner.Account.EmailIndex, owner.Account.EmailVerified, owner.Account.Verification = "bidx-popular", true, nil
	e.must(s.CreateAccount(e.ctx, owner), "CreateAccount(verified)")
	errs := e.parallel(concurrency, func(i int) error {
		na := newAccount(fmt.Sprintf("u-share-%02d", i), fmt.Sprintf("sharer%02d", i))
		na.Account.EmailIndex = "bidx-popular"
		return s.CreateAccount(e.ctx, na)
	})
	for i, err := range errs {
		if err != nil {
			e.t.Errorf("CreateAccount #%d with an unverified index held by others: %v", i, err)
		}
	}
	e.equal("the verified owner", &owner.Account, e.account("u-owner"))
}

func testSetPasswordHash(e *env) {
	s := e.b.Accounts()
	want := e.createAccount("u-pw")
	other := e.createAccount("u-pw-other")
	e.must(s.SetPasswordHash(e.ctx, "u-pw", "$argon2id$new"), "SetPasswordHash")
	want.PasswordHash = "$argon2id$new"
	e.equal("account after SetPasswordHash", &want, e.account("u-pw"))
	e.equal("another account after SetPasswordHash", &other, e.account("u-pw-other"))
}

func testUpdateProfile(e *env) {
	s := e.b.Accounts()
	want := e.createAccount("u-prof")
	ok, err := s.UpdateAccount(e.ctx, "u-prof", accounts.Update{Profile: map[string][]byte{
		"country":   []byte("sealed-co:new"),
		"birthYear": nil, // clears
	}})
	e.must(err, "UpdateAccount(profile)")
	e.wantBool("UpdateAccount(profile)", true, ok)
	want.Profile.Country, want.Profile.BirthYear = []byte("sealed-co:new"), nil
	e.equal("account after a profile update", &want, e.account("u-prof"))

	ok, err = s.UpdateAccount(e.ctx, "u-prof", accounts.Update{Profile: map[string][]byte{
		"birthYear": []byte("sealed-by:again"), "gender": nil, "language": []byte("sealed-la:ja"),
	}})
	e.must(err, "UpdateAccount(profile 2)")
	e.wantBool("UpdateAccount(profile 2)", true, ok)
	want.Profile = accounts.SealedProfile{BirthYear: []byte("sealed-by:again"), Country: []byte("sealed-co:new"), Language: []byte("sealed-la:ja")}
	e.equal("account after a second profile update", &want, e.account("u-prof"))

	// An empty update of an existing account changes nothing and is no failure.
	ok, err = s.UpdateAccount(e.ctx, "u-prof", accounts.Update{})
	e.must(err, "UpdateAccount(empty)")
	e.wantBool("UpdateAccount(empty) of an existing account", true, ok)
	e.equal("account after an empty update", &want, e.account("u-prof"))

	ok, err = s.UpdateAccount(e.ctx, "u-absent", accounts.Update{Profile: map[string][]byte{"country": []byte("x")}})
	e.must(err, "UpdateAccount(absent)")
	e.wantBool("UpdateAccount of an absent account", false, ok)
	if r, err := s.Account(e.ctx, "u-absent"); err != nil || r != nil {
		e.t.Errorf("UpdateAccount of an absent account created one: %v, %v", r, err)
	}
}

func testUpdateEmail(e *env) {
	s := e.b.Accounts()
	want := e.createAccount("u-mail")
	// Verify first, so that we see the replacement make the email unverified.
	id, err := e.verify(want.Verification.TokenHash, at(0))
	e.must(err, "VerifyEmail")
	if id != "u-mail" {
		e.t.Fatalf("VerifyEmail = %q, want u-mail", id)
	}

	v := &accounts.Verification{TokenHash: "vtok-new", ExpiresAt: at(48 * 3600_000 * ms)}
	ok, err := s.UpdateAccount(e.ctx, "u-mail", accounts.Update{
		Email:   &accounts.EmailUpdate{Sealed: []byte("sealed-email:new"), Index: "bidx-new", Verification: v},
		Profile: map[string][]byte{"language": []byte("sealed-la:en")},
	})
	e.must(err, "UpdateAccount(email)")
	e.wantBool("UpdateAccount(email)", true, ok)
	want.Email, want.EmailIndex, want.EmailVerified, want.Verification = []byte("sealed-email:new"), "bidx-new", false, v
	want.Profile.Language = []byte("sealed-la:en")
	e.equal("account after an email change", &want, e.account("u-mail"))

	// The old index is free again.
	na := newAccount("u-mail-2", "mail2")
	na.Account.EmailIndex = "bidx-u-mail"
	e.must(s.CreateAccount(e.ctx, na), "CreateAccount with the index the first account gave up")

	// Keeping one's own index is not a clash.
	ok, err = s.UpdateAccount(e.ctx, "u-mail", accounts.Update{
		Email: &accounts.EmailUpdate{Sealed: []byte("sealed-email:new2"), Index: "bidx-new", Verification: v},
	})
	e.must(err, "UpdateAccount to the account's own email index")
	e.wantBool("UpdateAccount to the account's own email index", true, ok)
	want.Email = []byte("sealed-email:new2")
	e.equal("account after re-setting its own index", &want, e.account("u-mail"))

	// Removing the email removes its index and verification.
	ok, err = s.UpdateAccount(e.ctx, "u-mail", accounts.Update{Email: &accounts.EmailUpdate{}})
	e.must(err, "UpdateAccount(remove email)")
	e.wantBool("UpdateAccount(remove email)", true, ok)
	want.Email, want.EmailIndex, want.EmailVerified, want.Verification = nil, "", false, nil
	e.equal("account after removing the email", &want, e.account("u-mail"))
	if id, err := e.verify("vtok-new", at(0)); err != nil || id != "" {
		e.t.Errorf("VerifyEmail with the token of a removed email = %q, %v; want \"\"", id, err)
	}
	// And a second account without email does not clash with it.
	na = newAccount("u-mail-3", "mail3")
	na.Account.Email, na.Account.EmailIndex, na.Account.Verification = nil, "", nil
	e.must(s.CreateAccount(e.ctx, na), "CreateAccount without email beside an account whose email was removed")
	// The index it held is free.
	ok, err = s.UpdateAccount(e.ctx, "u-mail-3", accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("s"), Index: "bidx-new", Verification: v}})
	e.must(err, "UpdateAccount to an index given up by removal")
	e.wantBool("UpdateAccount to an index given up by removal", true, ok)
}

// testUpdateEmailTaken: a new email is unverified, so setting one that
// another account holds verified changes this account and not the other.
func testUpdateEmailTaken(e *env) {
	s := e.b.Accounts()
	a := e.createAccount("u-a")
	e.verified("u-a", a.Verification.TokenHash)
	a.EmailVerified, a.Verification = true, nil
	b := e.createAccount("u-b")
	v := &accounts.Verification{TokenHash: "t", ExpiresAt: at(0)}
	ok, err := s.UpdateAccount(e.ctx, "u-b", accounts.Update{
		Email:   &accounts.EmailUpdate{Sealed: []byte("sealed:dup"), Index: a.EmailIndex, Verification: v},
		Profile: map[string][]byte{"country": []byte("sealed-co:changed")},
	})
	e.must(err, "UpdateAccount to another account's verified email index")
	e.wantBool("UpdateAccount to another account's verified email index", true, ok)
	b.Email, b.EmailIndex, b.Verification, b.Profile.Country = []byte("sealed:dup"), a.EmailIndex, v, []byte("sealed-co:changed")
	e.equal("account after setting an address verified elsewhere", &b, e.account("u-b"))
	e.equal("the other account", &a, e.account("u-a"))
}

// testUpdateEmailConcurrent: any number of accounts may set one address.
func testUpdateEmailConcurrent(e *env) {
	s := e.b.Accounts()
	want := make([]accounts.Record, concurrency)
	for i := range concurrency {
		want[i] = e.createAccount(fmt.Sprintf("u-up-%02d", i))
	}
	errs := e.parallel(concurrency, func(i int) error {
		ok, err := s.UpdateAccount(e.ctx, want[i].ID, accounts.Update{Email: &accounts.EmailUpdate{
			Sealed: []byte("sealed:contested"), Index: "bidx-contested",
			Verification: &accounts.Verification{TokenHash: fmt.Sprintf("vt-%d", i), ExpiresAt: at(0)},
		}})
		if err == nil && !ok {
			return errors.New("UpdateAccount returned false for an existing account")
		}
		return err
	})
	for i, err := range errs {
		if err != nil {
			e.t.Errorf("UpdateAccount #%d: %v, want nil", i, err)
			continue
		}
		if r := e.account(want[i].ID); r.EmailIndex != "bidx-contested" || r.EmailVerified {
			e.t.Errorf("account %s has index %q, verified %v", r.ID, r.EmailIndex, r.EmailVerified)
		}
	}
}

func testVerifyEmail(e *env) {
	want := e.createAccount("u-verify")
	e.createAccount("u-verify-other")
	exp := want.Verification.ExpiresAt
	for _, c := range []struct {
		token string
		now   string
	}{{"vtok-wrong", "before expiry"}, {want.Verification.TokenHash, "at expiry"}} {
		now := exp.Add(-ms)
		if c.now == "at expiry" {
			now = exp // "expires after now" is false when it expires exactly now
		}
		id, err := e.verify(c.token, now)
		e.must(err, "VerifyEmail(%s, %s)", c.token, c.now)
		if id != "" {
			e.t.Errorf("VerifyEmail(%s, %s) = %q, want \"\"", c.token, c.now, id)
		}
	}
	e.equal("account after failed verifications", &want, e.account("u-verify"))

	id, err := e.verify(want.Verification.TokenHash, exp.Add(-ms))
	e.must(err, "VerifyEmail")
	if id != "u-verify" {
		e.t.Errorf("VerifyEmail = %q, want u-verify", id)
	}
	want.EmailVerified, want.Verification = true, nil
	e.equal("account after verification", &want, e.account("u-verify"))
	id, err = e.verify("vtok-u-verify", exp.Add(-ms))
	e.must(err, "VerifyEmail again")
	if id != "" {
		e.t.Errorf("VerifyEmail with a used token = %q, want \"\"", id)
	}
	if r := e.account("u-verify-other"); r.EmailVerified || r.Verification == nil {
		e.t.Errorf("another account's verification changed: verified %v, verification %v", r.EmailVerified, r.Verification)
	}
}

func testMarkErasing(e *env) {
	s := e.b.Accounts()
	want := e.createAccount("u-erase")
	e.createAccount("u-stay")
	when := at(5 * 60_000 * ms)
	ok, err := s.MarkErasing(e.ctx, "u-erase", when)
	e.must(err, "MarkErasing")
	e.wantBool("MarkErasing", true, ok)
	ok, err = s.MarkErasing(e.ctx, "u-erase", when.Add(ms))
	e.must(err, "MarkErasing again")
	e.wantBool("MarkErasing of an account already marked", false, ok)
	ok, err = s.MarkErasing(e.ctx, "u-absent", when)
	e.must(err, "MarkErasing(absent)")
	e.wantBool("MarkErasing of an absent account", false, ok)

	want.ErasingSince = &when
	e.equal("Account of an account being erased", &want, e.account("u-erase"))
	r, err := s.AccountByUsername(e.ctx, want.UsernameKey)
	e.must(err, "AccountByUsername")
	e.equal("AccountByUsername of an account being erased", &want, r)

	ok, err = s.UpdateAccount(e.ctx, "u-erase", accounts.Update{Profile: map[string][]byte{"country": []byte("x")},
		Email: &accounts.EmailUpdate{Sealed: []byte("y"), Index: "bidx-y"}})
	e.must(err, "UpdateAccount of an account being erased")
	e.wantBool("UpdateAccount of an account being erased", false, ok)
	e.equal("account after a refused update", &want, e.account("u-erase"))
	// "None of its records change": not its email verification either.
	id, err := e.verify(want.Verification.TokenHash, at(0))
	e.must(err, "VerifyEmail of an account being erased")
	if id != "" {
		e.t.Errorf("VerifyEmail verified an account being erased (%q)", id)
	}
	e.equal("account being erased after VerifyEmail", &want, e.account("u-erase"))

	ids, err := s.Erasing(e.ctx)
	e.must(err, "Erasing")
	e.equal("Erasing()", []string{"u-erase"}, ids)

	var seen []string
	e.must(s.EachAccount(e.ctx, func(r *accounts.Record) error { seen = append(seen, r.ID); return nil }), "EachAccount")
	e.equal("EachAccount (skips accounts being erased)", []string{"u-stay"}, seen)
	seen = nil
	e.must(e.b.Consent().EachState(e.ctx, func(id string, _ *consent.Stored) error { seen = append(seen, id); return nil }), "EachState")
	e.equal("EachState (skips accounts being erased)", []string{"u-stay"}, seen)

	st := e.state("u-erase")
	if st == nil || !st.Erasing {
		e.t.Errorf("State of an account being erased = %+v, want Erasing set", st)
	}
	if st := e.state("u-stay"); st == nil || st.Erasing {
		e.t.Errorf("State of another account = %+v, want Erasing unset", st)
	}
}

func testEachAccountOrder(e *env) {
	s := e.b.Accounts()
	ids := []string{"u-b", "u-A", "u-a", "u-c10", "u-c9", "u-0", "u-ba", "u-c1"}
	shuffled := slices.Clone(ids)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	want := map[string]accounts.Record{}
	for _, id := range shuffled {
		want[id] = e.createAccount(id)
	}
	var seen []string
	e.must(s.EachAccount(e.ctx, func(r *accounts.Record) error {
		seen = append(seen, r.ID)
		w := want[r.ID]
		e.equal("EachAccount record "+r.ID, &w, r)
		return nil
	}), "EachAccount")
	e.equal("EachAccount order (user id, byte order)", sorted(ids), seen)

	stop := errors.New("stop here")
	n := 0
	err := s.EachAccount(e.ctx, func(*accounts.Record) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		e.t.Errorf("EachAccount with fn failing: %v after %d calls; want fn's error after 1 call", err, n)
	}
}

func testImportAccounts(e *env) {
	s := e.b.Accounts()
	var batch []accounts.NewAccount
	for i := range 12 {
		id := fmt.Sprintf("u-imp-%02d", i)
		na := newAccount(id, "imported"+id)
		if i%3 == 0 {
			c := newChain(id)
			c.add("newsletter", false, 1, at(ms))
			na.Consent = c.initial()
			na.Work = []work.Item{newItem("w-"+id, id, "webhook", at(2*ms))}
		}
		if i%4 == 1 {
			na.Account.Email, na.Account.EmailIndex, na.Account.Verification = nil, "", nil
		}
		batch = append(batch, na)
	}
	e.must(s.ImportAccounts(e.ctx, batch), "ImportAccounts")
	e.relay("")
	var wantItems []string
	for _, na := range batch {
		e.equal("imported account "+na.Account.ID, &na.Account, e.account(na.Account.ID))
		want := na.Consent.State
		e.checkState(na.Account.ID, want)
		e.equal("imported events of "+na.Account.ID, na.Consent.Events, e.events(na.Account.ID))
		for _, w := range na.Work {
			wantItems = append(wantItems, w.ID)
			e.equal("imported work item "+w.ID, w, e.item(w.ID))
		}
	}
	e.equal("queued items after import", wantItems, itemIDs(e.allItems("")))
	var n int
	e.must(s.EachAccount(e.ctx, func(*accounts.Record) error { n++; return nil }), "EachAccount")
	if n != len(batch) {
		e.t.Errorf("EachAccount saw %d accounts after importing %d", n, len(batch))
	}
}

func testImportAccountsTaken(e *env) {
	s := e.b.Accounts()
	ex := e.createAccount("u-existing")
	e.verified("u-existing", ex.Verification.TokenHash)
	for _, c := range []struct {
		name  string
		batch []accounts.NewAccount
	}{
		{"a username key in use", func() []accounts.NewAccount {
			a, b := newAccount("u-i1", "fresh1"), newAccount("u-i2", "x")
			b.Account.UsernameKey = "user_u-existing"
			return []accounts.NewAccount{a, b}
		}()},
		{"a verified email index in use", func() []accounts.NewAccount {
			a := newAccount("u-i3", "fresh3")
			a.Account.EmailIndex = "bidx-u-existing"
			a.Account.EmailVerified, a.Account.Verification = true, nil
			return []accounts.NewAccount{a}
		}()},
		{"a username key twice in the batch", func() []accounts.NewAccount {
			a, b := newAccount("u-i4", "twice"), newAccount("u-i5", "TWICE")
			return []accounts.NewAccount{a, b}
		}()},
	} {
		if err := s.ImportAccounts(e.ctx, c.batch); err == nil {
			e.t.Errorf("ImportAccounts with %s succeeded, want an error", c.name)
		}
		// "Fails as a whole": none of the batch is stored, the accounts
		// without a clash included.
		for _, na := range c.batch {
			if r, err := s.Account(e.ctx, na.Account.ID); err != nil || r != nil {
				e.t.Errorf("after ImportAccounts with %s failed, account %s exists (%v): the import did not fail as a whole", c.name, na.Account.ID, err)
			}
		}
	}
	if r := e.account("u-existing"); r.Username != "User_u-existing" {
		e.t.Errorf("a failed import changed the existing account: %+v", r)
	}
}

// testErasingKeepsPassword: MarkErasing's doc says that from then on none
// of the account's records change; SetPasswordHash (a password change or a
// rehash at sign-in racing the erasure) is no exception.
func testErasingKeepsPassword(e *env) {
	s := e.b.Accounts()
	want := e.createAccount("u-erase")
	when := at(time.Minute)
	ok, err := s.MarkErasing(e.ctx, "u-erase", when)
	e.must(err, "MarkErasing")
	e.wantBool("MarkErasing", true, ok)
	want.ErasingSince = &when
	if err := s.SetPasswordHash(e.ctx, "u-erase", "$argon2id$late"); err != nil {
		e.t.Logf("SetPasswordHash of an account being erased: %v (an error is fine, a change is not)", err)
	}
	e.equal("account being erased after SetPasswordHash", &want, e.account("u-erase"))
}
