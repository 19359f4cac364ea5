package storecopy_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/snapshot"
	"github.com/consentgraph/consentgraph/internal/store/sqlite"
	"github.com/consentgraph/consentgraph/internal/storecopy"
)

func openDir(t *testing.T, dir string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(dir, store.FileName), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	return db
}

func keyringOf(t *testing.T, dir string) *envelope.Keyring {
	t.Helper()
	key, created, err := envelope.LoadOrCreateKeyFile(filepath.Join(dir, "master.key"))
	if err != nil || created {
		t.Fatalf("no key file in %s (%v)", dir, err)
	}
	kr, err := envelope.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// TestCopyRefusesANonEmptyTarget: a target holding records of any kind, or
// a key file with another master key, is refused before anything is
// copied, and left as it was.
func TestCopyRefusesANonEmptyTarget(t *testing.T) {
	src := buildSite(t)
	noVars := env(nil)

	used := apptest.Config(t) // a store some server started on
	used.MasterKey = ""
	s := apptest.StartWith(t, used)
	s.Register(t, "someone")
	s.Close()
	before := dumpDir(t, used.DataDir)
	out, err := copyStore(t, noVars, "--data-dir", src.cfg.DataDir, "--to", used.DataDir)
	if err == nil || !strings.Contains(err.Error(), "is not empty") || !strings.Contains(err.Error(), "1 accounts") {
		t.Fatalf("copy into a used data directory: %v\n%s", err, out)
	}
	if after := dumpDir(t, used.DataDir); !equalDumps(before, after) {
		t.Error("the refused target changed")
	}

	uri, name := mongoTarget(t)
	base, query, _ := strings.Cut(uri, "?")
	named := strings.TrimRight(base, "/") + "/" + name
	if query != "" {
		named += "?" + query
	}
	if _, err := copyStore(t, noVars, "--data-dir", src.cfg.DataDir, "--to", named); err != nil {
		t.Fatalf("first copy to MongoDB (database named in the URI): %v", err)
	}
	_, err = copyStore(t, noVars, "--data-dir", src.cfg.DataDir, "--to", uri, "--to-database", name)
	if err == nil || !strings.Contains(err.Error(), "is not empty") || !strings.Contains(err.Error(), "drop that database") {
		t.Fatalf("second copy into the same database: %v", err)
	}

	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "master.key"), []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = copyStore(t, noVars, "--data-dir", src.cfg.DataDir, "--to", other)
	if err == nil || !strings.Contains(err.Error(), "holds another master key") {
		t.Fatalf("copy next to another master key: %v", err)
	}
	if n, _ := openDir(t, other).Count(context.Background(), snapshot.Accounts); n != 0 {
		t.Errorf("%d accounts copied next to another master key", n)
	}
}

func equalDumps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// copied returns a verified copy of a lived-in store: source, copy, the
// master key, and alice's id.
func copied(t *testing.T) (src, dst *sqlite.DB, kr *envelope.Keyring, alice string) {
	t.Helper()
	site := buildSite(t)
	src, dst = openDir(t, site.cfg.DataDir), openDir(t, t.TempDir())
	var copiedSoFar int64
	crep, err := storecopy.Copy(context.Background(), src, dst, storecopy.Options{Batch: 100, Progress: func(n int64) { copiedSoFar = n }})
	if err != nil {
		t.Fatal(err)
	}
	if copiedSoFar != crep.Total() || copiedSoFar < 1000 {
		t.Errorf("copy progress ended at %d of %d records", copiedSoFar, crep.Total())
	}
	kr = keyringOf(t, site.cfg.DataDir)
	var checked, total int64
	rep, err := storecopy.Verify(context.Background(), src, dst, storecopy.VerifyOptions{Keyring: kr,
		Progress: func(done, of int64) { checked, total = done, of }})
	if err != nil {
		t.Fatal(err)
	}
	if checked != total || total != storecopy.ToCheck(rep.Counts) || total == 0 {
		t.Errorf("verification progress ended at %d of %d", checked, total)
	}
	if rep.Err() != nil || !rep.Signatures || rep.Recount == nil || rep.Ledgers < 5 || rep.Cells == 0 {
		t.Fatalf("the untouched copy: %+v %v", rep, rep.Err())
	}
	r, err := dst.Accounts().AccountByUsername(context.Background(), "alice")
	if err != nil || r == nil {
		t.Fatalf("alice: %v", err)
	}
	return src, dst, kr, r.ID
}

