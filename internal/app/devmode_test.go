package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/web"
)

func devMode(c *config.Config) { c.Dev = true }

// introspect runs web/e2e/introspect.mjs (graphql-js's
// getIntrospectionQuery, buildClientSchema, printSchema) against base and
// returns the SDL it printed, or its error output.
func introspect(t *testing.T, base string) (string, error) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (it runs graphql-js): %v; run ./scripts/test.sh, which installs what is missing", err)
	}
	root := apptest.RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "web", "e2e", "node_modules", "graphql")); err != nil {
		t.Fatalf("the graphql npm package is not installed: %v; run ./scripts/test.sh (npm ci in web/e2e)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(root, "web", "e2e", "introspect.mjs"))
	cmd.Env = append(os.Environ(), "BASE_URL="+base)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), nil
}

// TestDevIntrospectionWithGraphQLJS: in --dev the canonical introspection
// query of graphql-js (depth 15, over the default --max-depth of 12)
// passes every limit, and the schema graphql-js builds from it is the one
// GET /schema.graphql serves. Outside --dev it is refused.
func TestDevIntrospectionWithGraphQLJS(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, devMode)
	if s.App == nil {
		t.Fatal("no app")
	}
	got, err := introspect(t, s.URL)
	if err != nil {
		t.Fatalf("introspection in --dev failed: %v", err)
	}
	res, err := http.Get(s.URL + "/schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /schema.graphql: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(body), "\n\ntype Query {") {
		t.Errorf("/schema.graphql does not separate its definitions with blank lines:\n%.400s", body)
	}
	fromJS, fromServer := schemaShape(t, "graphql-js", got), schemaShape(t, "/schema.graphql", string(body))
	if len(fromServer) < 20 {
		t.Fatalf("/schema.graphql has only %d definitions:\n%s", len(fromServer), body)
	}
	for _, d := range diffLines(fromServer, fromJS) {
		t.Errorf("schema differs: %s", d)
	}

	off := apptest.Start(t)
	if _, err := introspect(t, off.URL); err == nil || !strings.Contains(err.Error(), "introspection is disabled") {
		t.Errorf("introspection outside --dev: %v; want refused", err)
	}
}

// TestDevIntrospectionHasItsOwnBound: introspection is exempt from the data
// limits, not from every limit; and a data field next to __schema makes the
// operation a data operation again.
func TestDevIntrospectionHasItsOwnBound(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, devMode, func(c *config.Config) { c.MaxDepth = 4 })
	c := s.Client()
	deep := `{ __schema { types { fields { type { ofType { ofType { name } } } } } } }` // depth 7
	if r := c.Do(t, deep, nil); r.Code() != "" {
		t.Errorf("introspection of depth 7 with --max-depth 4: %s", r.Code())
	}
	mixed := `{ policy { version } __schema { types { fields { type { ofType { ofType { name } } } } } } }`
	if r := c.Do(t, mixed, nil); r.Code() != "DEPTH_LIMIT_EXCEEDED" {
		t.Errorf("introspection beside data: code %q; want DEPTH_LIMIT_EXCEEDED", r.Code())
	}
	tooDeep := "{ __schema { types { fields { type " + strings.Repeat("{ ofType ", 40) + "{ name }" + strings.Repeat(" }", 40) + " } } } }"
	if r := c.Do(t, tooDeep, nil); r.Code() != "DEPTH_LIMIT_EXCEEDED" {
		t.Errorf("introspection of depth 45: code %q; want DEPTH_LIMIT_EXCEEDED", r.Code())
	}
}

