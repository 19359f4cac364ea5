package contract

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/work"
)

func consentTests() []contractTest {
	return []contractTest{
		{"consent/state-of-absent-and-new-accounts", testConsentStateBasics},
		{"consent/record-change", testRecordChange},
		{"consent/record-change-stale-head-writes-nothing", testRecordChangeStale},
		{"consent/record-change-absent-or-erasing-account", testRecordChangeAbsentOrErasing},
		{"consent/record-change-under-50-writers", testRecordChangeConcurrent},
		{"consent/items-written-with-the-change", testItemsWithChange},
		{"consent/events-paging", testEventsPaging},
		{"consent/each-state-in-user-id-order", testEachState},
		{"consent/granted-before", testGrantedBefore},
		{"consent/archive", testArchive},
		{"consent/policies", testPolicies},
		{"consent/append-policy-under-50-writers", testAppendPolicyConcurrent},
	}
}

func testConsentStateBasics(e *env) {
	s := e.b.Consent()
	if st := e.state("u-absent"); st != nil {
		e.t.Errorf("State of an absent account = %+v, want nil", st)
	}
	if evs := e.events("u-absent"); len(evs) != 0 {
		e.t.Errorf("Events of an absent account = %v, want none", evs)
	}
	ev, err := s.Event(e.ctx, "u-absent", 1)
	e.must(err, "Event(absent)")
	if ev != nil {
		e.t.Errorf("Event of an absent account = %+v, want nil", ev)
	}
	e.createAccount("u-new")
	e.checkState("u-new", consent.Stored{})
	if evs := e.events("u-new"); len(evs) != 0 {
		e.t.Errorf("Events of a new account = %v, want none", evs)
	}
	ev, err = s.Event(e.ctx, "u-new", 1)
	e.must(err, "Event(new, 1)")
	if ev != nil {
		e.t.Errorf("Event(1) of a new account = %+v, want nil", ev)
	}
}

func testRecordChange(e *env) {
	s := e.b.Consent()
	e.createAccount("u-rc")
	e.createAccount("u-rc-other")
	c := newChain("u-rc")
	e1 := e.record(c, "u-rc", "newsletter", true, at(time.Second))
	e.checkState("u-rc", c.stored())
	e.record(c, "u-rc", "surveys", true, at(2*time.Second))
	e3 := e.record(c, "u-rc", "newsletter", false, at(3*time.Second))
	want := c.stored()
	e.checkState("u-rc", want)
	if got := want.State["newsletter"]; got.Seq != 3 || got.Granted {
		e.t.Fatalf("suite bug: expected newsletter withdrawn at seq 3, got %+v", got)
	}
	e.equal("Events(u-rc)", c.events, e.events("u-rc"))
	for _, w := range []consent.Event{e1, e3} {
		got, err := s.Event(e.ctx, "u-rc", w.Seq)
		e.must(err, "Event(%d)", w.Seq)
		e.equal(fmt.Sprintf("Event(u-rc, %d)", w.Seq), &w, got)
	}
	got, err := s.Event(e.ctx, "u-rc", 4)
	e.must(err, "Event(4)")
	if got != nil {
		e.t.Errorf("Event past the head = %+v, want nil", got)
	}
	// Another user's ledger is separate and starts at 1.
	if evs := e.events("u-rc-other"); len(evs) != 0 {
		e.t.Errorf("Events of another user = %v, want none", evs)
	}
	o := newChain("u-rc-other")
	e.record(o, "u-rc-other", "newsletter", true, at(4*time.Second))
	e.checkState("u-rc-other", o.stored())
	e.checkState("u-rc", want)
}

// noChange checks that a user's consent, ledger and queue are what they were.
func (e *env) noChange(what, userID string, c *chain, queued []string) {
	e.t.Helper()
	e.checkState(userID, c.stored())
	e.equal(what+": ledger", c.events, e.events(userID))
	e.relay(userID)
	e.equal(what+": queued items", queued, itemIDs(e.allItems("")))
}

