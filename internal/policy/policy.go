// Package policy describes what the privacy policy lets Consentgraph do:
// the purposes personal data may be used for, each with its consent
// mechanism and data categories, and who the controller is. It depends only
// on the public plugins SDK (for the category names) so that configuration, consent and the processors can all
// share these definitions.
package policy

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/consentgraph/consentgraph/plugins"
)

// Mechanism is how consent for a purpose is obtained.
type Mechanism string

const (
	// OptIn purposes are off until the user grants them.
	OptIn Mechanism = "OPT_IN"
	// OptOut purposes are on until the user withdraws them.
	OptOut Mechanism = "OPT_OUT"
	// NoticeOnly purposes are essential to run the service: the user is
	// told about them and cannot withdraw them (short of deleting the account).
	NoticeOnly Mechanism = "NOTICE_ONLY"
)

// Mechanisms lists every mechanism.
var Mechanisms = []Mechanism{OptIn, OptOut, NoticeOnly}

// Valid reports whether m is a known mechanism.
func (m Mechanism) Valid() bool { return slices.Contains(Mechanisms, m) }

// Default reports whether a purpose with this mechanism is in force for a
// user who never made a choice about it.
func (m Mechanism) Default() bool { return m == OptOut || m == NoticeOnly }

// Data categories a purpose may use. They name the personal data fields the
// core can hand to a processor.
// They are defined in the public plugins package, the one source of truth,
// so that plugins built out of tree can name them.
const (
	CategoryEmail    = plugins.CategoryEmail
	CategoryAgeBand  = plugins.CategoryAgeBand
	CategoryCountry  = plugins.CategoryCountry
	CategoryGender   = plugins.CategoryGender
	CategoryLanguage = plugins.CategoryLanguage
)

// DataCategories lists every known data category.
var DataCategories = plugins.DataCategories

// KnownCategory reports whether c is a known data category.
func KnownCategory(c string) bool { return plugins.KnownCategory(c) }

// Names of the purposes shipped by default.
const (
	Newsletter          = plugins.PurposeNewsletter
	Surveys             = plugins.PurposeSurveys
	AggregateStatistics = plugins.PurposeAggregateStatistics
	Essential           = plugins.PurposeEssential
)

// Purpose is one thing personal data may be used for.
type Purpose struct {
	// ID is a short stable name: a lower-case letter followed by up to 63
	// lower-case letters, digits or underscores. It is used as a key in
	// stored documents, so it cannot hold dots or dollar signs.
	ID        string
	Mechanism Mechanism
	// Name is a short name in English, the fallback language; empty means
	// one made from the ID ("aggregate_statistics" → "Aggregate statistics").
	Name string
	// Names are the name per language, as Descriptions.
	Names map[string]string
	// Description is the text in English, the fallback language.
	Description string
	// Descriptions are the description per language tag ("en", "ja"),
	// English included, when the configuration or the shipped catalogues
	// give one per language; nil means Description for every language.
	Descriptions map[string]string
	// DataCategories are the only personal data the purpose may use.
	DataCategories []string
	// ThirdParties names who, besides the controller, receives data for
	// this purpose (configured statically; processors bound by plugins are
	// added at run time). A purpose with third parties "shares" data in the
	// sense of Global Privacy Control.
	ThirdParties []string
	// ThirdPartiesByLanguage are ThirdParties written in other languages
	// (the shipped purposes' come from the catalogues); a language without
	// an entry reads ThirdParties.
	ThirdPartiesByLanguage map[string][]string
}

// Clone returns a deep copy of p.
func (p Purpose) Clone() Purpose {
	p.DataCategories = slices.Clone(p.DataCategories)
	p.ThirdParties = slices.Clone(p.ThirdParties)
	p.Descriptions = maps.Clone(p.Descriptions)
	p.Names = maps.Clone(p.Names)
	if p.ThirdPartiesByLanguage != nil {
		byLang := make(map[string][]string, len(p.ThirdPartiesByLanguage))
		for lang, names := range p.ThirdPartiesByLanguage {
			byLang[lang] = slices.Clone(names)
		}
		p.ThirdPartiesByLanguage = byLang
	}
	return p
}

