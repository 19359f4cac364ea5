package graph_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/graph"
)

// Every String or ID argument and input field in the schema files has a
// length limit and a character class in graph.InputRules, and every list
// argument or input field a cap in graph.ListCaps.
func TestEveryInputHasALimit(t *testing.T) {
	s := loadSchema(t)
	isString := func(ty *ast.Type) bool {
		for ty.Elem != nil {
			ty = ty.Elem
		}
		return ty.NamedType == "String" || ty.NamedType == "ID"
	}
	var missing []string
	used := map[string]bool{}
	checkInput := func(key string, ty *ast.Type) {
		if ty.Elem != nil {
			used[key] = true
			if _, ok := graph.ListCaps[key]; !ok {
				missing = append(missing, key+" (list: add a cap to graph.ListCaps)")
			}
		}
		if isString(ty) {
			used[key] = true
			if _, ok := graph.InputRules[key]; !ok {
				missing = append(missing, key+" (string: add a rule to graph.InputRules)")
			}
		}
	}
	for _, def := range s.Types {
		if strings.HasPrefix(def.Name, "__") {
			continue
		}
		switch def.Kind {
		case ast.Object, ast.Interface:
			for _, f := range def.Fields {
				if strings.HasPrefix(f.Name, "__") {
					continue
				}
				for _, a := range f.Arguments {
					checkInput(def.Name+"."+f.Name+"."+a.Name, a.Type)
				}
			}
		case ast.InputObject:
			for _, f := range def.Fields {
				checkInput(def.Name+"."+f.Name, f.Type)
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("input without a limit: %s in graph/inputlimits.go", m)
	}
	for k := range graph.InputRules {
		if !used[k] {
			t.Errorf("graph.InputRules has a rule for %s, which is no string input of the schema", k)
		}
	}
	for k := range graph.ListCaps {
		if !used[k] {
			t.Errorf("graph.ListCaps has a cap for %s, which is no list input of the schema", k)
		}
	}
	if len(used) < 15 {
		t.Fatalf("only %d inputs found; the walk proves nothing", len(used))
	}
}

func TestCheckString(t *testing.T) {
	cases := []struct {
		s    string
		rule graph.StringRule
		ok   bool
	}{
		{"Acme Research", graph.StringRule{MaxBytes: 128, Class: graph.Printable}, true},
		{"Émile Zoë", graph.StringRule{MaxBytes: 128, Class: graph.Printable}, true},
		{"Acme\nResearch", graph.StringRule{MaxBytes: 128, Class: graph.Printable}, false},
		{"Acme\u202eevil", graph.StringRule{MaxBytes: 128, Class: graph.Printable}, false},
		{"a\xffb", graph.StringRule{MaxBytes: 128, Class: graph.Printable}, false},
		{strings.Repeat("x", 129), graph.StringRule{MaxBytes: 128, Class: graph.Printable}, false},
		{"abc.DEF-123_~+/=", graph.StringRule{MaxBytes: 64, Class: graph.Token}, true},
		{"abc def", graph.StringRule{MaxBytes: 64, Class: graph.Token}, false},
		{"abc\"", graph.StringRule{MaxBytes: 64, Class: graph.Token}, false},
		{"pässwörd with spaces\t", graph.StringRule{MaxBytes: 1024, Class: graph.Secret}, true},
		{"pass\x00word", graph.StringRule{MaxBytes: 1024, Class: graph.Secret}, false},
		{"https://example.org/privacy?v=2", graph.StringRule{MaxBytes: 2048, Class: graph.URL}, true},
		{"https://example.org/a b", graph.StringRule{MaxBytes: 2048, Class: graph.URL}, false},
	}
	for _, c := range cases {
		err := graph.CheckString("f", c.s, c.rule)
		if (err == nil) != c.ok {
			t.Errorf("CheckString(%q, %+v) = %v, want ok=%v", c.s, c.rule, err, c.ok)
		}
	}
}
