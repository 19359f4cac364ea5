package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/app"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

const consentsQuery = `{ me { id consents { purpose { id mechanism } granted updatedAt policyVersion method needsRenewal } } }`

type consentView struct {
	Purpose       struct{ ID, Mechanism string }
	Granted       bool
	UpdatedAt     *string
	PolicyVersion string
	Method        *string
	NeedsRenewal  bool
}

func consentsOf(t *testing.T, c *apptest.Client) (string, map[string]consentView) {
	t.Helper()
	var out struct {
		Me struct {
			ID       string
			Consents []consentView
		}
	}
	c.Do(t, consentsQuery, nil).Decode(t, &out)
	m := map[string]consentView{}
	for _, v := range out.Me.Consents {
		m[v.Purpose.ID] = v
	}
	return out.Me.ID, m
}

const grantMutation = `mutation($p: ID!) { grantConsent(purpose: $p) { receipt changed consent { purpose { id } granted policyVersion needsRenewal method } } }`
const withdrawMutation = `mutation($p: ID!) { withdrawConsent(purpose: $p) { receipt changed consent { purpose { id } granted policyVersion needsRenewal method } } }`

type receiptView struct {
	Receipt string
	Changed bool
	Consent consentView
}

func changeConsent(t *testing.T, c *apptest.Client, grant bool, purpose string) receiptView {
	t.Helper()
	q, key := withdrawMutation, "withdrawConsent"
	if grant {
		q, key = grantMutation, "grantConsent"
	}
	var out map[string]receiptView
	c.Do(t, q, map[string]any{"p": purpose}).Decode(t, &out)
	return out[key]
}

const historyQuery = `query($first: Int, $after: String) { me { ledgerIntact consentHistory(first: $first, after: $after) {
  totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  edges { cursor node { sequence purpose action policyVersion at method previousHash hash receipt } } } } }`

type historyView struct {
	LedgerIntact   bool
	ConsentHistory struct {
		TotalCount int
		PageInfo   struct {
			HasNextPage, HasPreviousPage bool
			EndCursor                    *string
		}
		Edges []struct {
			Cursor string
			Node   struct {
				Sequence                                                 int
				Purpose, Action, PolicyVersion, At, Method, PreviousHash string
				Hash, Receipt                                            string
			}
		}
	}
}

func historyOf(t *testing.T, c *apptest.Client, vars map[string]any) historyView {
	t.Helper()
	var out struct{ Me historyView }
	c.Do(t, historyQuery, vars).Decode(t, &out)
	return out.Me
}

// consentAdmin starts a server with a configured admin and returns it with
// a signed-in admin client.
func consentAdmin(t *testing.T, opts ...apptest.Option) (*apptest.Server, *apptest.Client) {
	t.Helper()
	opts = append(opts, func(c *config.Config) { c.AdminUsername, c.AdminPassword = "policy-admin", "policy admin password" })
	s := apptest.Start(t, opts...)
	c := s.Client()
	var out struct{ Login struct{ Token string } }
	c.Do(t, `mutation { login(username: "policy-admin", password: "policy admin password") { token } }`, nil).Decode(t, &out)
	c.Token = out.Login.Token
	return s, c
}

func TestConsentDefaultsPerMechanismOverAPI(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	var pub struct {
		Purposes []struct {
			ID, Mechanism, Description string
			DataCategories             []string
		}
		Policy struct{ Version, URL, PublishedAt string }
	}
	s.Client().Do(t, `{ purposes { id mechanism description dataCategories } policy { version url publishedAt } }`, nil).Decode(t, &pub)
	if len(pub.Purposes) != 4 || pub.Purposes[0].ID != "newsletter" || pub.Purposes[2].Mechanism != "OPT_OUT" ||
		strings.Join(pub.Purposes[1].DataCategories, ",") != "user.contact.email,user.demographic.age_band,user.demographic.country" {
		t.Fatalf("purposes %+v", pub.Purposes)
	}
	if pub.Policy.Version != "1" || pub.Policy.URL == "" || pub.Policy.PublishedAt == "" {
		t.Fatalf("policy %+v", pub.Policy)
	}

	_, m := consentsOf(t, s.Register(t, "defaults"))
	want := map[string]struct {
		mechanism string
		granted   bool
	}{
		"newsletter": {"OPT_IN", false}, "surveys": {"OPT_IN", false},
		"aggregate_statistics": {"OPT_OUT", true}, "essential": {"NOTICE_ONLY", true},
	}
	if len(m) != len(want) {
		t.Fatalf("consents %+v", m)
	}
	for id, w := range want {
		c := m[id]
		if c.Purpose.Mechanism != w.mechanism || c.Granted != w.granted || c.UpdatedAt != nil || c.Method != nil || c.PolicyVersion != "1" || c.NeedsRenewal {
			t.Errorf("%s: %+v, want %s granted=%v by default", id, c, w.mechanism, w.granted)
		}
	}
}

