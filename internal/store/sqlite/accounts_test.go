package sqlite

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/work"
)

func TestAccountRoundTrip(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	s := d.Accounts()
	erasing := t0.Add(time.Minute)
	a := newAccount("u1", "Alice")
	a.Account.UsernameKey = "alice"
	a.Account.Email, a.Account.EmailIndex = []byte("sealed-mail"), "idx-a"
	a.Account.Verification = &accounts.Verification{TokenHash: "tok", ExpiresAt: t0.Add(time.Hour)}
	a.Account.Profile = accounts.SealedProfile{BirthYear: []byte("by"), Country: []byte("c"), Gender: []byte("g"), Language: []byte("l")}
	a.Account.ErasingSince = &erasing
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, get := range []func() (*accounts.Record, error){
		func() (*accounts.Record, error) { return s.Account(ctx, "u1") },
		func() (*accounts.Record, error) { return s.AccountByUsername(ctx, "alice") },
	} {
		r, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*r, a.Account) {
			t.Errorf("round trip:\n got %+v\nwant %+v", *r, a.Account)
		}
		if r.CreatedAt.Location() != time.UTC {
			t.Errorf("time not in UTC: %v", r.CreatedAt.Location())
		}
	}
	if r, err := s.Account(ctx, "nobody"); r != nil || err != nil {
		t.Errorf("absent account: %v %v", r, err)
	}
	if r, err := s.AccountByUsername(ctx, "nobody"); r != nil || err != nil {
		t.Errorf("absent username: %v %v", r, err)
	}
}

