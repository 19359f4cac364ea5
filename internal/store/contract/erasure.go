package contract

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
	"github.com/consentgraph/consentgraph/internal/work"
)

func erasureTests() []contractTest {
	return []contractTest{
		{"erasure/delete-account-keeps-queued-work-and-disclosures", testErasure},
		{"erasure/delete-absent-account", testDeleteAbsent},
		{"erasure/erase-during-consent-changes", testEraseDuringChanges},
	}
}

func pluginStateTests() []contractTest {
	return []contractTest{
		{"pluginstate/get-put-delete-per-processor", testPluginState},
	}
}

func backendTests() []contractTest {
	return []contractTest{
		{"backend/kind-and-ping", testKindPing},
	}
}

func storectxTests() []contractTest {
	return []contractTest{
		{"storectx/reads-under-a-read-memo", testReadMemo},
	}
}

func testErasure(e *env) {
	a, o, c := e.b.Accounts(), e.b.Outbox(), e.b.Consent()
	const user = "u-gone"
	rec := e.createAccount(user)
	keep := e.createAccount("u-keep")
	e.must(a.InsertDataKey(e.ctx, dataKey(user)), "InsertDataKey")
	e.must(a.InsertDataKey(e.ctx, dataKey("u-keep")), "InsertDataKey")
	e.must(a.InsertSession(e.ctx, session("s-gone-1", user, at(time.Hour))), "InsertSession")
	e.must(a.InsertSession(e.ctx, session("s-gone-2", user, at(-time.Hour))), "InsertSession")
	e.must(a.InsertSession(e.ctx, session("s-keep", "u-keep", at(time.Hour))), "InsertSession")

	// Consent with a delivery queued, delivered and disclosed.
	ch := newChain(user)
	deliver := newItem("w-deliver", user, "webhook", at(time.Second))
	e.record(ch, user, "newsletter", true, at(time.Second), deliver)
	e.relay(user)
	claimed := e.claimOne("o", []string{"webhook"}, at(time.Minute), at(2*time.Minute))
	ok, err := o.MarkAttempted(e.ctx, user, "webhook")
	e.must(err, "MarkAttempted")
	e.wantBool("MarkAttempted", true, ok)
	d := disclosureFor(claimed, at(time.Minute))
	e.wantBool("Finish", true, e.finish(outbox.Finish{Item: claimed, State: work.Done, Disclosure: d, Proc: &outbox.ProcUpdate{Delivered: true, Ref: "c-1"}, At: at(time.Minute)}))
	keepChain := newChain("u-keep")
	e.record(keepChain, "u-keep", "newsletter", true, at(time.Second))

	// The erasure, in the order the accounts domain runs it.
	ok, err = a.MarkErasing(e.ctx, user, at(time.Hour))
	e.must(err, "MarkErasing")
	e.wantBool("MarkErasing", true, ok)
	forget := newItem("w-forget", user, "webhook", at(time.Hour))
	forget.Action, forget.Erase, forget.Ref, forget.Cause = work.Forget, true, "c-1", "erasure"
	e.enqueue(forget)
	e.must(c.Archive(e.ctx, consent.Archived{Subject: "pseud-gone", State: ch.stored(), Events: ch.events, ArchivedAt: at(time.Hour)}), "Archive")
	e.must(a.DeleteUserSessions(e.ctx, user), "DeleteUserSessions")
	e.must(a.DeleteDataKey(e.ctx, user), "DeleteDataKey")
	e.must(a.DeleteAccount(e.ctx, user), "DeleteAccount")

	// Gone: the account, its key, sessions, consent and ledger, delivery state.
	if r, err := a.Account(e.ctx, user); err != nil || r != nil {
		e.t.Errorf("Account after DeleteAccount = %+v, %v; want nil", r, err)
	}
	if r, err := a.AccountByUsername(e.ctx, rec.UsernameKey); err != nil || r != nil {
		e.t.Errorf("AccountByUsername after DeleteAccount = %+v, %v; want nil", r, err)
	}
	if k := e.dataKey(user); k != nil {
		e.t.Errorf("DataKey after erasure = %q, want nil", k)
	}
	if ss := e.userSessions(user); len(ss) != 0 {
		e.t.Errorf("UserSessions after erasure = %v", ss)
	}
	for _, id := range []string{"s-gone-1", "s-gone-2"} {
		if s, err := a.Session(e.ctx, id); err != nil || s != nil {
			e.t.Errorf("Session(%s) after erasure = %+v, %v", id, s, err)
		}
	}
	if st := e.state(user); st != nil {
		e.t.Errorf("consent State after DeleteAccount = %+v, want nil", st)
	}
	if evs := e.events(user); len(evs) != 0 {
		e.t.Errorf("Events after DeleteAccount: %d events, want none", len(evs))
	}
	if ev, err := c.Event(e.ctx, user, 1); err != nil || ev != nil {
		e.t.Errorf("Event(1) after DeleteAccount = %+v, %v; want nil", ev, err)
	}
	if r, err := o.Recipient(e.ctx, user); err != nil || r != nil {
		e.t.Errorf("Recipient after DeleteAccount = %+v, %v; want nil", r, err)
	}
	ok, err = o.MarkAttempted(e.ctx, user, "webhook")
	e.must(err, "MarkAttempted after delete")
	e.wantBool("MarkAttempted after DeleteAccount", false, ok)
	ids, err := a.Erasing(e.ctx)
	e.must(err, "Erasing")
	if len(ids) != 0 {
		e.t.Errorf("Erasing() after DeleteAccount = %v, want none", ids)
	}
	// A RecordChange for the deleted user writes nothing.
	ok, err = c.RecordChange(e.ctx, user, ch.next("newsletter", false, 1, at(2*time.Hour)), nil)
	e.must(err, "RecordChange after delete")
	e.wantBool("RecordChange after DeleteAccount", false, ok)

	// Kept: queued work (the forget above all) and disclosures, and the archive.
	e.relay("")
	got := e.item("w-forget")
	e.equal("the forget item after DeleteAccount", forget, got)
	if it := e.item("w-deliver"); it.State != work.Done {
		e.t.Errorf("the delivered item after DeleteAccount: state %s", it.State)
	}
	e.equal("disclosures after DeleteAccount", []outbox.Disclosure{*d}, e.disclosures(user, "", 0))
	arch, err := c.Archived(e.ctx, "pseud-gone")
	e.must(err, "Archived")
	if arch == nil || len(arch.Events) != 1 {
		e.t.Errorf("the archive after DeleteAccount = %+v", arch)
	}
	// The forget is still claimable and finishable.
	fc := e.claimOne("o", []string{"webhook"}, at(2*time.Hour), at(3*time.Hour))
	if fc.ID != "w-forget" {
		e.t.Errorf("claimed %s, want w-forget", fc.ID)
	}
	e.wantBool("Finish of the forget", true, e.finish(outbox.Finish{Item: fc, State: work.Done, Proc: &outbox.ProcUpdate{}, At: at(2 * time.Hour)}))
	if r, err := o.Recipient(e.ctx, user); err != nil || r != nil {
		e.t.Errorf("finishing the forget recreated the recipient: %+v, %v", r, err)
	}

	// Untouched: the other account and everything of it.
	e.equal("the other account", &keep, e.account("u-keep"))
	e.checkState("u-keep", keepChain.stored())
	e.equal("the other account's key", dataKey("u-keep").Wrapped, e.dataKey("u-keep"))
	if ss := e.userSessions("u-keep"); len(ss) != 1 {
		e.t.Errorf("the other account's sessions: %v", ss)
	}

	// The username key and email index are free again.
	na := newAccount("u-new", "again")
	na.Account.UsernameKey, na.Account.EmailIndex = rec.UsernameKey, rec.EmailIndex
	e.must(a.CreateAccount(e.ctx, na), "CreateAccount with the erased account's username key and email index")
	e.must(a.DeleteAccount(e.ctx, user), "DeleteAccount again")

	// Nothing kept under the erased id lingers: an account created again
	// under it starts empty (no ledger, no state, no processor state).
	again := newAccount(user, "reborn")
	again.Account.EmailIndex = "bidx-reborn"
	e.must(a.CreateAccount(e.ctx, again), "CreateAccount under the erased id")
	e.checkState(user, consent.Stored{})
	if evs := e.events(user); len(evs) != 0 {
		e.t.Errorf("an account created under an erased id has %d events of the old ledger", len(evs))
	}
	r, err := o.Recipient(e.ctx, user)
	e.must(err, "Recipient of the new account")
	if r == nil || len(r.Procs) != 0 || r.Erasing || r.Consent.Head != 0 {
		e.t.Errorf("Recipient of an account created under an erased id = %+v, want a fresh one", r)
	}
	fresh := newChain(user)
	e.record(fresh, user, "surveys", true, at(3*time.Hour))
	e.equal("the new account's ledger", fresh.events, e.events(user))
}

