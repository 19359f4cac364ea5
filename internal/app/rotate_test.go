package app_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

func newKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// After re-wrapping under a new master key, a server that knows only the new
// key reads every user; before, servers holding both keys serve throughout.
func TestMasterKeyRotationKeepsUsersReadable(t *testing.T) {
	cfg := apptest.ConfigOn(t, apptest.Kind())
	oldKey, newKeyB64 := cfg.MasterKey, newKey()
	s := apptest.StartWith(t, cfg)
	c := s.Client()
	for _, name := range []string{"rot-one", "rot-two", "rot-three"} {
		r := c.Do(t, registerMutation, map[string]any{"in": map[string]any{
			"username": name, "password": "correct horse battery", "email": name + "@example.org",
			"profile": map[string]any{"country": "IT"},
		}})
		if len(r.Errors) > 0 {
			t.Fatal(string(r.Raw))
		}
	}
	s.Close()

	// Both keys: serving continues while the rotation runs.
	cfg.MasterKey, cfg.PreviousMasterKeys = newKeyB64, []string{oldKey}
	s = apptest.StartWith(t, cfg)
	rep, err := s.App.RotateMasterKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.DataKeys != 3 || rep.Secrets < 1 || rep.SigningKeys < 1 {
		t.Fatalf("rotation report %+v: want 3 data keys and at least one secret and signing key", rep)
	}
	if again, _ := s.App.RotateMasterKey(context.Background()); again != (app.RotationReport{}) {
		t.Fatalf("second rotation re-wrapped %+v, want nothing", again)
	}
	s.Close()

	// Only the new key: everything still decrypts.
	cfg.PreviousMasterKeys = nil
	s = apptest.StartWith(t, cfg)
	login := s.Client()
	var out struct {
		Login struct{ User struct{ Email string } }
	}
	login.Do(t, `mutation { login(username: "rot-two", password: "correct horse battery") { user { email } } }`, nil).Decode(t, &out)
	if out.Login.User.Email != "rot-two@example.org" {
		t.Fatalf("after rotation: %+v", out)
	}
}
