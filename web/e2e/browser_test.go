package e2e_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// browserTools returns the repository root, node and chromium for the
// browser tests, failing (never skipping) when one is missing:
// scripts/test.sh installs them.
func browserTools(t *testing.T) (root, node, chromium string) {
	t.Helper()
	root = apptest.RepoRoot(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (it runs the browser tests): %v; run ./scripts/test.sh, which installs what is missing", err)
	}
	chromium = os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		// Debian's build of the headless-only shell, as Playwright's own
		// headless runs use: the same engine as the full browser without
		// its UI, about 15% less CPU on these walks.
		chromium = "/usr/bin/chromium-headless-shell"
		if _, err := os.Stat(chromium); err != nil {
			chromium = "/usr/bin/chromium"
		}
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium is not installed at %s: %v; run ./scripts/test.sh (apt-get install chromium-headless-shell)", chromium, err)
	}
	if _, err := os.Stat(filepath.Join(root, "web", "e2e", "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed: %v; run ./scripts/test.sh (npm ci in web/e2e)", err)
	}
	return root, node, chromium
}

// runBrowserScript runs web/e2e/<script> with node against the servers
// named in env (OUT_DIR and CHROMIUM_PATH are added), fails the test when
// it fails or when its output lacks one of the wanted "…: ok" lines, and
// returns the output.
func runBrowserScript(t *testing.T, ctx context.Context, node, root, chromium, script string, env []string, wants ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, node, filepath.Join(root, "web", "e2e", script))
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), env...), "OUT_DIR="+filepath.Join(root, "test-output"), "CHROMIUM_PATH="+chromium)
	output, err := cmd.CombinedOutput()
	t.Logf("%s output:\n%s", script, output)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("%s timed out", script)
		}
		t.Fatalf("%s failed: %v", script, err)
	}
	for _, want := range wants {
		if !strings.Contains(string(output), want) {
			t.Errorf("%s output lacks %q", script, want)
		}
	}
	return string(output)
}
