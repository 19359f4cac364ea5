package contract

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/work"
)

// t0 is the suite's reference time: UTC with a millisecond part, the
// precision domain code keeps, so that a store which drops or rounds
// milliseconds, or returns another location, is caught.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

// at returns t0 plus d (callers keep d a whole number of milliseconds).
func at(d time.Duration) time.Time { return t0.Add(d) }

const ms = time.Millisecond

// concurrency is how many goroutines the "N concurrent writers" tests run.
const concurrency = 50

// must fails the subtest when err is set.
func (e *env) must(err error, format string, args ...any) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

// equal reports a difference between want and got as a test error.
func (e *env) equal(what string, want, got any) bool {
	e.t.Helper()
	if d := diff(want, got); d != "" {
		e.t.Errorf("%s differs: %s", what, d)
		return false
	}
	return true
}

// isTrue reports ok == want as a test error naming the call.
func (e *env) wantBool(what string, want, got bool) {
	e.t.Helper()
	if want != got {
		e.t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// parallel runs fn(0..n-1) in n goroutines released together (to make
// them contend), waits for all of them, and returns their errors. A
// goroutine still running at the subtest's deadline fails the subtest as a
// deadlock instead of hanging it.
func (e *env) parallel(n int, fn func(i int) error) []error {
	e.t.Helper()
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return errs
	case <-e.ctx.Done():
		// Give the store a moment to return from calls cancelled by the
		// context, then fail either way: the work did not finish in time.
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		e.t.Fatalf("%d concurrent calls did not finish before the subtest deadline (deadlock or lost wake-up?): %v", n, e.ctx.Err())
		return nil
	}
}

// backoff sleeps a random time up to 2^attempt ms (at most 64 ms) after
// a lost race — full jitter, as the domain's own retry loops do — so that
// writers against a store that serializes everything (FerretDB on one
// connection) spread out instead of all colliding again each round.
func (e *env) backoff(attempt int) {
	d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
	select {
	case <-time.After(d):
	case <-e.ctx.Done():
	}
}

// --- accounts ---

// newAccount builds a complete sign-up: every field of the record set
// (sealed email with its index and a pending verification, every profile
// field), no initial consent and no work.
func newAccount(id, username string) accounts.NewAccount {
	return accounts.NewAccount{Account: accounts.Record{
		ID:            id,
		Username:      username,
		UsernameKey:   strings.ToLower(username),
		PasswordHash:  "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$" + id,
		Role:          auth.RoleUser,
		CreatedAt:     at(17 * ms),
		Email:         []byte("sealed-email:" + id + "\x00\xff"),
		EmailIndex:    "bidx-" + id,
		EmailVerified: false,
		Verification:  &accounts.Verification{TokenHash: "vtok-" + id, ExpiresAt: at(24*time.Hour + 3*ms)},
		Profile: accounts.SealedProfile{
			BirthYear: []byte("sealed-by:" + id),
			Country:   []byte("sealed-co:" + id),
			Gender:    []byte("sealed-ge:" + id),
			Language:  []byte("sealed-la:" + id),
		},
	}}
}

// createAccount stores a plain account (see newAccount) and returns its record.
func (e *env) createAccount(id string) accounts.Record {
	e.t.Helper()
	na := newAccount(id, "User_"+id)
	na.Account.UsernameKey = "user_" + id // ids may differ only in case
	e.must(e.b.Accounts().CreateAccount(e.ctx, na), "CreateAccount(%s)", id)
	return na.Account
}

// account reads an account and fails when it is absent.
func (e *env) account(id string) *accounts.Record {
	e.t.Helper()
	r, err := e.b.Accounts().Account(e.ctx, id)
	e.must(err, "Account(%s)", id)
	if r == nil {
		e.t.Fatalf("Account(%s) = nil, want the account", id)
	}
	return r
}

// --- consent ---

// chain builds a user's hash-chained ledger the way the consent domain
// does, with consent.HashEvent, so every event's PrevHash is the previous
// event's Hash and every Hash is real.
type chain struct {
	subject string
	head    int64
	hash    string
	events  []consent.Event
}

func newChain(subject string) *chain { return &chain{subject: subject} }

// event builds the event after head, without committing it to the chain.
func eventAfter(subject string, head int64, headHash, purpose string, grant bool, policyN int64, when time.Time) consent.Event {
	action, method := consent.Withdraw, consent.GPC
	if grant {
		action, method = consent.Grant, consent.Explicit
	}
	ev := consent.Event{
		Seq:           head + 1,
		Purpose:       purpose,
		Action:        action,
		PolicyVersion: fmt.Sprintf("2025-%02d", policyN),
		PolicyN:       policyN,
		At:            when,
		Method:        method,
		ReceiptID:     fmt.Sprintf("rcpt-%s-%d", subject, head+1),
		Receipt:       fmt.Sprintf("eyJhbGciOiJFZERTQSJ9.%s.%d.c2ln", subject, head+1),
		PrevHash:      headHash,
	}
	ev.Hash = consent.HashEvent(subject, &ev)
	return ev
}

// next builds the next event of the chain, without committing it.
func (c *chain) next(purpose string, grant bool, policyN int64, when time.Time) consent.Event {
	return eventAfter(c.subject, c.head, c.hash, purpose, grant, policyN, when)
}

// commit records that ev was stored as the chain's head.
func (c *chain) commit(ev consent.Event) {
	c.head, c.hash = ev.Seq, ev.Hash
	c.events = append(c.events, ev)
}

// add builds and commits the next event (for initial states built in memory).
func (c *chain) add(purpose string, grant bool, policyN int64, when time.Time) consent.Event {
	ev := c.next(purpose, grant, policyN, when)
	c.commit(ev)
	return ev
}

// stored is the consent state the chain's events lead to.
func (c *chain) stored() consent.Stored {
	st := consent.Stored{Head: c.head, HeadHash: c.hash, State: map[string]consent.Entry{}}
	for _, ev := range c.events {
		st.State[ev.Purpose] = entryOf(ev)
	}
	return st
}

// initial is the chain as a sign-up's initial consent.
func (c *chain) initial() consent.Initial {
	return consent.Initial{State: c.stored(), Events: slices.Clone(c.events)}
}

// entryOf is the state entry an event sets for its purpose.
func entryOf(ev consent.Event) consent.Entry {
	return consent.Entry{
		Granted: ev.Action == consent.Grant, Seq: ev.Seq, At: ev.At,
		PolicyVersion: ev.PolicyVersion, PolicyN: ev.PolicyN, Method: ev.Method,
	}
}

// record stores the chain's next event with items and fails unless it was
// written.
func (e *env) record(c *chain, userID, purpose string, grant bool, when time.Time, items ...work.Item) consent.Event {
	e.t.Helper()
	ev := c.next(purpose, grant, 1, when)
	ok, err := e.b.Consent().RecordChange(e.ctx, userID, ev, items)
	e.must(err, "RecordChange(%s, seq %d)", userID, ev.Seq)
	if !ok {
		e.t.Fatalf("RecordChange(%s, seq %d) = false, want true (head is %d)", userID, ev.Seq, c.head)
	}
	c.commit(ev)
	return ev
}

// state reads a user's consent state.
func (e *env) state(userID string) *consent.Stored {
	e.t.Helper()
	st, err := e.b.Consent().State(e.ctx, userID)
	e.must(err, "State(%s)", userID)
	return st
}

// events reads a user's whole ledger.
func (e *env) events(userID string) []consent.Event {
	e.t.Helper()
	evs, err := e.b.Consent().Events(e.ctx, userID, 0, 0)
	e.must(err, "Events(%s)", userID)
	return evs
}

// checkStored compares a read state with want, ignoring the ledger field
// that is going away, and checks the Erasing flag.
func (e *env) checkState(userID string, want consent.Stored) {
	e.t.Helper()
	got := e.state(userID)
	if got == nil {
		e.t.Errorf("State(%s) = nil, want %+v", userID, want)
		return
	}
	e.equal(fmt.Sprintf("State(%s)", userID), want, *got)
}

// --- outbox ---

// newItem builds a PENDING item due at due, with every field set.
func newItem(id, userID, processor string, due time.Time) work.Item {
	return work.Item{
		ID:        id,
		UserID:    userID,
		Processor: processor,
		Purpose:   "newsletter",
		Action:    work.Deliver,
		Ref:       "",
		Cause:     "consent e1",
		State:     work.Pending,
		Attempts:  0,
		NextAt:    due,
		CreatedAt: due,
		UpdatedAt: due,
	}
}

// enqueue adds an item and fails unless it was added.
func (e *env) enqueue(it work.Item) {
	e.t.Helper()
	ok, err := e.b.Outbox().Enqueue(e.ctx, it)
	e.must(err, "Enqueue(%s)", it.ID)
	if !ok {
		e.t.Fatalf("Enqueue(%s) = false, want true (new id)", it.ID)
	}
}

// item reads an item and fails when it is absent.
func (e *env) item(id string) work.Item {
	e.t.Helper()
	it, err := e.b.Outbox().Item(e.ctx, id)
	e.must(err, "Item(%s)", id)
	if it == nil {
		e.t.Fatalf("Item(%s) = nil, want the item", id)
	}
	return *it
}

// relay relays a user's items ("" for everyone).
func (e *env) relay(userID string) int {
	e.t.Helper()
	n, err := e.b.Outbox().Relay(e.ctx, userID)
	e.must(err, "Relay(%q)", userID)
	return n
}

// allItems lists every queued item, paging through Items.
func (e *env) allItems(state work.State) []work.Item {
	e.t.Helper()
	var out []work.Item
	after := ""
	for range 1000 {
		page, err := e.b.Outbox().Items(e.ctx, state, after, 7)
		e.must(err, "Items(%q, after %q)", state, after)
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].ID
	}
	e.t.Fatalf("Items never ran out (paging after %q does not advance?)", after)
	return nil
}

// itemIDs returns the ids of items.
func itemIDs(items []work.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// sorted returns a sorted copy.
func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
