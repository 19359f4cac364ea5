package contract

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/work"
)

func outboxTests() []contractTest {
	return []contractTest{
		{"outbox/enqueue-and-item", testEnqueue},
		{"outbox/relay-sweeps-every-user", testRelaySweep},
		{"outbox/claim-under-4-owners", testClaimConcurrent},
		{"outbox/claim-one-per-user-and-processor", testClaimPerPair},
		{"outbox/claim-and-finish-pairs-under-4-owners", testClaimFinishPairsConcurrent},
		{"outbox/claim-lease-expiry-and-stale-finish", testLeaseExpiry},
		{"outbox/claim-due-order-and-filters", testClaimFilters},
		{"outbox/finish-outcomes", testFinishOutcomes},
		{"outbox/finish-throttled-gives-back-the-attempt", testFinishThrottled},
		{"outbox/finish-done-clears-last-error", testFinishDoneClearsLastError},
		{"outbox/finish-disclosure-once-per-item", testFinishDisclosureOnce},
		{"outbox/finish-processor-state", testFinishProcState},
		{"outbox/wake-waiting", testWakeWaiting},
		{"outbox/retry", testRetry},
		{"outbox/items-paging-and-counts", testItemsPaging},
		{"outbox/disclosures-paging", testDisclosuresPaging},
		{"outbox/count-disclosures", testCountDisclosures},
		{"outbox/recipient-and-mark-attempted", testRecipient},
		{"outbox/processor-flags", testProcessorFlags},
	}
}

func (e *env) claim(owner string, processors []string, now, until time.Time, limit int) []work.Item {
	e.t.Helper()
	items, err := e.b.Outbox().Claim(e.ctx, owner, processors, now, until, limit)
	e.must(err, "Claim(%s, %v, now %s)", owner, processors, now.Format(time.RFC3339Nano))
	for _, it := range items {
		if it.LeaseOwner != owner || !it.LeaseUntil.Equal(until) || it.State != work.Pending {
			e.t.Errorf("Claim(%s) returned item %s with owner %q, lease until %s, state %s; want %s, %s, PENDING",
				owner, it.ID, it.LeaseOwner, fmtTime(it.LeaseUntil), it.State, owner, fmtTime(until))
		}
	}
	return items
}

func (e *env) claimOne(owner string, processors []string, now, until time.Time) work.Item {
	e.t.Helper()
	items := e.claim(owner, processors, now, until, 1)
	if len(items) != 1 {
		e.t.Fatalf("Claim(%s, %v) returned %d items, want 1", owner, processors, len(items))
	}
	return items[0]
}

func (e *env) finish(f outbox.Finish) bool {
	e.t.Helper()
	ok, err := e.b.Outbox().Finish(e.ctx, f)
	e.must(err, "Finish(%s)", f.Item.ID)
	return ok
}

func (e *env) disclosures(userID, before string, limit int) []outbox.Disclosure {
	e.t.Helper()
	ds, err := e.b.Outbox().Disclosures(e.ctx, userID, before, limit)
	e.must(err, "Disclosures(%s, before %q, limit %d)", userID, before, limit)
	return ds
}

func disclosureFor(it work.Item, when time.Time) *outbox.Disclosure {
	return &outbox.Disclosure{
		ID: it.ID, UserID: it.UserID, Processor: it.Processor, Purpose: it.Purpose,
		Fields: []string{"user.contact.email", "user.demographic.country"}, Action: string(it.Action), Cause: it.Cause, At: when,
	}
}

func testEnqueue(e *env) {
	o := e.b.Outbox()
	it := newItem("w-1", "u-1", "webhook", at(time.Second))
	it.Action, it.Erase, it.Ref, it.Cause, it.Note, it.LastError = work.Forget, true, "snapshot-ref", "erasure", "a note", "an earlier error"
	it.UpdatedAt = at(2 * time.Second)
	e.enqueue(it)
	e.equal("Item(w-1)", it, e.item("w-1"))

	dup := newItem("w-1", "u-2", "other", at(time.Hour))
	ok, err := o.Enqueue(e.ctx, dup)
	e.must(err, "Enqueue(duplicate id)")
	e.wantBool("Enqueue of an existing id", false, ok)
	e.equal("Item(w-1) after a duplicate Enqueue", it, e.item("w-1"))

	waiting := newItem("w-2", "u-1", "webhook", at(time.Second))
	waiting.State, waiting.Note = work.Waiting, "NEEDS_EMAIL"
	e.enqueue(waiting)
	e.equal("Item(w-2) (enqueued WAITING)", waiting, e.item("w-2"))

	got, err := o.Item(e.ctx, "w-absent")
	e.must(err, "Item(absent)")
	if got != nil {
		e.t.Errorf("Item of an absent id = %+v, want nil", got)
	}
}

func testRelaySweep(e *env) {
	var want []work.Item
	for i := range 3 {
		id := fmt.Sprintf("u-r%d", i)
		e.createAccount(id)
		c := newChain(id)
		for j := range 2 {
			it := newItem(fmt.Sprintf("w-r%d-%d", i, j), id, "webhook", at(time.Duration(j)*time.Second))
			e.record(c, id, "newsletter", j == 0, at(time.Duration(j)*time.Second), it)
			want = append(want, it)
		}
	}
	e.createAccount("u-r-idle")
	n := e.relay("")
	e.t.Logf("Relay(\"\") reported %d users with items waiting", n)
	if n < 0 || n > 3 {
		e.t.Errorf("Relay(\"\") = %d, want between 0 and the 3 users that had items", n)
	}
	got := e.allItems("")
	e.equal("queue after Relay(\"\")", want, got)
	n = e.relay("")
	if n != 0 {
		e.t.Errorf("Relay(\"\") with nothing waiting = %d, want 0", n)
	}
	e.equal("queue after relaying twice", want, e.allItems(""))
	if n := e.relay("u-r-idle"); n < 0 {
		e.t.Errorf("Relay of a user without items = %d", n)
	}
	if n := e.relay("u-absent"); n < 0 {
		e.t.Errorf("Relay of an absent user = %d", n)
	}
}