func testDeleteAbsent(e *env) {
	a := e.b.Accounts()
	e.must(a.DeleteAccount(e.ctx, "u-never"), "DeleteAccount of an absent id")
	keep := e.createAccount("u-keep")
	e.must(a.DeleteAccount(e.ctx, "u-never-2"), "DeleteAccount of an absent id beside an account")
	e.equal("an account after deleting another id", &keep, e.account("u-keep"))
	// Deleting without MarkErasing first also works (an aborted sign-up).
	e.must(a.DeleteAccount(e.ctx, "u-keep"), "DeleteAccount")
	if r, err := a.Account(e.ctx, "u-keep"); err != nil || r != nil {
		e.t.Errorf("Account after DeleteAccount = %+v, %v", r, err)
	}
	if st := e.state("u-keep"); st != nil {
		e.t.Errorf("State after DeleteAccount = %+v", st)
	}
}

func testPluginState(e *env) {
	o := e.b.Outbox()
	st1, st2 := o.PluginState("smtp"), o.PluginState("mailchimp")
	get := func(name string, st interface {
		Get(context.Context, string) ([]byte, bool, error)
	}, key string) ([]byte, bool) {
		e.t.Helper()
		v, ok, err := st.Get(e.ctx, key)
		e.must(err, "%s.Get(%s)", name, key)
		return v, ok
	}
	if v, ok := get("smtp", st1, "token:abc"); ok || v != nil {
		e.t.Errorf("Get of an absent key = %q, %v; want nothing", v, ok)
	}
	val := []byte("subject-1\x00\xffbinary")
	e.must(st1.Put(e.ctx, "token:abc", val), "Put")
	if v, ok := get("smtp", st1, "token:abc"); !ok {
		e.t.Errorf("Get after Put: not found")
	} else {
		e.equal("Get after Put", val, v)
	}
	// Another processor's state is separate, under the same key.
	if v, ok := get("mailchimp", st2, "token:abc"); ok {
		e.t.Errorf("another processor sees the key: %q", v)
	}
	e.must(st2.Put(e.ctx, "token:abc", []byte("mine")), "Put(mailchimp)")
	// A second handle on the same processor sees the same state.
	if v, ok := get("smtp (new handle)", o.PluginState("smtp"), "token:abc"); !ok {
		e.t.Errorf("a new handle on the same processor does not see the key")
	} else {
		e.equal("Get through a new handle", val, v)
	}
	e.must(st1.Put(e.ctx, "token:abc", []byte("replaced")), "Put again")
	if v, _ := get("smtp", st1, "token:abc"); string(v) != "replaced" {
		e.t.Errorf("Get after a second Put = %q, want replaced", v)
	}
	if v, _ := get("mailchimp", st2, "token:abc"); string(v) != "mine" {
		e.t.Errorf("the other processor's value = %q, want mine", v)
	}
	// An empty value is a value.
	e.must(st1.Put(e.ctx, "empty", []byte{}), "Put(empty)")
	if v, ok := get("smtp", st1, "empty"); !ok || len(v) != 0 {
		e.t.Errorf("Get of an empty value = %q, %v; want empty, found", v, ok)
	}
	e.must(st1.Delete(e.ctx, "token:abc"), "Delete")
	if _, ok := get("smtp", st1, "token:abc"); ok {
		e.t.Errorf("Get after Delete: still found")
	}
	if v, ok := get("mailchimp", st2, "token:abc"); !ok || string(v) != "mine" {
		e.t.Errorf("Delete in one processor removed another's key: %q, %v", v, ok)
	}
	e.must(st1.Delete(e.ctx, "token:abc"), "Delete of an absent key")
	e.must(st1.Delete(e.ctx, "never"), "Delete of a key never stored")
}

