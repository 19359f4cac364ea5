package sqlite

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/work"
)

func enqueue(t *testing.T, d *DB, items ...work.Item) {
	t.Helper()
	for _, it := range items {
		if ok, err := d.Outbox().Enqueue(context.Background(), it); !ok || err != nil {
			t.Fatalf("enqueue %s: %v %v", it.ID, ok, err)
		}
	}
}

func ids(items []work.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func TestClaimOrderPairsAndLeases(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	o := d.Outbox()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	enqueue(t, d,
		newItem("a1", "ua", "p", at(1)),
		newItem("a2", "ua", "p", at(2)), // same pair as a1: waits for it
		newItem("a3", "ua", "q", at(3)), // same user, another processor
		newItem("b1", "ub", "p", at(4)),
		newItem("c1", "uc", "r", at(0)),  // a processor not asked for
		newItem("d1", "ud", "p", at(60)), // not due yet
	)
	if ok, _ := o.Enqueue(ctx, newItem("a1", "ua", "p", at(1))); ok {
		t.Error("enqueued an id twice")
	}
	now := at(10)
	got, err := o.Claim(ctx, "w1", []string{"p", "q"}, now, now.Add(time.Minute), 10)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids(got), []string{"a1", "a3", "b1"}) {
		t.Fatalf("claimed %v", ids(got))
	}
	for _, it := range got {
		if it.Attempts != 1 || it.LeaseOwner != "w1" || !it.LeaseUntil.Equal(now.Add(time.Minute)) || !it.UpdatedAt.Equal(now) {
			t.Errorf("claimed item %+v", it)
		}
	}
	// a2's pair is leased (by anyone): nothing more to claim.
	if more, _ := o.Claim(ctx, "w2", []string{"p", "q"}, now, now.Add(time.Minute), 10); len(more) != 0 {
		t.Fatalf("claimed %v beside leased pairs", ids(more))
	}
	// Finishing a1 frees its pair for a2.
	if ok, err := o.Finish(ctx, outbox.Finish{Item: got[0], State: work.Done, At: now}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	more, _ := o.Claim(ctx, "w2", []string{"p", "q"}, now, now.Add(time.Minute), 10)
	if !reflect.DeepEqual(ids(more), []string{"a2"}) {
		t.Fatalf("after finishing a1: %v", ids(more))
	}
	// An expired lease is due again, with another attempt.
	later := now.Add(2 * time.Minute)
	again, _ := o.Claim(ctx, "w3", []string{"p", "q"}, later, later.Add(time.Minute), 2)
	if !reflect.DeepEqual(ids(again), []string{"a2", "a3"}) || again[0].Attempts != 2 || again[0].LeaseOwner != "w3" {
		t.Fatalf("after lease expiry: %+v", again)
	}
	// limit
	if got, _ := o.Claim(ctx, "w4", []string{"p", "q", "r"}, later.Add(time.Hour), later.Add(2*time.Hour), 1); len(got) != 1 {
		t.Fatalf("limit 1 claimed %d", len(got))
	}
}

// Many items of one pair ahead of everyone else's: the claim looks past
// them instead of stopping at its first batch.
func TestClaimLooksPastABlockedPair(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	var items []work.Item
	for i := 0; i < 100; i++ {
		items = append(items, newItem(fmt.Sprintf("busy%03d", i), "busy", "p", t0.Add(time.Duration(i)*time.Millisecond)))
	}
	items = append(items, newItem("other", "other", "p", t0.Add(time.Second)))
	enqueue(t, d, items...)
	now := t0.Add(time.Minute)
	got, err := d.Outbox().Claim(ctx, "w", []string{"p"}, now, now.Add(time.Minute), 5)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids(got), []string{"busy000", "other"}) {
		t.Fatalf("claimed %v", ids(got))
	}
}