func TestGrantWithdrawGrantOverAPI(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "ledger.user")
	r1 := changeConsent(t, c, true, "newsletter")
	r2 := changeConsent(t, c, false, "newsletter")
	r3 := changeConsent(t, c, true, "newsletter")
	if !r1.Changed || !r2.Changed || !r3.Changed || !r3.Consent.Granted || r2.Consent.Granted || r3.Consent.Method == nil || *r3.Consent.Method != "EXPLICIT" {
		t.Fatalf("results %+v %+v %+v", r1, r2, r3)
	}
	h := historyOf(t, c, nil)
	if !h.LedgerIntact || h.ConsentHistory.TotalCount != 3 || len(h.ConsentHistory.Edges) != 3 {
		t.Fatalf("history %+v", h)
	}
	prev := ""
	for i, want := range []string{"GRANT", "WITHDRAW", "GRANT"} {
		n := h.ConsentHistory.Edges[i].Node
		if n.Sequence != i+1 || n.Action != want || n.Purpose != "newsletter" || n.PreviousHash != prev || n.Method != "EXPLICIT" || n.PolicyVersion != "1" {
			t.Errorf("event %d: %+v", i+1, n)
		}
		prev = n.Hash
	}
	if h.ConsentHistory.Edges[2].Node.Receipt != r3.Receipt {
		t.Fatal("the history's receipt differs from the one returned")
	}

	// Repeating the current state is a no-op that still returns a receipt.
	again := changeConsent(t, c, true, "newsletter")
	if again.Changed || again.Receipt != r3.Receipt || !again.Consent.Granted {
		t.Fatalf("repeat: %+v", again)
	}
	if h := historyOf(t, c, nil); h.ConsentHistory.TotalCount != 3 {
		t.Fatalf("a repeat was recorded: %d events", h.ConsentHistory.TotalCount)
	}

	// Pages.
	p1 := historyOf(t, c, map[string]any{"first": 2})
	if len(p1.ConsentHistory.Edges) != 2 || !p1.ConsentHistory.PageInfo.HasNextPage || p1.ConsentHistory.PageInfo.EndCursor == nil {
		t.Fatalf("page 1 %+v", p1.ConsentHistory)
	}
	p2 := historyOf(t, c, map[string]any{"first": 2, "after": *p1.ConsentHistory.PageInfo.EndCursor})
	if len(p2.ConsentHistory.Edges) != 1 || p2.ConsentHistory.Edges[0].Node.Sequence != 3 || p2.ConsentHistory.PageInfo.HasNextPage || !p2.ConsentHistory.PageInfo.HasPreviousPage {
		t.Fatalf("page 2 %+v", p2.ConsentHistory)
	}
	if r := c.Do(t, historyQuery, map[string]any{"first": 1000}); r.Code() != "BAD_USER_INPUT" || r.Field() != "first" {
		t.Fatalf("first over the cap: %s", r.Raw)
	}

	// Errors.
	if r := c.Do(t, grantMutation, map[string]any{"p": "telepathy"}); r.Code() != "NOT_FOUND" {
		t.Fatalf("unknown purpose: %s", r.Raw)
	}
	r := c.Do(t, withdrawMutation, map[string]any{"p": "essential"})
	if r.Code() != "BAD_USER_INPUT" || !strings.Contains(r.Errors[0].Message, "cannot be withdrawn") {
		t.Fatalf("withdraw notice-only: %s", r.Raw)
	}
	if r := s.Client().Do(t, grantMutation, map[string]any{"p": "newsletter"}); r.Code() != "UNAUTHENTICATED" {
		t.Fatalf("anonymous grant: %s", r.Raw)
	}
}