// ThirdPartiesIn names the third parties in lang, else as configured.
func (p Purpose) ThirdPartiesIn(lang string) []string {
	if names, ok := p.ThirdPartiesByLanguage[lang]; ok {
		return slices.Clone(names)
	}
	return slices.Clone(p.ThirdParties)
}

// NameIn is the name in lang, else in English, else made from the ID.
func (p Purpose) NameIn(lang string) string {
	if s, ok := p.Names[lang]; ok {
		return s
	}
	if s, ok := p.Names["en"]; ok {
		return s
	}
	if p.Name != "" {
		return p.Name
	}
	s := strings.ReplaceAll(p.ID, "_", " ")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// DescriptionIn is the description in lang, else in English.
func (p Purpose) DescriptionIn(lang string) string {
	if s, ok := p.Descriptions[lang]; ok {
		return s
	}
	if s, ok := p.Descriptions["en"]; ok {
		return s
	}
	return p.Description
}

var idPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// ValidID reports whether id can name a purpose.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// FieldError is a validation problem of one named field (a dotted key path
// such as "purposes.newsletter.mechanism").
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Validate checks p; field errors name prefix + "." + the field's key.
func (p Purpose) Validate(prefix string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: prefix + "." + field, Message: fmt.Sprintf(format, args...)})
	}
	if !ValidID(p.ID) {
		errs = append(errs, &FieldError{Field: prefix, Message: fmt.Sprintf("purpose id %q must be a lower-case letter followed by up to 63 of a-z, 0-9 and _", p.ID)})
	}
	if !p.Mechanism.Valid() {
		bad("mechanism", "%q is not one of %s", p.Mechanism, joinMechanisms())
	}
	checkDescription := func(field, d string) {
		if strings.TrimSpace(d) == "" {
			bad(field, "must not be empty")
		} else if len(d) > 1000 {
			bad(field, "must be at most 1000 characters")
		}
	}
	if _, ok := p.Descriptions["en"]; !ok {
		checkDescription("description", p.Description)
	}
	for _, lang := range slices.Sorted(maps.Keys(p.Descriptions)) {
		checkDescription("description."+lang, p.Descriptions[lang])
	}
	checkName := func(field, n string) {
		if strings.TrimSpace(n) == "" {
			bad(field, "must not be empty")
		} else if len(n) > 100 {
			bad(field, "must be at most 100 characters")
		}
	}
	if _, ok := p.Names["en"]; !ok && p.Name != "" {
		checkName("name", p.Name)
	}
	for _, lang := range slices.Sorted(maps.Keys(p.Names)) {
		checkName("name."+lang, p.Names[lang])
	}
	seen := map[string]bool{}
	for i, c := range p.DataCategories {
		switch {
		case !KnownCategory(c):
			bad(fmt.Sprintf("dataCategories[%d]", i), "%q is not a known data category (known: %s)", c, strings.Join(DataCategories, ", "))
		case seen[c]:
			bad(fmt.Sprintf("dataCategories[%d]", i), "%q is listed twice", c)
		}
		seen[c] = true
	}
	for i, t := range p.ThirdParties {
		if strings.TrimSpace(t) == "" || len(t) > 200 {
			bad(fmt.Sprintf("thirdParties[%d]", i), "must be a name of 1 to 200 characters")
		}
	}
	return errors.Join(errs...)
}

