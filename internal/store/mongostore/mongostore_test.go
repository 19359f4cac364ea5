package mongostore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
	"github.com/consentgraph/consentgraph/internal/work"
)

var t0 = ms(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))

func newAccount(id string) accounts.NewAccount {
	return accounts.NewAccount{Account: accounts.Record{
		ID: id, Username: "User " + id, UsernameKey: "user-" + id, PasswordHash: "hash", Role: auth.RoleUser, CreatedAt: t0,
	}}
}

// ev is event seq of a chain whose hashes are just names.
func ev(seq int64, purpose string, grant bool) consent.Event {
	a := consent.Withdraw
	if grant {
		a = consent.Grant
	}
	return consent.Event{Seq: seq, Purpose: purpose, Action: a, PolicyVersion: "v1", PolicyN: 1, At: t0.Add(time.Duration(seq) * time.Second),
		Method: consent.Explicit, ReceiptID: fmt.Sprintf("r%d", seq), Receipt: "jws", PrevHash: fmt.Sprintf("h%d", seq-1), Hash: fmt.Sprintf("h%d", seq)}
}

func item(id, userID string) work.Item {
	return work.Item{ID: id, UserID: userID, Processor: "hook", Purpose: "newsletter", Action: work.Deliver, Cause: "test",
		State: work.Pending, NextAt: t0, CreatedAt: t0, UpdatedAt: t0}
}

func rawUser(t *testing.T, d *DB, id string) bson.M {
	t.Helper()
	var m bson.M
	if err := d.coll(usersColl).FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&m); err != nil {
		t.Fatalf("read user %s: %v", id, err)
	}
	return m
}

