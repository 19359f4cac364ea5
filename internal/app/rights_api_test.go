package app_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
)

const profileQuery = `{ me { profile { birthYear country gender language } } }`

type profileOut struct {
	Me struct {
		Profile struct {
			BirthYear         *int
			Country, Language *string
			Gender            *string
		}
	}
}

func TestUpdateProfileSetsClearsAndKeeps(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "rectifier")
	r := c.Do(t, `mutation { updateProfile(input: {country: "fr", birthYear: 1985, language: "fr"}) { profile { country } } }`, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("update: %s", r.Raw)
	}
	// null clears country, absent language stays, gender is set.
	r = c.Do(t, `mutation { updateProfile(input: {country: null, gender: MALE}) { id } }`, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("update: %s", r.Raw)
	}
	var p profileOut
	c.Do(t, profileQuery, nil).Decode(t, &p)
	got := p.Me.Profile
	if got.Country != nil || got.Language == nil || *got.Language != "fr" || *got.BirthYear != 1985 || *got.Gender != "MALE" {
		t.Fatalf("profile after updates: %+v", got)
	}
	before := s.Dump(t)
	r = c.Do(t, `mutation { updateProfile(input: {country: "Atlantis"}) { id } }`, nil)
	if r.Code() != "BAD_USER_INPUT" || r.Field() != "input.country" {
		t.Fatalf("bad country: %s", r.Raw)
	}
	if after := s.Dump(t); after != before {
		t.Fatal("a refused update changed the database")
	}
	if r := s.Client().Do(t, `mutation { updateProfile(input: {country: "DE"}) { id } }`, nil); r.Code() != "UNAUTHENTICATED" {
		t.Fatalf("anonymous update: %s", r.Raw)
	}
}

