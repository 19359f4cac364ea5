package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// verifyDetached checks a detached JWS over payload using nothing but the
// server's published JWKS document, as an outside party would.
func verifyDetached(t *testing.T, s *apptest.Server, sig string, payload []byte) error {
	t.Helper()
	res, err := http.Get(s.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseDetached(sig, payload, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return err
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) == 0 {
		t.Fatalf("kid %q not in JWKS", jws.Signatures[0].Header.KeyID)
	}
	_, err = jws.Verify(keys[0].Key)
	return err
}

func TestExportIsCompleteAndSigned(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Client()
	r := c.Do(t, registerMutation, map[string]any{"in": map[string]any{
		"username": "exporter", "password": "correct horse battery", "email": "exporter@example.org",
		"profile": map[string]any{"country": "PT", "birthYear": 1970},
	}})
	if len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	var out struct {
		ExportMyData struct{ Document, Signature string }
	}
	c.Do(t, `{ exportMyData { document signature } }`, nil).Decode(t, &out)
	var doc map[string]any
	if err := json.Unmarshal([]byte(out.ExportMyData.Document), &doc); err != nil {
		t.Fatal(err)
	}
	acct, _ := doc["account"].(map[string]any)
	profile, _ := acct["profile"].(map[string]any)
	if acct["email"] != "exporter@example.org" || profile["country"] != "PT" {
		t.Fatalf("account section: %v", doc["account"])
	}
	if ss, _ := doc["sessions"].([]any); len(ss) != 1 {
		t.Fatalf("sessions section: %v", doc["sessions"])
	}
	if err := verifyDetached(t, s, out.ExportMyData.Signature, []byte(out.ExportMyData.Document)); err != nil {
		t.Fatalf("export signature does not verify with the JWKS: %v", err)
	}
	tampered := strings.Replace(out.ExportMyData.Document, "PT", "ES", 1)
	if err := verifyDetached(t, s, out.ExportMyData.Signature, []byte(tampered)); err == nil {
		t.Fatal("altered export still verifies")
	}

	// The browser download carries the same, for the session cookie.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.URL+"/export", nil)
	res, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("GET /export = %d %v", res.StatusCode, res.Header)
	}
	var file struct{ Document, Signature string }
	if err := json.Unmarshal(body, &file); err != nil || verifyDetached(t, s, file.Signature, []byte(file.Document)) != nil {
		t.Fatalf("downloaded export does not verify: %v", err)
	}
	anon, err := http.Get(s.URL + "/export")
	if err != nil {
		t.Fatal(err)
	}
	anon.Body.Close()
	if anon.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /export = %d", anon.StatusCode)
	}
}
