package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/store/snapshot"
	"github.com/consentgraph/consentgraph/internal/store/snapshot/snapshottest"
	"github.com/consentgraph/consentgraph/internal/store/sqlite"
)

func openSnap(t *testing.T) *sqlite.DB {
	t.Helper()
	d, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "consentgraph.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}

// TestSnapshotPagesPastChunks copies a store larger than one read chunk
// (1000 rows) of accounts, their state rows and ledger events: keyset
// pagination must neither skip nor repeat rows at chunk borders.
func TestSnapshotPagesPastChunks(t *testing.T) {
	ctx := context.Background()
	src := openSnap(t)
	const users = 2345
	var batch []accounts.NewAccount
	for i := range users {
		id := fmt.Sprintf("user-%05d", i)
		na := accounts.NewAccount{Account: accounts.Record{ID: id, Username: id, UsernameKey: id, PasswordHash: "h", Role: auth.RoleUser,
			CreatedAt: snapshottest.T0}}
		if i%2 == 0 { // two events: the event pages cut through users
			var evs []consent.Event
			prev := ""
			for seq := int64(1); seq <= 2; seq++ {
				ev := consent.Event{Seq: seq, Purpose: fmt.Sprintf("p%d", seq), Action: consent.Withdraw, PolicyVersion: "v", PolicyN: 1,
					At: snapshottest.T0, Method: consent.GPC, ReceiptID: fmt.Sprintf("r-%d-%d", i, seq), Receipt: "x", PrevHash: prev, Hash: fmt.Sprintf("h-%d-%d", i, seq)}
				evs = append(evs, ev)
				prev = ev.Hash
			}
			na.Consent = consent.Initial{State: consent.Stored{Head: 2, HeadHash: prev, State: map[string]consent.Entry{
				"p1": {Seq: 1, At: snapshottest.T0, PolicyVersion: "v", PolicyN: 1, Method: consent.GPC},
				"p2": {Seq: 2, At: snapshottest.T0, PolicyVersion: "v", PolicyN: 1, Method: consent.GPC},
			}}, Events: evs}
		}
		batch = append(batch, na)
	}
	if err := src.Accounts().ImportAccounts(ctx, batch); err != nil {
		t.Fatal(err)
	}
	want := snapshottest.DumpAll(t, src)
	if n := len(want[snapshot.Accounts]); n != users {
		t.Fatalf("dumped %d accounts, want %d", n, users)
	}
	if n := len(want[snapshot.Events]); n != users+1 {
		t.Fatalf("dumped %d events, want %d", n, users+1)
	}
	for i, r := range want[snapshot.Accounts] {
		if id := fmt.Sprintf("user-%05d", i); r.Account.Account.ID != id || i%2 == 0 && len(r.Account.Consent.State) != 2 {
			t.Fatalf("account %d is %s with %d state entries", i, r.Account.Account.ID, len(r.Account.Consent.State))
		}
	}
	dst := openSnap(t)
	snapshottest.Copy(t, src, dst, 1000)
	snapshottest.Equal(t, want, snapshottest.DumpAll(t, dst))
}

// TestSnapshotLoadIsAllOrNothing: a batch with one record the store holds
// already stores none of the others.
func TestSnapshotLoadIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	src := openSnap(t)
	snapshottest.Fill(t, src, 6)
	dump := snapshottest.DumpAll(t, src)
	dst := openSnap(t)
	accs := dump[snapshot.Accounts]
	if err := dst.Load(ctx, snapshot.Accounts, accs[:1]); err != nil {
		t.Fatal(err)
	}
	err := dst.Load(ctx, snapshot.Accounts, accs)
	if err == nil {
		t.Fatal("loading an account that exists succeeded")
	}
	if n, _ := dst.Count(ctx, snapshot.Accounts); n != 1 {
		t.Errorf("the failed batch left %d accounts, want the 1 loaded before", n)
	}
	// A batch of the wrong kind is refused before anything is written.
	if err := dst.Load(ctx, snapshot.Events, accs[1:2]); err == nil {
		t.Error("an account loaded as an event")
	}
}

// TestSnapshotDumpStopsAtTheCallersError: fn's error comes back unchanged,
// and no record follows it.
func TestSnapshotDumpStopsAtTheCallersError(t *testing.T) {
	src := openSnap(t)
	snapshottest.Fill(t, src, 6)
	stop := errors.New("stop here")
	for _, kind := range []snapshot.Kind{snapshot.Accounts, snapshot.Events, snapshot.Members, snapshot.DataKeys, snapshot.Secrets} {
		calls := 0
		err := src.Dump(context.Background(), kind, func(snapshot.Record) error {
			calls++
			return stop
		})
		if err != stop || calls != 1 {
			t.Errorf("%s: dump returned %v after %d calls, want the caller's error after 1", kind, err, calls)
		}
	}
}

// TestSnapshotLoadsARequestIntoAClearedState: a reconciliation request
// loads where the state row exists without one, and not where one exists.
func TestSnapshotLoadsARequestIntoAClearedState(t *testing.T) {
	ctx := context.Background()
	dst := openSnap(t)
	since := snapshottest.T0
	if err := dst.Demographics().MarkDirty(ctx, since); err != nil {
		t.Fatal(err)
	}
	if err := dst.Demographics().ClearDirty(ctx, since); err != nil {
		t.Fatal(err)
	}
	later := since.Add(time.Hour)
	if err := dst.Load(ctx, snapshot.Dirty, []snapshot.Record{{Kind: snapshot.Dirty, Dirty: &later}}); err != nil {
		t.Fatal(err)
	}
	if got, err := dst.Demographics().DirtySince(ctx); err != nil || !got.Equal(later) {
		t.Fatalf("dirty since %v, %v; want %v", got, err, later)
	}
	if err := dst.Load(ctx, snapshot.Dirty, []snapshot.Record{{Kind: snapshot.Dirty, Dirty: &since}}); err == nil {
		t.Error("a second request loaded over the first")
	}
}
