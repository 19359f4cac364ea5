package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// envRef is ${NAME} in a processor setting value; $${ writes a literal ${.
var envRef = regexp.MustCompile(`\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// secretWords mark a setting key whose value is a credential (apiKey,
// token, password, secret, Authorization …), compared case-insensitively
// with the key's letters only.
var secretWords = []string{"apikey", "token", "password", "passwd", "secret", "privatekey", "credential", "authorization"}

// ExpandProcessorSettings replaces every ${NAME} in processor setting
// values (strings at any depth, in lists and mappings) with the
// environment variable NAME, so that secrets stay out of the file as the
// README promises. A variable that is unset or empty stops start-up with
// an error naming the processor and setting. A credential written in
// clear (a key that looks secret, or a URL with a password, without any
// ${...}) is logged as a warning: it works, but it should not be in a
// file.
func (f *File) ExpandProcessorSettings(getenv func(string) string, log *slog.Logger) error {
	var errs []error
	for i := range f.Processors {
		p := &f.Processors[i]
		where := fmt.Sprintf("processors[%d] (%s)", i, p.Name)
		keys := make([]string, 0, len(p.Settings))
		for k := range p.Settings {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, err := expandValue(where, "settings."+k, k, p.Settings[k], getenv, log)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			p.Settings[k] = v
		}
	}
	if err := errors.Join(errs...); err != nil {
		if f.Path != "" {
			return fmt.Errorf("config file %s: %w", f.Path, err)
		}
		return err
	}
	return nil
}

func expandValue(where, path, key string, v any, getenv func(string) string, log *slog.Logger) (any, error) {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "${") {
			if x != "" && (looksSecret(key) || urlWithPassword(x)) && log != nil {
				log.Warn("a processor setting holds a secret written in clear in the config file; write ${NAME} and set NAME in the environment",
					"processor", where, "setting", path)
			}
			return x, nil
		}
		var missing []string
		out := envRef.ReplaceAllStringFunc(x, func(m string) string {
			if m == "$${" {
				return "${"
			}
			name := m[2 : len(m)-1]
			val := getenv(name)
			if val == "" {
				missing = append(missing, name)
			}
			return val
		})
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: %s: environment variable %s is not set", where, path, strings.Join(missing, ", "))
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		var errs []error
		for i, e := range x {
			var err error
			if out[i], err = expandValue(where, fmt.Sprintf("%s[%d]", path, i), key, e, getenv, log); err != nil {
				errs = append(errs, err)
			}
		}
		return out, errors.Join(errs...)
	case map[string]any:
		out := make(map[string]any, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var errs []error
		for _, k := range keys {
			var err error
			if out[k], err = expandValue(where, path+"."+k, k, x[k], getenv, log); err != nil {
				errs = append(errs, err)
			}
		}
		return out, errors.Join(errs...)
	default:
		return v, nil
	}
}

func looksSecret(key string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(key) {
		if r >= 'a' && r <= 'z' {
			b.WriteRune(r)
		}
	}
	k := b.String()
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

func urlWithPassword(s string) bool {
	if !strings.Contains(s, "://") {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}