func count(t *testing.T, d *DB, coll string, filter bson.D) int64 {
	t.Helper()
	n, err := d.coll(coll).CountDocuments(context.Background(), filter)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// settled fails unless the user document holds nothing waiting to move out.
func settled(t *testing.T, d *DB, id string) {
	t.Helper()
	u := rawUser(t, d, id)
	c, _ := u["consent"].(bson.M)
	for _, bad := range []bool{u["outbox"] != nil, u["relay"] != nil, c["pending"] != nil, c["events"] != nil} {
		if bad {
			t.Fatalf("user document still holds relayable fields: %v", u)
		}
	}
}

func seqs(es []consent.Event) []int64 {
	var out []int64
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func TestOpenRecognizesFerretDBAndUsesOneConnection(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	var ready bool
	mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		mu.Lock()
		defer mu.Unlock()
		if ready {
			conns[e.ConnectionID] = true
		}
	}}
	d := openTest(t, Options{Monitor: mon})
	if d.ferret != testIsFerret {
		t.Fatalf("FerretDB detected: %v, want %v", d.ferret, testIsFerret)
	}
	mu.Lock()
	ready = true
	mu.Unlock()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := d.Accounts().Account(ctx, fmt.Sprint(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if testIsFerret && len(conns) != 1 {
		t.Fatalf("20 concurrent reads on FerretDB used %d connections, want 1", len(conns))
	}
}

// One connection is what makes FerretDB's updates atomic; a lost $inc
// would show as a wrong cell count.
func TestConcurrentIncrementsAreAtomic(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			if err := d.Demographics().AddToCells(ctx, []demographics.CellDelta{{Mask: 3, ID: "c", Values: []byte("v"), Delta: 1}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	cells, err := d.Demographics().CellCounts(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 1 || cells[0].N != 40 || cells[0].Ver != 40 {
		t.Fatalf("cells after 40 concurrent increments: %+v", cells)
	}
}

func TestIndexesAreCreatedIdempotently(t *testing.T) {
	name := freshName()
	d1 := openTest(t, Options{Database: name})
	d2 := openTest(t, Options{Database: name}) // a second start on the same data
	ctx := context.Background()
	for _, ix := range indexes() {
		specs, err := d2.coll(ix.coll).Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := *mustName(t, ix)
		found := false
		for _, s := range specs {
			found = found || s.Name == want
		}
		if !found {
			t.Errorf("%s has no index %s", ix.coll, want)
		}
	}
	_ = d1
}

func mustName(t *testing.T, ix indexSpec) *string {
	var o options.IndexOptions
	for _, set := range ix.model.Options.List() {
		_ = set(&o)
	}
	if o.Name == nil {
		t.Fatalf("index on %s has no name", ix.coll)
	}
	return o.Name
}

func TestUniqueFieldsMapToTheirErrors(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	a := d.Accounts()
	ann := newAccount("ann")
	ann.Account.EmailIndex, ann.Account.Email, ann.Account.EmailVerified = "idx-ann", []byte("sealed"), true
	if err := a.CreateAccount(ctx, ann); err != nil {
		t.Fatal(err)
	}
	sameName := newAccount("other")
	sameName.Account.UsernameKey = ann.Account.UsernameKey
	if err := a.CreateAccount(ctx, sameName); !errors.Is(err, accounts.ErrUsernameTaken) {
		t.Fatalf("same username: %v", err)
	}
	sameEmail := newAccount("bob")
	sameEmail.Account.EmailIndex, sameEmail.Account.Email, sameEmail.Account.EmailVerified = "idx-ann", []byte("sealed"), true
	if err := a.CreateAccount(ctx, sameEmail); !errors.Is(err, accounts.ErrEmailTaken) {
		t.Fatalf("same verified email: %v", err)
	}
	// Accounts without email never clash on it (sparse index).
	for _, id := range []string{"c1", "c2"} {
		if err := a.CreateAccount(ctx, newAccount(id)); err != nil {
			t.Fatal(err)
		}
	}
	// A new email is unverified: it belongs to nobody and clashes with nothing.
	ok, err := a.UpdateAccount(ctx, "c1", accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("x"), Index: "idx-ann"}})
	if !ok || err != nil {
		t.Fatalf("update to an email verified elsewhere: %v %v", ok, err)
	}
	// A batch with a clash stores nothing.
	batch := []accounts.NewAccount{newAccount("i1"), newAccount("i2"), sameName}
	if err := a.ImportAccounts(ctx, batch); !errors.Is(err, accounts.ErrUsernameTaken) {
		t.Fatalf("import with a taken username: %v", err)
	}
	if r, _ := a.Account(ctx, "i1"); r != nil {
		t.Fatal("a failed import left an account behind")
	}
}

func TestRecordChangeMovesTheLedgerOut(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	na := newAccount("u1")
	e1 := ev(1, "newsletter", false)
	e1.Method = consent.GPC
	na.Consent = consent.Initial{State: consent.Stored{Head: 1, HeadHash: e1.Hash, State: map[string]consent.Entry{"newsletter": entryOf(&e1).entry()}}, Events: []consent.Event{e1}}
	na.Work = []work.Item{item("i0", "u1")}
	if err := d.Accounts().CreateAccount(ctx, na); err != nil {
		t.Fatal(err)
	}
	settled(t, d, "u1")
	c := d.Consent()
	ok, err := c.RecordChange(ctx, "u1", ev(2, "newsletter", true), []work.Item{item("i1", "u1"), item("i2", "u1")})
	if err != nil || !ok {
		t.Fatalf("record change: %v %v", ok, err)
	}
	settled(t, d, "u1")
	if n := count(t, d, eventsColl, bson.D{{Key: "userId", Value: "u1"}}); n != 2 {
		t.Fatalf("%d events in consent_events, want 2", n)
	}
	if n := count(t, d, itemsColl, bson.D{{Key: "userId", Value: "u1"}}); n != 3 {
		t.Fatalf("%d items in outbox, want 3", n)
	}
	// A stale head or a second writer with the same sequence number loses.
	if ok, err := c.RecordChange(ctx, "u1", ev(2, "surveys", true), nil); ok || err != nil {
		t.Fatalf("stale change: %v %v", ok, err)
	}
	got, err := c.Events(ctx, "u1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []consent.Event{e1, ev(2, "newsletter", true)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n got %+v\nwant %+v", got, want)
	}
	st, err := c.State(ctx, "u1")
	if err != nil || st.Head != 2 || st.HeadHash != "h2" || !st.State["newsletter"].Granted {
		t.Fatalf("state: %+v %v", st, err)
	}
}

// A change whose follow-up relay never ran (a crash right after the
// commit) still reads back complete, and Relay finishes it.
func TestInterruptedRelayStillReadsCompleteAndRelayFinishes(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	if err := d.Accounts().CreateAccount(ctx, newAccount("u1")); err != nil {
		t.Fatal(err)
	}
	c := d.Consent()
	if ok, err := c.RecordChange(ctx, "u1", ev(1, "newsletter", true), nil); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// Events 2 and 3 and an item committed as RecordChange writes them,
	// without the relay that follows.
	for _, seq := range []int64{2, 3} {
		e := ev(seq, "newsletter", seq%2 == 1)
		it := newItemDoc(&work.Item{ID: fmt.Sprintf("x%d", seq), UserID: "u1", Processor: "hook", State: work.Pending, NextAt: t0})
		_, err := d.coll(usersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: "u1"}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "consent.head", Value: seq}, {Key: "consent.headHash", Value: e.Hash},
			{Key: "consent.state.newsletter", Value: entryOf(&e)},
			{Key: pendingField + "." + pendingKey(seq), Value: newEventDoc(&e)},
			{Key: embeddedField + "." + it.ID, Value: it},
			{Key: relayField, Value: newTag()},
		}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		after int64
		limit int
		want  []int64
	}{{0, 0, []int64{1, 2, 3}}, {0, 2, []int64{1, 2}}, {1, 1, []int64{2}}, {2, 5, []int64{3}}, {3, 0, nil}} {
		got, err := c.Events(ctx, "u1", tc.after, tc.limit)
		if err != nil || !reflect.DeepEqual(seqs(got), tc.want) {
			t.Fatalf("Events(after %d, limit %d) = %v, %v; want %v", tc.after, tc.limit, seqs(got), err, tc.want)
		}
	}
	if e, err := c.Event(ctx, "u1", 3); err != nil || e == nil || e.Hash != "h3" {
		t.Fatalf("pending event 3: %+v %v", e, err)
	}
	if e, err := c.Event(ctx, "u1", 4); err != nil || e != nil {
		t.Fatalf("event 4: %+v %v", e, err)
	}
	// The next change carries the leftovers along.
	if ok, err := c.RecordChange(ctx, "u1", ev(4, "surveys", true), nil); !ok || err != nil {
		t.Fatal(ok, err)
	}
	settled(t, d, "u1")
	if n := count(t, d, eventsColl, bson.D{{Key: "userId", Value: "u1"}}); n != 4 {
		t.Fatalf("%d events moved, want 4", n)
	}
	if n := count(t, d, itemsColl, bson.D{{Key: "userId", Value: "u1"}}); n != 2 {
		t.Fatalf("%d items relayed, want 2", n)
	}
	// And without a next change, Relay does it: per user and as a sweep.
	for _, user := range []string{"u2", "u3"} {
		if err := d.Accounts().CreateAccount(ctx, newAccount(user)); err != nil {
			t.Fatal(err)
		}
		e := ev(1, "newsletter", true)
		if _, err := d.coll(usersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: user}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "consent.head", Value: int64(1)}, {Key: pendingField + ".e1", Value: newEventDoc(&e)},
			{Key: embeddedField + ".y-" + user, Value: newItemDoc(&work.Item{ID: "y-" + user, UserID: user, State: work.Pending})},
			{Key: relayField, Value: newTag()},
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	o := d.Outbox()
	if n, err := o.Relay(ctx, "u2"); n != 1 || err != nil {
		t.Fatalf("relay u2: %d %v", n, err)
	}
	settled(t, d, "u2")
	if n, err := o.Relay(ctx, ""); n != 1 || err != nil {
		t.Fatalf("sweep: %d %v (want 1 user: u3)", n, err)
	}
	settled(t, d, "u3")
	if n, err := o.Relay(ctx, ""); n != 0 || err != nil {
		t.Fatalf("second sweep: %d %v", n, err)
	}
	for _, user := range []string{"u2", "u3"} {
		if it, _ := o.Item(ctx, "y-"+user); it == nil {
			t.Fatalf("item of %s not relayed", user)
		}
		if e, _ := c.Event(ctx, user, 1); e == nil {
			t.Fatalf("event of %s lost", user)
		}
	}
}