func testRecordChangeStale(e *env) {
	s := e.b.Consent()
	e.createAccount("u-stale")
	c := newChain("u-stale")
	e.record(c, "u-stale", "newsletter", true, at(time.Second), newItem("w-ok-1", "u-stale", "webhook", at(time.Second)))
	e.record(c, "u-stale", "surveys", true, at(2*time.Second), newItem("w-ok-2", "u-stale", "webhook", at(2*time.Second)))
	e.relay("u-stale")
	queued := []string{"w-ok-1", "w-ok-2"}

	// Replays of an old head, a gap and a rewrite of seq 1: all refused.
	stale := []consent.Event{
		eventAfter("u-stale", 1, c.events[0].Hash, "newsletter", false, 1, at(3*time.Second)), // seq 2 again
		eventAfter("u-stale", 3, "bogus", "newsletter", false, 1, at(3*time.Second)),          // seq 4: a gap
		eventAfter("u-stale", 0, "", "newsletter", false, 1, at(3*time.Second)),               // seq 1 again
		eventAfter("u-stale", 2, c.hash, "newsletter", false, 1, at(3*time.Second)),           // valid, seq 0 below
	}
	stale[3].Seq = 0
	for i, ev := range stale {
		ok, err := s.RecordChange(e.ctx, "u-stale", ev, []work.Item{newItem(fmt.Sprintf("w-stale-%d", i), "u-stale", "webhook", at(3*time.Second))})
		e.must(err, "RecordChange(seq %d while head is 2)", ev.Seq)
		e.wantBool(fmt.Sprintf("RecordChange(seq %d while head is 2)", ev.Seq), false, ok)
	}
	e.noChange("after stale RecordChange calls", "u-stale", c, queued)
	for i := range stale {
		if it, err := e.b.Outbox().Item(e.ctx, fmt.Sprintf("w-stale-%d", i)); err != nil || it != nil {
			e.t.Errorf("a refused RecordChange left work item w-stale-%d: %v, %v", i, it, err)
		}
	}
	// The right next event still goes in.
	e.record(c, "u-stale", "newsletter", false, at(4*time.Second))
	e.checkState("u-stale", c.stored())
}

func testRecordChangeAbsentOrErasing(e *env) {
	s := e.b.Consent()
	ev := eventAfter("u-nobody", 0, "", "newsletter", true, 1, at(time.Second))
	ok, err := s.RecordChange(e.ctx, "u-nobody", ev, []work.Item{newItem("w-nobody", "u-nobody", "webhook", at(0))})
	e.must(err, "RecordChange(absent account)")
	e.wantBool("RecordChange for an absent account", false, ok)
	if st := e.state("u-nobody"); st != nil {
		e.t.Errorf("RecordChange for an absent account created consent state %+v", st)
	}
	if evs := e.events("u-nobody"); len(evs) != 0 {
		e.t.Errorf("RecordChange for an absent account stored events %v", evs)
	}

	e.createAccount("u-erasing")
	c := newChain("u-erasing")
	e.record(c, "u-erasing", "newsletter", true, at(time.Second))
	ok, err = e.b.Accounts().MarkErasing(e.ctx, "u-erasing", at(2*time.Second))
	e.must(err, "MarkErasing")
	e.wantBool("MarkErasing", true, ok)
	ok, err = s.RecordChange(e.ctx, "u-erasing", c.next("newsletter", false, 1, at(3*time.Second)),
		[]work.Item{newItem("w-erasing", "u-erasing", "webhook", at(0))})
	e.must(err, "RecordChange(erasing account)")
	e.wantBool("RecordChange for an account being erased", false, ok)
	want := c.stored()
	want.Erasing = true
	e.checkState("u-erasing", want)
	e.equal("ledger of an account being erased", c.events, e.events("u-erasing"))
	e.relay("")
	if items := e.allItems(""); len(items) != 0 {
		e.t.Errorf("refused RecordChange calls queued items %v", itemIDs(items))
	}
}