func TestEmailVerificationThroughRealSMTP(t *testing.T) {
	t.Parallel()
	mp := mailpittest.Start(t)
	s := apptest.Start(t, func(c *config.Config) { c.SMTPURL = mp.SMTPURL() })
	c := s.Register(t, "mailer")
	var out struct {
		SetEmail struct {
			Email         string
			EmailVerified bool
		}
	}
	c.Do(t, `mutation { setEmail(email: "Mailer@Example.ORG") { email emailVerified } }`, nil).Decode(t, &out)
	if out.SetEmail.Email != "Mailer@example.org" || out.SetEmail.EmailVerified {
		t.Fatalf("after setEmail: %+v", out.SetEmail)
	}
	msg := mp.WaitFor(t, "Mailer@example.org", 15*time.Second)
	i := strings.Index(msg.Text, "cgv_")
	if i < 0 {
		t.Fatalf("no token in mail: %q", msg.Text)
	}
	token := strings.Fields(msg.Text[i:])[0]
	if r := s.Client().Do(t, `mutation($t: String!) { verifyEmail(token: $t) }`, map[string]any{"t": token + "x"}); r.Code() != "BAD_USER_INPUT" {
		t.Fatalf("wrong token: %s", r.Raw)
	}
	var v struct{ VerifyEmail bool }
	s.Client().Do(t, `mutation($t: String!) { verifyEmail(token: $t) }`, map[string]any{"t": token}).Decode(t, &v)
	var me struct{ Me struct{ EmailVerified bool } }
	c.Do(t, `{ me { emailVerified } }`, nil).Decode(t, &me)
	if !v.VerifyEmail || !me.Me.EmailVerified {
		t.Fatal("token did not verify the address")
	}
	if r := s.Client().Do(t, `mutation($t: String!) { verifyEmail(token: $t) }`, map[string]any{"t": token}); r.Code() != "BAD_USER_INPUT" {
		t.Fatalf("token reused: %s", r.Raw)
	}
	// Another account cannot take the address, and is not told that it is
	// in use: its answer is a plain success. The owner is told instead, and
	// no verification link goes out.
	other := s.Register(t, "squatter")
	if r := other.Do(t, `mutation { setEmail(email: "mailer@example.org") { id } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("setting an address verified elsewhere: %s", r.Raw)
	}
	if m := mp.WaitFor(t, "mailer@example.org", 15*time.Second); strings.Contains(m.Text, "cgv_") || !strings.Contains(m.Subject, "tried to add") {
		t.Fatalf("mail to the owner: %q %q", m.Subject, m.Text)
	}
	// Removing it works and clears verification.
	var rm struct {
		SetEmail struct {
			Email         *string
			EmailVerified bool
		}
	}
	c.Do(t, `mutation { setEmail(email: null) { email emailVerified } }`, nil).Decode(t, &rm)
	if rm.SetEmail.Email != nil || rm.SetEmail.EmailVerified {
		t.Fatalf("after removal: %+v", rm.SetEmail)
	}
}

func TestDeleteMyAccount(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Client()
	var reg struct {
		Register struct{ User struct{ ID string } }
	}
	c.Do(t, registerMutation, map[string]any{"in": map[string]any{
		"username": "leaver", "password": "correct horse battery", "email": "leaver@example.org",
		"profile": map[string]any{"country": "SE"},
	}}).Decode(t, &reg)
	id := reg.Register.User.ID
	ctx := context.Background()
	// A copy of the stored account, as a backup would hold it.
	copyBefore, err := s.Store().Accounts().Account(ctx, id)
	if err != nil || copyBefore == nil || copyBefore.Email == nil {
		t.Fatalf("stored account before erasure: %+v, %v", copyBefore, err)
	}
	if _, err := s.App.Accounts.Get(ctx, id); err != nil {
		t.Fatalf("readable before erasure: %v", err)
	}

	if r := c.Do(t, `mutation { grantConsent(purpose: "newsletter") { receipt } }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	if r := c.Do(t, `mutation { deleteMyAccount(password: "not my password") }`, nil); r.Code() != "BAD_USER_INPUT" {
		t.Fatalf("wrong password: %s", r.Raw)
	}
	if n := countUsers(t, s); n != 1 {
		t.Fatal("a refused erasure deleted the account")
	}
	var del struct{ DeleteMyAccount bool }
	c.Do(t, `mutation { deleteMyAccount(password: "correct horse battery") }`, nil).Decode(t, &del)
	if !del.DeleteMyAccount {
		t.Fatal("deleteMyAccount returned false")
	}
	var me struct{ Me *struct{ ID string } }
	c.Do(t, meQuery, nil).Decode(t, &me)
	if me.Me != nil {
		t.Fatal("session survived erasure")
	}
	// A copy of the account taken before erasure is now unreadable: its key is gone.
	if err := s.Store().Accounts().CreateAccount(ctx, accounts.NewAccount{Account: *copyBefore}); err != nil {
		t.Fatalf("restore the copy: %v", err)
	}
	if _, err := s.App.Accounts.Get(ctx, id); !errors.Is(err, accounts.ErrShredded) {
		t.Fatalf("restored copy after erasure: err %v, want ErrShredded", err)
	}
	if err := s.Store().Accounts().DeleteAccount(ctx, id); err != nil {
		t.Fatal(err)
	}
	// Only the pseudonymous, signed ledger stays, as proof of consent.
	archive := s.Dump(t)
	if !strings.Contains(archive, "consent_archive") || strings.Contains(archive, "leaver") {
		t.Fatalf("after erasure the store holds:\n%s", archive)
	}
	// The username is free again.
	s.Register(t, "leaver")
}

func TestEraseUserIsAdminOnly(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *config.Config) { c.AdminUsername, c.AdminPassword = "dpo", "data protection officer" })
	victim := s.Register(t, "subject")
	var me struct{ Me struct{ ID string } }
	victim.Do(t, `{ me { id } }`, nil).Decode(t, &me)
	other := s.Register(t, "nosy")
	if r := other.Do(t, `mutation($id: ID!) { eraseUser(id: $id) }`, map[string]any{"id": me.Me.ID}); r.Code() != "FORBIDDEN" {
		t.Fatalf("user erasing another: %s", r.Raw)
	}
	admin := s.Client()
	var login struct{ Login struct{ Token string } }
	admin.Do(t, `mutation { login(username: "dpo", password: "data protection officer") { token } }`, nil).Decode(t, &login)
	if r := admin.Do(t, `mutation($id: ID!) { eraseUser(id: $id) }`, map[string]any{"id": "nonexistent"}); r.Code() != "NOT_FOUND" {
		t.Fatalf("erasing unknown id: %s", r.Raw)
	}
	var out struct{ EraseUser bool }
	admin.Do(t, `mutation($id: ID!) { eraseUser(id: $id) }`, map[string]any{"id": me.Me.ID}).Decode(t, &out)
	if n := countUsers(t, s); n != 2 { // admin and nosy
		t.Fatalf("%d users left, want 2", n)
	}
}

// An erasure interrupted after its mark (a crash, a failing listener) is
// finished on the next start.
func TestInterruptedErasureResumesOnRestart(t *testing.T) {
	t.Parallel()
	cfg := apptest.ConfigOn(t, apptest.Kind())
	s := apptest.StartWith(t, cfg)
	c := s.Register(t, "interrupted")
	var me struct{ Me struct{ ID string } }
	c.Do(t, `{ me { id } }`, nil).Decode(t, &me)
	failing := errors.New("processor queue unavailable")
	s.App.Accounts.Subscribe(func(_ context.Context, ch accounts.Change) error {
		if ch.Kind == accounts.Erasing {
			return failing
		}
		return nil
	})
	if err := s.App.Accounts.Erase(context.Background(), me.Me.ID); !errors.Is(err, failing) {
		t.Fatalf("erase with failing listener: %v", err)
	}
	if r := s.Client().Do(t, `mutation { login(username: "interrupted", password: "correct horse battery") { token } }`, nil); r.Code() != "UNAUTHENTICATED" {
		t.Fatalf("login during erasure: %s", r.Raw)
	}
	s.Close()
	s = apptest.StartWith(t, cfg)
	if n := countUsers(t, s); n != 0 {
		t.Fatalf("%d users after restart, want the erasure finished", n)
	}
}