func TestConcurrentClaimsNeverDoubleClaim(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	var items []work.Item
	for i := 0; i < 400; i++ {
		items = append(items, newItem(fmt.Sprintf("i%03d", i), fmt.Sprintf("u%02d", i%40), fmt.Sprintf("p%d", i%3), t0))
	}
	enqueue(t, d, items...)
	var mu sync.Mutex
	claimedBy := map[string]string{}
	finished := 0
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		owner := fmt.Sprintf("w%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idle := 0; idle < 50; {
				now := t0.Add(time.Second)
				got, err := d.Outbox().Claim(ctx, owner, []string{"p0", "p1", "p2"}, now, now.Add(time.Hour), 8)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					idle++
					time.Sleep(time.Millisecond)
					continue
				}
				pairs := map[string]bool{}
				for _, it := range got {
					mu.Lock()
					if prev, ok := claimedBy[it.ID]; ok {
						t.Errorf("%s claimed by %s and %s", it.ID, prev, owner)
					}
					claimedBy[it.ID] = owner
					mu.Unlock()
					key := it.UserID + "|" + it.Processor
					if pairs[key] {
						t.Errorf("two items of %s in one claim", key)
					}
					pairs[key] = true
				}
				for _, it := range got {
					ok, err := d.Outbox().Finish(ctx, outbox.Finish{Item: it, State: work.Done, At: now})
					if err != nil || !ok {
						t.Errorf("finish %s: %v %v", it.ID, ok, err)
					}
					mu.Lock()
					finished++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if finished != 400 {
		t.Fatalf("%d of 400 items finished", finished)
	}
	if n, _ := d.Outbox().CountByState(ctx); !reflect.DeepEqual(n, map[work.State]int64{work.Done: 400}) {
		t.Fatalf("counts %v", n)
	}
}

func TestFinish(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	o := d.Outbox()
	if err := d.Accounts().CreateAccount(ctx, newAccount("u1", "alice")); err != nil {
		t.Fatal(err)
	}
	enqueue(t, d, newItem("i1", "u1", "p", t0), newItem("i2", "u1", "q", t0), newItem("i3", "gone", "p", t0))
	now := t0.Add(time.Second)
	claimed, _ := o.Claim(ctx, "w1", []string{"p", "q"}, now, now.Add(time.Minute), 10)
	if len(claimed) != 3 {
		t.Fatalf("claimed %v", ids(claimed))
	}
	byID := map[string]work.Item{}
	for _, it := range claimed {
		byID[it.ID] = it
	}
	i1 := byID["i1"]
	dc := &outbox.Disclosure{ID: "i1", UserID: "u1", Processor: "p", Purpose: "marketing", Fields: []string{"email"}, Action: "DELIVERED", Cause: "test", At: now}
	done := outbox.Finish{Item: i1, State: work.Done, Note: "n", At: now.Add(time.Second), Disclosure: dc, Proc: &outbox.ProcUpdate{Delivered: true, Ref: "ref-1"}}

	// A lost lease writes nothing: wrong owner, wrong attempt.
	for _, bad := range []func(f *outbox.Finish){
		func(f *outbox.Finish) { f.Item.LeaseOwner = "w2" },
		func(f *outbox.Finish) { f.Item.Attempts = 2 },
	} {
		f := done
		bad(&f)
		if ok, err := o.Finish(ctx, f); ok || err != nil {
			t.Fatalf("finish with a lost lease: %v %v", ok, err)
		}
	}
	if l, _ := o.Disclosures(ctx, "u1", "", 0); len(l) != 0 {
		t.Fatal("a lost lease recorded a disclosure")
	}
	if r, _ := o.Recipient(ctx, "u1"); len(r.Procs) != 0 {
		t.Fatal("a lost lease recorded processor state")
	}

	if ok, err := o.Finish(ctx, done); !ok || err != nil {
		t.Fatal(ok, err)
	}
	it, _ := o.Item(ctx, "i1")
	if it.State != work.Done || it.Note != "n" || it.LeaseOwner != "" || !it.LeaseUntil.IsZero() || !it.UpdatedAt.Equal(done.At) || it.Attempts != 1 {
		t.Fatalf("finished item %+v", it)
	}
	// Finishing again (a second outcome for one attempt) is refused.
	if ok, _ := o.Finish(ctx, done); ok {
		t.Error("finished twice")
	}
	if l, _ := o.Disclosures(ctx, "u1", "", 0); len(l) != 1 || !reflect.DeepEqual(l[0], *dc) {
		t.Fatalf("disclosures %+v", l)
	}
	r, _ := o.Recipient(ctx, "u1")
	if !reflect.DeepEqual(r.Procs, map[string]outbox.ProcState{"p": {Delivered: true, Ref: "ref-1"}}) {
		t.Fatalf("procs %+v", r.Procs)
	}

	// Retry later: state stays PENDING, due at NextAt, lease cleared.
	i2 := byID["i2"]
	next := now.Add(time.Hour)
	if ok, _ := o.Finish(ctx, outbox.Finish{Item: i2, State: work.Pending, NextAt: next, LastError: "boom", At: now}); !ok {
		t.Fatal("retry outcome refused")
	}
	it, _ = o.Item(ctx, "i2")
	if it.State != work.Pending || !it.NextAt.Equal(next) || it.LastError != "boom" || !it.LeaseUntil.IsZero() || it.Attempts != 1 {
		t.Fatalf("retrying item %+v", it)
	}
	if got, _ := o.Claim(ctx, "w1", []string{"q"}, now.Add(time.Minute), now.Add(2*time.Minute), 1); len(got) != 0 {
		t.Fatal("claimed before NextAt")
	}
	got, _ := o.Claim(ctx, "w1", []string{"q"}, next, next.Add(time.Minute), 1)
	if len(got) != 1 || got[0].Attempts != 2 {
		t.Fatalf("retry claim %+v", got)
	}
	// Waiting with attempts reset; a forget keeps the ref.
	if ok, _ := o.Finish(ctx, outbox.Finish{Item: got[0], State: work.Waiting, Note: "NEEDS_EMAIL", ResetAttempts: true, At: next,
		Proc: &outbox.ProcUpdate{Delivered: false}}); !ok {
		t.Fatal("waiting outcome refused")
	}
	it, _ = o.Item(ctx, "i2")
	if it.State != work.Waiting || it.Attempts != 0 || it.Note != "NEEDS_EMAIL" {
		t.Fatalf("waiting item %+v", it)
	}
	r, _ = o.Recipient(ctx, "u1")
	if !reflect.DeepEqual(r.Procs, map[string]outbox.ProcState{"p": {Delivered: true, Ref: "ref-1"}, "q": {}}) {
		t.Fatalf("procs %+v", r.Procs)
	}
	// The processor state of an absent account is not written, the item
	// and disclosure are.
	if ok, _ := o.Finish(ctx, outbox.Finish{Item: byID["i3"], State: work.Done, At: now,
		Proc:       &outbox.ProcUpdate{Delivered: true, Ref: "x"},
		Disclosure: &outbox.Disclosure{ID: "i3", UserID: "gone", Processor: "p", At: now}}); !ok {
		t.Fatal("finish for an absent account refused")
	}
	var n int
	d.w.QueryRow(`SELECT count(*) FROM proc_state WHERE user_id = 'gone'`).Scan(&n)
	if n != 0 {
		t.Error("processor state written for an absent account")
	}
	if l, _ := o.Disclosures(ctx, "gone", "", 0); len(l) != 1 {
		t.Error("disclosure of an absent account missing")
	}
	// Retry and WakeWaiting.
	if ok, _ := o.Retry(ctx, "i1", next); ok {
		t.Error("retried a DONE item")
	}
	if err := o.WakeWaiting(ctx, "u1", next); err != nil {
		t.Fatal(err)
	}
	it, _ = o.Item(ctx, "i2")
	if it.State != work.Pending || it.Note != "" || !it.NextAt.Equal(next) {
		t.Fatalf("woken item %+v", it)
	}
	if n, _ := o.CountByState(ctx); n[work.Pending] != 1 || n[work.Done] != 2 || n[work.Waiting] != 0 {
		t.Fatalf("counts %v", n)
	}
}

func TestRecipientMarkAttemptedAndErasure(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	o := d.Outbox()
	if r, err := o.Recipient(ctx, "u1"); r != nil || err != nil {
		t.Fatal(r, err)
	}
	if ok, _ := o.MarkAttempted(ctx, "u1", "p"); ok {
		t.Error("marked an absent account")
	}
	if err := d.Accounts().CreateAccount(ctx, newAccount("u1", "alice")); err != nil {
		t.Fatal(err)
	}
	e1 := event(1, "ads", true, 1)
	if ok, _ := d.Consent().RecordChange(ctx, "u1", e1, nil); !ok {
		t.Fatal("record")
	}
	if ok, err := o.MarkAttempted(ctx, "u1", "p"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := o.MarkAttempted(ctx, "u1", "p"); !ok {
		t.Error("marking again failed")
	}
	r, err := o.Recipient(ctx, "u1")
	if err != nil || r.Erasing || r.Consent.Head != 1 || !r.Consent.State["ads"].Granted || !r.Procs["p"].Attempted {
		t.Fatalf("recipient %+v %v", r, err)
	}
	d.Accounts().MarkErasing(ctx, "u1", t0)
	if ok, _ := o.MarkAttempted(ctx, "u1", "q"); ok {
		t.Error("marked an account being erased")
	}
	if r, _ := o.Recipient(ctx, "u1"); !r.Erasing || !r.Consent.Erasing {
		t.Fatalf("recipient %+v", r)
	}
}

func TestItemsDisclosuresFlagsPluginState(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	o := d.Outbox()
	for i := 0; i < 5; i++ {
		it := newItem(fmt.Sprintf("i%d", i), "u", "p", t0)
		if i%2 == 1 {
			it.State = work.Dead
		}
		enqueue(t, d, it)
	}
	if got, _ := o.Items(ctx, "", "i1", 2); !reflect.DeepEqual(ids(got), []string{"i2", "i3"}) {
		t.Errorf("items after i1: %v", ids(got))
	}
	if got, _ := o.Items(ctx, work.Dead, "", 0); !reflect.DeepEqual(ids(got), []string{"i1", "i3"}) {
		t.Errorf("dead items: %v", ids(got))
	}
	if ok, _ := o.Retry(ctx, "i1", t0.Add(time.Hour)); !ok {
		t.Error("retry of a dead item refused")
	}
	it, _ := o.Item(ctx, "i1")
	if it.State != work.Pending || it.Attempts != 0 || !it.NextAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("retried %+v", it)
	}
	if ok, _ := o.Retry(ctx, "nope", t0); ok {
		t.Error("retried an absent item")
	}
	if it, err := o.Item(ctx, "nope"); it != nil || err != nil {
		t.Error(it, err)
	}

	for i := 0; i < 5; i++ {
		if err := d.write(ctx, func(tx *tx) error {
			return insertDisclosure(tx, &outbox.Disclosure{ID: fmt.Sprintf("d%d", i), UserID: "u", Processor: "p", At: t0})
		}); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := o.Disclosures(ctx, "u", "", 2)
	if len(l) != 2 || l[0].ID != "d4" || l[1].ID != "d3" {
		t.Errorf("newest disclosures %+v", l)
	}
	l, _ = o.Disclosures(ctx, "u", "d3", 0)
	if len(l) != 3 || l[0].ID != "d2" || l[2].ID != "d0" {
		t.Errorf("disclosures before d3 %+v", l)
	}

	if f, _ := o.ProcessorFlags(ctx); len(f) != 0 {
		t.Error(f)
	}
	o.SetProcessorFlag(ctx, "p", false)
	o.SetProcessorFlag(ctx, "q", true)
	o.SetProcessorFlag(ctx, "p", true)
	if f, _ := o.ProcessorFlags(ctx); !reflect.DeepEqual(f, map[string]bool{"p": true, "q": true}) {
		t.Error(f)
	}

	ps, other := o.PluginState("mailchimp"), o.PluginState("hubspot")
	if _, ok, err := ps.Get(ctx, "k"); ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := ps.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	ps.Put(ctx, "k", []byte("v2"))
	ps.Put(ctx, "empty", nil)
	if v, ok, _ := ps.Get(ctx, "k"); !ok || string(v) != "v2" {
		t.Errorf("get %q %v", v, ok)
	}
	if v, ok, _ := ps.Get(ctx, "empty"); !ok || len(v) != 0 {
		t.Errorf("empty value %q %v", v, ok)
	}
	if _, ok, _ := other.Get(ctx, "k"); ok {
		t.Error("processors share state")
	}
	if err := ps.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := ps.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ps.Get(ctx, "k"); ok {
		t.Error("deleted key still there")
	}
	if n, err := o.Relay(ctx, ""); n != 0 || err != nil {
		t.Error(n, err)
	}
}

func TestFinishNeedsALease(t *testing.T) {
	d := openTest(t)
	it := newItem("i1", "u", "p", t0)
	enqueue(t, d, it)
	if ok, err := d.Outbox().Finish(context.Background(), outbox.Finish{Item: it, State: work.Done, At: t0}); ok || err != nil {
		t.Fatalf("finished an item nobody claimed: %v %v", ok, err)
	}
}
