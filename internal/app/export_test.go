package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

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
	wantName := `attachment; filename="consentgraph-export-` + time.Now().UTC().Format("2006-01-02") + `.json"`
	if res.StatusCode != 200 || res.Header.Get("Content-Disposition") != wantName {
		t.Fatalf("GET /export = %d %v", res.StatusCode, res.Header)
	}
	// The file is one JSON object whose document is an object, not a
	// string holding escaped JSON.
	var file struct {
		Signature string
		Document  map[string]any
	}
	if err := json.Unmarshal(body, &file); err != nil {
		t.Fatalf("the export file is not one JSON object: %v\n%s", err, body)
	}
	if acct, _ := file.Document["account"].(map[string]any); acct["username"] != "exporter" {
		t.Fatalf("the file's document is not the export object: %v", file.Document)
	}
	// An outside verifier cuts the document out of the file as the README
	// says, byte for byte, and checks it against the JWKS alone.
	signed := signedDocument(t, body)
	if err := verifyDetached(t, s, file.Signature, signed); err != nil {
		t.Fatalf("the downloaded export does not verify: %v", err)
	}
	forged := bytes.Replace(body, []byte(`"PT"`), []byte(`"ES"`), 1)
	if err := verifyDetached(t, s, file.Signature, signedDocument(t, forged)); err == nil {
		t.Fatal("an altered export file still verifies")
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

// signedDocument cuts the signed bytes out of an export file by the rule in
// the README (and in the file's "verify" member): from the { after
// "document": to the } before the file's last line.
func signedDocument(t *testing.T, file []byte) []byte {
	t.Helper()
	start := bytes.Index(file, []byte(`"document": `))
	end := bytes.LastIndex(bytes.TrimRight(file, "\n"), []byte("\n}"))
	if start < 0 || end < start {
		t.Fatalf("no document member in the export file:\n%s", file)
	}
	return file[start+len(`"document": `) : end]
}