// Documents of the previous version keep the whole ledger under
// consent.events and left empty outbox maps behind; they are read as they
// are and moved out by the sweep.
func TestLegacyLedgerIsReadAndMovedOut(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	legacy := func(id string, n int64, items bson.D) {
		events := bson.D{}
		state := bson.D{}
		for seq := int64(1); seq <= n; seq++ {
			e := ev(seq, "newsletter", seq%2 == 1)
			events = append(events, bson.E{Key: pendingKey(seq), Value: newEventDoc(&e)})
			state = bson.D{{Key: "newsletter", Value: entryOf(&e)}}
		}
		doc := bson.D{{Key: "_id", Value: id}, {Key: "username", Value: id}, {Key: "usernameKey", Value: id}, {Key: "passwordHash", Value: "h"},
			{Key: "role", Value: "USER"}, {Key: "createdAt", Value: t0}, {Key: "dataKey", Value: nil}, {Key: "emailVerified", Value: false},
			{Key: "profile", Value: bson.D{}},
			{Key: "consent", Value: bson.D{{Key: "head", Value: n}, {Key: "headHash", Value: fmt.Sprintf("h%d", n)}, {Key: "state", Value: state}, {Key: "events", Value: events}}},
			{Key: "outbox", Value: items}}
		if _, err := d.coll(usersColl).InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	legacy("old1", 3, bson.D{})
	legacy("old2", 2, bson.D{{Key: "z1", Value: newItemDoc(&work.Item{ID: "z1", UserID: "old2", State: work.Pending})}})
	c := d.Consent()
	got, err := c.Events(ctx, "old1", 1, 0)
	if err != nil || !reflect.DeepEqual(seqs(got), []int64{2, 3}) {
		t.Fatalf("legacy events: %v %v", seqs(got), err)
	}
	if e, err := c.Event(ctx, "old2", 2); err != nil || e == nil || e.Hash != "h2" {
		t.Fatalf("legacy event: %+v %v", e, err)
	}
	st, err := c.State(ctx, "old1")
	if err != nil || st.Head != 3 || st.State["newsletter"].Seq != 3 {
		t.Fatalf("legacy state: %+v %v", st, err)
	}
	r, err := d.Accounts().Account(ctx, "old1")
	if err != nil || r == nil || r.UsernameKey != "old1" {
		t.Fatalf("legacy account: %+v %v", r, err)
	}
	if n, err := d.Outbox().Relay(ctx, ""); n != 2 || err != nil {
		t.Fatalf("sweep: %d %v (want 2 users)", n, err)
	}
	settled(t, d, "old1")
	settled(t, d, "old2")
	if n := count(t, d, eventsColl, bson.D{}); n != 5 {
		t.Fatalf("%d events moved, want 5", n)
	}
	if it, _ := d.Outbox().Item(ctx, "z1"); it == nil {
		t.Fatal("legacy item not relayed")
	}
	got, err = c.Events(ctx, "old1", 0, 0)
	if err != nil || !reflect.DeepEqual(seqs(got), []int64{1, 2, 3}) || got[2] != ev(3, "newsletter", true) {
		t.Fatalf("events after the move: %v %v", got, err)
	}
	// The chain continues in the new layout.
	if ok, err := c.RecordChange(ctx, "old1", ev(4, "newsletter", false), nil); !ok || err != nil {
		t.Fatal(ok, err)
	}
	settled(t, d, "old1")
	// Deleting the account takes its ledger along.
	if err := d.Accounts().DeleteAccount(ctx, "old1"); err != nil {
		t.Fatal(err)
	}
	if n := count(t, d, eventsColl, bson.D{{Key: "userId", Value: "old1"}}); n != 0 {
		t.Fatalf("%d events left after delete", n)
	}
	if err := d.Accounts().DeleteAccount(ctx, "old1"); err != nil {
		t.Fatalf("deleting an absent account: %v", err)
	}
}

// Within a query, account, consent state and processor state share one
// read of the user document.
func TestReadMemoSharesOneRead(t *testing.T) {
	d := openTest(t, Options{Observer: countingObserver})
	ctx := context.Background()
	if err := d.Accounts().CreateAccount(ctx, newAccount("u1")); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.Consent().RecordChange(ctx, "u1", ev(1, "newsletter", true), []work.Item{item("i1", "u1")}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := d.Outbox().MarkAttempted(ctx, "u1", "hook"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	read := func(ctx context.Context) {
		t.Helper()
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				r, err := d.Accounts().Account(ctx, "u1")
				if err != nil || r == nil || r.UsernameKey != "user-u1" {
					t.Errorf("account: %+v %v", r, err)
				}
				st, err := d.Consent().State(ctx, "u1")
				if err != nil || st == nil || !st.State["newsletter"].Granted {
					t.Errorf("state: %+v %v", st, err)
				}
				rc, err := d.Outbox().Recipient(ctx, "u1")
				if err != nil || rc == nil || !rc.Procs["hook"].Attempted || rc.Consent.Head != 1 {
					t.Errorf("recipient: %+v %v", rc, err)
				}
			})
		}
		wg.Wait()
	}
	cctx, n := counting(storectx.WithReadMemo(ctx))
	read(cctx)
	if n.Load() != 1 {
		t.Fatalf("with a read memo: %d round trips, want 1", n.Load())
	}
	cctx, n = counting(ctx)
	read(cctx)
	if n.Load() != 9 {
		t.Fatalf("without a read memo: %d round trips, want 9", n.Load())
	}
	// An account that does not exist is remembered as absent, too.
	cctx, n = counting(storectx.WithReadMemo(ctx))
	for range 2 {
		if r, err := d.Accounts().Account(cctx, "nobody"); r != nil || err != nil {
			t.Fatal(r, err)
		}
		if st, err := d.Consent().State(cctx, "nobody"); st != nil || err != nil {
			t.Fatal(st, err)
		}
	}
	if n.Load() != 1 {
		t.Fatalf("absent account: %d round trips, want 1", n.Load())
	}
}

