package storecopy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/seed"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/mongostore"
	"github.com/consentgraph/consentgraph/internal/store/snapshot/snapshottest"
	"github.com/consentgraph/consentgraph/internal/store/sqlite"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
	"github.com/consentgraph/consentgraph/internal/storecopy"
	"github.com/consentgraph/consentgraph/internal/translog"
	"github.com/consentgraph/consentgraph/internal/work"
)

const (
	adminName     = "root"
	adminPassword = "root password 123"
	userPassword  = "correct horse battery" // apptest.Register's
)

// receiver is a webhook endpoint counting the deliveries it accepted.
type receiver struct{ n atomic.Int64 }

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	rc.n.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// site is what the source server was left holding, as its users saw it.
type site struct {
	cfg        config.Config
	aliceView  string // alice's me{...} as JSON
	bobView    string
	partnerKey string
	budgetLeft float64
	receipt    string // alice's first receipt, signed before the key rotation
	logHead    translog.Head
	deliveries int64
}

// view is what a user sees of their data and consent.
const view = `{ me { id username email profile { birthYear country }
	consents { purpose { id } granted method policyVersion updatedAt needsRenewal }
	consentHistory(first: 50) { totalCount edges { node { sequence purpose action method at previousHash hash receipt } } }
	ledgerIntact
	disclosures(first: 50) { edges { node { processor purpose action at } } } } }`

// buildSite runs a real server on a fresh embedded store with the default
// master key file, a webhook processor and an admin, and makes it hold a
// bit of everything: seeded users, grants, withdrawals and Global Privacy
// Control, deliveries and disclosures, a rotated signing key, an erased
// account, a partner who spent budget, audit entries.
func buildSite(t *testing.T) *site {
	t.Helper()
	ctx := context.Background()
	rc := &receiver{}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)
	cfg := apptest.Config(t)
	cfg.MasterKey = "" // the default key file in the data directory
	cfg.AdminUsername, cfg.AdminPassword = adminName, adminPassword
	cfg.OutboxPoll = 20 * time.Millisecond
	cfg.ConfigFile = filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf(`
processors:
  - name: hook
    type: webhook
    purpose: surveys
    fields: [user.demographic.country]
    settings: {url: %q}
`, hook.URL)
	if err := os.WriteFile(cfg.ConfigFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := apptest.StartWith(t, cfg)
	if _, err := seed.Run(ctx, s.App, seed.Options{Users: 120, Grants: 8, RandSeed: 7}); err != nil {
		t.Fatal(err)
	}
	admin := login(t, s, adminName, adminPassword)

	alice := s.Register(t, "alice")
	do(t, alice, `mutation { setEmail(email: "alice@example.org") { id } }`)
	do(t, alice, `mutation { updateProfile(input: {birthYear: 1990, country: "DE", gender: FEMALE, language: "de"}) { id } }`)
	var first struct{ GrantConsent struct{ Receipt string } }
	alice.Do(t, `mutation { grantConsent(purpose: "surveys") { receipt } }`, nil).Decode(t, &first)
	do(t, alice, `mutation { grantConsent(purpose: "newsletter") { changed } }`)
	do(t, alice, `mutation { withdrawConsent(purpose: "newsletter") { changed } }`)

	bob := s.Client()
	bob.Header.Set("Sec-GPC", "1")
	do(t, bob, `mutation { register(input: {username: "bob", password: "correct horse battery", profile: {country: "FR"}}) { token } }`)

	do(t, admin, `mutation { rotateSigningKey }`)
	do(t, admin, `mutation { setProcessorEnabled(name: "hook", enabled: false) { enabled } }`)
	do(t, admin, `mutation { setProcessorEnabled(name: "hook", enabled: true) { enabled } }`)
	do(t, alice, `mutation { withdrawConsent(purpose: "surveys") { changed } }`) // signed with the new key
	do(t, alice, `mutation { grantConsent(purpose: "surveys") { changed } }`)

	carol := s.Register(t, "carol")
	do(t, carol, `mutation { updateProfile(input: {country: "JP"}) { id } }`)
	do(t, carol, `mutation { grantConsent(purpose: "surveys") { changed } }`)
	drain(t, s)
	do(t, carol, `mutation { deleteMyAccount(password: "correct horse battery") }`)

	var partner struct {
		CreatePartner struct{ APIKey string }
	}
	admin.Do(t, `mutation { createPartner(name: "Acme Research", epsilonBudget: 3, budgetPeriodDays: 30) { apiKey } }`, nil).Decode(t, &partner)
	pc := s.Client()
	pc.Token = partner.CreatePartner.APIKey
	report(t, pc)
	drain(t, s)

	st := &site{cfg: cfg, partnerKey: partner.CreatePartner.APIKey, receipt: first.GrantConsent.Receipt}
	st.aliceView = do(t, alice, view)
	st.bobView = do(t, bob, view)
	st.budgetLeft = budget(t, pc)
	if !strings.Contains(st.aliceView, `"ledgerIntact":true`) || !strings.Contains(st.aliceView, `"processor":"hook"`) {
		t.Fatalf("the source is not as the test needs it: %s", st.aliceView)
	}
	st.deliveries = rc.n.Load()
	if st.deliveries < 3 {
		t.Fatalf("the webhook received %d deliveries, want alice's and carol's", st.deliveries)
	}
	st.logHead = drainLog(t, s)
	s.Close()
	return st
}