func testRecordChangeConcurrent(e *env) {
	s := e.b.Consent()
	const user = "u-hot"
	e.createAccount(user)
	purposes := []string{"newsletter", "surveys", "aggregate_statistics", "analytics", "partners"}
	var attempts atomic.Int64
	won := make([]string, concurrency) // the item id of each writer's winning attempt
	errs := e.parallel(concurrency, func(i int) error {
		for attempt := 0; ; attempt++ {
			if e.ctx.Err() != nil {
				return e.ctx.Err()
			}
			attempts.Add(1)
			st, err := s.State(e.ctx, user)
			if err != nil {
				return err
			}
			if st == nil {
				return errors.New("State returned nil for an existing account")
			}
			ev := eventAfter(user, st.Head, st.HeadHash, purposes[i%len(purposes)], i%2 == 0, int64(1+i%3), at(time.Duration(i)*time.Second))
			itemID := fmt.Sprintf("w-hot-%02d-%03d", i, attempt)
			ok, err := s.RecordChange(e.ctx, user, ev, []work.Item{newItem(itemID, user, "webhook", at(0))})
			if err != nil {
				return err
			}
			if ok {
				won[i] = itemID
				return nil
			}
			e.backoff(attempt)
		}
	})
	for i, err := range errs {
		if err != nil {
			e.t.Errorf("writer %d: %v", i, err)
		}
	}
	e.t.Logf("%d writers appended with %d attempts in all", concurrency, attempts.Load())

	evs := e.events(user)
	if len(evs) != concurrency {
		e.t.Fatalf("ledger has %d events after %d successful appends", len(evs), concurrency)
	}
	want := consent.Stored{State: map[string]consent.Entry{}}
	prev := ""
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			e.t.Errorf("event %d has seq %d: ledger has a gap or duplicate", i, ev.Seq)
		}
		if ev.PrevHash != prev {
			e.t.Errorf("event %d: PrevHash %.12s… is not the previous event's hash %.12s…", ev.Seq, ev.PrevHash, prev)
		}
		if h := consent.HashEvent(user, &ev); h != ev.Hash {
			e.t.Errorf("event %d: stored hash does not match its content (round trip changed a field)", ev.Seq)
		}
		prev = ev.Hash
		want.State[ev.Purpose] = entryOf(ev)
		want.Head, want.HeadHash = ev.Seq, ev.Hash
	}
	e.checkState(user, want)

	// Exactly the winning attempts' items were queued: a losing attempt
	// wrote nothing.
	e.relay(user)
	var wantItems []string
	for _, id := range won {
		if id != "" {
			wantItems = append(wantItems, id)
		}
	}
	e.equal("queued items (one per winning attempt, none of the losing ones)", sorted(wantItems), itemIDs(e.allItems("")))
}

func testItemsWithChange(e *env) {
	o := e.b.Outbox()
	e.createAccount("u-items")
	c := newChain("u-items")
	items := []work.Item{
		newItem("w-items-1", "u-items", "webhook", at(time.Second)),
		newItem("w-items-2", "u-items", "mailchimp", at(time.Second)),
	}
	items[1].Ref, items[1].Erase, items[1].Action = "md5ref", false, work.Forget
	e.record(c, "u-items", "newsletter", true, at(time.Second), items...)

	e.relay("u-items")
	for _, w := range items {
		e.equal("Item("+w.ID+") after RecordChange and Relay", w, e.item(w.ID))
	}
	e.equal("Items after Relay", []string{"w-items-1", "w-items-2"}, itemIDs(e.allItems(work.Pending)))
	claimed, err := o.Claim(e.ctx, "owner-1", []string{"webhook", "mailchimp"}, at(time.Minute), at(2*time.Minute), 10)
	e.must(err, "Claim")
	e.equal("Claim after RecordChange and Relay", []string{"w-items-1", "w-items-2"}, sorted(itemIDs(claimed)))

	// Relaying again neither duplicates items nor resets the ones claimed.
	e.relay("u-items")
	e.relay("")
	got := e.allItems("")
	e.equal("Items after relaying again", []string{"w-items-1", "w-items-2"}, itemIDs(got))
	for _, it := range got {
		if it.Attempts != 1 || it.LeaseOwner != "owner-1" {
			e.t.Errorf("relaying again reset claimed item %s: attempts %d, owner %q", it.ID, it.Attempts, it.LeaseOwner)
		}
	}

	// A change without items queues nothing.
	e.record(c, "u-items", "surveys", true, at(2*time.Second))
	e.relay("u-items")
	if n := len(e.allItems("")); n != 2 {
		e.t.Errorf("a change without items queued something: %d items", n)
	}
}

func testEventsPaging(e *env) {
	s := e.b.Consent()
	e.createAccount("u-page")
	c := newChain("u-page")
	for i := range 7 {
		e.record(c, "u-page", []string{"a", "b", "c"}[i%3], i%2 == 0, at(time.Duration(i)*time.Second))
	}
	for _, tc := range []struct {
		after int64
		limit int
		want  []consent.Event
	}{
		{0, 0, c.events},
		{0, -1, c.events},
		{0, 3, c.events[:3]},
		{3, 3, c.events[3:6]},
		{6, 3, c.events[6:]},
		{7, 3, nil},
		{2, 0, c.events[2:]},
		{100, 0, nil},
	} {
		got, err := s.Events(e.ctx, "u-page", tc.after, tc.limit)
		e.must(err, "Events(after %d, limit %d)", tc.after, tc.limit)
		e.equal(fmt.Sprintf("Events(after %d, limit %d)", tc.after, tc.limit), tc.want, got)
	}
}