// jwksFromServer fetches the published keys over plain HTTP and parses them
// with go-jose, as an outside verifier would.
func jwksFromServer(t *testing.T, s *apptest.Server) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(s.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS: %d %v", resp.StatusCode, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("go-jose cannot parse the JWKS: %v", err)
	}
	return set
}

// verifyWithJWKS checks a compact JWS with go-jose and the key set only.
func verifyWithJWKS(t *testing.T, set jose.JSONWebKeySet, compact string) (map[string]any, string, error) {
	t.Helper()
	obj, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, "", err
	}
	kid := obj.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		return nil, kid, jose.ErrCryptoFailure
	}
	payload, err := obj.Verify(keys[0].Key)
	if err != nil {
		return nil, kid, err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims, kid, nil
}

func TestReceiptVerifiesWithOnlyTheJWKS(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Client()
	c.Do(t, registerMutation, map[string]any{"in": map[string]any{
		"username": "receipt.holder", "password": "correct horse battery", "email": "holder@example.org",
	}}).Decode(t, &struct{}{})
	uid, _ := consentsOf(t, c)
	r := changeConsent(t, c, true, "surveys")

	claims, kid, err := verifyWithJWKS(t, jwksFromServer(t, s), r.Receipt)
	if err != nil {
		t.Fatalf("receipt does not verify with the JWKS: %v", err)
	}
	if kid == "" {
		t.Fatal("no kid in the JWS header")
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(r.Receipt, ".")[0])
	if !strings.Contains(string(hdr), `"alg":"EdDSA"`) {
		t.Fatalf("header %s", hdr)
	}
	for _, k := range []string{"consentReceiptID", "piiPrincipalId", "piiControllers", "policyUrl", "policyVersion", "purpose", "mechanism", "action", "consentTimestamp", "thirdParties", "services", "jti", "sub", "iat"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim %q missing", k)
		}
	}
	if claims["purpose"] != "surveys" || claims["action"] != "GRANT" || claims["mechanism"] != "OPT_IN" || claims["policyVersion"] != "1" {
		t.Fatalf("claims %v", claims)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(r.Receipt, ".")[1])
	for _, secret := range []string{uid, "receipt.holder", "holder@example.org"} {
		if strings.Contains(strings.ToLower(string(payload)), strings.ToLower(secret)) {
			t.Fatalf("receipt names the person (%q): %s", secret, payload)
		}
	}

	// Anyone can ask the server too.
	const verify = `query($r: String!) { verifyReceipt(receipt: $r) { valid reason purpose action issuedAt receiptId policyVersion kid } }`
	type check struct {
		Valid                                             bool
		Reason, Purpose, Action, IssuedAt, ReceiptID, Kid *string
	}
	var ok struct{ VerifyReceipt check }
	s.Client().Do(t, verify, map[string]any{"r": r.Receipt}).Decode(t, &ok)
	v := ok.VerifyReceipt
	if !v.Valid || v.Reason != nil || *v.Purpose != "surveys" || *v.Action != "GRANT" || v.IssuedAt == nil || *v.ReceiptID != claims["jti"] || *v.Kid != kid {
		t.Fatalf("verifyReceipt %+v", v)
	}

	// A flipped byte anywhere is caught, by go-jose and by the server.
	for _, i := range []int{10, len(r.Receipt) / 2, len(r.Receipt) - 5} {
		b := []byte(r.Receipt)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		forged := string(b)
		if _, _, err := verifyWithJWKS(t, jwksFromServer(t, s), forged); err == nil {
			t.Fatalf("go-jose accepted a receipt altered at %d", i)
		}
		var bad struct{ VerifyReceipt check }
		s.Client().Do(t, verify, map[string]any{"r": forged}).Decode(t, &bad)
		if bad.VerifyReceipt.Valid || bad.VerifyReceipt.Reason == nil || *bad.VerifyReceipt.Reason == "" || bad.VerifyReceipt.Purpose != nil {
			t.Fatalf("altered at %d: %+v", i, bad.VerifyReceipt)
		}
	}
}

