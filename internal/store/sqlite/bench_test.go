package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/work"
)

// cpuTime is the process's user+system CPU time: on a shared machine it
// says more about a change than wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports CPU time per op since start (call after the loop).
func reportCPU(b *testing.B, start time.Duration, ops int) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(ops), "cpu-µs/op")
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// realisticAccount is shaped like a seeded account: random 128-bit id,
// sealed email and profile (AES-GCM: 28 bytes of overhead), an argon2id
// PHC string, an email blind index.
func realisticAccount(i int) accounts.NewAccount {
	id := randHex(16)
	name := fmt.Sprintf("user%08d", i)
	return accounts.NewAccount{Account: accounts.Record{
		ID: id, Username: name, UsernameKey: name, Role: "USER", CreatedAt: t0,
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$" + randHex(16) + "$" + randHex(32),
		Email:        randBytes(60), EmailIndex: randHex(32),
		Profile: accounts.SealedProfile{BirthYear: randBytes(32), Country: randBytes(30), Gender: randBytes(34), Language: randBytes(30)},
	}}
}

func BenchmarkImportAccounts(b *testing.B) {
	d := openTest(b)
	ctx := context.Background()
	const batch = 5000
	b.ResetTimer()
	c0 := cpuTime()
	n := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		list := make([]accounts.NewAccount, batch)
		keys := make([]accounts.DataKey, batch)
		for j := range list {
			list[j] = realisticAccount(n)
			keys[j] = accounts.DataKey{UserID: list[j].Account.ID, Wrapped: randBytes(60), CreatedAt: t0}
			n++
		}
		b.StartTimer()
		if err := d.Accounts().ImportDataKeys(ctx, keys); err != nil {
			b.Fatal(err)
		}
		if err := d.Accounts().ImportAccounts(ctx, list); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "accounts/s")
	reportCPU(b, c0, n)
}

func BenchmarkCreateAccount(b *testing.B) {
	d := openTest(b)
	ctx := context.Background()
	list := make([]accounts.NewAccount, b.N)
	for i := range list {
		list[i] = realisticAccount(i)
	}
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if err := d.Accounts().CreateAccount(ctx, list[i]); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, c0, b.N)
}

// seeded opens a database with n realistic accounts (and keeps it for the
// benchmarks of one run).
func seeded(b *testing.B, n int) (*DB, []string) {
	d := openTest(b)
	ctx := context.Background()
	var ids []string
	for done := 0; done < n; {
		k := min(10000, n-done)
		list := make([]accounts.NewAccount, k)
		for j := range list {
			list[j] = realisticAccount(done + j)
			ev := consent.Event{Seq: 1, Purpose: "marketing", Action: consent.Grant, PolicyN: 1, At: t0, Receipt: randHex(400), Hash: randHex(32)}
			list[j].Consent = consent.Initial{State: consent.Stored{Head: 1, HeadHash: ev.Hash, State: map[string]consent.Entry{"marketing": entryOf(&ev)}}, Events: []consent.Event{ev}}
			ids = append(ids, list[j].Account.ID)
		}
		if err := d.Accounts().ImportAccounts(ctx, list); err != nil {
			b.Fatal(err)
		}
		done += k
	}
	return d, ids
}

func benchUsers() int {
	if v, err := strconv.Atoi(os.Getenv("SQLITE_BENCH_USERS")); err == nil && v > 0 {
		return v
	}
	return 10000
}

// BenchmarkMe reads what the `me` query reads: the account and its consent
// state, from parallel clients. SQLITE_BENCH_USERS sets the table size.
func BenchmarkMe(b *testing.B) {
	d, ids := seeded(b, benchUsers())
	ctx := context.Background()
	var i atomic.Int64
	b.ResetTimer()
	c0 := cpuTime()
	defer func() { reportCPU(b, c0, b.N) }()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[int(i.Add(7919))%len(ids)]
			if r, err := d.Accounts().Account(ctx, id); err != nil || r == nil {
				b.Fatal(r, err)
			}
			if st, err := d.Consent().State(ctx, id); err != nil || st == nil {
				b.Fatal(st, err)
			}
		}
	})
}

func BenchmarkAccountByUsername(b *testing.B) {
	n := benchUsers()
	d, _ := seeded(b, n)
	ctx := context.Background()
	b.ResetTimer()
	c0 := cpuTime()
	defer func() { reportCPU(b, c0, b.N) }()
	for i := 0; i < b.N; i++ {
		if r, err := d.Accounts().AccountByUsername(ctx, fmt.Sprintf("user%08d", (i*7919)%n)); err != nil || r == nil {
			b.Fatal(r, err)
		}
	}
}

func BenchmarkRecordChange(b *testing.B) {
	d, ids := seeded(b, benchUsers())
	ctx := context.Background()
	heads := map[string]int64{}
	b.ResetTimer()
	c0 := cpuTime()
	defer func() { reportCPU(b, c0, b.N) }()
	for i := 0; i < b.N; i++ {
		id := ids[(i*7919)%len(ids)]
		h, ok := heads[id]
		if !ok {
			h = 1
		}
		ev := consent.Event{Seq: h + 1, Purpose: "marketing", Action: consent.Withdraw, PolicyN: 1, At: t0, Receipt: randHex(400), Hash: "h"}
		it := newItem(fmt.Sprintf("%016x-%d", i, h), id, "webhook", t0)
		if ok, err := d.Consent().RecordChange(ctx, id, ev, []work.Item{it}); !ok || err != nil {
			b.Fatal(ok, err)
		}
		heads[id] = h + 1
	}
}

// BenchmarkDelivery is the store's share of one outbox delivery: claim (in
// batches of 32), read the recipient, mark the attempt, finish with the
// processor state and a disclosure.
func BenchmarkDelivery(b *testing.B) {
	d, ids := seeded(b, benchUsers())
	ctx := context.Background()
	o := d.Outbox()
	items := make([]work.Item, b.N)
	for i := range items {
		items[i] = newItem(fmt.Sprintf("%016x", i), ids[i%len(ids)], "webhook", t0)
	}
	for start := 0; start < len(items); start += 5000 {
		end := min(start+5000, len(items))
		if err := d.write(ctx, func(t *tx) error {
			for i := start; i < end; i++ {
				if err := insertItem(t, &items[i]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	now := t0.Add(time.Second)
	b.ResetTimer()
	c0 := cpuTime()
	done := 0
	for done < b.N {
		got, err := o.Claim(ctx, "w", []string{"webhook"}, now, now.Add(time.Minute), 32)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) == 0 {
			b.Fatalf("nothing to claim after %d", done)
		}
		for _, it := range got {
			if r, err := o.Recipient(ctx, it.UserID); err != nil || r == nil {
				b.Fatal(r, err)
			}
			if ok, err := o.MarkAttempted(ctx, it.UserID, it.Processor); !ok || err != nil {
				b.Fatal(ok, err)
			}
			ok, err := o.Finish(ctx, outbox.Finish{Item: it, State: work.Done, At: now, Proc: &outbox.ProcUpdate{Delivered: true, Ref: "r"},
				Disclosure: &outbox.Disclosure{ID: it.ID, UserID: it.UserID, Processor: it.Processor, Fields: []string{"email"}, Action: "DELIVERED", At: now}})
			if !ok || err != nil {
				b.Fatal(ok, err)
			}
			done++
		}
	}
	b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "deliveries/s")
	reportCPU(b, c0, done)
}
