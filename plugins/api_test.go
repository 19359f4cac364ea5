package plugins_test

import (
	"bufio"
	"bytes"
	"fmt"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// publicPackages are what a plugin author's module imports; nothing in
// their exported API may mention a type from an internal package, which
// such a module cannot name.
var publicPackages = []string{
	"github.com/consentgraph/consentgraph/cmd",
	"github.com/consentgraph/consentgraph/plugins",
	"github.com/consentgraph/consentgraph/plugins/plugintest",
	// The built-in plugins may use core code inside (smtp_newsletter sends
	// through the core's mail package) but must not show it.
	"github.com/consentgraph/consentgraph/plugins/all",
	"github.com/consentgraph/consentgraph/plugins/example",
	"github.com/consentgraph/consentgraph/plugins/mailchimp",
	"github.com/consentgraph/consentgraph/plugins/smtpnewsletter",
	"github.com/consentgraph/consentgraph/plugins/surveymonkey",
	"github.com/consentgraph/consentgraph/plugins/webhook",
}

// selfContained may not even depend on internal packages: the SDK and
// its kit are what plugin authors read and vendor.
var selfContained = []string{
	"github.com/consentgraph/consentgraph/plugins",
	"github.com/consentgraph/consentgraph/plugins/plugintest",
}

func TestPublicAPIMentionsNoInternalType(t *testing.T) {
	if testing.Short() {
		t.Skip("builds export data of cmd's dependencies")
	}
	args := append([]string{"list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}, publicPackages...)
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	exports := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		path, file, _ := strings.Cut(sc.Text(), "\t")
		exports[path] = file
	}
	imp := importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok || f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	for _, path := range publicPackages {
		pkg, err := imp.Import(path)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		for _, leak := range internalMentions(pkg) {
			t.Errorf("%s: %s", path, leak)
		}
	}
	for _, path := range selfContained {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", path).Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			if isInternal(dep) {
				t.Errorf("%s depends on %s", path, dep)
			}
		}
	}
}

// The checker must really catch a leak: this package's own export data is
// not the point, a synthetic one is.
func TestInternalMentionsFindsALeak(t *testing.T) {
	internal := types.NewPackage("github.com/consentgraph/consentgraph/internal/x", "x")
	secret := types.NewNamed(types.NewTypeName(token.NoPos, internal, "Secret", nil), types.Typ[types.Int], nil)
	pub := types.NewPackage("github.com/consentgraph/consentgraph/plugins", "plugins")
	sig := types.NewSignatureType(nil, nil, nil, types.NewTuple(types.NewVar(token.NoPos, pub, "s", secret)), nil, false)
	pub.Scope().Insert(types.NewFunc(token.NoPos, pub, "Leaky", sig))
	pub.MarkComplete()
	if got := internalMentions(pub); len(got) != 1 || !strings.Contains(got[0], "Leaky") {
		t.Fatalf("leak not found: %v", got)
	}
}

// isInternal reports a package of this module's internal tree (the
// standard library's internal packages never show in an exported API).
func isInternal(path string) bool {
	return strings.HasPrefix(path, "github.com/consentgraph/consentgraph/internal/") ||
		path == "github.com/consentgraph/consentgraph/internal"
}

// internalMentions lists exported identifiers of pkg whose type mentions a
// named type from an internal package: in signatures, exported struct
// fields, methods of exported types, and embedded interfaces.
func internalMentions(pkg *types.Package) []string {
	var out []string
	for _, name := range pkg.Scope().Names() {
		obj := pkg.Scope().Lookup(name)
		if !obj.Exported() {
			continue
		}
		seen := map[types.Type]bool{}
		var bad []string
		var walk func(t types.Type)
		walk = func(t types.Type) {
			if t == nil || seen[t] {
				return
			}
			seen[t] = true
			switch x := t.(type) {
			case *types.Named:
				if p := x.Obj().Pkg(); p != nil && isInternal(p.Path()) {
					bad = append(bad, p.Path()+"."+x.Obj().Name())
					return
				}
				if x.Obj().Pkg() != pkg {
					return // another public package answers for its own types
				}
				walk(x.Underlying())
				for i := range x.NumMethods() {
					if m := x.Method(i); m.Exported() {
						walk(m.Type())
					}
				}
				if ta := x.TypeArgs(); ta != nil {
					for i := range ta.Len() {
						walk(ta.At(i))
					}
				}
			case *types.Alias:
				walk(types.Unalias(x))
			case *types.Pointer:
				walk(x.Elem())
			case *types.Slice:
				walk(x.Elem())
			case *types.Array:
				walk(x.Elem())
			case *types.Map:
				walk(x.Key())
				walk(x.Elem())
			case *types.Chan:
				walk(x.Elem())
			case *types.Signature:
				for i := range x.Params().Len() {
					walk(x.Params().At(i).Type())
				}
				for i := range x.Results().Len() {
					walk(x.Results().At(i).Type())
				}
			case *types.Struct:
				for i := range x.NumFields() {
					if f := x.Field(i); f.Exported() || f.Embedded() {
						walk(f.Type())
					}
				}
			case *types.Interface:
				for i := range x.NumMethods() {
					walk(x.Method(i).Type())
				}
				for i := range x.NumEmbeddeds() {
					walk(x.EmbeddedType(i))
				}
			}
		}
		walk(obj.Type())
		for _, b := range bad {
			out = append(out, fmt.Sprintf("exported %s mentions %s", name, b))
		}
	}
	return out
}