// TestDevGraphiQLAndSchemaOnlyInDev: a browser asking for /graphql gets
// GraphiQL in --dev, under its dev CSP (nothing from another origin), with
// its assets from this origin; outside --dev the existing answer, and no
// /schema.graphql or assets.
func TestDevGraphiQLAndSchemaOnlyInDev(t *testing.T) {
	if !web.HasGraphiQL() {
		t.Fatal("this build has no GraphiQL assets: run scripts/build-graphiql.sh (scripts/test.sh does)")
	}
	t.Parallel()
	get := func(u, accept string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}
	const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	s := apptest.Start(t, devMode)
	res, body := get(s.URL+"/graphql", browser)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		res.Header.Get("Content-Security-Policy") != web.GraphiQLCSP || res.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("GraphiQL page: %d %v", res.StatusCode, res.Header)
	}
	for _, d := range strings.Split(web.GraphiQLCSP, ";") {
		if strings.Contains(d, "*") || strings.Contains(d, "http") || strings.Contains(d, "unsafe-eval") ||
			(strings.Contains(d, "unsafe-inline") && !strings.HasPrefix(strings.TrimSpace(d), "style-src")) {
			t.Errorf("the GraphiQL CSP allows more than this origin and inline styles: %q", d)
		}
	}
	if strings.Contains(body, "<style") || strings.Contains(body, " style=") || strings.Contains(body, "https://") {
		t.Errorf("the GraphiQL page has inline style or a remote asset:\n%s", body)
	}
	for _, asset := range []string{"/_dev/graphiql/graphiql.js", "/_dev/graphiql/graphiql.css", "/_dev/graphiql/page.css"} {
		if !strings.Contains(body, `"`+asset+`"`) {
			t.Errorf("the page does not load %s", asset)
		}
	}
	for _, asset := range []string{"/_dev/graphiql/graphiql.js", "/_dev/graphiql/graphiql.css", "/_dev/graphiql/page.css",
		"/_dev/graphiql/editor.worker.js", "/_dev/graphiql/json.worker.js", "/_dev/graphiql/graphql.worker.js"} {
		if r, b := get(s.URL+asset, ""); r.StatusCode != 200 || len(b) < 20 || r.Header.Get("Content-Security-Policy") != web.GraphiQLCSP {
			t.Errorf("%s: %d, %d bytes, CSP %q", asset, r.StatusCode, len(b), r.Header.Get("Content-Security-Policy"))
		}
	}
	if r, _ := get(s.URL+"/_dev/graphiql/nothing.js", ""); r.StatusCode != http.StatusNotFound {
		t.Errorf("a missing asset: %d; want 404", r.StatusCode)
	}
	// GraphQL clients using GET still get GraphQL.
	if r, b := get(s.URL+"/graphql?query=%7Bpolicy%7Bversion%7D%7D", "application/json"); r.StatusCode != 200 || !strings.Contains(b, `"policy"`) {
		t.Errorf("GET query in --dev: %d %s", r.StatusCode, b)
	}

	off := apptest.Start(t)
	if r, b := get(off.URL+"/graphql", browser); r.StatusCode == 200 || strings.Contains(b, "<html") {
		t.Errorf("outside --dev a browser got a page: %d %s", r.StatusCode, b)
	}
	for _, p := range []string{"/schema.graphql", "/_dev/explorer.js", "/_dev/graphiql/graphiql.js"} {
		if r, _ := get(off.URL+p, ""); r.StatusCode != http.StatusNotFound {
			t.Errorf("outside --dev %s: %d; want 404", p, r.StatusCode)
		}
	}
}

// schemaShape reduces an SDL to one line per type, field, argument, enum value,
// union member and directive, sorted: what a client generates code from,
// without the formatting and the descriptions, which printers differ in.
func schemaShape(t *testing.T, name, sdl string) []string {
	t.Helper()
	schema, err := gqlparser.LoadSchema(&ast.Source{Name: name, Input: sdl})
	if err != nil {
		t.Fatalf("%s does not load: %v\n%s", name, err, sdl)
	}
	var lines []string
	for _, def := range schema.Types {
		if def.BuiltIn || strings.HasPrefix(def.Name, "__") {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s %s", def.Kind, def.Name))
		for _, i := range def.Interfaces {
			lines = append(lines, fmt.Sprintf("%s implements %s", def.Name, i))
		}
		for _, f := range def.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			lines = append(lines, fmt.Sprintf("%s.%s: %s", def.Name, f.Name, f.Type))
			for _, a := range f.Arguments {
				lines = append(lines, fmt.Sprintf("%s.%s(%s: %s)", def.Name, f.Name, a.Name, a.Type))
			}
		}
		for _, v := range def.EnumValues {
			lines = append(lines, fmt.Sprintf("%s.%s", def.Name, v.Name))
		}
		for _, u := range def.Types {
			lines = append(lines, fmt.Sprintf("%s | %s", def.Name, u))
		}
	}
	// The prelude's directives (@defer among them) are built in on both
	// sides; graphql-js prints the ones the spec does not define.
	prelude, err := gqlparser.LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range schema.Directives {
		if _, builtIn := prelude.Directives[d.Name]; builtIn {
			continue
		}
		lines = append(lines, "directive @"+d.Name)
	}
	slices.Sort(lines)
	return lines
}

// diffLines lists the lines only one of want and got has.
func diffLines(want, got []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			out = append(out, "only on the server: "+w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			out = append(out, "only in graphql-js: "+g)
		}
	}
	return out
}
