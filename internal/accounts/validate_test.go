package accounts

import (
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

func TestNormalizeUsername(t *testing.T) {
	for _, tc := range []struct {
		in, key string
		ok      bool
	}{
		{"alice", "alice", true}, {"Alice.B-c_9", "alice.b-c_9", true}, {"abc", "abc", true},
		{"ab", "", false}, {"a234567890123456789012345678901234", "", false}, {"al ice", "", false},
		{"alïce", "", false}, {"al@ce", "", false}, {"", "", false},
	} {
		key, err := NormalizeUsername("u", tc.in)
		if (err == nil) != tc.ok || key != tc.key {
			t.Errorf("NormalizeUsername(%q) = %q, %v", tc.in, key, err)
		}
		if err != nil && apperr.CodeOf(err) != apperr.BadUserInput {
			t.Errorf("code %s", apperr.CodeOf(err))
		}
	}
}

func TestCheckPassword(t *testing.T) {
	for in, ok := range map[string]bool{
		"123456789": false, "9081726354": true, "ünïcödé-pässwörd": true,
		// On the list of the 10,000 commonest passwords, whatever the case.
		"1234567890": false, "QwertyUIOP": false, "qwerty123456": false,
		string(make([]byte, 129)): false, "\xff\xfe invalid utf8 bytes": false,
	} {
		if err := CheckPassword("p", in); (err == nil) != ok {
			t.Errorf("CheckPassword(%q) = %v", in, err)
		}
	}
}

func TestProfileNormalization(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	str := func(s string) *string { return &s }
	year := func(y int) *int { return &y }
	p, err := NormalizeProfile("profile", Profile{BirthYear: year(1980), Country: str(" gb "), Gender: str("female"), Language: str("DEU")}, now)
	if err != nil || *p.Country != "GB" || *p.Gender != "FEMALE" || *p.Language != "de" {
		t.Fatalf("got %+v, %v", p, err)
	}
	for _, bad := range []Profile{
		{BirthYear: year(1899)}, {BirthYear: year(2014)}, {Country: str("UK")}, {Country: str("ZZ")},
		{Country: str("D")}, {Country: str("DEU")}, {Language: str("xx")}, {Language: str("qaa")},
		{Language: str("en-US")}, {Gender: str("unknown")},
	} {
		if _, err := NormalizeProfile("profile", bad, now); apperr.CodeOf(err) != apperr.BadUserInput {
			t.Errorf("%+v accepted: %v", bad, err)
		}
	}
	if _, err := NormalizeProfile("profile", Profile{BirthYear: year(2013)}, now); err != nil {
		t.Errorf("13-year-old refused: %v", err)
	}
}

func TestNormalizeEmail(t *testing.T) {
	got, err := NormalizeEmail("e", " Jane.Doe@Example.ORG ")
	if err != nil || got != "Jane.Doe@example.org" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, bad := range []string{"jane", "jane@", "@example.org", "Jane <jane@example.org>", "jane@localhost", "a\r\nBcc: x@y.z"} {
		if _, err := NormalizeEmail("e", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCommonPasswordListIsComplete(t *testing.T) {
	if n := len(commonPasswords()); n < 9900 { // a few entries repeat after lower-casing
		t.Fatalf("the embedded list has %d passwords, want about 10000", n)
	}
	for _, p := range []string{"123456", "password", "qwerty", "iloveyou"} {
		if !IsCommonPassword(p) {
			t.Errorf("%q is not on the list", p)
		}
	}
}
