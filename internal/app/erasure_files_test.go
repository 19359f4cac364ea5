package app_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

// TestErasureLeavesNoUsernameOrHashOnDisk signs a user up, has them use the
// service, erases them, and searches every byte of the embedded store's
// files (database, write-ahead log, shared memory) for their username and
// password hash: neither may be readable anywhere, free pages included.
func TestErasureLeavesNoUsernameOrHashOnDisk(t *testing.T) {
	t.Parallel()
	var dataDir string
	s := apptest.StartOn(t, "embedded", func(c *config.Config) { dataDir = c.DataDir })
	const username = "canary-erasure-q7x"
	c := s.Register(t, username)
	for _, q := range []string{
		`mutation { grantConsent(purpose: "newsletter") { changed } }`,
		`mutation { updateProfile(input: {country: "NZ", language: "en"}) { id } }`,
		`mutation { withdrawConsent(purpose: "newsletter") { changed } }`,
	} {
		if r := c.Do(t, q, nil); len(r.Errors) > 0 {
			t.Fatalf("%s: %s", q, r.Raw)
		}
	}
	if r := c.Do(t, `mutation($u: String!) { login(username: $u, password: "correct horse battery") { token } }`, map[string]any{"u": username}); len(r.Errors) > 0 {
		t.Fatalf("login: %s", r.Raw)
	}
	rec, err := s.Store().Accounts().AccountByUsername(context.Background(), username)
	if err != nil || rec == nil {
		t.Fatalf("account: %v %v", rec, err)
	}
	// The encoded argon2id hash ends in the digest: search for the digest
	// and for the salt, each unique to this account.
	parts := strings.Split(rec.PasswordHash, "$")
	if len(parts) < 2 {
		t.Fatalf("unexpected hash format %q", rec.PasswordHash)
	}
	secrets := map[string][]byte{
		"username":      []byte(username),
		"password salt": []byte(parts[len(parts)-2]),
		"password hash": []byte(parts[len(parts)-1]),
	}
	if found := searchDir(t, dataDir, secrets); len(found) == 0 {
		t.Fatal("the search finds nothing even before erasure: it cannot fail")
	}

	if r := c.Do(t, `mutation { deleteMyAccount(password: "correct horse battery") }`, nil); len(r.Errors) > 0 {
		t.Fatalf("deleteMyAccount: %s", r.Raw)
	}
	if found := searchDir(t, dataDir, secrets); len(found) > 0 {
		t.Errorf("after erasure, readable in the data directory: %s", strings.Join(found, "; "))
	}
}

// searchDir returns "what in which file" for every secret found in a file
// under dir.
func searchDir(t *testing.T, dir string, secrets map[string][]byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for what, secret := range secrets {
			if bytes.Contains(bytes.ToLower(b), bytes.ToLower(secret)) {
				found = append(found, what+" in "+filepath.Base(path))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