func testClaimConcurrent(e *env) {
	const items, owners = 40, 4
	var ids []string
	for i := range items {
		it := newItem(fmt.Sprintf("w-%02d", i), fmt.Sprintf("u-%02d", i), "webhook", at(time.Duration(i)*ms))
		e.enqueue(it)
		ids = append(ids, it.ID)
	}
	now, until := at(time.Minute), at(2*time.Minute)
	var mu sync.Mutex
	claimedBy := map[string][]string{}
	errs := e.parallel(owners, func(i int) error {
		owner := fmt.Sprintf("owner-%d", i)
		empty := 0
		for empty < 2 {
			got, err := e.b.Outbox().Claim(e.ctx, owner, []string{"webhook"}, now, until, 3)
			if err != nil {
				return err
			}
			if len(got) == 0 {
				empty++
				continue
			}
			empty = 0
			mu.Lock()
			for _, it := range got {
				claimedBy[it.ID] = append(claimedBy[it.ID], owner)
				if it.Attempts != 1 || it.LeaseOwner != owner || !it.LeaseUntil.Equal(until) {
					e.t.Errorf("%s claimed %s with attempts %d, owner %q, until %s", owner, it.ID, it.Attempts, it.LeaseOwner, fmtTime(it.LeaseUntil))
				}
			}
			mu.Unlock()
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			e.t.Errorf("owner-%d: %v", i, err)
		}
	}
	// Anything the racing owners left (an implementation may give up on a
	// contended candidate) is still claimable, exactly once.
	for _, it := range e.claim("owner-late", []string{"webhook"}, now, until, items) {
		claimedBy[it.ID] = append(claimedBy[it.ID], "owner-late")
	}
	if left := e.claim("owner-late-2", []string{"webhook"}, now, until, items); len(left) != 0 {
		e.t.Errorf("items claimable after all were claimed: %v", itemIDs(left))
	}
	perOwner := map[string]int{}
	for _, id := range ids {
		by := claimedBy[id]
		if len(by) != 1 {
			e.t.Errorf("item %s was claimed %d times (by %v), want exactly once", id, len(by), by)
			continue
		}
		perOwner[by[0]]++
		it := e.item(id)
		if it.Attempts != 1 || it.LeaseOwner != by[0] || !it.LeaseUntil.Equal(until) {
			e.t.Errorf("stored item %s: attempts %d, owner %q, until %s; want 1, %s, %s", id, it.Attempts, it.LeaseOwner, fmtTime(it.LeaseUntil), by[0], fmtTime(until))
		}
	}
	e.t.Logf("claims per owner: %v", perOwner)
}

func testClaimPerPair(e *env) {
	procs := []string{"webhook", "mailchimp"}
	a := newItem("w-a", "u-1", "webhook", at(0))
	b := newItem("w-b", "u-1", "webhook", at(ms))
	c := newItem("w-c", "u-1", "mailchimp", at(2*ms)) // same user, other processor
	d := newItem("w-d", "u-2", "webhook", at(3*ms))   // other user, same processor
	for _, it := range []work.Item{a, b, c, d} {
		e.enqueue(it)
	}
	now, until := at(time.Second), at(time.Minute)
	got := e.claim("owner-1", procs, now, until, 10)
	e.equal("first Claim (at most one item per user and processor)", []string{"w-a", "w-c", "w-d"}, sorted(itemIDs(got)))
	byID := map[string]work.Item{}
	for _, it := range got {
		byID[it.ID] = it
	}

	// While w-a is leased, w-b (same user and processor) is not claimed, by
	// this owner or another.
	for _, owner := range []string{"owner-1", "owner-2"} {
		if more := e.claim(owner, procs, now.Add(time.Second), until, 10); len(more) != 0 {
			e.t.Errorf("Claim by %s while w-a is leased returned %v, want nothing", owner, itemIDs(more))
		}
	}
	// Finishing w-a frees the pair.
	if !e.finish(outbox.Finish{Item: byID["w-a"], State: work.Done, At: now.Add(2 * time.Second)}) {
		e.t.Fatalf("Finish(w-a) by its owner = false")
	}
	got = e.claim("owner-2", procs, now.Add(3*time.Second), until, 10)
	e.equal("Claim after w-a finished", []string{"w-b"}, itemIDs(got))
}

func testLeaseExpiry(e *env) {
	o := e.b.Outbox()
	e.enqueue(newItem("w-x", "u-x", "webhook", at(0)))
	t1 := at(time.Minute)
	first := e.claimOne("owner-1", []string{"webhook"}, t1, t1.Add(30*time.Second))
	if first.Attempts != 1 {
		e.t.Errorf("first claim: attempts %d, want 1", first.Attempts)
	}
	if more := e.claim("owner-2", []string{"webhook"}, t1.Add(30*time.Second-ms), t1.Add(time.Minute), 10); len(more) != 0 {
		e.t.Errorf("Claim 1 ms before the lease ends returned %v, want nothing", itemIDs(more))
	}
	// At the end of the lease ("at or before now") the item is due again.
	second := e.claimOne("owner-2", []string{"webhook"}, t1.Add(30*time.Second), t1.Add(90*time.Second))
	if second.ID != "w-x" || second.Attempts != 2 || second.LeaseOwner != "owner-2" {
		e.t.Errorf("claim after the lease expired: %s attempts %d owner %q; want w-x, 2, owner-2", second.ID, second.Attempts, second.LeaseOwner)
	}
	before := e.item("w-x")

	// The first owner's late outcome is refused and changes nothing.
	ok, err := o.Finish(e.ctx, outbox.Finish{Item: first, State: work.Done, Note: "late", LastError: "late",
		Disclosure: disclosureFor(first, t1), At: t1.Add(40 * time.Second)})
	e.must(err, "Finish by the owner who lost the lease")
	e.wantBool("Finish by the owner who lost the lease", false, ok)
	e.equal("item after a stale Finish", before, e.item("w-x"))
	// Right owner, wrong attempt: refused as well.
	stale := second
	stale.Attempts = 1
	e.wantBool("Finish with the owner but a stale attempt count", false, e.finish(outbox.Finish{Item: stale, State: work.Done, At: t1}))
	stale = second
	stale.LeaseOwner = "owner-1"
	e.wantBool("Finish with the attempt count but another owner", false, e.finish(outbox.Finish{Item: stale, State: work.Done, At: t1}))
	e.equal("item after stale Finish calls", before, e.item("w-x"))
	// The refused calls did not free the pair either: another item of the
	// same user and processor waits while owner-2 holds w-x.
	e.enqueue(newItem("w-y", "u-x", "webhook", at(ms)))
	if more := e.claim("owner-3", []string{"webhook"}, t1.Add(60*time.Second), t1.Add(2*time.Minute), 10); len(more) != 0 {
		e.t.Errorf("Claim while w-x is leased (after stale Finish calls) returned %v, want nothing", itemIDs(more))
	}

	// The holder finishes.
	done := t1.Add(50 * time.Second)
	e.wantBool("Finish by the lease holder", true, e.finish(outbox.Finish{Item: second, State: work.Done, Note: "delivered", At: done}))
	e.equal("Claim once the holder finished", []string{"w-y"}, itemIDs(e.claim("owner-3", []string{"webhook"}, t1.Add(61*time.Second), t1.Add(2*time.Minute), 10)))
	got := e.item("w-x")
	if got.State != work.Done || got.Attempts != 2 || !got.LeaseUntil.IsZero() || got.Note != "delivered" {
		e.t.Errorf("item after Finish: state %s, attempts %d, lease until %s, note %q; want DONE, 2, zero, delivered", got.State, got.Attempts, fmtTime(got.LeaseUntil), got.Note)
	}
	// A finished item cannot be finished again, even by its last owner.
	e.wantBool("Finish of a DONE item", false, e.finish(outbox.Finish{Item: second, State: work.Dead, At: done}))
	if got := e.item("w-x"); got.State != work.Done {
		e.t.Errorf("a second Finish changed a DONE item to %s", got.State)
	}
	// Much later only w-y (its lease ran out) is claimable, never the DONE w-x.
	e.equal("Claim an hour later", []string{"w-y"}, itemIDs(e.claim("owner-4", []string{"webhook"}, t1.Add(time.Hour), t1.Add(2*time.Hour), 10)))
	ok, err = o.Finish(e.ctx, outbox.Finish{Item: newItem("w-absent", "u-x", "webhook", t1), State: work.Done, At: t1})
	e.must(err, "Finish(absent item)")
	e.wantBool("Finish of an absent item", false, ok)
}

func testClaimFilters(e *env) {
	now, until := at(time.Hour), at(2*time.Hour)
	// Distinct users, so the per-pair rule plays no part here; ids are in
	// neither the order of due times nor its reverse.
	due2 := newItem("w-due-d", "u-1", "webhook", now.Add(-2*time.Minute))
	due0 := newItem("w-due-c", "u-2", "webhook", now) // due exactly now
	due1 := newItem("w-due-a", "u-3", "webhook", now.Add(-time.Minute))
	due3 := newItem("w-due-b", "u-4", "webhook", now.Add(-3*time.Minute))
	future := newItem("w-future", "u-5", "webhook", now.Add(ms))
	otherProc := newItem("w-other", "u-6", "survey", now.Add(-time.Hour))
	waiting := newItem("w-waiting", "u-7", "webhook", now.Add(-time.Hour))
	waiting.State = work.Waiting
	dead := newItem("w-dead", "u-8", "webhook", now.Add(-time.Hour))
	dead.State = work.Dead
	doneIt := newItem("w-done", "u-9", "webhook", now.Add(-time.Hour))
	doneIt.State = work.Done
	skipped := newItem("w-skipped", "u-10", "webhook", now.Add(-time.Hour))
	skipped.State = work.Skipped
	for _, it := range []work.Item{due2, due0, due1, due3, future, otherProc, waiting, dead, doneIt, skipped} {
		e.enqueue(it)
	}
	// Oldest due first, up to limit.
	e.equal("Claim(limit 1) (the oldest due)", []string{"w-due-b"}, itemIDs(e.claim("o", []string{"webhook"}, now, until, 1)))
	e.equal("Claim(limit 2) (the next oldest due)", []string{"w-due-a", "w-due-d"}, sorted(itemIDs(e.claim("o", []string{"webhook"}, now, until, 2))))
	e.equal("Claim (due exactly now; not the future one, nor other states)", []string{"w-due-c"}, itemIDs(e.claim("o", []string{"webhook"}, now, until, 10)))
	if got := e.claim("o", []string{"nobody"}, now, until, 10); len(got) != 0 {
		e.t.Errorf("Claim for a processor without items returned %v", itemIDs(got))
	}
	if got := e.claim("o", nil, now, until, 10); len(got) != 0 {
		e.t.Errorf("Claim for no processors returned %v", itemIDs(got))
	}
	if got := e.claim("o", []string{"webhook", "survey"}, now, until, 0); len(got) != 0 {
		e.t.Errorf("Claim with limit 0 returned %v", itemIDs(got))
	}
	if it := e.item("w-other"); it.Attempts != 0 || !it.LeaseUntil.IsZero() {
		e.t.Errorf("Claim with limit 0 or for other processors leased w-other: attempts %d, until %s", it.Attempts, fmtTime(it.LeaseUntil))
	}
	e.equal("Claim of the other processor", []string{"w-other"}, itemIDs(e.claim("o", []string{"survey", "nobody"}, now, until, 10)))
	e.equal("Claim once the future item is due", []string{"w-future"}, itemIDs(e.claim("o", []string{"webhook", "survey"}, now.Add(ms), until, 10)))
	for _, id := range []string{"w-waiting", "w-dead", "w-done", "w-skipped"} {
		if it := e.item(id); it.Attempts != 0 || !it.LeaseUntil.IsZero() {
			e.t.Errorf("item %s in state %s was leased: attempts %d, until %s", id, it.State, it.Attempts, fmtTime(it.LeaseUntil))
		}
	}
}

func testFinishOutcomes(e *env) {
	base := newItem("w-f", "u-f", "webhook", at(0))
	base.Note, base.LastError = "old note", "old error"
	e.enqueue(base)
	procs := []string{"webhook"}
	t1 := at(time.Minute)

	// A failed attempt: retry later.
	it := e.claimOne("o1", procs, t1, t1.Add(time.Minute))
	retryAt := t1.Add(5 * time.Minute)
	e.wantBool("Finish(retry)", true, e.finish(outbox.Finish{Item: it, State: work.Pending, NextAt: retryAt, Note: "retrying", LastError: "HTTP 503", At: t1.Add(time.Second)}))
	want := base
	want.Attempts, want.NextAt, want.Note, want.LastError, want.UpdatedAt = 1, retryAt, "retrying", "HTTP 503", t1.Add(time.Second)
	want.LeaseOwner = e.item("w-f").LeaseOwner // whether the owner stays is not specified
	e.equal("item after Finish(PENDING, retry at)", want, e.item("w-f"))
	if got := e.claim("o1", procs, retryAt.Add(-ms), retryAt.Add(time.Minute), 10); len(got) != 0 {
		e.t.Errorf("Claim before the retry time returned %v", itemIDs(got))
	}
	it = e.claimOne("o2", procs, retryAt, retryAt.Add(time.Minute))
	if it.Attempts != 2 {
		e.t.Errorf("second claim: attempts %d, want 2", it.Attempts)
	}

	// Waiting for an email, attempts reset.
	e.wantBool("Finish(waiting)", true, e.finish(outbox.Finish{Item: it, State: work.Waiting, Note: "NEEDS_EMAIL", LastError: "", ResetAttempts: true, At: retryAt.Add(time.Second)}))
	got := e.item("w-f")
	if got.State != work.Waiting || got.Attempts != 0 || got.Note != "NEEDS_EMAIL" || got.LastError != "" || !got.LeaseUntil.IsZero() || !got.UpdatedAt.Equal(retryAt.Add(time.Second)) {
		e.t.Errorf("item after Finish(WAITING, reset): state %s attempts %d note %q lastError %q lease %s updated %s; want WAITING 0 NEEDS_EMAIL \"\" zero %s",
			got.State, got.Attempts, got.Note, got.LastError, fmtTime(got.LeaseUntil), fmtTime(got.UpdatedAt), fmtTime(retryAt.Add(time.Second)))
	}
	if more := e.claim("o3", procs, at(24*time.Hour), at(25*time.Hour), 10); len(more) != 0 {
		e.t.Errorf("Claim returned a WAITING item: %v", itemIDs(more))
	}

	// Woken, claimed, and dead.
	wake := at(2 * time.Hour)
	e.must(e.b.Outbox().WakeWaiting(e.ctx, "u-f", wake), "WakeWaiting")
	it = e.claimOne("o3", procs, wake, wake.Add(time.Minute))
	if it.Attempts != 1 {
		e.t.Errorf("claim after reset and wake: attempts %d, want 1", it.Attempts)
	}
	e.wantBool("Finish(dead)", true, e.finish(outbox.Finish{Item: it, State: work.Dead, Note: "", LastError: "permanent: 410 Gone", At: wake.Add(time.Second)}))
	got = e.item("w-f")
	if got.State != work.Dead || got.Attempts != 1 || got.LastError != "permanent: 410 Gone" || got.Note != "" || !got.LeaseUntil.IsZero() {
		e.t.Errorf("item after Finish(DEAD): state %s attempts %d lastError %q note %q lease %s", got.State, got.Attempts, got.LastError, got.Note, fmtTime(got.LeaseUntil))
	}
	for _, f := range []work.State{work.Done, work.Skipped} {
		id := "w-f-" + string(f)
		e.enqueue(newItem(id, "u-f-"+string(f), "webhook", at(0)))
		it := e.claimOne("o4", procs, t1, t1.Add(time.Minute))
		e.wantBool("Finish("+string(f)+")", true, e.finish(outbox.Finish{Item: it, State: f, Note: "n", At: t1}))
		if got := e.item(id); got.State != f || got.Note != "n" || !got.LeaseUntil.IsZero() || !got.UpdatedAt.Equal(t1) {
			e.t.Errorf("item after Finish(%s): state %s note %q lease %s updated %s", f, got.State, got.Note, fmtTime(got.LeaseUntil), fmtTime(got.UpdatedAt))
		}
	}
}

func testFinishDisclosureOnce(e *env) {
	e.createAccount("u-d")
	it := newItem("w-d", "u-d", "webhook", at(0))
	e.enqueue(it)
	t1 := at(time.Minute)
	c := e.claimOne("o1", []string{"webhook"}, t1, t1.Add(time.Minute))
	d := disclosureFor(it, t1)
	// The attempt disclosed but failed afterwards: retried.
	e.wantBool("Finish(retry, with disclosure)", true, e.finish(outbox.Finish{Item: c, State: work.Pending, NextAt: t1, Disclosure: d, At: t1}))
	c = e.claimOne("o2", []string{"webhook"}, t1.Add(time.Second), t1.Add(time.Minute))
	e.wantBool("Finish(done, same disclosure)", true, e.finish(outbox.Finish{Item: c, State: work.Done, Disclosure: d, At: t1.Add(2 * time.Second)}))
	e.equal("Disclosures after two finishes disclosing one item", []outbox.Disclosure{*d}, e.disclosures("u-d", "", 0))

	// A Finish without disclosure writes none; a refused Finish writes none.
	it2 := newItem("w-d2", "u-d", "mailchimp", at(0))
	e.enqueue(it2)
	c2 := e.claimOne("o1", []string{"mailchimp"}, t1, t1.Add(time.Minute))
	e.wantBool("Finish(skipped, no disclosure)", true, e.finish(outbox.Finish{Item: c2, State: work.Skipped, At: t1}))
	it3 := newItem("w-d3", "u-d", "survey", at(0))
	e.enqueue(it3)
	c3 := e.claimOne("o1", []string{"survey"}, t1, t1.Add(time.Minute))
	lost := c3
	lost.LeaseOwner = "someone-else"
	e.wantBool("Finish by a non-owner", false, e.finish(outbox.Finish{Item: lost, State: work.Done, Disclosure: disclosureFor(it3, t1), At: t1}))
	// (A store without transactions may write the refused attempt's
	// disclosure "just before the item": what is written is what the holder
	// writes, so it is allowed, but nothing else may appear.)
	ds := e.disclosures("u-d", "", 0)
	for _, x := range ds {
		if x.ID != "w-d" && x.ID != "w-d3" {
			e.t.Errorf("unexpected disclosure %s", x.ID)
		}
	}
	e.wantBool("Finish(done) by the holder", true, e.finish(outbox.Finish{Item: c3, State: work.Done, Disclosure: disclosureFor(it3, t1), At: t1}))
	e.equal("Disclosures (newest first)", []outbox.Disclosure{*disclosureFor(it3, t1), *d}, e.disclosures("u-d", "", 0))
}

func testFinishProcState(e *env) {
	o := e.b.Outbox()
	e.createAccount("u-p")
	ok, err := o.MarkAttempted(e.ctx, "u-p", "webhook")
	e.must(err, "MarkAttempted")
	e.wantBool("MarkAttempted", true, ok)
	t1 := at(time.Minute)
	run := func(id string, action work.Action, p *outbox.ProcUpdate) {
		e.t.Helper()
		it := newItem(id, "u-p", "webhook", at(0))
		it.Action = action
		e.enqueue(it)
		c := e.claimOne("o", []string{"webhook"}, t1, t1.Add(time.Minute))
		e.wantBool("Finish("+id+")", true, e.finish(outbox.Finish{Item: c, State: work.Done, Proc: p, At: t1}))
	}
	recipient := func() *outbox.Recipient {
		e.t.Helper()
		r, err := o.Recipient(e.ctx, "u-p")
		e.must(err, "Recipient")
		if r == nil {
			e.t.Fatalf("Recipient(u-p) = nil")
		}
		return r
	}

	run("w-p1", work.Deliver, &outbox.ProcUpdate{Delivered: true, Ref: "contact-42"})
	e.equal("Procs after a delivery", map[string]outbox.ProcState{"webhook": {Attempted: true, Delivered: true, Ref: "contact-42"}}, recipient().Procs)

	run("w-p2", work.Deliver, nil) // no Proc: unchanged
	e.equal("Procs after a Finish without Proc", map[string]outbox.ProcState{"webhook": {Attempted: true, Delivered: true, Ref: "contact-42"}}, recipient().Procs)

	run("w-p3", work.Forget, &outbox.ProcUpdate{Delivered: false})
	ps := recipient().Procs["webhook"]
	if !ps.Attempted || ps.Delivered {
		e.t.Errorf("Procs[webhook] after a forget = %+v, want attempted, not delivered", ps)
	}

	// Once the account is being erased, Finish still finishes the item but
	// leaves the processor state alone.
	before := recipient().Procs
	ok, err = e.b.Accounts().MarkErasing(e.ctx, "u-p", t1)
	e.must(err, "MarkErasing")
	e.wantBool("MarkErasing", true, ok)
	run("w-p4", work.Deliver, &outbox.ProcUpdate{Delivered: true, Ref: "contact-late"})
	if got := e.item("w-p4"); got.State != work.Done {
		e.t.Errorf("item of an account being erased: state %s, want DONE", got.State)
	}
	e.equal("Procs of an account being erased after Finish", before, recipient().Procs)

	// An item of a user without account finishes too (its processor state has nowhere to go).
	it := newItem("w-p5", "u-gone", "webhook", at(0))
	e.enqueue(it)
	c := e.claimOne("o", []string{"webhook"}, t1, t1.Add(time.Minute))
	e.wantBool("Finish of an absent account's item", true, e.finish(outbox.Finish{Item: c, State: work.Done, Proc: &outbox.ProcUpdate{Delivered: true, Ref: "r"}, Disclosure: disclosureFor(it, t1), At: t1}))
	if r, err := o.Recipient(e.ctx, "u-gone"); err != nil || r != nil {
		e.t.Errorf("Finish created a recipient for an absent account: %+v, %v", r, err)
	}
	e.equal("disclosure of an absent account's item", []outbox.Disclosure{*disclosureFor(it, t1)}, e.disclosures("u-gone", "", 0))
}

func testWakeWaiting(e *env) {
	mk := func(id, user string, st work.State) work.Item {
		it := newItem(id, user, "webhook-"+id, at(0))
		it.State, it.Note = st, "NEEDS_EMAIL"
		return it
	}
	w1, w2 := mk("w-1", "u-w", work.Waiting), mk("w-2", "u-w", work.Waiting)
	w2.Attempts = 3
	p, d := mk("w-3", "u-w", work.Pending), mk("w-4", "u-w", work.Dead)
	other := mk("w-5", "u-other", work.Waiting)
	for _, it := range []work.Item{w1, w2, p, d, other} {
		e.enqueue(it)
	}
	now := at(time.Hour)
	e.must(e.b.Outbox().WakeWaiting(e.ctx, "u-w", now), "WakeWaiting")
	for _, w := range []work.Item{w1, w2} {
		got := e.item(w.ID)
		if got.State != work.Pending || !got.NextAt.Equal(now) || got.Note != "" {
			e.t.Errorf("woken item %s: state %s, next at %s, note %q; want PENDING, %s, \"\"", w.ID, got.State, fmtTime(got.NextAt), got.Note, fmtTime(now))
		}
	}
	e.equal("a PENDING item of the user", p, e.item("w-3"))
	e.equal("a DEAD item of the user", d, e.item("w-4"))
	e.equal("another user's WAITING item", other, e.item("w-5"))
	e.equal("Claim of woken items", []string{"w-1", "w-2", "w-3"}, sorted(itemIDs(e.claim("o", []string{"webhook-w-1", "webhook-w-2", "webhook-w-3", "webhook-w-4", "webhook-w-5"}, now, now.Add(time.Minute), 10))))
	e.must(e.b.Outbox().WakeWaiting(e.ctx, "u-nobody", now), "WakeWaiting of a user without items")
}

func testRetry(e *env) {
	o := e.b.Outbox()
	now := at(time.Hour)
	for _, st := range work.States {
		it := newItem("w-"+string(st), "u-"+string(st), "webhook", at(0))
		it.State, it.Attempts, it.LastError = st, 5, "boom"
		e.enqueue(it)
		ok, err := o.Retry(e.ctx, it.ID, now)
		e.must(err, "Retry(%s)", st)
		retryable := st == work.Dead || st == work.Waiting
		e.wantBool("Retry of a "+string(st)+" item", retryable, ok)
		got := e.item(it.ID)
		if !retryable {
			e.equal("a "+string(st)+" item after a refused Retry", it, got)
			continue
		}
		if got.State != work.Pending || got.Attempts != 0 || !got.NextAt.Equal(now) || !got.LeaseUntil.IsZero() {
			e.t.Errorf("item after Retry from %s: state %s, attempts %d, next at %s, lease %s; want PENDING, 0, %s, zero",
				st, got.State, got.Attempts, fmtTime(got.NextAt), fmtTime(got.LeaseUntil), fmtTime(now))
		}
	}
	ok, err := o.Retry(e.ctx, "w-absent", now)
	e.must(err, "Retry(absent)")
	e.wantBool("Retry of an absent item", false, ok)
	// The retried items are claimable at now with a fresh attempt count.
	got := e.claim("o", []string{"webhook"}, now, now.Add(time.Minute), 10)
	e.equal("Claim after Retry (the retried and the pending item)", []string{"w-DEAD", "w-PENDING", "w-WAITING"}, sorted(itemIDs(got)))
	for _, it := range got {
		if it.ID != "w-PENDING" && it.Attempts != 1 {
			e.t.Errorf("claim of retried item %s: attempts %d, want 1", it.ID, it.Attempts)
		}
	}
}

func testItemsPaging(e *env) {
	o := e.b.Outbox()
	states := []work.State{work.Pending, work.Done, work.Pending, work.Dead, work.Waiting, work.Pending, work.Skipped, work.Done, work.Pending}
	var all []work.Item
	// Enqueued out of id order: the listing is by id.
	for _, i := range []int{5, 1, 8, 3, 0, 7, 2, 6, 4} {
		it := newItem(fmt.Sprintf("w-%d", i), fmt.Sprintf("u-%d", i), "webhook", at(time.Duration(i)*time.Second))
		it.State = states[i]
		e.enqueue(it)
	}
	for i := range states {
		all = append(all, e.item(fmt.Sprintf("w-%d", i)))
	}
	byState := func(st work.State) []work.Item {
		var out []work.Item
		for _, it := range all {
			if st == "" || it.State == st {
				out = append(out, it)
			}
		}
		return out
	}
	for _, tc := range []struct {
		state work.State
		after string
		limit int
		want  []work.Item
	}{
		{"", "", 4, all[:4]},
		{"", "w-3", 4, all[4:8]},
		{"", "w-7", 4, all[8:]},
		{"", "w-8", 4, nil},
		{"", "", 100, all},
		{work.Pending, "", 2, []work.Item{all[0], all[2]}},
		{work.Pending, "w-2", 10, []work.Item{all[5], all[8]}},
		{work.Done, "w-1", 10, []work.Item{all[7]}},
		{work.Dead, "", 10, []work.Item{all[3]}},
		{work.Waiting, "w-4", 10, nil},
	} {
		got, err := o.Items(e.ctx, tc.state, tc.after, tc.limit)
		e.must(err, "Items(%q, %q, %d)", tc.state, tc.after, tc.limit)
		e.equal(fmt.Sprintf("Items(%q, after %q, limit %d)", tc.state, tc.after, tc.limit), tc.want, got)
	}
	e.equal("paging through all Pending items", byState(work.Pending), e.allItems(work.Pending))

	counts, err := o.CountByState(e.ctx)
	e.must(err, "CountByState")
	want := map[work.State]int64{work.Pending: 4, work.Done: 2, work.Dead: 1, work.Waiting: 1, work.Skipped: 1}
	for _, st := range work.States {
		if counts[st] != want[st] {
			e.t.Errorf("CountByState()[%s] = %d, want %d (all counts: %v)", st, counts[st], want[st], counts)
		}
	}
	for st, n := range counts {
		if !slices.Contains(work.States, st) && n != 0 {
			e.t.Errorf("CountByState() has unknown state %q: %d", st, n)
		}
	}
}

func testDisclosuresPaging(e *env) {
	t1 := at(time.Minute)
	var want []outbox.Disclosure // newest (highest id) first
	// One user, five processors: all five are claimed at once.
	var procs []string
	for i := range 5 {
		p := fmt.Sprintf("proc-%d", i)
		procs = append(procs, p)
		e.enqueue(newItem(fmt.Sprintf("d-%d", i+1), "u-d", p, at(time.Duration(i)*ms)))
	}
	e.enqueue(newItem("d-0", "u-other", "proc-0", at(0)))
	claimed := e.claim("o", procs, t1, t1.Add(time.Minute), 10)
	if len(claimed) != 6 {
		e.t.Fatalf("Claim returned %d items, want 6", len(claimed))
	}
	for _, c := range claimed {
		d := disclosureFor(c, t1.Add(time.Duration(len(c.ID))*time.Second))
		d.Fields = []string{"user.contact.email"}
		e.wantBool("Finish("+c.ID+")", true, e.finish(outbox.Finish{Item: c, State: work.Done, Disclosure: d, At: t1}))
		if c.UserID == "u-d" {
			want = append(want, *d)
		}
	}
	slices.SortFunc(want, func(a, b outbox.Disclosure) int {
		if a.ID > b.ID {
			return -1
		}
		return 1
	})
	for _, tc := range []struct {
		before string
		limit  int
		want   []outbox.Disclosure
	}{
		{"", 0, want},
		{"", -1, want},
		{"", 2, want[:2]},
		{"d-4", 2, want[2:4]},
		{"d-2", 0, want[4:]},
		{"d-1", 0, nil},
		{"d-9", 1, want[:1]},
	} {
		e.equal(fmt.Sprintf("Disclosures(u-d, before %q, limit %d)", tc.before, tc.limit), tc.want, e.disclosures("u-d", tc.before, tc.limit))
	}
	if ds := e.disclosures("u-none", "", 0); len(ds) != 0 {
		e.t.Errorf("Disclosures of a user without any = %v", ds)
	}
}

// testCountDisclosures: the count matches the listing, per user.
func testCountDisclosures(e *env) {
	o := e.b.Outbox()
	count := func(user string) int64 {
		n, err := o.CountDisclosures(e.ctx, user)
		e.must(err, "CountDisclosures(%s)", user)
		return n
	}
	e.equal("CountDisclosures of a new store", int64(0), count("u-c"))
	t1 := at(time.Minute)
	for i := range 3 {
		e.enqueue(newItem(fmt.Sprintf("c-%d", i), "u-c", fmt.Sprintf("proc-%d", i), at(0)))
	}
	e.enqueue(newItem("c-x", "u-other", "proc-0", at(0)))
	claimed := e.claim("o", []string{"proc-0", "proc-1", "proc-2"}, t1, t1.Add(time.Minute), 10)
	for _, c := range claimed {
		e.wantBool("Finish("+c.ID+")", true, e.finish(outbox.Finish{Item: c, State: work.Done, Disclosure: disclosureFor(c, t1), At: t1}))
	}
	e.equal("CountDisclosures(u-c)", int64(len(e.disclosures("u-c", "", 0))), count("u-c"))
	e.equal("CountDisclosures(u-c) after three deliveries", int64(3), count("u-c"))
	e.equal("CountDisclosures(u-other)", int64(1), count("u-other"))
	e.equal("CountDisclosures(u-none)", int64(0), count("u-none"))
}

func testRecipient(e *env) {
	o := e.b.Outbox()
	r, err := o.Recipient(e.ctx, "u-absent")
	e.must(err, "Recipient(absent)")
	if r != nil {
		e.t.Errorf("Recipient of an absent account = %+v, want nil", r)
	}
	ok, err := o.MarkAttempted(e.ctx, "u-absent", "webhook")
	e.must(err, "MarkAttempted(absent)")
	e.wantBool("MarkAttempted for an absent account", false, ok)

	e.createAccount("u-r")
	r, err = o.Recipient(e.ctx, "u-r")
	e.must(err, "Recipient")
	if r == nil {
		e.t.Fatalf("Recipient of a new account = nil")
	}
	if r.Erasing || len(r.Procs) != 0 || r.Consent.Head != 0 || len(r.Consent.State) != 0 {
		e.t.Errorf("Recipient of a new account = %+v, want zero consent, not erasing, no procs", r)
	}

	c := newChain("u-r")
	e.record(c, "u-r", "newsletter", true, at(time.Second))
	e.record(c, "u-r", "surveys", false, at(2*time.Second))
	for _, p := range []string{"webhook", "mailchimp", "webhook"} {
		ok, err = o.MarkAttempted(e.ctx, "u-r", p)
		e.must(err, "MarkAttempted(%s)", p)
		e.wantBool("MarkAttempted("+p+")", true, ok)
	}
	r, err = o.Recipient(e.ctx, "u-r")
	e.must(err, "Recipient")
	want := c.stored()
	e.equal("Recipient consent", consent.Stored{Head: want.Head, HeadHash: want.HeadHash, State: want.State}, consent.Stored{Head: r.Consent.Head, HeadHash: r.Consent.HeadHash, State: r.Consent.State})
	e.equal("Recipient procs", map[string]outbox.ProcState{"webhook": {Attempted: true}, "mailchimp": {Attempted: true}}, r.Procs)
	e.wantBool("Recipient.Erasing", false, r.Erasing)

	ok, err = e.b.Accounts().MarkErasing(e.ctx, "u-r", at(time.Hour))
	e.must(err, "MarkErasing")
	e.wantBool("MarkErasing", true, ok)
	ok, err = o.MarkAttempted(e.ctx, "u-r", "survey")
	e.must(err, "MarkAttempted(erasing)")
	e.wantBool("MarkAttempted for an account being erased", false, ok)
	r, err = o.Recipient(e.ctx, "u-r")
	e.must(err, "Recipient(erasing)")
	if r == nil {
		e.t.Fatalf("Recipient of an account being erased = nil, want it with Erasing set")
	}
	e.wantBool("Recipient.Erasing of an account being erased", true, r.Erasing)
	e.equal("Recipient procs of an account being erased", map[string]outbox.ProcState{"webhook": {Attempted: true}, "mailchimp": {Attempted: true}}, r.Procs)
	e.equal("Recipient consent of an account being erased", want.State, r.Consent.State)
}

func testProcessorFlags(e *env) {
	o := e.b.Outbox()
	flags, err := o.ProcessorFlags(e.ctx)
	e.must(err, "ProcessorFlags")
	if len(flags) != 0 {
		e.t.Errorf("ProcessorFlags of a new store = %v, want none", flags)
	}
	e.must(o.SetProcessorFlag(e.ctx, "webhook", true), "SetProcessorFlag")
	e.must(o.SetProcessorFlag(e.ctx, "mailchimp", false), "SetProcessorFlag")
	e.must(o.SetProcessorFlag(e.ctx, "survey", true), "SetProcessorFlag")
	e.must(o.SetProcessorFlag(e.ctx, "survey", false), "SetProcessorFlag again")
	e.must(o.SetProcessorFlag(e.ctx, "mailchimp", true), "SetProcessorFlag again")
	flags, err = o.ProcessorFlags(e.ctx)
	e.must(err, "ProcessorFlags")
	e.equal("ProcessorFlags", map[string]bool{"webhook": true, "mailchimp": true, "survey": false}, flags)
}

// testClaimFinishPairsConcurrent runs 4 owners that claim and finish the
// items of a few users concurrently, each user with several items for one
// processor: an item of a user and processor is never handed out while
// another of that pair is held, each pair's items run in due order, and
// every item is finished exactly once.
func testClaimFinishPairsConcurrent(e *env) {
	const users, perUser, owners = 8, 4, 4
	var all []string
	for u := range users {
		for k := range perUser {
			// Due times interleave across users; within a user they rise with k.
			it := newItem(fmt.Sprintf("w-%d-%d", u, k), fmt.Sprintf("u-%d", u), "webhook", at(time.Duration(k*users+u)*ms))
			e.enqueue(it)
			all = append(all, it.ID)
		}
	}
	now, until := at(time.Minute), at(time.Hour) // no lease expires during the test
	var mu sync.Mutex
	held := map[string]string{}  // user -> item held
	order := map[string][]int{}  // user -> k of the items in the order they were claimed
	finished := map[string]int{} // item -> successful Finish calls
	errs := e.parallel(owners, func(o int) error {
		owner := fmt.Sprintf("owner-%d", o)
		idle := 0
		for idle < 3 {
			got, err := e.b.Outbox().Claim(e.ctx, owner, []string{"webhook"}, now, until, 2)
			if err != nil {
				return err
			}
			if len(got) == 0 {
				idle++
				e.backoff(idle)
				continue
			}
			idle = 0
			mu.Lock()
			for _, it := range got {
				if other, ok := held[it.UserID]; ok {
					e.t.Errorf("%s was handed %s while %s of the same user and processor was held", owner, it.ID, other)
				}
				held[it.UserID] = it.ID
				var u, k int
				fmt.Sscanf(it.ID, "w-%d-%d", &u, &k)
				order[it.UserID] = append(order[it.UserID], k)
			}
			mu.Unlock()
			for _, it := range got {
				mu.Lock()
				delete(held, it.UserID) // before Finish: the store frees the pair with it
				mu.Unlock()
				ok, err := e.b.Outbox().Finish(e.ctx, outbox.Finish{Item: it, State: work.Done, At: now})
				if err != nil {
					return err
				}
				if ok {
					mu.Lock()
					finished[it.ID]++
					mu.Unlock()
				} else {
					e.t.Errorf("%s could not finish %s, which it held", owner, it.ID)
				}
			}
		}
		return nil
	})
	for o, err := range errs {
		if err != nil {
			e.t.Errorf("owner-%d: %v", o, err)
		}
	}
	// The last owner to stop saw three empty claims while holding nothing,
	// so nothing may be claimable now.
	if late := e.claim("owner-late", []string{"webhook"}, now, until, 100); len(late) != 0 {
		e.t.Errorf("items still claimable after Claim kept returning nothing: %v", itemIDs(late))
	}
	for _, id := range all {
		if finished[id] != 1 {
			e.t.Errorf("item %s was finished %d times, want once", id, finished[id])
		}
		if it := e.item(id); it.State != work.Done || it.Attempts != 1 {
			e.t.Errorf("item %s: state %s, attempts %d; want DONE after one attempt", id, it.State, it.Attempts)
		}
	}
	for u := range users {
		user := fmt.Sprintf("u-%d", u)
		e.equal("order in which "+user+"'s items were claimed (due order)", []int{0, 1, 2, 3}, order[user])
	}
}

// A throttled attempt (the provider said "wait") is given back: however
// often it happens, the attempt count the next claim sees stays the same.
func testFinishThrottled(e *env) {
	e.enqueue(newItem("w-th", "u-th", "webhook", at(0)))
	procs := []string{"webhook"}
	now := at(time.Minute)
	for i := range 15 {
		it := e.claimOne("o1", procs, now, now.Add(time.Minute))
		if it.Attempts != 1 {
			e.t.Fatalf("claim %d after %d throttles: attempts %d, want 1", i+1, i, it.Attempts)
		}
		next := now.Add(time.Second)
		e.wantBool("Finish(throttled)", true, e.finish(outbox.Finish{Item: it, State: work.Pending, NextAt: next,
			LastError: "HTTP 429", Throttled: true, At: now}))
		if got := e.item("w-th"); got.Attempts != 0 || got.LastError != "HTTP 429" || !got.NextAt.Equal(next) || !got.LeaseUntil.IsZero() {
			e.t.Fatalf("after throttle %d: attempts %d lastError %q next %s lease %s; want 0, HTTP 429, %s, zero",
				i+1, got.Attempts, got.LastError, fmtTime(got.NextAt), fmtTime(got.LeaseUntil), fmtTime(next))
		}
		now = next
	}
	// A stale Finish of a throttled lease (same owner and count) changes nothing.
	it := e.claimOne("o1", procs, now, now.Add(time.Minute))
	e.wantBool("Finish(retry) counting the attempt", true, e.finish(outbox.Finish{Item: it, State: work.Pending, NextAt: now, LastError: "HTTP 500", At: now}))
	if got := e.item("w-th"); got.Attempts != 1 {
		e.t.Errorf("an ordinary failure after throttles: attempts %d, want 1", got.Attempts)
	}
	e.wantBool("a second Finish of the same lease", false, e.finish(outbox.Finish{Item: it, State: work.Pending, NextAt: now, Throttled: true, At: now}))
	if got := e.item("w-th"); got.Attempts != 1 {
		e.t.Errorf("a refused throttled Finish changed attempts to %d", got.Attempts)
	}
}

// A finished item keeps no error of an earlier failed attempt.
func testFinishDoneClearsLastError(e *env) {
	e.enqueue(newItem("w-le", "u-le", "webhook", at(0)))
	procs := []string{"webhook"}
	t1 := at(time.Minute)
	it := e.claimOne("o1", procs, t1, t1.Add(time.Minute))
	e.wantBool("Finish(retry)", true, e.finish(outbox.Finish{Item: it, State: work.Pending, NextAt: t1, LastError: "HTTP 503", At: t1}))
	it = e.claimOne("o1", procs, t1, t1.Add(time.Minute))
	e.wantBool("Finish(done)", true, e.finish(outbox.Finish{Item: it, State: work.Done, At: t1}))
	if got := e.item("w-le"); got.State != work.Done || got.LastError != "" {
		e.t.Errorf("after Finish(DONE): state %s lastError %q; want DONE and no error", got.State, got.LastError)
	}
}