func testEachState(e *env) {
	s := e.b.Consent()
	ids := []string{"u-k", "u-B", "u-b", "u-a2", "u-a10", "u-z"}
	order := slices.Clone(ids)
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	want := map[string]consent.Stored{}
	for i, id := range order {
		e.createAccount(id)
		c := newChain(id)
		for j := range i % 3 { // some never chose anything
			e.record(c, id, []string{"a", "b"}[j], j == 0, at(time.Duration(j)*time.Second))
		}
		want[id] = c.stored()
	}
	var seen []string
	e.must(s.EachState(e.ctx, func(id string, st *consent.Stored) error {
		seen = append(seen, id)
		if st == nil {
			e.t.Errorf("EachState gave %s a nil state", id)
			return nil
		}
		e.equal("EachState state of "+id, want[id], *st)
		return nil
	}), "EachState")
	e.equal("EachState order (user id, byte order; accounts that never chose included)", sorted(ids), seen)

	stop := errors.New("stop")
	n := 0
	if err := s.EachState(e.ctx, func(string, *consent.Stored) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		e.t.Errorf("EachState with fn failing: %v after %d calls; want fn's error after 1 call", err, n)
	}
}

func testGrantedBefore(e *env) {
	s := e.b.Consent()
	rec := func(id string, steps ...consent.Event) {
		e.createAccount(id)
		for _, ev := range steps {
			ok, err := s.RecordChange(e.ctx, id, ev, nil)
			e.must(err, "RecordChange")
			e.wantBool("RecordChange "+id, true, ok)
		}
	}
	c1 := newChain("u-g1")
	rec("u-g1", c1.add("news", true, 1, at(0)))
	c2 := newChain("u-g2")
	rec("u-g2", c2.add("news", true, 2, at(0)))
	c3 := newChain("u-g3") // granted under 1, then withdrew: current state is no grant
	rec("u-g3", c3.add("news", true, 1, at(0)), c3.add("news", false, 1, at(time.Second)))
	c4 := newChain("u-g4") // granted another purpose
	rec("u-g4", c4.add("other", true, 1, at(0)))
	c5 := newChain("u-g5") // withdrew, then granted again under 3
	rec("u-g5", c5.add("news", false, 1, at(0)), c5.add("news", true, 3, at(time.Second)))
	e.createAccount("u-g6") // never chose

	for _, tc := range []struct {
		purpose string
		n       int64
		want    []string
	}{
		{"news", 1, nil},
		{"news", 2, []string{"u-g1"}},
		{"news", 3, []string{"u-g1", "u-g2"}},
		{"news", 4, []string{"u-g1", "u-g2", "u-g5"}},
		{"other", 2, []string{"u-g4"}},
		{"unknown", 9, nil},
	} {
		got, err := s.GrantedBefore(e.ctx, tc.purpose, tc.n)
		e.must(err, "GrantedBefore(%s, %d)", tc.purpose, tc.n)
		e.equal(fmt.Sprintf("GrantedBefore(%s, %d)", tc.purpose, tc.n), tc.want, sorted(got))
	}
}