func testKindPing(e *env) {
	if k := e.b.Kind(); k != "embedded" && k != "mongodb" {
		e.t.Errorf("Kind() = %q, want \"embedded\" or \"mongodb\"", k)
	}
	e.must(e.b.Ping(e.ctx), "Ping")
}

func testReadMemo(e *env) {
	// A read memo lets an adapter share reads within one query (one user
	// document read once for account, consent and processor state);
	// whatever it shares, reads under it must return what reads without it
	// return, in whichever order the resolvers ask.
	e.createAccount("u-memo")
	e.createAccount("u-memo-2")
	c := newChain("u-memo")
	e.record(c, "u-memo", "newsletter", true, at(time.Second))
	ok, err := e.b.Outbox().MarkAttempted(e.ctx, "u-memo", "webhook")
	e.must(err, "MarkAttempted")
	e.wantBool("MarkAttempted", true, ok)
	e.must(e.b.Accounts().InsertDataKey(e.ctx, dataKey("u-memo")), "InsertDataKey")

	type read func(ctx context.Context, id string) (any, error)
	reads := map[string]read{
		"Account": func(ctx context.Context, id string) (any, error) { return e.b.Accounts().Account(ctx, id) },
		"AccountByUsername": func(ctx context.Context, id string) (any, error) {
			return e.b.Accounts().AccountByUsername(ctx, "user_"+id)
		},
		"State":     func(ctx context.Context, id string) (any, error) { return e.b.Consent().State(ctx, id) },
		"Recipient": func(ctx context.Context, id string) (any, error) { return e.b.Outbox().Recipient(ctx, id) },
		"DataKey":   func(ctx context.Context, id string) (any, error) { return e.b.Accounts().DataKey(ctx, id) },
		"Events": func(ctx context.Context, id string) (any, error) {
			return e.b.Consent().Events(ctx, id, 0, 0)
		},
	}
	orders := [][]string{
		{"Account", "State", "Recipient", "DataKey", "Events", "AccountByUsername"},
		{"Recipient", "State", "Account", "AccountByUsername", "Events", "DataKey"},
		{"State", "Events", "AccountByUsername", "DataKey", "Recipient", "Account"},
	}
	for _, order := range orders {
		memo := storectx.WithReadMemo(e.ctx)
		for round := range 2 { // the second round may be served from the memo
			for _, id := range []string{"u-memo", "u-memo-2", "u-absent"} {
				for _, name := range order {
					want, err1 := reads[name](e.ctx, id)
					got, err2 := reads[name](memo, id)
					if err1 != nil || err2 != nil {
						e.t.Fatalf("%s(%s): %v / under a memo: %v", name, id, err1, err2)
					}
					e.equal(fmt.Sprintf("%s(%s) under a read memo (order %v, round %d)", name, id, order, round), want, got)
				}
			}
		}
	}
}

