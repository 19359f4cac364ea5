package accounts

import (
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/language"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/plugins"
)

// Gender values a user may volunteer. Anything finer is not needed for
// aggregate statistics, and leaving the field empty is always allowed.
var Genders = plugins.Genders

// Profile is the optional, volunteered demographic data of a user.
type Profile struct {
	BirthYear *int
	Country   *string // ISO 3166-1 alpha-2, upper case
	Gender    *string // one of Genders
	Language  *string // BCP 47 primary language subtag, lower case
}

// Empty reports whether nothing was volunteered.
func (p Profile) Empty() bool {
	return p.BirthYear == nil && p.Country == nil && p.Gender == nil && p.Language == nil
}

// NormalizeUsername checks a username and returns its case-folded key.
func NormalizeUsername(field, username string) (string, error) {
	n := len(username)
	if n < 3 || n > 32 {
		return "", apperr.Invalid(field, "username must be 3 to 32 characters long")
	}
	for _, r := range username {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-'
		if !ok {
			return "", apperr.Invalid(field, "username may contain only letters a-z, digits, '_', '.' and '-'")
		}
	}
	return strings.ToLower(username), nil
}

// CheckPassword enforces length only, as NIST SP 800-63B advises.
func CheckPassword(field, password string) error {
	n := utf8.RuneCountInString(password)
	if !utf8.ValidString(password) {
		return apperr.Invalid(field, "password must be valid UTF-8")
	}
	if n < 10 {
		return apperr.Invalid(field, "password must be at least 10 characters long")
	}
	if n > 128 {
		return apperr.Invalid(field, "password must be at most 128 characters long")
	}
	if IsCommonPassword(password) {
		return apperr.Invalid(field, "this password is one of the most common ones; choose another")
	}
	return nil
}

// NormalizeEmail checks an email address and returns it trimmed, with the
// domain lower-cased (the local part is case-sensitive in principle).
func NormalizeEmail(field, email string) (string, error) {
	email = strings.TrimSpace(email)
	if len(email) > 254 {
		return "", apperr.Invalid(field, "email address is too long")
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return "", apperr.Invalid(field, "not a valid email address")
	}
	at := strings.LastIndexByte(email, '@')
	domain := email[at+1:]
	if !strings.Contains(domain, ".") || strings.ContainsAny(email, " \t\r\n<>") {
		return "", apperr.Invalid(field, "not a valid email address")
	}
	return email[:at+1] + strings.ToLower(domain), nil
}

// EmailKey is the canonical form used for uniqueness and lookups.
func EmailKey(normalized string) string { return strings.ToLower(normalized) }

// MinimumAge is the youngest age at which one may sign up and volunteer a
// birth year; younger users need parental consent this service does not handle.
const MinimumAge = 13

// CheckBirthYear validates a volunteered birth year.
func CheckBirthYear(field string, year int, now time.Time) error {
	max := now.Year() - MinimumAge
	if year < 1900 || year > max {
		return apperr.Invalid(field, "birth year must be between 1900 and %d", max)
	}
	return nil
}

// NormalizeCountry checks an ISO 3166-1 alpha-2 code.
func NormalizeCountry(field, code string) (string, error) {
	code = strings.ToUpper(strings.TrimSpace(code))
	bad := apperr.Invalid(field, "country must be an ISO 3166-1 alpha-2 code such as DE or US")
	if len(code) != 2 || code[0] < 'A' || code[0] > 'Z' || code[1] < 'A' || code[1] > 'Z' {
		return "", bad
	}
	r, err := language.ParseRegion(code)
	if err != nil || !r.IsCountry() || r.String() != code || reservedRegions[code] {
		return "", bad
	}
	return code, nil
}

// NormalizeLanguage checks a BCP 47 primary language subtag (ISO 639).
func NormalizeLanguage(field, tag string) (string, error) {
	tag = strings.ToLower(strings.TrimSpace(tag))
	bad := apperr.Invalid(field, "language must be a BCP 47 primary language subtag such as en or de")
	if len(tag) < 2 || len(tag) > 3 {
		return "", bad
	}
	for _, r := range tag {
		if r < 'a' || r > 'z' {
			return "", bad
		}
	}
	b, err := language.ParseBase(tag)
	if err != nil || specialLanguages[b.String()] || b.String() >= "qaa" && b.String() <= "qtz" {
		return "", bad
	}
	return b.String(), nil
}

// reservedRegions are exceptionally reserved ISO 3166 codes (UK, EU, ...)
// that x/text accepts as regions but are not countries a person lives in.
var reservedRegions = map[string]bool{
	"AC": true, "CP": true, "DG": true, "EA": true, "EU": true, "EZ": true,
	"FX": true, "IC": true, "TA": true, "UK": true, "UN": true,
}

// specialLanguages are ISO 639 codes for "no particular language".
var specialLanguages = map[string]bool{"und": true, "mul": true, "mis": true, "zxx": true}

// NormalizeGender checks a gender value.
func NormalizeGender(field, g string) (string, error) {
	g = strings.ToUpper(strings.TrimSpace(g))
	for _, v := range Genders {
		if g == v {
			return g, nil
		}
	}
	return "", apperr.Invalid(field, "gender must be one of %s", strings.Join(Genders, ", "))
}

// NormalizeProfile validates every given field; prefix names the input.
func NormalizeProfile(prefix string, p Profile, now time.Time) (Profile, error) {
	out := Profile{}
	if p.BirthYear != nil {
		if err := CheckBirthYear(prefix+".birthYear", *p.BirthYear, now); err != nil {
			return out, err
		}
		y := *p.BirthYear
		out.BirthYear = &y
	}
	if p.Country != nil {
		c, err := NormalizeCountry(prefix+".country", *p.Country)
		if err != nil {
			return out, err
		}
		out.Country = &c
	}
	if p.Gender != nil {
		g, err := NormalizeGender(prefix+".gender", *p.Gender)
		if err != nil {
			return out, err
		}
		out.Gender = &g
	}
	if p.Language != nil {
		l, err := NormalizeLanguage(prefix+".language", *p.Language)
		if err != nil {
			return out, err
		}
		out.Language = &l
	}
	return out, nil
}