func TestHandEditedLedgerEventIsDetectedOverAPI(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "tampered")
	uid, _ := consentsOf(t, c)
	changeConsent(t, c, true, "newsletter")
	changeConsent(t, c, false, "newsletter")
	if h := historyOf(t, c, nil); !h.LedgerIntact {
		t.Fatal("honest ledger reported broken")
	}
	// On MongoDB the event is committed inside the user document and then
	// moved to consent_events; relay first so it is in its final place.
	if _, err := s.Store().Outbox().Relay(context.Background(), uid); err != nil {
		t.Fatal(err)
	}
	storetest.Tamper(t, s.Store(), `UPDATE consent_events SET purpose = 'surveys' WHERE user_id = ? AND seq = 1`, []any{uid},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			return modified(db.Collection("consent_events").UpdateOne(ctx, bson.D{{Key: "userId", Value: uid}, {Key: "seq", Value: 1}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "purpose", Value: "surveys"}}}}))
		})
	if h := historyOf(t, c, nil); h.LedgerIntact {
		t.Fatal("hand-edited event not detected")
	}
}

func TestConcurrentGrantWithdrawOverAPI(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "busy.user")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			q := grantMutation
			if i%2 == 1 {
				q = withdrawMutation
			}
			r := c.Do(t, q, map[string]any{"p": "newsletter"})
			if len(r.Errors) > 0 {
				t.Errorf("call %d: %s", i, r.Raw)
			}
		})
	}
	wg.Wait()
	h := historyOf(t, c, map[string]any{"first": 100})
	edges := h.ConsentHistory.Edges
	if !h.LedgerIntact || len(edges) == 0 || len(edges) != h.ConsentHistory.TotalCount {
		t.Fatalf("after concurrent calls: intact=%v, %d events", h.LedgerIntact, len(edges))
	}
	for i := 1; i < len(edges); i++ {
		if edges[i].Node.Action == edges[i-1].Node.Action {
			t.Fatalf("events %d and %d both %s: a change was recorded on a stale state", i, i+1, edges[i].Node.Action)
		}
	}
	_, m := consentsOf(t, c)
	if last := edges[len(edges)-1].Node; m["newsletter"].Granted != (last.Action == "GRANT") {
		t.Fatalf("state granted=%v, last event %s", m["newsletter"].Granted, last.Action)
	}
}

func TestReconsentAfterPublishPolicyOverAPI(t *testing.T) {
	t.Parallel()
	s, admin := consentAdmin(t)
	user := s.Register(t, "renewing")
	changeConsent(t, user, true, "newsletter")
	changeConsent(t, user, true, "surveys")

	const publish = `mutation($v: String!, $u: String!, $r: [ID!]) { publishPolicy(version: $v, url: $u, reconsent: $r) { version url publishedAt reconsent } }`
	if r := user.Do(t, publish, map[string]any{"v": "2", "u": "/privacy/2", "r": []string{"newsletter"}}); r.Code() != "FORBIDDEN" {
		t.Fatalf("user publishing: %s", r.Raw)
	}
	var out struct {
		PublishPolicy struct {
			Version   string
			Reconsent []string
		}
	}
	admin.Do(t, publish, map[string]any{"v": "2", "u": "https://example.org/privacy/2", "r": []string{"newsletter"}}).Decode(t, &out)
	if out.PublishPolicy.Version != "2" || strings.Join(out.PublishPolicy.Reconsent, ",") != "newsletter" {
		t.Fatalf("published %+v", out)
	}
	var pol struct{ Policy struct{ Version, URL string } }
	s.Client().Do(t, `{ policy { version url } }`, nil).Decode(t, &pol)
	if pol.Policy.Version != "2" || pol.Policy.URL != "https://example.org/privacy/2" {
		t.Fatalf("policy %+v", pol)
	}
	if r := admin.Do(t, publish, map[string]any{"v": "3", "u": "/p", "r": []string{"telepathy"}}); r.Code() != "NOT_FOUND" {
		t.Fatalf("unknown reconsent purpose: %s", r.Raw)
	}

	_, m := consentsOf(t, user)
	if nl := m["newsletter"]; nl.Granted || !nl.NeedsRenewal || nl.PolicyVersion != "1" {
		t.Fatalf("newsletter after material change: %+v", nl)
	}
	if sv := m["surveys"]; !sv.Granted || sv.NeedsRenewal {
		t.Fatalf("surveys, not changed materially: %+v", sv)
	}
	r := changeConsent(t, user, true, "newsletter")
	if !r.Changed || !r.Consent.Granted || r.Consent.NeedsRenewal || r.Consent.PolicyVersion != "2" {
		t.Fatalf("renewed: %+v", r)
	}
	if h := historyOf(t, user, nil); !h.LedgerIntact || h.ConsentHistory.TotalCount != 3 {
		t.Fatalf("history after renewal: %+v", h)
	}
}