// testEraseDuringChanges erases accounts while writers keep recording
// consent changes for them: whatever committed before MarkErasing, once
// DeleteAccount returned (and any relay ran) no ledger event or consent
// state of the account is left — also none moved out of a record by a
// relay that raced the deletion.
func testEraseDuringChanges(e *env) {
	const accountsN, writers = 3, 6
	for n := range accountsN {
		user := fmt.Sprintf("u-race-%d", n)
		e.createAccount(user)
		var recorded atomic.Int64
		stop := make(chan struct{})
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for attempt := 0; ; attempt++ {
					select {
					case <-stop:
						return
					default:
					}
					st, err := e.b.Consent().State(e.ctx, user)
					if err != nil {
						errs[w] = err
						return
					}
					if st == nil || st.Erasing {
						return // erased: nothing more may be recorded
					}
					ev := eventAfter(user, st.Head, st.HeadHash, "newsletter", w%2 == 0, 1, at(time.Duration(st.Head)*ms))
					item := newItem(fmt.Sprintf("w-%s-%d-%d", user, w, attempt), user, "webhook", at(0))
					ok, err := e.b.Consent().RecordChange(e.ctx, user, ev, []work.Item{item})
					if err != nil {
						errs[w] = err
						return
					}
					if ok {
						recorded.Add(1)
					} else {
						e.backoff(attempt % 4)
					}
				}
			}()
		}
		// Let some changes commit, then erase in the middle of the traffic.
		for recorded.Load() < 3 && e.ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		ok, err := e.b.Accounts().MarkErasing(e.ctx, user, at(time.Hour))
		e.must(err, "MarkErasing(%s)", user)
		e.wantBool("MarkErasing("+user+")", true, ok)
		e.must(e.b.Accounts().DeleteAccount(e.ctx, user), "DeleteAccount(%s)", user)
		close(stop)
		wg.Wait() // the writers stop: their calls end with the subtest's context at the latest
		for w, err := range errs {
			if err != nil {
				e.t.Errorf("writer %d for %s: %v", w, user, err)
			}
		}
		e.relay(user)
		e.relay("")
		if st := e.state(user); st != nil {
			e.t.Errorf("%s: consent state left after erasure during changes: head %d", user, st.Head)
		}
		if evs := e.events(user); len(evs) != 0 {
			e.t.Errorf("%s: %d ledger events left after erasure during %d recorded changes (seqs %d..%d)", user, len(evs), recorded.Load(), evs[0].Seq, evs[len(evs)-1].Seq)
		}
		if r, err := e.b.Outbox().Recipient(e.ctx, user); err != nil || r != nil {
			e.t.Errorf("%s: Recipient after erasure = %+v, %v", user, r, err)
		}
		e.t.Logf("%s: erased after %d recorded changes", user, recorded.Load())
	}
}
