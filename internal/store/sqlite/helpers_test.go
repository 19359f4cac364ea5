package sqlite

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/work"
)

// openTest opens a fresh database in the test's temporary directory.
func openTest(t testing.TB) *DB {
	t.Helper()
	d, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "data", "consentgraph.db"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return d
}

// quiet drops the adapter's log lines (migrations) from test output.
var quiet = slog.New(slog.DiscardHandler)

// t0 is a fixed, millisecond-precise moment.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newAccount(id, username string) accounts.NewAccount {
	return accounts.NewAccount{Account: accounts.Record{
		ID: id, Username: username, UsernameKey: username, PasswordHash: "hash", Role: auth.RoleUser, CreatedAt: t0,
	}}
}

func newItem(id, user, proc string, next time.Time) work.Item {
	return work.Item{ID: id, UserID: user, Processor: proc, Purpose: "marketing", Action: work.Deliver, Cause: "test",
		State: work.Pending, NextAt: next, CreatedAt: next, UpdatedAt: next}
}
