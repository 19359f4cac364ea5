package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// schemaTool is one run of a standard schema tool from web/e2e/node_modules.
type schemaTool struct {
	name string
	args func(url, dir string) []string // after the tool's script
	out  string                         // the file it writes in dir; "" = stdout
}

var schemaTools = []struct {
	schemaTool
	script string // under web/e2e/node_modules
}{
	{schemaTool{"graphql-codegen", func(_, dir string) []string {
		return []string{"--config", filepath.Join(dir, "codegen.json")}
	}, "codegen.graphql"}, "@graphql-codegen/cli/esm/bin.js"},
	{schemaTool{"graphql-inspector", func(url, dir string) []string {
		return []string{"introspect", url, "--write", filepath.Join(dir, "inspector.graphql")}
	}, "inspector.graphql"}, "@graphql-inspector/cli/cjs/index.js"},
	{schemaTool{"get-graphql-schema", func(url, _ string) []string { return []string{url} }, ""}, "get-graphql-schema/dist/index.js"},
}

// runSchemaTool runs tool against url/graphql in a fresh directory (with a
// codegen config that writes the schema-ast and typescript outputs there)
// and returns the directory, the schema it produced (the file, or stdout),
// its combined error output and its exit error.
func runSchemaTool(t *testing.T, node, e2e, script string, tool schemaTool, base string) (dir, schema, stderr string, runErr error) {
	t.Helper()
	dir = t.TempDir()
	url := base + "/graphql"
	config, _ := json.Marshal(map[string]any{
		"schema": url, "overwrite": true, "silent": false, // silent would hide why it failed
		"generates": map[string]any{
			filepath.Join(dir, "codegen.graphql"): map[string]any{"plugins": []string{"schema-ast"}},
			filepath.Join(dir, "types.ts"):        map[string]any{"plugins": []string{"typescript"}},
		},
	})
	if err := os.WriteFile(filepath.Join(dir, "codegen.json"), config, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{filepath.Join(e2e, "node_modules", script)}, tool.args(url, dir)...)...)
	cmd.Dir = e2e // codegen resolves its plugins from here
	var errOut strings.Builder
	cmd.Stderr = &errOut
	stdout, runErr := cmd.Output()
	schema = string(stdout)
	if tool.out != "" {
		b, err := os.ReadFile(filepath.Join(dir, tool.out))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		schema = string(b)
	}
	return dir, schema, errOut.String() + string(stdout), runErr
}

// TestDevSchemaTools runs @graphql-codegen/cli (schema-ast and typescript),
// @graphql-inspector/cli introspect and get-graphql-schema, as installed
// from npm, against a --dev server: each exits 0 and produces the schema
// GET /schema.graphql serves, type by type and field by field. Without
// --dev each fails and says that introspection is disabled.
func TestDevSchemaTools(t *testing.T) {
	t.Parallel() // its own server and browser
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: %v; run ./scripts/test.sh, which installs what is missing", err)
	}
	e2e := filepath.Join(apptest.RepoRoot(t), "web", "e2e")
	for _, tool := range schemaTools {
		if _, err := os.Stat(filepath.Join(e2e, "node_modules", tool.script)); err != nil {
			t.Fatalf("%s is not installed: %v; run ./scripts/test.sh (npm ci in web/e2e)", tool.name, err)
		}
	}
	s := apptest.Start(t, devMode)
	off := apptest.Start(t)
	res, err := http.Get(s.URL + "/schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	sdl, _ := io.ReadAll(res.Body)
	res.Body.Close()
	want := schemaShape(t, "/schema.graphql", string(sdl))

	for _, tool := range schemaTools {
		t.Run(tool.name, func(t *testing.T) {
			dir, schema, stderr, err := runSchemaTool(t, node, e2e, tool.script, tool.schemaTool, s.URL)
			if err != nil {
				t.Fatalf("%s in --dev: %v\n%s", tool.name, err, stderr)
			}
			got := schemaShape(t, tool.name, schema)
			for _, d := range diffLines(want, got) {
				t.Errorf("%s: %s", tool.name, strings.Replace(d, "graphql-js", tool.name, 1))
			}
			if tool.name == "graphql-codegen" {
				ts, err := os.ReadFile(filepath.Join(dir, "types.ts"))
				if err != nil || !strings.Contains(string(ts), "export type Query = {") || !strings.Contains(string(ts), "purposes: Array<Purpose>") {
					t.Errorf("codegen's typescript output: %v\n%.600s", err, ts)
				}
			}

			_, schema, stderr, err = runSchemaTool(t, node, e2e, tool.script, tool.schemaTool, off.URL)
			if !strings.Contains(stderr, "introspection is disabled on this server") {
				t.Errorf("%s outside --dev does not say why it failed:\n%s", tool.name, stderr)
			}
			if strings.TrimSpace(schema) != "" {
				t.Errorf("%s outside --dev wrote a schema:\n%.300s", tool.name, schema)
			}
			// get-graphql-schema exits 0 on every error (its main ends in
			// .catch(console.error)); the server cannot change that, so for
			// it the empty output and the message above are the failure.
			if tool.name != "get-graphql-schema" && err == nil {
				t.Errorf("%s outside --dev exited 0", tool.name)
			}
		})
	}
}
