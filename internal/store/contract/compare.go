package contract

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/consent"
)

var (
	timeType   = reflect.TypeOf(time.Time{})
	storedType = reflect.TypeOf(consent.Stored{})
)

// skipField names struct fields the comparison ignores: consent.Stored's
// embedded ledger is going away (the ledger lives apart and is read with
// consent.Store.Events), so no adapter is expected to fill it.
func skipField(t reflect.Type, name string) bool {
	return t == storedType && name == "Events"
}

// diff compares want and got field by field and describes every
// difference, or returns "". It is strict where the ports give a meaning
// and lenient where they do not:
//   - times are equal when they are the same instant (time.Time.Equal) and
//     the returned one is in UTC (a zero time must come back zero);
//   - a nil []byte means "not given" in the records (a sealed field, a
//     retired private key, a tuple counted nowhere), so nil and empty
//     differ there; for other slices and for maps nil equals empty.
func diff(want, got any) string {
	var out []string
	diffValue(&out, "", reflect.ValueOf(want), reflect.ValueOf(got))
	if len(out) > 8 {
		out = append(out[:8], fmt.Sprintf("... and %d more differences", len(out)-8))
	}
	return strings.Join(out, "; ")
}

func diffValue(out *[]string, path string, w, g reflect.Value) {
	add := func(format string, args ...any) {
		p := path
		if p == "" {
			p = "value"
		}
		*out = append(*out, p+": "+fmt.Sprintf(format, args...))
	}
	if !w.IsValid() || !g.IsValid() {
		if w.IsValid() != g.IsValid() {
			add("want %v, got %v", show(w), show(g))
		}
		return
	}
	if w.Type() != g.Type() {
		add("type %s vs %s", w.Type(), g.Type())
		return
	}
	if w.Type() == timeType {
		wt, gt := w.Interface().(time.Time), g.Interface().(time.Time)
		switch {
		case wt.IsZero() && !gt.IsZero():
			add("want the zero time, got %s", gt.Format(time.RFC3339Nano))
		case !wt.Equal(gt):
			add("want %s, got %s", wt.UTC().Format(time.RFC3339Nano), fmtTime(gt))
		case !gt.IsZero() && gt.Location() != time.UTC:
			add("time %s is not in UTC (location %q)", gt.Format(time.RFC3339Nano), gt.Location())
		}
		return
	}
	switch w.Kind() {
	case reflect.Pointer:
		if w.IsNil() || g.IsNil() {
			if w.IsNil() != g.IsNil() {
				add("want %v, got %v", show(w), show(g))
			}
			return
		}
		diffValue(out, path, w.Elem(), g.Elem())
	case reflect.Interface:
		if w.IsNil() || g.IsNil() {
			if w.IsNil() != g.IsNil() {
				add("want %v, got %v", show(w), show(g))
			}
			return
		}
		diffValue(out, path, w.Elem(), g.Elem())
	case reflect.Struct:
		for i := range w.NumField() {
			f := w.Type().Field(i)
			if !f.IsExported() || skipField(w.Type(), f.Name) {
				continue
			}
			diffValue(out, join(path, f.Name), w.Field(i), g.Field(i))
		}
	case reflect.Slice:
		if w.Type().Elem().Kind() == reflect.Uint8 {
			wb, gb := w.Bytes(), g.Bytes()
			switch {
			case wb == nil && gb != nil:
				add("want nil bytes, got %q", gb)
			case wb != nil && gb == nil:
				add("want %q, got nil bytes", wb)
			case !bytes.Equal(wb, gb):
				add("want %q, got %q", wb, gb)
			}
			return
		}
		if w.Len() != g.Len() {
			add("want %d elements, got %d (want %v, got %v)", w.Len(), g.Len(), show(w), show(g))
			return
		}
		for i := range w.Len() {
			diffValue(out, fmt.Sprintf("%s[%d]", path, i), w.Index(i), g.Index(i))
		}
	case reflect.Map:
		keys := map[string]reflect.Value{}
		for _, k := range w.MapKeys() {
			keys[fmt.Sprint(k.Interface())] = k
		}
		for _, k := range g.MapKeys() {
			keys[fmt.Sprint(k.Interface())] = k
		}
		names := make([]string, 0, len(keys))
		for n := range keys {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			k := keys[n]
			wv, gv := w.MapIndex(k), g.MapIndex(k)
			p := fmt.Sprintf("%s[%s]", path, n)
			switch {
			case !wv.IsValid():
				*out = append(*out, fmt.Sprintf("%s: unexpected entry %v", p, show(gv)))
			case !gv.IsValid():
				*out = append(*out, fmt.Sprintf("%s: missing (want %v)", p, show(wv)))
			default:
				diffValue(out, p, wv, gv)
			}
		}
	default:
		if !reflect.DeepEqual(w.Interface(), g.Interface()) {
			add("want %v, got %v", show(w), show(g))
		}
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func fmtTime(t time.Time) string {
	return t.Format(time.RFC3339Nano) + " (" + t.Location().String() + ")"
}

func show(v reflect.Value) string {
	if !v.IsValid() {
		return "<none>"
	}
	if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface || v.Kind() == reflect.Map || v.Kind() == reflect.Slice) && v.IsNil() {
		return "nil"
	}
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	s := fmt.Sprintf("%+v", v.Interface())
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
