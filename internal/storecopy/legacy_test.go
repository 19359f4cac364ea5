package storecopy_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/store"
)

// legacyFixture is testdata/legacy: a data directory written by the
// previous, FerretDB-based version (commit 913709f), by running that
// version's server (generator.go.txt, a test run in a worktree of it):
// seeded users, grants, withdrawals, Global Privacy Control, webhook
// deliveries, a rotated signing key, an erased account, a partner who
// spent budget, and a work item left in a user document by a relay that
// never ran. Its ledgers are in the user documents (consent.events.e<seq>),
// as that version kept them. expect.json holds what its users saw.
type legacyFixture struct {
	View         string
	Alice        string
	Bob          string
	PartnerKey   string
	BudgetLeft   float64
	Receipt      string
	StrandedItem string
}

// legacyDir unpacks the fixture into a fresh directory.
func legacyDir(t *testing.T) (string, legacyFixture) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	gz, err := os.Open(filepath.Join("testdata", "legacy", "consentgraph.sqlite.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.OpenFile(filepath.Join(dir, "consentgraph.sqlite"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(db, zr); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join("testdata", "legacy", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	var fx legacyFixture
	b, err := os.ReadFile(filepath.Join("testdata", "legacy", "expect.json"))
	if err == nil {
		err = json.Unmarshal(b, &fx)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir, fx
}

// TestImportLegacyDataDirectory: the server refuses the previous version's
// data directory and names the command that imports it; that command, run
// as named, imports it without changing it, verifies the import, and a
// server on the result shows users and partners what they saw before.
func TestImportLegacyDataDirectory(t *testing.T) {
	ctx := context.Background()
	dir, fx := legacyDir(t)
	cfg := apptest.Config(t)
	cfg.DataDir, cfg.MasterKey = dir, "" // the key file, as a local install has it
	cfg.AdminUsername, cfg.AdminPassword = adminName, adminPassword

	command := "consentgraph copy-store --data-dir " + dir + " --to " + dir + "-new"
	_, err := store.Open(ctx, store.Config{DataDir: dir})
	if !errors.Is(err, store.ErrLegacyDataDir) || !strings.Contains(err.Error(), command) {
		t.Fatalf("opening the previous version's data: %v; want ErrLegacyDataDir naming %q", err, command)
	}
	if _, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, store.ErrLegacyDataDir) {
		t.Fatalf("starting the server on the previous version's data: %v, want ErrLegacyDataDir", err)
	}
	if _, err := os.Stat(filepath.Join(dir, store.FileName)); err == nil {
		t.Fatal("the refusal created the new store in the old directory")
	}
	before, err := os.ReadFile(filepath.Join(dir, "consentgraph.sqlite"))
	if err != nil {
		t.Fatal(err)
	}

	out, err := copyStore(t, env(nil), "--data-dir", dir, "--to", dir+"-new")
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	for _, want := range []string{"the previous version's store in " + dir, "verified in", "receipt signatures against the copy's signing keys",
		"the master key file was copied along"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	if strings.Contains(out, "PROBLEM") || strings.Contains(out, "note:") {
		t.Errorf("the import found something to say:\n%s", out)
	}
	after, err := os.ReadFile(filepath.Join(dir, "consentgraph.sqlite"))
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("the import changed the previous version's database file (%v)", err)
	}
	if store.LegacyFile(dir, "consentgraph") == "" {
		t.Error("the previous version's data directory is gone")
	}

	cfg.DataDir = dir + "-new"
	s := apptest.StartWith(t, cfg)
	alice := login(t, s, "alice", userPassword)
	if v := do(t, alice, fx.View); v != fx.Alice {
		t.Errorf("alice sees\n%s\nthe previous version showed her\n%s", v, fx.Alice)
	}
	bob := login(t, s, "bob", userPassword)
	if v := do(t, bob, fx.View); v != fx.Bob {
		t.Errorf("bob sees\n%s\nthe previous version showed him\n%s", v, fx.Bob)
	}
	var check struct{ VerifyReceipt struct{ Valid bool } }
	s.Client().Do(t, `query($r: String!) { verifyReceipt(receipt: $r) { valid } }`, map[string]any{"r": fx.Receipt}).Decode(t, &check)
	if !check.VerifyReceipt.Valid {
		t.Error("a receipt the previous version signed does not verify")
	}
	pc := s.Client()
	pc.Token = fx.PartnerKey
	if b := budget(t, pc); b != fx.BudgetLeft {
		t.Errorf("the partner has %v budget left, %v before", b, fx.BudgetLeft)
	}
	// The imported aggregates hold the true total (a partner would see it
	// only through the differentially private release, whose threshold a
	// fixture of this size does not reach), and the partner still gets
	// answers and pays for them.
	groups, err := s.App.Demographics.Groups(context.Background(), nil, time.Now())
	if err != nil || len(groups) != 1 || groups[0].Count < 20 {
		t.Errorf("the total of the imported aggregates: %+v, %v", groups, err)
	}
	var rep struct {
		Demographics struct{ Threshold int }
	}
	pc.Do(t, `{ demographics(groupBy: [], epsilon: 0.5) { threshold } }`, nil).Decode(t, &rep)
	if rep.Demographics.Threshold < 2 {
		t.Errorf("the partner report: %+v", rep.Demographics)
	}
	// The work item the previous version left in a user document is queued.
	admin := login(t, s, adminName, adminPassword)
	var items struct {
		Outbox struct {
			Edges []struct{ Node struct{ ID, State string } }
		}
	}
	admin.Do(t, `{ outbox(first: 100) { edges { node { id state } } } }`, nil).Decode(t, &items)
	found := false
	for _, e := range items.Outbox.Edges {
		found = found || e.Node.ID == fx.StrandedItem && e.Node.State == "PENDING"
	}
	if !found {
		t.Errorf("the stranded work item %s is not queued: %+v", fx.StrandedItem, items.Outbox.Edges)
	}
	var audit struct{ AuditLog struct{ Intact bool } }
	admin.Do(t, `{ auditLog(first: 5) { intact } }`, nil).Decode(t, &audit)
	if !audit.AuditLog.Intact {
		t.Error("the imported audit log is not intact")
	}
}
