package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/web"
)

// TestBrowserGraphiQL opens GraphiQL in headless chromium
// (web/e2e/graphiql.mjs): it renders, runs { policy purposes } and shows
// the server's purposes, builds its docs from introspection, starts its
// editor workers from this origin, with no CSP violation or console error;
// outside --dev the same URL is not GraphiQL.
func TestBrowserGraphiQL(t *testing.T) {
	t.Parallel() // its own server and browser
	root, node, chromium := browserTools(t)
	if !web.HasGraphiQL() {
		t.Fatal("this build has no GraphiQL assets: run scripts/build-graphiql.sh (scripts/test.sh does)")
	}
	s := apptest.Start(t, func(c *config.Config) { c.Dev = true })
	off := apptest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(root, "test-output")
	runBrowserScript(t, ctx, node, root, chromium, "graphiql.mjs", []string{"BASE_URL=" + s.URL, "OFF_URL=" + off.URL}, "graphiql: ok")
	for _, name := range []string{"graphiql-result", "graphiql-docs"} {
		if fi, err := os.Stat(filepath.Join(out, name+".png")); err != nil || fi.Size() == 0 {
			t.Errorf("screenshot %s.png missing: %v", name, err)
		}
	}
}