func verify(t *testing.T, src, dst *sqlite.DB, kr *envelope.Keyring) *storecopy.VerifyReport {
	t.Helper()
	rep, err := storecopy.Verify(context.Background(), src, dst, storecopy.VerifyOptions{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func mentions(problems []string, words ...string) bool {
	for _, p := range problems {
		all := true
		for _, w := range words {
			all = all && strings.Contains(p, w)
		}
		if all {
			return true
		}
	}
	return false
}

func raw(t *testing.T, db *sqlite.DB, query string, args ...any) {
	t.Helper()
	n, err := db.ExecRaw(context.Background(), query, args...)
	if err != nil || n == 0 {
		t.Fatalf("%s: %d rows, %v", query, n, err)
	}
}

// TestVerifyFindsWhatDiffers: the verification step alone, on a copy
// corrupted after copying, names each difference, with and without the
// master key.
func TestVerifyFindsWhatDiffers(t *testing.T) {
	src, dst, kr, alice := copied(t)
	raw(t, dst, `UPDATE consent_events SET purpose = 'newsletter' WHERE user_id = ? AND seq = 1`, alice)
	raw(t, dst, `UPDATE cells SET n = n + 1 WHERE mask = 0`)
	raw(t, dst, `DELETE FROM sessions WHERE id = (SELECT min(id) FROM sessions)`)
	for _, key := range []*envelope.Keyring{kr, nil} {
		rep := verify(t, src, dst, key)
		if err := rep.Err(); !errors.Is(err, storecopy.ErrMismatch) {
			t.Fatalf("a corrupted copy verified (key %v): %v", key != nil, err)
		}
		for _, want := range [][]string{
			{"consent ledger of account " + alice, "event 1 does not match its hash"},
			{"cell", "the source counts"},
			{"sessions", "the source holds"},
		} {
			if !mentions(rep.Problems, want...) {
				t.Errorf("key %v: no problem mentions %q in %q", key != nil, want, rep.Problems)
			}
		}
		if key != nil && !mentions(rep.Problems, "counts", "the copy's members") {
			t.Errorf("the recount did not flag the cell: %q", rep.Problems)
		}
	}
}

// TestVerifyChecksReceipts: a ledger rewritten consistently (an event given
// another event's receipt, its hash and the head recomputed) passes a check
// of the chain alone; the receipts' signed claims give it away.
func TestVerifyChecksReceipts(t *testing.T) {
	ctx := context.Background()
	src, dst, kr, alice := copied(t)
	events, err := dst.Consent().Events(ctx, alice, 0, 0)
	if err != nil || len(events) < 3 {
		t.Fatalf("alice's ledger: %d events, %v", len(events), err)
	}
	last := events[len(events)-1]
	last.Receipt = events[0].Receipt
	c, err := consent.ParseClaims(last.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	last.Hash = consent.HashEvent(c.Subject, &last)
	raw(t, dst, `UPDATE consent_events SET receipt = ?, hash = ? WHERE user_id = ? AND seq = ?`, last.Receipt, last.Hash, alice, last.Seq)
	raw(t, dst, `UPDATE users SET consent_head_hash = ? WHERE id = ?`, last.Hash, alice)
	raw(t, src, `UPDATE consent_events SET receipt = ?, hash = ? WHERE user_id = ? AND seq = ?`, last.Receipt, last.Hash, alice, last.Seq)
	raw(t, src, `UPDATE users SET consent_head_hash = ? WHERE id = ?`, last.Hash, alice)
	// The source holds the same rewritten ledger, so nothing differs
	// between the stores: without the key the chain checks out; with it,
	// the receipt does not match its event, in both stores, and that is
	// noted, not held against the copy.
	if rep := verify(t, src, dst, nil); rep.Err() != nil || len(rep.Notes) != 0 {
		t.Fatalf("without the key: %v, notes %q", rep.Err(), rep.Notes)
	}
	rep := verify(t, src, dst, kr)
	if rep.Err() != nil || !mentions(rep.Notes, alice, "broken in the source already", "receipt of event") {
		t.Fatalf("with the key: %v, notes %q", rep.Err(), rep.Notes)
	}
	// Only the copy rewritten: a problem.
	raw(t, src, `UPDATE consent_events SET receipt = ?, hash = ? WHERE user_id = ? AND seq = ?`, events[len(events)-1].Receipt, events[len(events)-1].Hash, alice, last.Seq)
	raw(t, src, `UPDATE users SET consent_head_hash = ? WHERE id = ?`, events[len(events)-1].Hash, alice)
	rep = verify(t, src, dst, kr)
	if !mentions(rep.Problems, "consent ledger of account "+alice, "receipt of event") {
		t.Fatalf("a rewritten ledger on the copy only: %q", rep.Problems)
	}
}

// TestVerifyWithAnotherMasterKey: a key that does not open the copy fails
// the verification (servers given it would not open it either), and the
// chains are still checked.
func TestVerifyWithAnotherMasterKey(t *testing.T) {
	src, dst, _, _ := copied(t)
	other, err := envelope.NewKeyring(make([]byte, envelope.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	rep := verify(t, src, dst, other)
	if !mentions(rep.Problems, "receipts cannot be checked on the copy") || !mentions(rep.Problems, "cannot be recounted") {
		t.Fatalf("problems %q", rep.Problems)
	}
	if rep.Signatures || rep.Ledgers < 5 {
		t.Errorf("signatures %v, %d ledgers checked", rep.Signatures, rep.Ledgers)
	}
}

// TestCopyRefusesAnEmptySource: a MongoDB database holding nothing (a
// mistyped name) is not copied, and no target is created.
func TestCopyRefusesAnEmptySource(t *testing.T) {
	uri, name := mongoTarget(t)
	to := filepath.Join(t.TempDir(), "copy")
	_, err := copyStore(t, env(nil), "--mongodb-uri", uri, "--database", name, "--data-dir", t.TempDir(), "--to", to)
	if err == nil || !strings.Contains(err.Error(), "holds no records") {
		t.Fatalf("copy of an empty database: %v", err)
	}
	if _, err := os.Stat(to); err == nil {
		t.Error("the target was created")
	}
}