// Claim takes the lock of the item's user and processor; Finish frees it,
// but only for the lease holder.
func TestClaimLocksUserAndProcessorUntilFinish(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	o := d.Outbox()
	for _, id := range []string{"a1", "a2"} {
		if ok, err := o.Enqueue(ctx, item(id, "u1")); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if ok, err := o.Enqueue(ctx, item("a1", "u1")); ok || err != nil {
		t.Fatalf("enqueue twice: %v %v", ok, err)
	}
	now := t0.Add(time.Minute)
	got, err := o.Claim(ctx, "w1", []string{"hook"}, now, now.Add(time.Minute), 10)
	if err != nil || len(got) != 1 || got[0].ID != "a1" || got[0].Attempts != 1 || got[0].LeaseOwner != "w1" {
		t.Fatalf("first claim: %+v %v", got, err)
	}
	if again, err := o.Claim(ctx, "w2", []string{"hook"}, now, now.Add(time.Minute), 10); len(again) != 0 || err != nil {
		t.Fatalf("a2 claimed while a1 of the same user and processor is leased: %+v %v", again, err)
	}
	stale := got[0]
	stale.LeaseOwner = "w2"
	if ok, err := o.Finish(ctx, outbox.Finish{Item: stale, State: work.Done, At: now}); ok || err != nil {
		t.Fatalf("finish by a non-holder: %v %v", ok, err)
	}
	dl := &outbox.Disclosure{ID: "a1", UserID: "u1", Processor: "hook", Purpose: "newsletter", Action: "DELIVERED", At: now}
	if ok, err := o.Finish(ctx, outbox.Finish{Item: got[0], State: work.Done, At: now, Disclosure: dl}); !ok || err != nil {
		t.Fatalf("finish: %v %v", ok, err)
	}
	if ok, err := o.Finish(ctx, outbox.Finish{Item: got[0], State: work.Done, At: now, Disclosure: dl}); ok || err != nil {
		t.Fatalf("finish twice: %v %v", ok, err)
	}
	next, err := o.Claim(ctx, "w2", []string{"hook"}, now, now.Add(time.Minute), 10)
	if err != nil || len(next) != 1 || next[0].ID != "a2" {
		t.Fatalf("claim after finish: %+v %v", next, err)
	}
	ds, err := o.Disclosures(ctx, "u1", "", 0)
	if err != nil || len(ds) != 1 || ds[0].ID != "a1" {
		t.Fatalf("disclosures: %+v %v", ds, err)
	}
	counts, err := o.CountByState(ctx)
	if err != nil || counts[work.Done] != 1 || counts[work.Pending] != 1 {
		t.Fatalf("counts: %v %v", counts, err)
	}
}

func TestPluginStateKeepsProcessorsApart(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	a, b := d.Outbox().PluginState("a"), d.Outbox().PluginState("ab")
	if err := a.Put(ctx, "b\x00k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "k", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "k", []byte("3")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := a.Get(ctx, "k"); string(v) != "3" || !ok || err != nil {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	if v, ok, err := b.Get(ctx, "k"); ok || err != nil {
		t.Fatalf("other processor sees %q", v)
	}
	if err := d.Outbox().PluginState("a\x00b").Put(ctx, "k", nil); err == nil {
		t.Fatal("a processor name with NUL could collide with another's keys")
	}
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.Get(ctx, "k"); ok {
		t.Fatal("deleted key still there")
	}
}

// A relay that reads a document just before the account is deleted must
// not leave the events it moves behind the deletion.
func TestRelayOfADeletedAccountLeavesNoEvents(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	e := ev(1, "newsletter", true)
	mv := &moveOut{userID: "gone", tag: "t", complete: true,
		events: map[string]eventDoc{pendingField + ".e1": newEventDoc(&e)},
		items:  map[string]itemDoc{embeddedField + ".g1": newItemDoc(&work.Item{ID: "g1", UserID: "gone", State: work.Pending})}}
	if err := d.move(ctx, mv); err != nil {
		t.Fatal(err)
	}
	if n := count(t, d, eventsColl, bson.D{{Key: "userId", Value: "gone"}}); n != 0 {
		t.Fatalf("%d events of a deleted account left", n)
	}
}

// The observer hears of every command once, with its outcome.
func TestObserverReportsEachCommandAndItsError(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	var failed []error
	obs := func(_ context.Context, cmd string, err error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, cmd)
		if err != nil {
			failed = append(failed, err)
		}
	}
	d := openTest(t, Options{Observer: obs})
	ctx := context.Background()
	mu.Lock()
	seen, failed = nil, nil
	mu.Unlock()
	if _, err := d.Accounts().Session(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := d.Database().RunCommand(ctx, bson.D{{Key: "noSuchCommand", Value: 1}}).Err(); err == nil {
		t.Fatal("an unknown command succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(seen, []string{"find", "noSuchCommand"}) || len(failed) != 1 {
		t.Fatalf("observed %v with errors %v; want find and a failed noSuchCommand", seen, failed)
	}
}

func TestDupIndexReadsMongoDBAndFerretDBErrors(t *testing.T) {
	kp, _ := bson.Marshal(bson.D{{Key: "code", Value: 11000}, {Key: "keyPattern", Value: bson.D{{Key: "verifiedEmailIndex", Value: 1}}}})
	for _, tc := range []struct {
		err  error
		want string
	}{
		{mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 11000, Raw: kp}}}, idxEmailIndex},
		{mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 11000,
			Message: `E11000 duplicate key error collection: db.users index: usernameKey_unique dup key: { usernameKey: "ann" }`}}}, idxUsernameKey},
		{mongo.CommandError{Code: 1, Name: "InternalError",
			Message: "constraint failed: UNIQUE constraint failed: index 'users_5e7cc513_verifiedEmailIndex_unique' (2067)"}, idxEmailIndex},
		{mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 11000, Message: "E11000 duplicate key error collection: db.users"}}}, ""},
	} {
		if !isDup(tc.err) {
			t.Errorf("%v is not seen as a duplicate key", tc.err)
		}
		if got := dupIndex(tc.err); got != tc.want {
			t.Errorf("dupIndex(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