func TestGlobalPrivacyControlOverAPI(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)

	// At sign-up.
	gpc := s.Client()
	gpc.Header.Set("Sec-GPC", "1")
	var reg struct{ Register struct{ Token string } }
	gpc.Do(t, `mutation { register(input: {username: "gpc.signup", password: "correct horse battery"}) { token } }`, nil).Decode(t, &reg)
	_, m := consentsOf(t, gpc)
	if ag := m["aggregate_statistics"]; ag.Granted || ag.Method == nil || *ag.Method != "GPC" {
		t.Fatalf("aggregate_statistics after sign-up with GPC: %+v", ag)
	}
	if !m["essential"].Granted || m["newsletter"].Granted {
		t.Fatalf("other purposes: %+v", m)
	}
	if h := historyOf(t, gpc, nil); !h.LedgerIntact || h.ConsentHistory.TotalCount != 1 || h.ConsentHistory.Edges[0].Node.Method != "GPC" {
		t.Fatalf("sign-up ledger %+v", h)
	}

	// On a later request.
	later := s.Register(t, "gpc.later")
	if _, m := consentsOf(t, later); !m["aggregate_statistics"].Granted {
		t.Fatal("aggregate_statistics off without GPC")
	}
	later.Header.Set("Sec-GPC", "1")
	if _, m := consentsOf(t, later); m["aggregate_statistics"].Granted || *m["aggregate_statistics"].Method != "GPC" {
		t.Fatalf("GPC on a later request not honoured: %+v", m["aggregate_statistics"])
	}
	// An explicit grant wins over the signal on later requests.
	changeConsent(t, later, true, "aggregate_statistics")
	_, m = consentsOf(t, later)
	if !m["aggregate_statistics"].Granted || *m["aggregate_statistics"].Method != "EXPLICIT" {
		t.Fatalf("explicit grant with GPC: %+v", m["aggregate_statistics"])
	}
	if h := historyOf(t, later, nil); !h.LedgerIntact || h.ConsentHistory.TotalCount != 2 {
		t.Fatalf("GPC recorded more than once: %+v", h)
	}
}

func TestRotateSigningKeyKeepsOldReceiptsValid(t *testing.T) {
	t.Parallel()
	s, admin := consentAdmin(t)
	user := s.Register(t, "rotating")
	old := changeConsent(t, user, true, "newsletter")
	if r := user.Do(t, `mutation { rotateSigningKey }`, nil); r.Code() != "FORBIDDEN" {
		t.Fatalf("user rotating: %s", r.Raw)
	}
	var out struct{ RotateSigningKey string }
	admin.Do(t, `mutation { rotateSigningKey }`, nil).Decode(t, &out)
	fresh := changeConsent(t, user, true, "surveys")

	set := jwksFromServer(t, s)
	_, oldKid, err := verifyWithJWKS(t, set, old.Receipt)
	if err != nil {
		t.Fatalf("old receipt after rotation: %v", err)
	}
	_, newKid, err := verifyWithJWKS(t, set, fresh.Receipt)
	if err != nil || newKid != out.RotateSigningKey || newKid == oldKid {
		t.Fatalf("new receipt kid %q (rotated to %q, old %q): %v", newKid, out.RotateSigningKey, oldKid, err)
	}
	if h := historyOf(t, user, nil); !h.LedgerIntact {
		t.Fatal("ledger with receipts of a retired key reported broken")
	}
}