func testArchive(e *env) {
	s := e.b.Consent()
	got, err := s.Archived(e.ctx, "subj-1")
	e.must(err, "Archived(absent)")
	if got != nil {
		e.t.Errorf("Archived of an absent subject = %+v, want nil", got)
	}
	c := newChain("subj-1")
	for i := range 5 {
		c.add([]string{"newsletter", "surveys"}[i%2], i%3 != 0, int64(1+i/2), at(time.Duration(i)*time.Minute))
	}
	a := consent.Archived{Subject: "subj-1", State: c.stored(), Events: c.events, ArchivedAt: at(time.Hour)}
	e.must(s.Archive(e.ctx, a), "Archive")
	other := consent.Archived{Subject: "subj-2", State: consent.Stored{}, ArchivedAt: at(2 * time.Hour)}
	e.must(s.Archive(e.ctx, other), "Archive(subj-2)")
	got, err = s.Archived(e.ctx, "subj-1")
	e.must(err, "Archived")
	e.equal("Archived(subj-1) (the full ledger)", &a, got)

	// Archiving a subject again replaces the earlier archive.
	c.add("newsletter", true, 4, at(3*time.Hour))
	a2 := consent.Archived{Subject: "subj-1", State: c.stored(), Events: c.events, ArchivedAt: at(4 * time.Hour)}
	e.must(s.Archive(e.ctx, a2), "Archive again")
	got, err = s.Archived(e.ctx, "subj-1")
	e.must(err, "Archived after replacing")
	e.equal("Archived(subj-1) after archiving again", &a2, got)
	got, err = s.Archived(e.ctx, "subj-2")
	e.must(err, "Archived(subj-2)")
	e.equal("Archived(subj-2)", &other, got)
}

func policy(n int64, version string, reconsent ...string) consent.PolicyVersion {
	return consent.PolicyVersion{N: n, Version: version, URL: "https://example.org/privacy/" + version,
		PublishedAt: at(time.Duration(n) * time.Hour), Reconsent: reconsent}
}

func (e *env) policies() []consent.PolicyVersion {
	e.t.Helper()
	vs, err := e.b.Consent().PolicyVersions(e.ctx)
	e.must(err, "PolicyVersions")
	return vs
}

func testPolicies(e *env) {
	s := e.b.Consent()
	if vs := e.policies(); len(vs) != 0 {
		e.t.Errorf("PolicyVersions of a new store = %v, want none", vs)
	}
	ok, err := s.AppendPolicy(e.ctx, policy(2, "v2"))
	e.must(err, "AppendPolicy(2) with no versions")
	e.wantBool("AppendPolicy(2) with no versions stored", false, ok)

	p1 := policy(1, "v1")
	e.must(s.AddFirstPolicy(e.ctx, p1), "AddFirstPolicy")
	e.must(s.AddFirstPolicy(e.ctx, policy(1, "v1-other")), "AddFirstPolicy again")
	e.equal("PolicyVersions after AddFirstPolicy twice", []consent.PolicyVersion{p1}, e.policies())

	p2 := policy(2, "v2", "newsletter", "surveys")
	ok, err = s.AppendPolicy(e.ctx, p2)
	e.must(err, "AppendPolicy(2)")
	e.wantBool("AppendPolicy(2)", true, ok)
	for _, bad := range []consent.PolicyVersion{policy(2, "v2-again"), policy(4, "v4"), policy(1, "v1-again")} {
		ok, err = s.AppendPolicy(e.ctx, bad)
		e.must(err, "AppendPolicy(%d)", bad.N)
		e.wantBool(fmt.Sprintf("AppendPolicy(%d) with 2 versions stored", bad.N), false, ok)
	}
	p3 := policy(3, "v3")
	ok, err = s.AppendPolicy(e.ctx, p3)
	e.must(err, "AppendPolicy(3)")
	e.wantBool("AppendPolicy(3)", true, ok)
	e.must(s.AddFirstPolicy(e.ctx, policy(1, "late")), "AddFirstPolicy after more versions")
	e.equal("PolicyVersions (oldest first)", []consent.PolicyVersion{p1, p2, p3}, e.policies())
}

func testAppendPolicyConcurrent(e *env) {
	s := e.b.Consent()
	e.must(s.AddFirstPolicy(e.ctx, policy(1, "v1")), "AddFirstPolicy")
	won := make([]bool, concurrency)
	errs := e.parallel(concurrency, func(i int) error {
		ok, err := s.AppendPolicy(e.ctx, policy(2, fmt.Sprintf("v2-%02d", i)))
		won[i] = ok
		return err
	})
	winner := -1
	for i := range concurrency {
		if errs[i] != nil {
			e.t.Errorf("AppendPolicy #%d: %v", i, errs[i])
		}
		if won[i] {
			if winner >= 0 {
				e.t.Errorf("AppendPolicy(2) #%d and #%d both succeeded", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		e.t.Fatalf("none of %d concurrent AppendPolicy(2) calls succeeded", concurrency)
	}
	e.equal("PolicyVersions after the race", []consent.PolicyVersion{policy(1, "v1"), policy(2, fmt.Sprintf("v2-%02d", winner))}, e.policies())
}