func do(t *testing.T, c *apptest.Client, query string) string {
	t.Helper()
	r := c.Do(t, query, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("%s: %s", strings.Join(strings.Fields(query), " "), r.Raw)
	}
	return string(r.Data)
}

func login(t *testing.T, s *apptest.Server, user, password string) *apptest.Client {
	t.Helper()
	c := s.Client()
	var out struct{ Login struct{ Token string } }
	c.Do(t, `mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`, map[string]any{"u": user, "p": password}).Decode(t, &out)
	c.Token = out.Login.Token
	return c
}

func report(t *testing.T, pc *apptest.Client) {
	t.Helper()
	var out struct {
		Demographics struct {
			Cells     []struct{ Count int }
			Threshold int
		}
	}
	// A handful of users is far below the release threshold, so the
	// differentially private answer shows no group; what matters here is
	// that the copied partner and aggregates answer and charge.
	pc.Do(t, `{ demographics(groupBy: [COUNTRY], epsilon: 0.5) { cells { country count } threshold } }`, nil).Decode(t, &out)
	if out.Demographics.Threshold < 2 {
		t.Fatalf("the partner report: %+v", out.Demographics)
	}
}

func budget(t *testing.T, pc *apptest.Client) float64 {
	t.Helper()
	var out struct {
		PartnerMe struct{ BudgetRemaining float64 }
	}
	pc.Do(t, `{ partnerMe { budgetRemaining } }`, nil).Decode(t, &out)
	return out.PartnerMe.BudgetRemaining
}

