package plugins

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DescriptionSetting is the settings key the core owns: when set, its text
// replaces Manifest.Description wherever the instance is shown (the admin
// API, consent receipts). Every plugin accepts it: DecodeSettings and
// CheckSettings skip it, so a plugin never lists it among its own keys.
const DescriptionSetting = "description"

// coreSettings are the keys the core reads itself; plugins never see them
// as unknown.
var coreSettings = []string{DescriptionSetting}

// DecodeSettings decodes env.Settings into the struct dst points to, and
// refuses keys that match no field (naming the key and the known ones) so
// that a typo in the config stops start-up instead of being ignored.
//
// A field's key is given by its `setting` tag, or else is the field name
// with a lower-case first letter (ListID → listID, so prefer a tag). Tag
// options after a comma: "required" refuses a missing, null or empty value.
// `setting:"-"` skips the field. Unexported fields are skipped.
//
//	type config struct {
//		APIKey  string        `setting:"apiKey,required"`
//		ListID  string        `setting:"listId,required"`
//		Timeout time.Duration `setting:"timeout"`
//		Tags    []string      `setting:"tags"`
//	}
//	var cfg config
//	if err := plugins.DecodeSettings(env, &cfg); err != nil { return nil, err }
//
// Values convert the way a YAML author expects: a string field takes a
// string, or a number as its decimal text (IDs are often written
// unquoted, listId: 1234); integer and float fields take numbers or
// numeric strings (a value from ${NAME} is always a string); booleans take
// true/false or their text; a time.Duration takes Go's duration text
// ("30s", "1m30s"); slices take lists (or one value, as a list of one);
// maps with string keys take mappings; nested structs take mappings and
// refuse unknown keys too; a type implementing encoding.TextUnmarshaler
// takes a string; a Text takes a string or a mapping of language tag to
// string. Fields absent from the settings keep the value dst held,
// so set defaults before calling. The core-owned key DescriptionSetting is
// ignored.
func DecodeSettings(env Env, dst any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("plugins.DecodeSettings: want a pointer to a struct, got %T", dst)
	}
	settings := make(map[string]any, len(env.Settings))
	for k, v := range env.Settings {
		if !slices.Contains(coreSettings, k) {
			settings[k] = v
		}
	}
	return decodeStruct("settings", settings, rv.Elem())
}

type settingField struct {
	key      string
	required bool
	index    int
}

func settingFields(t reflect.Type) []settingField {
	var out []settingField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("setting")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = strings.ToLower(f.Name[:1]) + f.Name[1:]
		}
		out = append(out, settingField{key: name, required: slices.Contains(strings.Split(opts, ","), "required"), index: i})
	}
	return out
}

