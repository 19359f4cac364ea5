package seed_test

import (
	"context"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/seed"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// Seeded users are real accounts: they sign in with the demo password,
// their personal data is sealed, their consent is in force or withdrawn as
// generated, and the cells built in bulk are exactly what a reconciliation
// recounts from them.
func TestSeedMakesRealConsistentUsers(t *testing.T) {
	for _, kind := range storetest.Kinds {
		t.Run(kind, func(t *testing.T) { testSeed(t, kind) })
	}
}

func testSeed(t *testing.T, kind string) {
	s := apptest.StartOn(t, kind)
	ctx := context.Background()
	var users []seed.User
	res, err := seed.Run(ctx, s.App, seed.Options{Users: 300, Grants: 5, RandSeed: 42, OnUser: func(u seed.User) { users = append(users, u) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Users != 300 || len(users) != 300 || res.Granted != 5 {
		t.Fatalf("result %+v with %d users reported", res, len(users))
	}
	if res.Counting == 300 || res.Counting < 200 {
		t.Fatalf("%d of 300 count; want most, but not all (some withdraw by Global Privacy Control)", res.Counting)
	}
	n := 0
	err = s.Store().Accounts().EachAccount(ctx, func(*accounts.Record) error { n++; return nil })
	if err != nil || n != 300 {
		t.Fatalf("%d users stored (%v)", n, err)
	}
	rep, err := s.App.Demographics.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.UsersCounted != res.Counting || rep.Drift != 0 || rep.MembersRepaired != 0 || rep.CellsRepaired != 0 {
		t.Fatalf("reconciliation after seeding: %+v; want no drift and %d users", rep, res.Counting)
	}
	// A seeded user signs in with the demo password and sees their profile.
	u := users[len(users)-1]
	c := s.Client()
	r := c.Do(t, `mutation($u: String!, $p: String!) { login(username: $u, password: $p) { user { id profile { country birthYear } } } }`,
		map[string]any{"u": u.Username, "p": seed.DemoPassword})
	var out struct {
		Login struct {
			User struct {
				ID      string
				Profile struct {
					Country   *string
					BirthYear *int
				}
			}
		}
	}
	r.Decode(t, &out)
	if got := out.Login.User; got.ID != u.ID || !equal(got.Profile.Country, u.Profile.Country) || !equal(got.Profile.BirthYear, u.Profile.BirthYear) {
		t.Fatalf("signed in as %+v, seeded %+v", got, u)
	}
	// Personal data is sealed like any other account's: no stored account
	// holds a seeded email in clear, though some have one.
	withEmail, found := 0, false
	err = s.Store().Accounts().EachAccount(ctx, func(r *accounts.Record) error {
		if r.Email != nil {
			withEmail++
		}
		if strings.Contains(string(r.Email), "@example.org") || strings.Contains(r.EmailIndex, "@example.org") {
			t.Errorf("account %s stores its email in clear", r.ID)
		}
		found = found || r.Username == u.Username
		return nil
	})
	if err != nil || withEmail == 0 || !found {
		t.Fatalf("%d stored accounts have an email, seeded user stored: %v (%v)", withEmail, found, err)
	}
}

func equal[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func TestMainRejectsBadFlags(t *testing.T) {
	var out strings.Builder
	err := seed.Main([]string{"--users", "many"}, func(string) string { return "" }, &out, &out)
	if err == nil || !strings.Contains(out.String()+err.Error(), "users") {
		t.Fatalf("--users many: %v, %s", err, out.String())
	}
	err = seed.Main([]string{"--users=1", "--no-such-flag"}, func(string) string { return "" }, &out, &out)
	if err == nil {
		t.Fatal("an unknown server flag was accepted")
	}
}
