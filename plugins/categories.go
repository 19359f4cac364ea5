package plugins

import "slices"

// Data categories name the personal data fields the core can hand to a
// processor: they are the keys of Request.Fields and the values of
// Manifest.DataCategories, Manifest.Requires and an instance's fields:.
// The core's privacy policy uses these same constants, so a plugin never
// needs to import core packages to name them.
const (
	// CategoryEmail is the user's email address, given to processors only
	// once verified. Value: the address as the user typed it (compare it
	// case-insensitively).
	CategoryEmail = "user.contact.email"
	// CategoryAgeBand is derived from the birth year at delivery time.
	// Value: one of AgeBands.
	CategoryAgeBand = "user.demographic.age_band"
	// CategoryCountry is the country of residence. Value: an ISO 3166-1
	// alpha-2 code in upper case ("DE").
	CategoryCountry = "user.demographic.country"
	// CategoryGender is the volunteered gender. Value: one of Genders.
	CategoryGender = "user.demographic.gender"
	// CategoryLanguage is the preferred language. Value: a BCP 47 primary
	// language subtag (ISO 639) in lower case ("de").
	CategoryLanguage = "user.demographic.language"
)

// DataCategories lists every data category the core knows.
var DataCategories = []string{CategoryEmail, CategoryAgeBand, CategoryCountry, CategoryGender, CategoryLanguage}

// KnownCategory reports whether c is one of DataCategories.
func KnownCategory(c string) bool { return slices.Contains(DataCategories, c) }

// AgeBands are the values of CategoryAgeBand, youngest first.
var AgeBands = []string{"under 18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"}

// Genders are the values of CategoryGender.
var Genders = []string{"FEMALE", "MALE", "NON_BINARY", "OTHER"}

// Purposes shipped in the default privacy policy. An operator may configure
// others; a manifest's Purpose is only the default of its instances.
const (
	PurposeNewsletter          = "newsletter"
	PurposeSurveys             = "surveys"
	PurposeAggregateStatistics = "aggregate_statistics"
	PurposeEssential           = "essential"
)