func TestCreateAccountUniqueness(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	s := d.Accounts()
	a := newAccount("u1", "alice")
	a.Account.EmailIndex, a.Account.EmailVerified = "mail-a", true
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Accounts without email never clash on it.
	for i := 0; i < 3; i++ {
		if err := s.CreateAccount(ctx, newAccount(fmt.Sprintf("n%d", i), fmt.Sprintf("nomail%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	b := newAccount("u2", "alice")
	if err := s.CreateAccount(ctx, b); !errors.Is(err, accounts.ErrUsernameTaken) {
		t.Errorf("same username: %v", err)
	}
	// Only verified addresses are unique: an unverified one belongs to nobody.
	c := newAccount("u3", "carol")
	c.Account.EmailIndex, c.Account.EmailVerified = "mail-a", true
	if err := s.CreateAccount(ctx, c); !errors.Is(err, accounts.ErrEmailTaken) {
		t.Errorf("same verified email: %v", err)
	}
	unverified := newAccount("u5", "carol")
	unverified.Account.EmailIndex = "mail-a"
	if err := s.CreateAccount(ctx, unverified); err != nil {
		t.Errorf("same email, unverified: %v", err)
	}
	both := newAccount("u4", "alice")
	both.Account.EmailIndex = "mail-a"
	if err := s.CreateAccount(ctx, both); !errors.Is(err, accounts.ErrUsernameTaken) {
		t.Errorf("same username and email: %v", err)
	}
	for _, id := range []string{"u2", "u3", "u4"} {
		if r, _ := s.Account(ctx, id); r != nil {
			t.Errorf("refused account %s was stored", id)
		}
	}
}

// A sign-up stores its consent and work items with the account, or
// nothing at all.
func TestCreateAccountIsAllOrNothing(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	if _, err := d.Outbox().Enqueue(ctx, newItem("taken", "x", "p", t0)); err != nil {
		t.Fatal(err)
	}
	ev := consent.Event{Seq: 1, Purpose: "ads", Action: consent.Withdraw, PolicyVersion: "v1", PolicyN: 1, At: t0, Method: consent.GPC, Hash: "h1"}
	a := newAccount("u1", "alice")
	a.Consent = consent.Initial{State: consent.Stored{Head: 1, HeadHash: "h1", State: map[string]consent.Entry{"ads": entryOf(&ev)}}, Events: []consent.Event{ev}}
	a.Work = []work.Item{newItem("w1", "u1", "p", t0), newItem("taken", "u1", "p", t0)}
	if err := d.Accounts().CreateAccount(ctx, a); err == nil {
		t.Fatal("sign-up with a clashing item id succeeded")
	}
	if r, _ := d.Accounts().Account(ctx, "u1"); r != nil {
		t.Error("account stored although its work failed")
	}
	if it, _ := d.Outbox().Item(ctx, "w1"); it != nil {
		t.Error("work item stored although the sign-up failed")
	}
	a.Work = a.Work[:1]
	if err := d.Accounts().CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	st, err := d.Consent().State(ctx, "u1")
	if err != nil || st == nil || st.Head != 1 || st.HeadHash != "h1" || !reflect.DeepEqual(st.State["ads"], entryOf(&ev)) {
		t.Fatalf("initial consent: %+v %v", st, err)
	}
	evs, err := d.Consent().Events(ctx, "u1", 0, 0)
	if err != nil || len(evs) != 1 || !reflect.DeepEqual(evs[0], ev) {
		t.Fatalf("initial ledger: %+v %v", evs, err)
	}
	if it, _ := d.Outbox().Item(ctx, "w1"); it == nil {
		t.Error("sign-up work item missing")
	}
}

func TestConcurrentSignUpsOfOneUsername(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	// race creates 50 accounts at once from account(i) and counts the
	// winners and the refusals with want.
	race := func(account func(i int) accounts.NewAccount, want error) (wins, taken int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := d.Accounts().CreateAccount(ctx, account(i))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, want):
					taken++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		return wins, taken
	}
	wins, taken := race(func(i int) accounts.NewAccount {
		a := newAccount(fmt.Sprintf("u%d", i), "same")
		a.Account.EmailIndex = fmt.Sprintf("mail%d", i)
		return a
	}, accounts.ErrUsernameTaken)
	if wins != 1 || taken != 49 {
		t.Fatalf("%d sign-ups won, %d were refused", wins, taken)
	}
	// The same for one email under different usernames.
	wins, taken = race(func(i int) accounts.NewAccount {
		a := newAccount(fmt.Sprintf("e%d", i), fmt.Sprintf("name%d", i))
		a.Account.EmailIndex, a.Account.EmailVerified = "shared-mail", true
		return a
	}, accounts.ErrEmailTaken)
	if wins != 1 || taken != 49 {
		t.Fatalf("email: %d sign-ups won, %d were refused", wins, taken)
	}
}

func TestImportAccountsFailsAsAWhole(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	s := d.Accounts()
	if err := s.CreateAccount(ctx, newAccount("x", "taken")); err != nil {
		t.Fatal(err)
	}
	batch := []accounts.NewAccount{newAccount("a", "a"), newAccount("b", "taken"), newAccount("c", "c")}
	if err := s.ImportAccounts(ctx, batch); !errors.Is(err, accounts.ErrUsernameTaken) {
		t.Fatalf("import with a taken username: %v", err)
	}
	if r, _ := s.Account(ctx, "a"); r != nil {
		t.Error("part of a failed import was stored")
	}
	batch[1] = newAccount("b", "b")
	if err := s.ImportAccounts(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := s.EachAccount(ctx, func(r *accounts.Record) error { ids = append(ids, r.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids, []string{"a", "b", "c", "x"}) {
		t.Errorf("accounts %v", ids)
	}
}

func TestUpdateAccount(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	s := d.Accounts()
	a := newAccount("u1", "alice")
	a.Account.Profile.Country = []byte("c0")
	a.Account.Profile.Gender = []byte("g0")
	a.Account.Email, a.Account.EmailIndex, a.Account.EmailVerified = []byte("m0"), "i0", true
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	b := newAccount("u2", "bob")
	b.Account.EmailIndex = "ib"
	if err := s.CreateAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	// Profile: set one, clear one, leave the others.
	ok, err := s.UpdateAccount(ctx, "u1", accounts.Update{Profile: map[string][]byte{"birthYear": []byte("b1"), "gender": nil}})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	r, _ := s.Account(ctx, "u1")
	if string(r.Profile.BirthYear) != "b1" || r.Profile.Gender != nil || string(r.Profile.Country) != "c0" || string(r.Email) != "m0" || !r.EmailVerified {
		t.Fatalf("after profile update: %+v", r)
	}
	// An index another account holds (unverified) is no clash.
	ok, err = s.UpdateAccount(ctx, "u1", accounts.Update{Profile: map[string][]byte{"country": []byte("c1")},
		Email: &accounts.EmailUpdate{Sealed: []byte("m1"), Index: "ib"}})
	if err != nil || !ok {
		t.Fatalf("shared unverified email: %v %v", ok, err)
	}
	// A new email is unverified and carries its verification.
	v := &accounts.Verification{TokenHash: "tok1", ExpiresAt: t0.Add(time.Hour)}
	if ok, err := s.UpdateAccount(ctx, "u1", accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("m1"), Index: "i1", Verification: v}}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	r, _ = s.Account(ctx, "u1")
	if string(r.Email) != "m1" || r.EmailIndex != "i1" || r.EmailVerified || !reflect.DeepEqual(r.Verification, v) {
		t.Fatalf("after email change: %+v", r)
	}
	// Verification: wrong token, expired, then right.
	if id, err := verify(s, "nope", t0); id != "" || err != nil {
		t.Fatal(id, err)
	}
	if id, err := verify(s, "tok1", t0.Add(time.Hour)); id != "" || err != nil {
		t.Fatalf("expired token verified: %q %v", id, err)
	}
	if id, err := verify(s, "tok1", t0); id != "u1" || err != nil {
		t.Fatal(id, err)
	}
	r, _ = s.Account(ctx, "u1")
	if !r.EmailVerified || r.Verification != nil {
		t.Fatalf("after verification: %+v", r)
	}
	if id, _ := verify(s, "tok1", t0); id != "" {
		t.Error("a token verified twice")
	}
	// Removing the email removes index and verification; the index is free.
	if ok, err := s.UpdateAccount(ctx, "u1", accounts.Update{Email: &accounts.EmailUpdate{}}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	r, _ = s.Account(ctx, "u1")
	if r.Email != nil || r.EmailIndex != "" || r.EmailVerified || r.Verification != nil {
		t.Fatalf("after email removal: %+v", r)
	}
	if ok, err := s.UpdateAccount(ctx, "u2", accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("x"), Index: "i1"}}); err != nil || !ok {
		t.Fatalf("freed index: %v %v", ok, err)
	}
	// Absent and erasing accounts are not updated.
	if ok, err := s.UpdateAccount(ctx, "nobody", accounts.Update{Profile: map[string][]byte{"country": nil}}); ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := s.MarkErasing(ctx, "u2", t0); !ok {
		t.Fatal("mark erasing")
	}
	if ok, err := s.UpdateAccount(ctx, "u2", accounts.Update{Profile: map[string][]byte{"country": []byte("c")}}); ok || err != nil {
		t.Fatalf("erasing account updated: %v %v", ok, err)
	}
	if ok, err := s.UpdateAccount(ctx, "u2", accounts.Update{}); ok || err != nil {
		t.Fatalf("empty update of an erasing account: %v %v", ok, err)
	}
	if ok, err := s.UpdateAccount(ctx, "u1", accounts.Update{}); !ok || err != nil {
		t.Fatalf("empty update: %v %v", ok, err)
	}
	if _, err := s.UpdateAccount(ctx, "u1", accounts.Update{Profile: map[string][]byte{"shoeSize": nil}}); err == nil {
		t.Error("unknown profile field accepted")
	}
}

func TestErasureAndDeletion(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	s := d.Accounts()
	for _, id := range []string{"u1", "u2", "u3"} {
		if err := s.CreateAccount(ctx, newAccount(id, "name-"+id)); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := s.MarkErasing(ctx, "u2", t0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := s.MarkErasing(ctx, "u2", t0); ok {
		t.Error("marked twice")
	}
	if ok, _ := s.MarkErasing(ctx, "nobody", t0); ok {
		t.Error("marked an absent account")
	}
	if ids, err := s.Erasing(ctx); err != nil || !reflect.DeepEqual(ids, []string{"u2"}) {
		t.Fatalf("erasing: %v %v", ids, err)
	}
	if r, _ := s.AccountByUsername(ctx, "name-u2"); r == nil || r.ErasingSince == nil || !r.ErasingSince.Equal(t0) {
		t.Fatalf("erasing account by username: %+v", r)
	}
	var live []string
	_ = s.EachAccount(ctx, func(r *accounts.Record) error { live = append(live, r.ID); return nil })
	if !reflect.DeepEqual(live, []string{"u1", "u3"}) {
		t.Errorf("EachAccount: %v", live)
	}
	// No record of an erasing account changes.
	s.SetPasswordHash(ctx, "u2", "new")
	if r, _ := s.Account(ctx, "u2"); r.PasswordHash != "hash" {
		t.Error("password of an erasing account changed")
	}
	s.SetPasswordHash(ctx, "u1", "new")
	if r, _ := s.Account(ctx, "u1"); r.PasswordHash != "new" {
		t.Error("password not changed")
	}

	// Deletion takes consent state, ledger and processor state along;
	// queued items and disclosures stay.
	ev := consent.Event{Seq: 1, Purpose: "p", Action: consent.Grant, At: t0, Hash: "h"}
	if ok, err := d.Consent().RecordChange(ctx, "u1", ev, []work.Item{newItem("i1", "u1", "proc", t0)}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := d.Outbox().MarkAttempted(ctx, "u1", "proc"); !ok {
		t.Fatal("mark attempted")
	}
	items, _ := d.Outbox().Claim(ctx, "o", []string{"proc"}, t0, t0.Add(time.Minute), 1)
	if len(items) != 1 {
		t.Fatal("claim")
	}
	if ok, _ := d.Outbox().Finish(ctx, outbox.Finish{Item: items[0], State: work.Done, At: t0,
		Disclosure: &outbox.Disclosure{ID: "i1", UserID: "u1", Processor: "proc", At: t0}}); !ok {
		t.Fatal("finish")
	}
	if err := s.DeleteAccount(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "u1"); err != nil {
		t.Fatalf("deleting an absent account: %v", err)
	}
	for table, n := range map[string]int{"consent_state": 0, "consent_events": 0, "proc_state": 0, "outbox_items": 1, "disclosures": 1} {
		var got int
		if err := d.w.QueryRow(`SELECT count(*) FROM ` + table + ` WHERE user_id = 'u1'`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Errorf("%s holds %d rows of the deleted account, want %d", table, got, n)
		}
	}
	if r, _ := s.Account(ctx, "u1"); r != nil {
		t.Error("deleted account still there")
	}
}

func TestDataKeysAndSessions(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	s := d.Accounts()
	if err := s.InsertDataKey(ctx, accounts.DataKey{UserID: "u1", Wrapped: []byte("k1"), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertDataKey(ctx, accounts.DataKey{UserID: "u1", Wrapped: []byte("k2"), CreatedAt: t0}); err == nil {
		t.Error("a second key for one user")
	}
	var keys []accounts.DataKey
	for i := 0; i < 2500; i++ {
		keys = append(keys, accounts.DataKey{UserID: fmt.Sprintf("v%05d", i), Wrapped: []byte{byte(i)}, CreatedAt: t0})
	}
	if err := s.ImportDataKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	n := 0
	last := ""
	err := s.EachDataKey(ctx, func(k accounts.DataKey) error {
		if k.UserID <= last {
			t.Fatalf("out of order: %s after %s", k.UserID, last)
		}
		last = k.UserID
		n++
		return nil
	})
	if err != nil || n != 2501 {
		t.Fatalf("EachDataKey: %d keys, %v", n, err)
	}
	stop := errors.New("stop")
	if err := s.EachDataKey(ctx, func(accounts.DataKey) error { return stop }); err != stop {
		t.Errorf("fn's error: %v", err)
	}
	if ok, _ := s.SwapDataKey(ctx, "u1", []byte("wrong"), []byte("k3")); ok {
		t.Error("swapped from a wrong old key")
	}
	if ok, _ := s.SwapDataKey(ctx, "u1", []byte("k1"), []byte("k3")); !ok {
		t.Error("swap failed")
	}
	if k, _ := s.DataKey(ctx, "u1"); string(k) != "k3" {
		t.Errorf("key %q", k)
	}
	if err := s.DeleteDataKey(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDataKey(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if k, err := s.DataKey(ctx, "u1"); k != nil || err != nil {
		t.Errorf("deleted key: %v %v", k, err)
	}
	if ok, _ := s.SwapDataKey(ctx, "u1", []byte("k3"), []byte("k4")); ok {
		t.Error("swap brought a destroyed key back")
	}

	sess := accounts.SessionRecord{ID: "s1", UserID: "u1", Role: "USER", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	for _, r := range []accounts.SessionRecord{sess,
		{ID: "s2", UserID: "u1", Role: "USER", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)},
		{ID: "s3", UserID: "u2", Role: "ADMIN", CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)}} {
		if err := s.InsertSession(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Session(ctx, "s1"); err != nil || !reflect.DeepEqual(*got, sess) {
		t.Fatalf("session: %+v %v", got, err)
	}
	if got, err := s.Session(ctx, "nope"); got != nil || err != nil {
		t.Fatal(got, err)
	}
	if l, _ := s.UserSessions(ctx, "u1"); len(l) != 2 {
		t.Errorf("user sessions: %v", l)
	}
	if n, _ := s.CountSessions(ctx, t0.Add(time.Minute)); n != 2 {
		t.Errorf("count at +1m: %d", n)
	}
	if n, _ := s.DeleteExpiredSessions(ctx, t0.Add(time.Minute)); n != 1 {
		t.Errorf("swept %d", n)
	}
	if err := s.DeleteUserSessions(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, "s3"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountSessions(ctx, t0); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

// verify calls VerifyEmail and returns the id it verified.
func verify(s accounts.Store, tokenHash string, now time.Time) (string, error) {
	res, err := s.VerifyEmail(context.Background(), tokenHash, now, accounts.Notice{Kind: accounts.NoticeEmailClaimed, At: now})
	return res.UserID, err
}
