package accounts_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/apperr"
)

// Seeds are in testdata/fuzz/FuzzNormalizeUsername; CI runs each target
// for a few seconds (scripts/test.sh).
func FuzzNormalizeUsername(f *testing.F) {
	for _, s := range []string{"alice", "Alice_01", "a.b-c", "ab", strings.Repeat("x", 33), "bob smith", "émile", "ＡＢＣ", "a\x00b", "İstanbul"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		key, err := accounts.NormalizeUsername("u", name)
		if err != nil {
			if apperr.CodeOf(err) != "BAD_USER_INPUT" {
				t.Fatalf("refusal of %q is not BAD_USER_INPUT: %v", name, err)
			}
			return
		}
		if len(key) < 3 || len(key) > 32 || key != strings.ToLower(name) || len(key) != len(name) {
			t.Fatalf("%q accepted as %q", name, key)
		}
		for _, r := range key {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("_.-", r)) {
				t.Fatalf("key %q of %q holds %q", key, name, r)
			}
		}
		again, err := accounts.NormalizeUsername("u", key)
		if err != nil || again != key {
			t.Fatalf("normalizing is not idempotent: %q -> %q -> %q (%v)", name, key, again, err)
		}
	})
}

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"a@example.org", "A.B@Example.ORG", " x@y.z ", "no-at-sign", "a@b", "\"q u\"@example.org",
		"Name <a@example.org>", "a@example.org\r\nBcc: x@y.z", strings.Repeat("a", 250) + "@x.io", "a@[127.0.0.1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, email string) {
		n, err := accounts.NormalizeEmail("e", email)
		if err != nil {
			if apperr.CodeOf(err) != "BAD_USER_INPUT" {
				t.Fatalf("refusal of %q is not BAD_USER_INPUT: %v", email, err)
			}
			return
		}
		if len(n) > 254 || !utf8.ValidString(n) || strings.ContainsAny(n, " \t\r\n<>") || strings.Count(n, "@") < 1 {
			t.Fatalf("%q accepted as %q", email, n)
		}
		again, err := accounts.NormalizeEmail("e", n)
		if err != nil || again != n {
			t.Fatalf("normalizing is not idempotent: %q -> %q -> %q (%v)", email, n, again, err)
		}
		if accounts.EmailKey(n) != accounts.EmailKey(again) {
			t.Fatal("email key differs between equal addresses")
		}
	})
}

func FuzzCheckPassword(f *testing.F) {
	for _, s := range []string{"correct horse battery", "short", strings.Repeat("p", 129), "\xff\xfe invalid utf8 x", "ünïcödé pässwörd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pw string) {
		err := accounts.CheckPassword("p", pw)
		n := utf8.RuneCountInString(pw)
		want := utf8.ValidString(pw) && n >= 10 && n <= 128
		if (err == nil) != want {
			t.Fatalf("CheckPassword(%q) = %v, want ok=%v", pw, err, want)
		}
	})
}