func joinMechanisms() string {
	s := make([]string, len(Mechanisms))
	for i, m := range Mechanisms {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}

// DefaultPurposes returns the purposes shipped with Consentgraph, in the
// order they are listed.
func DefaultPurposes() []Purpose {
	return []Purpose{
		{
			ID:             Newsletter,
			Mechanism:      OptIn,
			Description:    "Sending you our newsletter by email.",
			DataCategories: []string{CategoryEmail},
		},
		{
			ID:             Surveys,
			Mechanism:      OptIn,
			Description:    "Inviting you to surveys by email; answers are analysed together with your age band and country.",
			DataCategories: []string{CategoryEmail, CategoryAgeBand, CategoryCountry},
		},
		{
			ID:        AggregateStatistics,
			Mechanism: OptOut,
			Description: "Counting you in generic aggregated demographics (never linked to you, small groups suppressed, " +
				"noise added) that partners and advertisers may see.",
			DataCategories: []string{CategoryAgeBand, CategoryCountry, CategoryGender, CategoryLanguage},
			ThirdParties:   []string{"partners and advertisers (aggregated, anonymous counts only)"},
		},
		{
			ID:          Essential,
			Mechanism:   NoticeOnly,
			Description: "Running your account: signing you in, keeping it secure and answering your requests.",
		},
	}
}

// Catalog is an ordered, validated set of purposes. It is immutable.
type Catalog struct {
	list []Purpose
	byID map[string]int
}

// NewCatalog validates purposes and indexes them by id.
func NewCatalog(purposes []Purpose) (*Catalog, error) {
	c := &Catalog{byID: make(map[string]int, len(purposes))}
	var errs []error
	for _, p := range purposes {
		if err := p.Validate("purposes." + p.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := c.byID[p.ID]; dup {
			errs = append(errs, &FieldError{Field: "purposes." + p.ID, Message: "defined twice"})
			continue
		}
		c.byID[p.ID] = len(c.list)
		c.list = append(c.list, p.Clone())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// MustDefaultCatalog returns the catalog of the default purposes.
func MustDefaultCatalog() *Catalog {
	c, err := NewCatalog(DefaultPurposes())
	if err != nil {
		panic(err)
	}
	return c
}

// Get returns the purpose called id.
func (c *Catalog) Get(id string) (Purpose, bool) {
	i, ok := c.byID[id]
	if !ok {
		return Purpose{}, false
	}
	return c.list[i].Clone(), true
}

// All returns every purpose in catalog order.
func (c *Catalog) All() []Purpose {
	out := make([]Purpose, len(c.list))
	for i, p := range c.list {
		out[i] = p.Clone()
	}
	return out
}

// IDs returns the purpose ids in catalog order.
func (c *Catalog) IDs() []string {
	out := make([]string, len(c.list))
	for i, p := range c.list {
		out[i] = p.ID
	}
	return out
}

// Controller is who decides about the personal data (the operator), as named
// in consent receipts.
type Controller struct {
	Name    string
	Contact string
	Email   string
	URL     string
	Address string
	Phone   string
	// Jurisdiction is where the controller is based, e.g. "DE" or "EU".
	Jurisdiction string
	// Language is the language receipts and notices are written in.
	Language string
}

// DefaultController is used when the configuration names none.
func DefaultController() Controller {
	return Controller{
		Name:     "Consentgraph",
		Contact:  "see the privacy policy",
		Language: "en",
	}
}

// Document is a version of the privacy policy.
type Document struct {
	Version string
	URL     string
}

// DefaultDocument is the policy in force until an admin publishes one, when
// the configuration names none.
func DefaultDocument() Document { return Document{Version: "1", URL: "/privacy"} }

// MaxVersionLength bounds a policy version string.
const MaxVersionLength = 64

// ValidateDocument checks a policy version and URL; field errors name
// prefix + "version" and prefix + "url".
func ValidateDocument(prefix string, d Document) error {
	var errs []error
	v := d.Version
	switch {
	case v == "" || strings.TrimSpace(v) != v:
		errs = append(errs, &FieldError{Field: prefix + "version", Message: "must not be empty or start or end with spaces"})
	case len(v) > MaxVersionLength:
		errs = append(errs, &FieldError{Field: prefix + "version", Message: fmt.Sprintf("must be at most %d characters", MaxVersionLength)})
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		errs = append(errs, &FieldError{Field: prefix + "version", Message: "must not contain control characters"})
	}
	u := d.URL
	switch {
	case len(u) > 2048:
		errs = append(errs, &FieldError{Field: prefix + "url", Message: "must be at most 2048 characters"})
	case strings.HasPrefix(u, "https://") && len(u) > len("https://"),
		strings.HasPrefix(u, "http://") && len(u) > len("http://"),
		strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//"):
		if strings.ContainsFunc(u, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
			errs = append(errs, &FieldError{Field: prefix + "url", Message: "must not contain spaces or control characters"})
		}
	default:
		errs = append(errs, &FieldError{Field: prefix + "url", Message: fmt.Sprintf("%q must be an http(s) URL or a path starting with /", u)})
	}
	return errors.Join(errs...)
}
