package demographics

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// Dimension is one attribute partners may group by.
type Dimension string

// The dimensions, in storage order.
const (
	AgeBand     Dimension = "AGE_BAND"
	Country     Dimension = "COUNTRY"
	Gender      Dimension = "GENDER"
	Language    Dimension = "LANGUAGE"
	SignupMonth Dimension = "SIGNUP_MONTH"
)

// Dimensions lists every dimension in storage order; a Tuple holds one value
// per entry, a mask one bit per entry.
var Dimensions = []Dimension{AgeBand, Country, Gender, Language, SignupMonth}

const numDims = 5

// numMasks is the number of dimension subsets, the empty one (a plain total)
// included: one cell collection each.
const numMasks = 1 << numDims

// Unknown is the value of a dimension the user did not give; it is a bucket
// of its own.
const Unknown = "UNKNOWN"

// Age bands, derived from the birth year when a report is made.
const (
	BandUnder18 = "UNDER_18"
	Band18To24  = "AGE_18_24"
	Band25To34  = "AGE_25_34"
	Band35To44  = "AGE_35_44"
	Band45To54  = "AGE_45_54"
	Band55To64  = "AGE_55_64"
	Band65Plus  = "AGE_65_PLUS"
)

// Tuple is what one user contributes: one value per dimension in the order
// of Dimensions, Unknown where nothing was given. The age dimension holds the
// birth year, not the band, so that nobody's band goes stale as years pass.
type Tuple [numDims]string

// Subject is the part of a user the aggregates are made of.
type Subject struct {
	BirthYear *int
	Country   *string
	Gender    *string
	Language  *string
	SignedUp  time.Time
}

// TupleOf returns the tuple a counting user contributes.
func TupleOf(s *Subject) Tuple {
	t := Tuple{Unknown, Unknown, Unknown, Unknown, Unknown}
	if s.BirthYear != nil {
		t[0] = strconv.Itoa(*s.BirthYear)
	}
	if s.Country != nil && *s.Country != "" {
		t[1] = *s.Country
	}
	if s.Gender != nil && *s.Gender != "" {
		t[2] = *s.Gender
	}
	if s.Language != nil && *s.Language != "" {
		t[3] = *s.Language
	}
	if !s.SignedUp.IsZero() {
		t[4] = s.SignedUp.UTC().Format("2006-01")
	}
	return t
}

const tupleSep = "\x1f"

func (t Tuple) encode() string { return strings.Join(t[:], tupleSep) }

func decodeTuple(s string) (Tuple, error) {
	parts := strings.Split(s, tupleSep)
	if len(parts) != numDims {
		return Tuple{}, fmt.Errorf("tuple has %d values, want %d", len(parts), numDims)
	}
	var t Tuple
	copy(t[:], parts)
	return t, nil
}

// project returns the values of the dimensions in mask.
func (t Tuple) project(mask int) []string {
	out := make([]string, 0, bits.OnesCount(uint(mask)))
	for i := range numDims {
		if mask&(1<<i) != 0 {
			out = append(out, t[i])
		}
	}
	return out
}

// maskOf turns a group-by list into a mask, refusing duplicates.
func maskOf(groupBy []Dimension) (int, error) {
	mask := 0
	for _, d := range groupBy {
		i := dimIndex(d)
		if i < 0 {
			return 0, apperr.Invalid("groupBy", "unknown dimension %q", d)
		}
		if mask&(1<<i) != 0 {
			return 0, apperr.Invalid("groupBy", "dimension %s is listed twice", d)
		}
		mask |= 1 << i
	}
	return mask, nil
}

func dimIndex(d Dimension) int {
	for i, x := range Dimensions {
		if x == d {
			return i
		}
	}
	return -1
}

// maskName names a mask by the initials of its dimensions ("AC" for age
// band and country), "total" for the empty one.
func maskName(mask int) string {
	if mask == 0 {
		return "total"
	}
	const initials = "ACGLM" // Age, Country, Gender, Language, Month
	var b strings.Builder
	for i := range numDims {
		if mask&(1<<i) != 0 {
			b.WriteByte(initials[i])
		}
	}
	return b.String()
}

// AgeBandOf derives the band from a birth year (as stored in a Tuple) at the
// given time. Without a birth date, the age is the one reached this year.
func AgeBandOf(birthYear string, now time.Time) string {
	if birthYear == Unknown {
		return Unknown
	}
	y, err := strconv.Atoi(birthYear)
	if err != nil {
		return Unknown
	}
	switch age := now.Year() - y; {
	case age < 18:
		return BandUnder18
	case age < 25:
		return Band18To24
	case age < 35:
		return Band25To34
	case age < 45:
		return Band35To44
	case age < 55:
		return Band45To54
	case age < 65:
		return Band55To64
	default:
		return Band65Plus
	}
}