func TestConfigFilePurposesOverAPI(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "purposes.yaml")
	if err := os.WriteFile(path, []byte(`
controller:
  name: Example GmbH
  contact: dpo@example.org
purposes:
  research:
    mechanism: OPT_OUT
    description: Studies with our partner university.
    dataCategories: [user.demographic.age_band]
    thirdParties: [Example University]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := apptest.Start(t, func(c *config.Config) { c.ConfigFile = path })
	c := s.Register(t, "researched")
	_, m := consentsOf(t, c)
	if r := m["research"]; r.Purpose.Mechanism != "OPT_OUT" || !r.Granted {
		t.Fatalf("configured purpose: %+v", m)
	}
	rec := changeConsent(t, c, false, "research")
	claims, _, err := verifyWithJWKS(t, jwksFromServer(t, s), rec.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := claims["piiControllers"].([]any)[0].(map[string]any)
	if ctrl["piiController"] != "Example GmbH" || ctrl["contact"] != "dpo@example.org" || claims["thirdParties"].([]any)[0] != "Example University" {
		t.Fatalf("claims %v", claims)
	}
	// GPC applies to it: it shares data with a third party.
	g := s.Client()
	g.Header.Set("Sec-GPC", "1")
	g.Do(t, `mutation { register(input: {username: "gpc.research", password: "correct horse battery"}) { token } }`, nil).Decode(t, &struct{}{})
	if _, m := consentsOf(t, g); m["research"].Granted || m["aggregate_statistics"].Granted {
		t.Fatalf("GPC at sign-up: %+v", m)
	}
}

func TestInvalidConfigFileStopsStartUp(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("purposes:\n  newsletter:\n    mechanism: SOMETIMES\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := apptest.Config(t)
	cfg.ConfigFile = path
	a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		_ = a.Close(context.Background())
		t.Fatal("started with an invalid configuration file")
	}
	if !strings.Contains(err.Error(), "purposes.newsletter.mechanism") {
		t.Fatalf("error %q does not name the bad key", err)
	}
}

func TestConsentInExportAndAdminActionsAudited(t *testing.T) {
	t.Parallel()
	s, admin := consentAdmin(t)
	user := s.Register(t, "exporting.consent")
	changeConsent(t, user, true, "newsletter")
	changeConsent(t, user, false, "aggregate_statistics")

	var out struct {
		ExportMyData struct{ Document, Signature string }
	}
	user.Do(t, `{ exportMyData { document signature } }`, nil).Decode(t, &out)
	var doc struct {
		Consent struct {
			SubjectPseudonym string
			LedgerIntact     bool
			Consents         []struct {
				Purpose  string
				Granted  bool
				Explicit bool
			}
			Ledger []struct {
				Sequence int
				Action   string
				Receipt  string
			}
		}
	}
	if err := json.Unmarshal([]byte(out.ExportMyData.Document), &doc); err != nil {
		t.Fatal(err)
	}
	ex := doc.Consent
	if !ex.LedgerIntact || len(ex.Ledger) != 2 || ex.Ledger[1].Action != "WITHDRAW" || len(ex.Consents) != 4 || ex.SubjectPseudonym == "" {
		t.Fatalf("consent export section %+v", ex)
	}
	if _, _, err := verifyWithJWKS(t, jwksFromServer(t, s), ex.Ledger[0].Receipt); err != nil {
		t.Fatalf("exported receipt: %v", err)
	}
	granted := map[string]bool{}
	for _, c := range ex.Consents {
		granted[c.Purpose] = c.Granted
	}
	if !granted["newsletter"] || granted["aggregate_statistics"] || !granted["essential"] || granted["surveys"] {
		t.Fatalf("exported consents %+v", ex.Consents)
	}

	admin.Do(t, `mutation { publishPolicy(version: "2", url: "/privacy/2") { version } }`, nil).Decode(t, &struct{}{})
	admin.Do(t, `mutation { rotateSigningKey }`, nil).Decode(t, &struct{}{})
	var log struct {
		AuditLog struct {
			Intact bool
			Edges  []struct {
				Node struct{ Action, Actor, Detail string }
			}
		}
	}
	admin.Do(t, `{ auditLog(first: 50) { intact edges { node { action actor detail } } } }`, nil).Decode(t, &log)
	seen := map[string]bool{}
	for _, e := range log.AuditLog.Edges {
		if strings.HasPrefix(e.Node.Actor, "admin:") {
			seen[e.Node.Action] = true
		}
	}
	if !log.AuditLog.Intact || !seen["policy_published"] || !seen["signing_key_rotation"] {
		t.Fatalf("audit log %+v", log.AuditLog)
	}
}
