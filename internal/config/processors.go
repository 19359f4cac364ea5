package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/goccy/go-yaml"

	"github.com/consentgraph/consentgraph/plugins"
)

// Processor is one processor instance from the config file:
//
//	processors:
//	  - name: news              # unique, shown to users
//	    type: mailchimp         # a registered plugin type
//	    purpose: newsletter     # default: the type's own purpose
//	    fields: [user.contact.email]   # default: what the type uses
//	    requires: [user.contact.email] # also wait for these (the type's own Requires always apply)
//	    settings: {apiKey: ..., listId: ...}
//
// The type and its settings are checked by the plugin at start-up.
type Processor struct {
	Name    string
	Type    string
	Purpose string
	Fields  []string
	// Requires are categories this instance cannot work without, on top of
	// its type's: delivery waits until the user has given them (for a
	// generic type such as http, whose manifest cannot know).
	Requires []string
	Settings map[string]any
	// Descriptions are settings.description per language when it is given
	// as {en: ..., ja: ...}; Settings then holds the English text, so
	// plugins and the core read one string as before.
	Descriptions map[string]string
}

// parseDescription reads settings.description given per language.
func (p *Processor) parseDescription(path string, settings any, f *File) error {
	ms, _ := settings.(yaml.MapSlice)
	for _, it := range ms {
		if it.Key != plugins.DescriptionSetting {
			continue
		}
		if _, perLanguage := it.Value.(yaml.MapSlice); !perLanguage {
			return nil
		}
		en, byLang, err := parseDescription(path+"."+plugins.DescriptionSetting, it.Value, f.Texts)
		if err != nil {
			return err
		}
		p.Settings[plugins.DescriptionSetting], p.Descriptions = en, byLang
	}
	return nil
}

var processorName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

var processorKeys = []string{"fields", "name", "purpose", "requires", "settings", "type"}

func parseProcessors(f *File, path string, v any) error {
	if v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return fieldErr(path, "want a list of {name, type, purpose, fields, requires, settings}")
	}
	var errs []error
	for i, raw := range list {
		ip := fmt.Sprintf("%s[%d]", path, i)
		p := Processor{Settings: map[string]any{}}
		err := walkMapping(ip, raw, processorKeys, func(key, kp string, v any) error {
			var err error
			switch key {
			case "name":
				p.Name, err = scalarString(kp, v)
			case "type":
				p.Type, err = scalarString(kp, v)
			case "purpose":
				p.Purpose, err = scalarString(kp, v)
			case "fields":
				p.Fields, err = stringList(kp, v)
			case "requires":
				p.Requires, err = stringList(kp, v)
			case "settings":
				m, ok := plain(v).(map[string]any)
				if v != nil && !ok {
					return fieldErr(kp, "want a mapping")
				}
				if ok {
					p.Settings = m
					err = p.parseDescription(kp, v, f)
				}
			}
			return err
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch {
		case !processorName.MatchString(p.Name):
			errs = append(errs, fieldErr(ip+".name", "want a lower-case name of a-z, 0-9, _ and - (got %q)", p.Name))
		case slices.ContainsFunc(f.Processors, func(q Processor) bool { return q.Name == p.Name }):
			errs = append(errs, fieldErr(ip+".name", "%q is used twice", p.Name))
		case p.Type == "":
			errs = append(errs, fieldErr(ip+".type", "is required"))
		default:
			f.Processors = append(f.Processors, p)
		}
	}
	return errors.Join(errs...)
}

// checkProcessors checks what the file alone can tell: purposes exist and
// allow the fields.
func checkProcessors(f *File) error {
	var errs []error
	for i, p := range f.Processors {
		ip := fmt.Sprintf("processors[%d]", i)
		if p.Purpose == "" {
			continue
		}
		pp, ok := f.Catalog.Get(p.Purpose)
		if !ok {
			errs = append(errs, fieldErr(ip+".purpose", "%q is not a purpose (known: %v)", p.Purpose, f.Catalog.IDs()))
			continue
		}
		for j, c := range p.Fields {
			if !slices.Contains(pp.DataCategories, c) {
				errs = append(errs, fieldErr(fmt.Sprintf("%s.fields[%d]", ip, j), "purpose %q does not allow %q (it allows %v)", p.Purpose, c, pp.DataCategories))
			}
		}
	}
	return errors.Join(errs...)
}

// plain turns ordered YAML mappings into map[string]any, recursively.
func plain(v any) any {
	switch x := v.(type) {
	case yaml.MapSlice:
		m := make(map[string]any, len(x))
		for _, it := range x {
			m[fmt.Sprint(it.Key)] = plain(it.Value)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	default:
		return v
	}
}
