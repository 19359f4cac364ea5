package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
	"github.com/consentgraph/consentgraph/internal/work"
)

func event(seq int64, purpose string, grant bool, n int64) consent.Event {
	a := consent.Withdraw
	if grant {
		a = consent.Grant
	}
	return consent.Event{Seq: seq, Purpose: purpose, Action: a, PolicyVersion: fmt.Sprintf("v%d", n), PolicyN: n,
		At: t0.Add(time.Duration(seq) * time.Second), Method: consent.Explicit, ReceiptID: fmt.Sprintf("r%d", seq),
		Receipt: "jws", PrevHash: fmt.Sprintf("h%d", seq-1), Hash: fmt.Sprintf("h%d", seq)}
}

func TestRecordChange(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	c := d.Consent()
	if st, err := c.State(ctx, "u1"); st != nil || err != nil {
		t.Fatalf("state of an absent account: %v %v", st, err)
	}
	if err := d.Accounts().CreateAccount(ctx, newAccount("u1", "alice")); err != nil {
		t.Fatal(err)
	}
	st, err := c.State(ctx, "u1")
	if err != nil || st == nil || !reflect.DeepEqual(*st, consent.Stored{}) {
		t.Fatalf("state of a new account: %+v %v", st, err)
	}
	// Not the next event: nothing written.
	if ok, err := c.RecordChange(ctx, "u1", event(2, "ads", true, 1), []work.Item{newItem("x", "u1", "p", t0)}); ok || err != nil {
		t.Fatalf("out-of-order event: %v %v", ok, err)
	}
	if it, _ := d.Outbox().Item(ctx, "x"); it != nil {
		t.Error("items of a refused change were stored")
	}
	e1 := event(1, "ads", true, 1)
	if ok, err := c.RecordChange(ctx, "u1", e1, []work.Item{newItem("i1", "u1", "p", t0), newItem("i2", "u1", "q", t0)}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// The same head again loses.
	if ok, _ := c.RecordChange(ctx, "u1", event(1, "mail", true, 1), nil); ok {
		t.Error("two changes took one place")
	}
	e2 := event(2, "ads", false, 2)
	if ok, err := c.RecordChange(ctx, "u1", e2, nil); !ok || err != nil {
		t.Fatal(ok, err)
	}
	e3 := event(3, "mail", true, 2)
	if ok, err := c.RecordChange(ctx, "u1", e3, nil); !ok || err != nil {
		t.Fatal(ok, err)
	}
	st, _ = c.State(ctx, "u1")
	want := consent.Stored{Head: 3, HeadHash: "h3", State: map[string]consent.Entry{"ads": entryOf(&e2), "mail": entryOf(&e3)}}
	if !reflect.DeepEqual(*st, want) {
		t.Fatalf("state:\n got %+v\nwant %+v", *st, want)
	}
	for _, id := range []string{"i1", "i2"} {
		if it, _ := d.Outbox().Item(ctx, id); it == nil {
			t.Errorf("item %s missing", id)
		}
	}
	evs, err := c.Events(ctx, "u1", 1, 1)
	if err != nil || len(evs) != 1 || !reflect.DeepEqual(evs[0], e2) {
		t.Fatalf("events after 1, limit 1: %+v %v", evs, err)
	}
	if evs, _ := c.Events(ctx, "u1", 0, 0); len(evs) != 3 {
		t.Fatalf("all events: %d", len(evs))
	}
	if ev, err := c.Event(ctx, "u1", 3); err != nil || !reflect.DeepEqual(*ev, e3) {
		t.Fatalf("event 3: %+v %v", ev, err)
	}
	if ev, err := c.Event(ctx, "u1", 9); ev != nil || err != nil {
		t.Fatalf("event 9: %+v %v", ev, err)
	}
	// No change for an account being erased or absent.
	if _, err := d.Accounts().MarkErasing(ctx, "u1", t0); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.RecordChange(ctx, "u1", event(4, "ads", true, 2), nil); ok {
		t.Error("changed the consent of an account being erased")
	}
	if st, _ := c.State(ctx, "u1"); !st.Erasing || st.Head != 3 {
		t.Errorf("erasing state: %+v", st)
	}
	if ok, _ := c.RecordChange(ctx, "nobody", event(1, "ads", true, 1), nil); ok {
		t.Error("changed the consent of an absent account")
	}
}

// Concurrent writers on one user: each head is taken exactly once, the
// ledger is gapless and the state agrees with it.
func TestConcurrentConsentChanges(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	c := d.Consent()
	if err := d.Accounts().CreateAccount(ctx, newAccount("u1", "alice")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				for {
					st, err := c.State(ctx, "u1")
					if err != nil {
						t.Error(err)
						return
					}
					ev := event(st.Head+1, fmt.Sprintf("p%d", w), i%2 == 0, 1)
					ok, err := c.RecordChange(ctx, "u1", ev, []work.Item{newItem(fmt.Sprintf("w%d-%d", w, i), "u1", "p", t0)})
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	evs, _ := c.Events(ctx, "u1", 0, 0)
	if len(evs) != 200 {
		t.Fatalf("%d events", len(evs))
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
	}
	st, _ := c.State(ctx, "u1")
	if st.Head != 200 || len(st.State) != 8 {
		t.Fatalf("state %+v", st)
	}
	n, _ := d.Outbox().CountByState(ctx)
	if n[work.Pending] != 200 {
		t.Fatalf("items %v", n)
	}
}

func TestEachStateAndGrantedBefore(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	c := d.Consent()
	// More accounts than one chunk, some with consent.
	var ids []string
	for i := 0; i < 2*eachChunk+7; i++ {
		id := fmt.Sprintf("u%05d", i)
		ids = append(ids, id)
		a := newAccount(id, id)
		if i%3 == 0 {
			e1, e2 := event(1, "ads", true, int64(1+i%2)), event(2, "mail", i%2 == 0, 1)
			a.Consent = consent.Initial{State: consent.Stored{Head: 2, HeadHash: "h2",
				State: map[string]consent.Entry{"ads": entryOf(&e1), "mail": entryOf(&e2)}}, Events: []consent.Event{e1, e2}}
		}
		if err := d.Accounts().CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Accounts().MarkErasing(ctx, "u00003", t0); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err := c.EachState(ctx, func(id string, st *consent.Stored) error {
		seen = append(seen, id)
		i := 0
		fmt.Sscanf(id, "u%d", &i)
		if (i%3 == 0) != (st.Head == 2 && len(st.State) == 2) {
			t.Errorf("%s: %+v", id, st)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantSeen := append(append([]string(nil), ids[:3]...), ids[4:]...)
	if !reflect.DeepEqual(seen, wantSeen) {
		t.Fatalf("EachState visited %d accounts (want %d), first %v", len(seen), len(wantSeen), seen[:5])
	}
	got, err := c.GrantedBefore(ctx, "ads", 2)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	var want []string
	for i := range ids {
		if i%3 == 0 && i%2 == 0 {
			want = append(want, ids[i])
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GrantedBefore: %d users, want %d", len(got), len(want))
	}
	if got, _ := c.GrantedBefore(ctx, "mail", 5); len(got) != len(want) {
		t.Fatalf("withdrawals counted as grants: %d", len(got))
	}
}

func TestArchiveAndPolicies(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	c := d.Consent()
	e1, e2 := event(1, "ads", true, 1), event(2, "ads", false, 1)
	a := consent.Archived{Subject: "sub", State: consent.Stored{Head: 2, HeadHash: "h2", State: map[string]consent.Entry{"ads": entryOf(&e2)}},
		Events: []consent.Event{e1, e2}, ArchivedAt: t0}
	if err := c.Archive(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := c.Archived(ctx, "sub")
	if err != nil || !reflect.DeepEqual(*got, a) {
		t.Fatalf("archive:\n got %+v\nwant %+v", got, a)
	}
	a2 := consent.Archived{Subject: "sub", State: consent.Stored{}, Events: []consent.Event{}, ArchivedAt: t0.Add(time.Hour)}
	if err := c.Archive(ctx, a2); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Archived(ctx, "sub"); got.State.Head != 0 || len(got.Events) != 0 || !got.ArchivedAt.Equal(a2.ArchivedAt) {
		t.Fatalf("archive not replaced: %+v", got)
	}
	if got, err := c.Archived(ctx, "none"); got != nil || err != nil {
		t.Fatal(got, err)
	}

	v1 := consent.PolicyVersion{N: 1, Version: "2025-01", URL: "https://x/1", PublishedAt: t0, Reconsent: []string{}}
	if err := c.AddFirstPolicy(ctx, v1); err != nil {
		t.Fatal(err)
	}
	if err := c.AddFirstPolicy(ctx, consent.PolicyVersion{N: 1, Version: "other", PublishedAt: t0}); err != nil {
		t.Fatal(err)
	}
	v2 := consent.PolicyVersion{N: 2, Version: "2025-02", URL: "https://x/2", PublishedAt: t0.Add(time.Hour), Reconsent: []string{"ads"}}
	if ok, err := c.AppendPolicy(ctx, consent.PolicyVersion{N: 3, Version: "gap", PublishedAt: t0}); ok || err != nil {
		t.Fatalf("append with a gap: %v %v", ok, err)
	}
	if ok, err := c.AppendPolicy(ctx, v2); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := c.AppendPolicy(ctx, consent.PolicyVersion{N: 2, Version: "late", PublishedAt: t0}); ok {
		t.Error("two versions took number 2")
	}
	vs, err := c.PolicyVersions(ctx)
	if err != nil || !reflect.DeepEqual(vs, []consent.PolicyVersion{v1, v2}) {
		t.Fatalf("versions: %+v %v", vs, err)
	}
}

// Within a read-only operation, the account and its consent state come
// from one read; copies handed out do not change the shared one.
func TestReadMemoSharesOneRead(t *testing.T) {
	var reads atomic.Int64
	d, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "cg.db"), Logger: quiet,
		Observer: func(_ context.Context, command string, _ error) {
			if command == "read" {
				reads.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	ctx := context.Background()
	e1 := event(1, "ads", true, 1)
	a := newAccount("u1", "alice")
	a.Consent = consent.Initial{State: consent.Stored{Head: 1, HeadHash: "h1", State: map[string]consent.Entry{"ads": entryOf(&e1)}}, Events: []consent.Event{e1}}
	if err := d.Accounts().CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	plainRec, _ := d.Accounts().Account(ctx, "u1")
	plainSt, _ := d.Consent().State(ctx, "u1")
	reads.Store(0)

	qctx := storectx.WithReadMemo(ctx)
	rec, err := d.Accounts().Account(qctx, "u1")
	if err != nil || !reflect.DeepEqual(rec, plainRec) {
		t.Fatalf("memo account %+v %v", rec, err)
	}
	st, err := d.Consent().State(qctx, "u1")
	if err != nil || !reflect.DeepEqual(st, plainSt) {
		t.Fatalf("memo state %+v %v", st, err)
	}
	st.State["ads"] = consent.Entry{}
	rec.Username = "changed"
	if st2, _ := d.Consent().State(qctx, "u1"); !reflect.DeepEqual(st2, plainSt) {
		t.Error("a caller's change reached the memo")
	}
	if rec2, _ := d.Accounts().Account(qctx, "u1"); rec2.Username != "alice" {
		t.Error("a caller's change reached the memo")
	}
	if r, err := d.Accounts().Account(qctx, "nobody"); r != nil || err != nil {
		t.Fatal(r, err)
	}
	if st, err := d.Consent().State(qctx, "nobody"); st != nil || err != nil {
		t.Fatal(st, err)
	}
	if n := reads.Load(); n != 2 {
		t.Errorf("%d reads, want 2 (one per account)", n)
	}
}
