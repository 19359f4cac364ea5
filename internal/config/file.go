package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/consentgraph/consentgraph/internal/i18n"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/web"
)

// File is the content of the --config YAML file, merged with the defaults.
// Every problem in it is reported with the dotted path of the bad key, and
// stops start-up.
//
//	controller:            # who decides about the data; named in consent receipts
//	  name: Example GmbH
//	  contact: Data protection officer
//	  email: privacy@example.org
//	  url: https://example.org
//	  address: Example Street 1, Berlin
//	  phone: "+49 30 123456"
//	  jurisdiction: DE
//	  language: en
//	policy:                # the policy in force until an admin publishes another
//	  version: "2024-06"
//	  url: https://example.org/privacy
//	purposes:              # change a shipped purpose or add one
//	  newsletter:
//	    description: Our monthly newsletter.   # the same text in every language
//	  research:
//	    name: {en: Research, ja: 研究}   # optional; else made from the id
//	    mechanism: OPT_IN  # OPT_IN, OPT_OUT or NOTICE_ONLY
//	    description:       # or one text per language (en required)
//	      en: Research studies by our partner university.
//	      ja: 提携大学による研究調査。
//	    dataCategories: [user.contact.email, user.demographic.age_band]
//	    thirdParties: [Example University]
type File struct {
	// Path is where the file was read from; empty when none was given.
	Path       string
	Controller policy.Controller
	// Policy is the initial policy version, in force until an admin
	// publishes one (the store keeps whatever was published since).
	Policy policy.Document
	// Purposes are the shipped purposes, changed or extended by the file,
	// shipped ones first, added ones in file order.
	Purposes []policy.Purpose
	// Catalog indexes Purposes.
	Catalog *policy.Catalog
	// Processors are the configured processor instances (processors.go).
	Processors []Processor
	// Branding is how the pages and the widget present the operator
	// (branding.go).
	Branding Branding
	// Texts are the message catalogues (web/static/locales), the same the
	// pages read; their files decide which languages a description may
	// be given in.
	Texts *i18n.Bundle
}

// texts are the catalogues embedded in the binary, loaded once (the same
// bundle as the pages' language index); a broken one is an error of every
// LoadFile, so the server refuses to start.
var texts = web.Texts

// fileSections parses each known top-level key. Adding a section (e.g.
// "processors") means adding an entry here and a field to File.
var fileSections = map[string]func(f *File, path string, v any) error{
	"controller": parseController,
	"policy":     parsePolicy,
	"purposes":   parsePurposes,
	"processors": parseProcessors,
	"branding":   parseBranding,
}

// DefaultFile is the configuration without a file. It panics if the
// embedded catalogues are broken (a test keeps them whole; LoadFile
// reports it as an error).
func DefaultFile() *File {
	b, err := texts()
	if err != nil {
		panic(err)
	}
	f, err := defaultFile(b)
	if err != nil {
		panic(err)
	}
	return f
}

// defaultFile fails when a catalogue's text of a shipped purpose is not a
// valid description (e.g. left empty by a translator).
func defaultFile(b *i18n.Bundle) (*File, error) {
	f := &File{Controller: policy.DefaultController(), Policy: policy.DefaultDocument(), Purposes: policy.DefaultPurposes(),
		Branding: defaultBranding(), Texts: b}
	for i := range f.Purposes {
		p := &f.Purposes[i]
		p.Descriptions = shippedTexts(b, ShippedDescriptionKey(p.ID))
		p.Names = shippedTexts(b, ShippedNameKey(p.ID))
		p.ThirdPartiesByLanguage = shippedThirdParties(b, p.ID, len(p.ThirdParties))
	}
	cat, err := policy.NewCatalog(f.Purposes)
	if err != nil {
		return nil, fmt.Errorf("message catalogues: a shipped purpose's text: %w", err)
	}
	f.Catalog = cat
	finishBranding(f)
	return f, nil
}

// ShippedDescriptionKey is the catalogue key of a shipped purpose's
// description: its translations live with every other text, so a new
// language file translates them too.
func ShippedDescriptionKey(purpose string) string {
	return "server.purpose." + purpose + ".description"
}

// ShippedNameKey is the catalogue key of a shipped purpose's name.
func ShippedNameKey(purpose string) string {
	return "server.purpose." + purpose + ".name"
}

