package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
)

// TestScale seeds SQLITE_SCALE users the way the seed command does (data
// key, account, GPC withdrawals for 8%, a demographics member) and
// compares the read path of `me` at 1,000 users with the same at the end.
// It is skipped unless SQLITE_SCALE is set; SQLITE_SCALE_DIR keeps the
// database.
func TestScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SQLITE_SCALE"))
	if n <= 0 {
		t.Skip("set SQLITE_SCALE to a number of users")
	}
	dir := os.Getenv("SQLITE_SCALE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	ctx := context.Background()
	d, err := Open(ctx, Options{Path: filepath.Join(dir, "scale.db"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	const batch = 5000
	run := randHex(3) // a later run adds users to the same database
	var ids []string
	start, c0 := time.Now(), cpuTime()
	lastT, lastN := start, 0
	var small time.Duration
	for done := 0; done < n; done += batch {
		k := min(batch, n-done)
		keys := make([]accounts.DataKey, k)
		list := make([]accounts.NewAccount, k)
		members := make([]demographics.Member, k)
		for j := range list {
			a := realisticAccount(done + j)
			a.Account.Username = run + a.Account.Username
			a.Account.UsernameKey = a.Account.Username
			if rand.IntN(100) < 8 {
				e1 := consent.Event{Seq: 1, Purpose: "ads", Action: consent.Withdraw, Method: consent.GPC, PolicyN: 1, At: t0, Receipt: randHex(650), Hash: randHex(32)}
				e2 := consent.Event{Seq: 2, Purpose: "analytics", Action: consent.Withdraw, Method: consent.GPC, PolicyN: 1, At: t0, Receipt: randHex(650), Hash: randHex(32), PrevHash: e1.Hash}
				a.Consent = consent.Initial{State: consent.Stored{Head: 2, HeadHash: e2.Hash,
					State: map[string]consent.Entry{"ads": entryOf(&e1), "analytics": entryOf(&e2)}}, Events: []consent.Event{e1, e2}}
			}
			list[j] = a
			keys[j] = accounts.DataKey{UserID: a.Account.ID, Wrapped: randBytes(60), CreatedAt: t0}
			members[j] = demographics.Member{UserID: a.Account.ID, Ver: 1, Tuple: randBytes(90)}
			ids = append(ids, a.Account.ID)
		}
		if err := d.Accounts().ImportDataKeys(ctx, keys); err != nil {
			t.Fatal(err)
		}
		if err := d.Accounts().ImportAccounts(ctx, list); err != nil {
			t.Fatal(err)
		}
		if err := d.Demographics().ImportMembers(ctx, members); err != nil {
			t.Fatal(err)
		}
		if done+k == 5000 {
			small = meLatency(t, d, ids[:1000])
		}
		if now := time.Now(); now.Sub(lastT) > 10*time.Second || done+k == n {
			t.Logf("%d users, %.0f users/s over the last %d", done+k, float64(done+k-lastN)/now.Sub(lastT).Seconds(), done+k-lastN)
			lastT, lastN = now, done+k
		}
	}
	el := time.Since(start)
	t.Logf("seeded %d users in %v: %.0f users/s, %.1f cpu-µs/user", n, el.Round(time.Second), float64(n)/el.Seconds(), float64((cpuTime()-c0).Microseconds())/float64(n))
	big := meLatency(t, d, ids)
	t.Logf("me read path (Account+State) median: %v at 1k users, %v at %d users (ratio %.2f)", small, big, n, float64(big)/float64(small))
	if st, err := os.Stat(filepath.Join(dir, "scale.db")); err == nil {
		t.Logf("database file %d MiB", st.Size()>>20)
	}
}

// meLatency is the median time of Account+State over random ids, read as
// a GraphQL query reads them (with a read memo).
func meLatency(t *testing.T, d *DB, ids []string) time.Duration {
	var ds []time.Duration
	for i := 0; i < 5000; i++ {
		id := ids[rand.IntN(len(ids))]
		s := time.Now()
		ctx := storectx.WithReadMemo(context.Background())
		if r, err := d.Accounts().Account(ctx, id); err != nil || r == nil {
			t.Fatal(r, err)
		}
		if st, err := d.Consent().State(ctx, id); err != nil || st == nil {
			t.Fatal(st, err)
		}
		ds = append(ds, time.Since(s))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// TestScaleReads compares the read path of `me` on a fresh database of
// 1,000 users with the one TestScale left in SQLITE_SCALE_DIR.
func TestScaleReads(t *testing.T) {
	dir := os.Getenv("SQLITE_SCALE_DIR")
	if dir == "" || os.Getenv("SQLITE_SCALE") != "" {
		t.Skip("set SQLITE_SCALE_DIR (without SQLITE_SCALE) to a directory TestScale filled")
	}
	ctx := context.Background()
	small := openTest(t)
	var smallIDs []string
	var list []accounts.NewAccount
	for i := 0; i < 1000; i++ {
		a := realisticAccount(i)
		list = append(list, a)
		smallIDs = append(smallIDs, a.Account.ID)
	}
	if err := small.Accounts().ImportAccounts(ctx, list); err != nil {
		t.Fatal(err)
	}
	d, err := Open(ctx, Options{Path: filepath.Join(dir, "scale.db"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	var ids []string
	err = d.Accounts().EachDataKey(ctx, func(k accounts.DataKey) error { ids = append(ids, k.UserID); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("SQLITE_SCALE_WARM") != "" {
		// Touch every page once (the memory map of a long-running server
		// is populated; a fresh one faults on every first touch).
		for _, db := range []*DB{small, d} {
			var n int64
			if err := db.r.QueryRow(`SELECT count(*) FROM users WHERE length(password_hash) + length(consent_head_hash) >= 0`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if err := db.r.QueryRow(`SELECT count(*) FROM consent_state WHERE length(method) >= 0`).Scan(&n); err != nil {
				t.Fatal(err)
			}
		}
	}
	for round := 0; round < 3; round++ {
		a, b := meLatency(t, small, smallIDs), meLatency(t, d, ids)
		t.Logf("me read path median: %v at 1k users, %v at %d users (ratio %.2f)", a, b, len(ids), float64(b)/float64(a))
	}
	_ = fmt.Sprint
}