func decodeStruct(path string, m map[string]any, v reflect.Value) error {
	fields := settingFields(v.Type())
	known := make([]string, 0, len(fields))
	for _, f := range fields {
		known = append(known, f.key)
	}
	sort.Strings(known)
	var errs []error
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			errs = append(errs, fmt.Errorf("%s.%s is not a setting of this processor (known: %s)", path, k, strings.Join(known, ", ")))
		}
	}
	for _, f := range fields {
		kp := path + "." + f.key
		raw, ok := m[f.key]
		if !ok || raw == nil {
			if f.required {
				errs = append(errs, fmt.Errorf("%s is required", kp))
			}
			continue
		}
		if f.required {
			if s, isStr := raw.(string); isStr && s == "" {
				errs = append(errs, fmt.Errorf("%s must not be empty", kp))
				continue
			}
		}
		if err := decodeValue(kp, raw, v.Field(f.index)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func decodeValue(path string, raw any, v reflect.Value) error {
	if raw == nil {
		v.SetZero()
		return nil
	}
	if v.Type() == textType {
		t, err := decodeText(path, raw)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(t))
		return nil
	}
	if reflect.PointerTo(v.Type()).Implements(textUnmarshalerType) && v.Kind() != reflect.String {
		s, err := scalarText(path, raw)
		if err != nil {
			return err
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	if v.Type() == durationType {
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("%s: want a duration such as \"30s\" or \"5m\", got %v", path, raw)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s: want a duration such as \"30s\" or \"5m\": %w", path, err)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := decodeValue(path, raw, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
	case reflect.String:
		s, err := scalarText(path, raw)
		if err != nil {
			return err
		}
		v.SetString(s)
	case reflect.Bool:
		switch b := raw.(type) {
		case bool:
			v.SetBool(b)
		case string:
			pb, err := strconv.ParseBool(b)
			if err != nil {
				return fmt.Errorf("%s: want true or false, got %q", path, b)
			}
			v.SetBool(pb)
		default:
			return fmt.Errorf("%s: want true or false, got %v", path, raw)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := toInt(path, raw)
		if err != nil {
			return err
		}
		if v.OverflowInt(n) {
			return fmt.Errorf("%s: %d is out of range", path, n)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := toInt(path, raw)
		if err != nil {
			return err
		}
		if n < 0 || v.OverflowUint(uint64(n)) {
			return fmt.Errorf("%s: %d is out of range", path, n)
		}
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		f, err := toFloat(path, raw)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case reflect.Slice:
		list, ok := raw.([]any)
		if !ok {
			list = []any{raw} // one value where a list is expected
		}
		s := reflect.MakeSlice(v.Type(), len(list), len(list))
		for i, e := range list {
			if err := decodeValue(fmt.Sprintf("%s[%d]", path, i), e, s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok || v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("%s: want a mapping", path)
		}
		out := reflect.MakeMapWithSize(v.Type(), len(m))
		var errs []error
		for k, e := range m {
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := decodeValue(path+"."+k, e, ev); err != nil {
				errs = append(errs, err)
				continue
			}
			out.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev)
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		v.Set(out)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want a mapping", path)
		}
		return decodeStruct(path, m, v)
	case reflect.Interface:
		if v.NumMethod() != 0 {
			return fmt.Errorf("%s: cannot decode into %s", path, v.Type())
		}
		v.Set(reflect.ValueOf(raw))
	default:
		return fmt.Errorf("%s: cannot decode into %s", path, v.Type())
	}
	return nil
}

// scalarText is a string, or a number or boolean as its text: IDs are
// often written unquoted in YAML.
func scalarText(path string, raw any) (string, error) {
	switch x := raw.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	rv := reflect.ValueOf(raw)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), nil
	}
	return "", fmt.Errorf("%s: want a string, got a %s", path, kindName(raw))
}

func toInt(path string, raw any) (int64, error) {
	switch x := raw.(type) {
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: want a whole number, got %q", path, x)
		}
		return n, nil
	case float64:
		if x != math.Trunc(x) || x > math.MaxInt64 || x < math.MinInt64 {
			return 0, fmt.Errorf("%s: want a whole number, got %v", path, x)
		}
		return int64(x), nil
	}
	rv := reflect.ValueOf(raw)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if rv.Uint() > math.MaxInt64 {
			return 0, fmt.Errorf("%s: %d is out of range", path, rv.Uint())
		}
		return int64(rv.Uint()), nil
	}
	return 0, fmt.Errorf("%s: want a whole number, got a %s", path, kindName(raw))
}

func toFloat(path string, raw any) (float64, error) {
	switch x := raw.(type) {
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, fmt.Errorf("%s: want a number, got %q", path, x)
		}
		return f, nil
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	}
	n, err := toInt(path, raw)
	if err != nil {
		return 0, fmt.Errorf("%s: want a number, got a %s", path, kindName(raw))
	}
	return float64(n), nil
}

func kindName(raw any) string {
	switch raw.(type) {
	case []any:
		return "list"
	case map[string]any:
		return "mapping"
	case bool:
		return "boolean"
	case string:
		return "string"
	}
	return fmt.Sprintf("%T", raw)
}