// drain waits until the outbox holds no due work.
func drain(t *testing.T, s *apptest.Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := s.Store().Outbox().CountByState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n[work.Pending] == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("work still pending: %v", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drainLog waits until every consent event and audit entry is in the
// public log, and returns its head.
func drainLog(t *testing.T, s *apptest.Server) translog.Head {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs, err := s.Store().Consent().Unlogged(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		es, err := s.Store().Audit().Unlogged(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs)+len(es) == 0 {
			h, err := s.App.ConsentLog.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		if time.Now().After(deadline) {
			t.Fatal("records still unlogged after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// env is the environment copy-store runs with.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// copyStore runs the command as a user would and returns its output.
func copyStore(t *testing.T, getenv func(string) string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := storecopy.Main(args, getenv, &errOut, &out)
	t.Logf("copy-store %s\n%s%s", strings.Join(args, " "), errOut.String(), out.String())
	return out.String(), err
}

// dumpDir dumps the embedded store in dir.
func dumpDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(dir, store.FileName), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	out := map[string]string{}
	for kind, recs := range snapshottest.DumpAll(t, db) {
		var b strings.Builder
		for _, r := range recs {
			b.WriteString(snapshottest.Canon(r))
			b.WriteString("\n")
		}
		out[string(kind)] = b.String()
	}
	return out
}

var mongoDBs atomic.Int64

// mongoTarget returns the test MongoDB and a fresh database name, dropped
// when the test ends.
func mongoTarget(t *testing.T) (uri, name string) {
	t.Helper()
	uri = storetest.MongoURI(t)
	name = fmt.Sprintf("copy%d_%d", os.Getpid(), mongoDBs.Add(1))
	t.Cleanup(func() {
		db, err := mongostore.Open(context.Background(), mongostore.Options{URI: uri, Database: name, Logger: slog.New(slog.DiscardHandler), SkipIndexes: true})
		if err == nil {
			_ = db.Database().Drop(context.Background())
			_ = db.Close(context.Background())
		}
	})
	return uri, name
}

// TestCopyToMongoDBAndBack copies a lived-in embedded store to MongoDB and
// from there to a new data directory, as documented, and serves from the
// final copy: every record is as it was, and users, admins and partners
// see the same through the API.
func TestCopyToMongoDBAndBack(t *testing.T) {
	start := time.Now()
	src := buildSite(t)
	t.Logf("source built in %s", time.Since(start).Round(time.Millisecond))
	uri, name := mongoTarget(t)
	noVars := env(nil)

	// embedded → MongoDB, with the default key file: it stays behind, and
	// the output says how to give the servers the same key.
	out, err := copyStore(t, noVars, "--data-dir", src.cfg.DataDir, "--to", uri, "--to-database", name)
	if err != nil {
		t.Fatalf("copy to MongoDB: %v", err)
	}
	keyFile := filepath.Join(src.cfg.DataDir, "master.key")
	for _, want := range []string{"verified in", "receipt signatures against the copy's signing keys", `CONSENTGRAPH_MASTER_KEY="$(cat ` + keyFile + `)"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}

	// A processor's own collection, as the previous version let them keep.
	db, err := mongostore.Open(context.Background(), mongostore.Options{URI: uri, Database: name, Logger: slog.New(slog.DiscardHandler), SkipIndexes: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Database().Collection("plugin_letters").InsertOne(context.Background(), map[string]any{"_id": "subject"}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close(context.Background())

	// MongoDB → a new data directory; the key comes along from the data
	// directory the server would read it from.
	final := filepath.Join(t.TempDir(), "final")
	out, err = copyStore(t, noVars, "--mongodb-uri", uri, "--database", name, "--data-dir", src.cfg.DataDir, "--to", final)
	if err != nil {
		t.Fatalf("copy back: %v", err)
	}
	if !strings.Contains(out, "the master key file was copied along") {
		t.Error("the output does not mention the key file")
	}
	if !strings.Contains(out, "collection plugin_letters (1 documents) is read by nothing") {
		t.Error("the output does not name the collection it left behind")
	}
	key, _ := os.ReadFile(keyFile)
	copied, err := os.ReadFile(filepath.Join(final, "master.key"))
	if err != nil || !bytes.Equal(copied, key) {
		t.Fatalf("master key file not copied: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(final, "master.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("copied key file has mode %v", fi.Mode().Perm())
	}

	// Record for record, the final copy is the original.
	want, got := dumpDir(t, src.cfg.DataDir), dumpDir(t, final)
	for kind := range want {
		if want[kind] != got[kind] {
			t.Errorf("%s differ after the round trip:\nwant %s\n got %s", kind, want[kind], got[kind])
		}
	}

	// And a server on it serves the same.
	cfg := src.cfg
	cfg.DataDir = final
	s := apptest.StartWith(t, cfg)
	// The public log came along: the copy signs the same tree.
	_, body := getBody(t, s.URL+"/.well-known/consent-log/checkpoint")
	cp, err := translog.VerifyCheckpointJWS(body, jwksOf(t, s))
	if err != nil {
		t.Fatalf("the copy's checkpoint: %v", err)
	}
	if src.logHead.Size < 10 || cp.TreeSize != src.logHead.Size || !bytes.Equal(cp.RootHash, src.logHead.Root) {
		t.Errorf("the copy's log has %d leaves, root %x; the original %d, root %x", cp.TreeSize, cp.RootHash, src.logHead.Size, src.logHead.Root)
	}
	alice := login(t, s, "alice", userPassword)
	if v := do(t, alice, view); v != src.aliceView {
		t.Errorf("alice sees\n%s\nbefore the copy she saw\n%s", v, src.aliceView)
	}
	bob := login(t, s, "bob", userPassword)
	if v := do(t, bob, view); v != src.bobView || !strings.Contains(v, `"method":"GPC"`) {
		t.Errorf("bob sees\n%s\nbefore the copy he saw\n%s", v, src.bobView)
	}
	if r := s.Client().Do(t, `mutation { login(username: "carol", password: "correct horse battery") { token } }`, nil); len(r.Errors) == 0 {
		t.Error("the erased account signs in on the copy")
	}
	var check struct{ VerifyReceipt struct{ Valid bool } }
	s.Client().Do(t, `query($r: String!) { verifyReceipt(receipt: $r) { valid } }`, map[string]any{"r": src.receipt}).Decode(t, &check)
	if !check.VerifyReceipt.Valid {
		t.Error("a receipt signed before the key rotation does not verify on the copy")
	}
	pc := s.Client()
	pc.Token = src.partnerKey
	if b := budget(t, pc); b != src.budgetLeft {
		t.Errorf("the partner has %v budget left on the copy, %v before", b, src.budgetLeft)
	}
	report(t, pc)
	if b := budget(t, pc); b >= src.budgetLeft {
		t.Errorf("a report on the copy spent no budget (%v left)", b)
	}
	admin := login(t, s, adminName, adminPassword)
	var audit struct{ AuditLog struct{ Intact bool } }
	admin.Do(t, `{ auditLog(first: 5) { intact } }`, nil).Decode(t, &audit)
	if !audit.AuditLog.Intact {
		t.Error("the audit log is not intact on the copy")
	}
	var items struct {
		Outbox struct {
			Edges []struct{ Node struct{ State string } }
		}
	}
	admin.Do(t, `{ outbox(first: 100) { edges { node { state } } } }`, nil).Decode(t, &items)
	if len(items.Outbox.Edges) < 3 {
		t.Errorf("the copy's outbox lists %d items", len(items.Outbox.Edges))
	}
	t.Logf("whole test %s", time.Since(start).Round(time.Millisecond))
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func jwksOf(t *testing.T, s *apptest.Server) *translog.JWKS {
	t.Helper()
	_, body := getBody(t, s.URL+"/.well-known/jwks.json")
	var set translog.JWKS
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatal(err)
	}
	return &set
}