// shippedTexts collects key from every catalogue that has it.
func shippedTexts(b *i18n.Bundle, key string) map[string]string {
	out := map[string]string{}
	for _, lang := range b.Languages() {
		if s, ok := b.Lookup(lang, key); ok {
			out[lang] = s
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// ShippedThirdPartyKey is the catalogue key of the i-th third party of a
// shipped purpose (e.g. "partners and advertisers" of aggregate_statistics).
func ShippedThirdPartyKey(purpose string, i int) string {
	return "server.purpose." + purpose + ".thirdParties." + strconv.Itoa(i)
}

// shippedThirdParties reads the translations of a shipped purpose's n
// third parties; a language must translate all of them to count.
func shippedThirdParties(b *i18n.Bundle, purpose string, n int) map[string][]string {
	if n == 0 {
		return nil
	}
	out := map[string][]string{}
	for _, lang := range b.Languages() {
		names := make([]string, 0, n)
		for i := range n {
			if s, ok := b.Lookup(lang, ShippedThirdPartyKey(purpose, i)); ok {
				names = append(names, s)
			}
		}
		if len(names) == n {
			out[lang] = names
		}
	}
	return out
}

// LoadFile reads and validates the configuration file at path; an empty
// path gives the defaults.
func LoadFile(path string) (*File, error) {
	b, err := texts()
	if err != nil {
		return nil, err
	}
	if path == "" {
		return defaultFile(b)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return ParseFile(path, data)
}

// ParseFile validates the YAML configuration data read from name.
func ParseFile(name string, data []byte) (*File, error) {
	b, err := texts()
	if err != nil {
		return nil, err
	}
	f, err := parseFile(data, b)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", name, err)
	}
	f.Path = name
	return f, nil
}

func parseFile(data []byte, b *i18n.Bundle) (*File, error) {
	// The branding name defaults to the controller's name, which the file
	// may set after it: finishBranding runs once the whole file is read.
	f, err := defaultFile(b)
	if err != nil {
		return nil, err
	}
	f.Branding.Name = ""
	var root any
	if err := yaml.UnmarshalWithOptions(data, &root, yaml.UseOrderedMap()); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if root == nil {
		finishBranding(f)
		return f, nil
	}
	top, ok := root.(yaml.MapSlice)
	if !ok {
		return nil, errors.New("the file must be a mapping of " + knownKeys(fileSections))
	}
	var errs []error
	for _, item := range top {
		key, _ := item.Key.(string)
		parse, ok := fileSections[key]
		if !ok {
			errs = append(errs, &policy.FieldError{Field: fmt.Sprint(item.Key), Message: "unknown key (known: " + knownKeys(fileSections) + ")"})
			continue
		}
		if err := parse(f, key, item.Value); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	finishBranding(f)
	cat, err := policy.NewCatalog(f.Purposes)
	if err != nil {
		return nil, err
	}
	f.Catalog = cat
	if err := checkProcessors(f); err != nil {
		return nil, err
	}
	return f, nil
}

func knownKeys[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

func fieldErr(path, format string, args ...any) error {
	return &policy.FieldError{Field: path, Message: fmt.Sprintf(format, args...)}
}

// walkMapping calls fn for each entry of the mapping v at path, refusing
// keys that are not in known (nil allows any key). A null mapping is empty.
func walkMapping(path string, v any, known []string, fn func(key, keyPath string, v any) error) error {
	if v == nil {
		return nil
	}
	m, ok := v.(yaml.MapSlice)
	if !ok {
		if known != nil {
			return fieldErr(path, "want a mapping of %s", strings.Join(known, ", "))
		}
		return fieldErr(path, "want a mapping")
	}
	var errs []error
	for _, item := range m {
		key, ok := item.Key.(string)
		if !ok {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.%v", path, item.Key), "keys must be strings"))
			continue
		}
		keyPath := path + "." + key
		if known != nil && !slices.Contains(known, key) {
			errs = append(errs, fieldErr(keyPath, "unknown key (known: %s)", strings.Join(known, ", ")))
			continue
		}
		if err := fn(key, keyPath, item.Value); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// scalarString reads a string; whole numbers are accepted as their decimal
// text (so `version: 2` works), anything else must be quoted.
func scalarString(path string, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int:
		return strconv.Itoa(x), nil
	case nil:
		return "", fieldErr(path, "must not be empty")
	default:
		return "", fieldErr(path, "want a string (put the value in quotes)")
	}
}

func stringList(path string, v any) ([]string, error) {
	if v == nil {
		return []string{}, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fieldErr(path, "want a list of strings")
	}
	out := make([]string, 0, len(list))
	var errs []error
	for i, item := range list {
		s, err := scalarString(fmt.Sprintf("%s[%d]", path, i), item)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

func parseController(f *File, path string, v any) error {
	c := &f.Controller
	fields := map[string]*string{
		"name": &c.Name, "contact": &c.Contact, "email": &c.Email, "url": &c.URL,
		"address": &c.Address, "phone": &c.Phone, "jurisdiction": &c.Jurisdiction, "language": &c.Language,
	}
	known := []string{"name", "contact", "email", "url", "address", "phone", "jurisdiction", "language"}
	return walkMapping(path, v, known, func(key, keyPath string, v any) error {
		s, err := scalarString(keyPath, v)
		if err != nil {
			return err
		}
		s = strings.TrimSpace(s)
		if (key == "name" || key == "contact" || key == "language") && s == "" {
			return fieldErr(keyPath, "must not be empty")
		}
		if len(s) > 500 {
			return fieldErr(keyPath, "must be at most 500 characters")
		}
		*fields[key] = s
		return nil
	})
}

func parsePolicy(f *File, path string, v any) error {
	d := &f.Policy
	err := walkMapping(path, v, []string{"url", "version"}, func(key, keyPath string, v any) error {
		s, err := scalarString(keyPath, v)
		if err != nil {
			return err
		}
		if key == "version" {
			d.Version = s
		} else {
			d.URL = s
		}
		return nil
	})
	if err != nil {
		return err
	}
	return policy.ValidateDocument(path+".", *d)
}

// parseDescription reads a purpose's description (or name): one string for
// every language, or a mapping of language tag to text. The mapping may name
// only languages that have a catalogue, and must give English, the
// fallback of the others.
func parseDescription(path string, v any, b *i18n.Bundle) (string, map[string]string, error) {
	if _, ok := v.(yaml.MapSlice); !ok {
		s, err := scalarString(path, v)
		return strings.TrimSpace(s), nil, err
	}
	langs := b.Languages()
	out := map[string]string{}
	err := walkMapping(path, v, nil, func(lang, langPath string, v any) error {
		if !b.Has(lang) {
			return fieldErr(langPath, "%q is not a language with a message catalogue (available: %s)", lang, strings.Join(langs, ", "))
		}
		s, err := scalarString(langPath, v)
		out[lang] = strings.TrimSpace(s)
		return err
	})
	en, ok := out[i18n.Fallback]
	if !ok {
		err = errors.Join(err, fieldErr(path+"."+i18n.Fallback, "is required: English is shown to readers of every language without a text of its own"))
	}
	if err != nil {
		return "", nil, err
	}
	return en, out, nil
}

var purposeKeys = []string{"dataCategories", "description", "mechanism", "name", "thirdParties"}

func parsePurposes(f *File, path string, v any) error {
	return walkMapping(path, v, nil, func(id, keyPath string, v any) error {
		if !policy.ValidID(id) {
			return fieldErr(keyPath, "purpose id %q must be a lower-case letter followed by up to 63 of a-z, 0-9 and _", id)
		}
		i := slices.IndexFunc(f.Purposes, func(p policy.Purpose) bool { return p.ID == id })
		isNew := i < 0
		p := policy.Purpose{ID: id}
		if !isNew {
			p = f.Purposes[i]
		}
		if v == nil {
			return fieldErr(keyPath, "want a mapping of %s", strings.Join(purposeKeys, ", "))
		}
		given := map[string]bool{}
		err := walkMapping(keyPath, v, purposeKeys, func(key, fieldPath string, v any) error {
			given[key] = true
			var err error
			switch key {
			case "mechanism":
				var s string
				s, err = scalarString(fieldPath, v)
				p.Mechanism = policy.Mechanism(s)
			case "description":
				p.Description, p.Descriptions, err = parseDescription(fieldPath, v, f.Texts)
			case "name":
				p.Name, p.Names, err = parseDescription(fieldPath, v, f.Texts)
			case "dataCategories":
				p.DataCategories, err = stringList(fieldPath, v)
			case "thirdParties":
				// Configured names replace the shipped ones and their translations.
				p.ThirdParties, err = stringList(fieldPath, v)
				p.ThirdPartiesByLanguage = nil
			}
			return err
		})
		if err != nil {
			return err
		}
		if isNew {
			var missing []error
			for _, k := range []string{"mechanism", "description"} {
				if !given[k] {
					missing = append(missing, fieldErr(keyPath+"."+k, "is required for a new purpose"))
				}
			}
			if len(missing) > 0 {
				return errors.Join(missing...)
			}
		}
		if err := p.Validate(keyPath); err != nil {
			return err
		}
		if isNew {
			f.Purposes = append(f.Purposes, p)
		} else {
			f.Purposes[i] = p
		}
		return nil
	})
}
