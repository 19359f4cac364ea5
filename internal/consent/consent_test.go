package consent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
	"github.com/consentgraph/consentgraph/internal/work"
)

var quiet = slog.New(slog.DiscardHandler)

type fixture struct {
	be   store.Backend
	svc  *consent.Service
	opts consent.Options
}

func setup(t *testing.T, be store.Backend, adjust ...func(*consent.Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	key := make([]byte, envelope.KeySize)
	_, _ = rand.Read(key)
	kr, err := envelope.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := signing.Open(ctx, be.Signing(), kr, quiet)
	if err != nil {
		t.Fatal(err)
	}
	o := consent.Options{
		Store: be.Consent(), Purposes: policy.MustDefaultCatalog(),
		Signer: ks, Secrets: envelope.OpenSecrets(be.Secrets(), kr), Logger: quiet,
	}
	for _, a := range adjust {
		a(&o)
	}
	svc, err := consent.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{be: be, svc: svc, opts: o}
}

// newUser creates an account the way sign-up does: the consent SignUp
// returns is written atomically with it.
func (f *fixture) newUser(t *testing.T, gpc bool) string {
	t.Helper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	initial, err := f.svc.SignUp(context.Background(), id, gpc)
	if err != nil {
		t.Fatal(err)
	}
	f.createAccount(t, id, initial)
	return id
}

// createAccount stores an account with the given initial consent.
func (f *fixture) createAccount(t *testing.T, id string, initial consent.Initial) {
	t.Helper()
	rec := accounts.Record{
		ID: id, Username: "u" + id[:min(6, len(id))], UsernameKey: "u" + id, PasswordHash: "x",
		Role: auth.RoleUser, CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	if err := f.be.Accounts().CreateAccount(context.Background(), accounts.NewAccount{Account: rec, Consent: initial}); err != nil {
		t.Fatal(err)
	}
}

// ledger returns the user's current consent and whole ledger.
func (f *fixture) ledger(t *testing.T, userID string) (*consent.Stored, []consent.Event) {
	t.Helper()
	st, events, err := f.svc.Ledger(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return st, events
}

func (f *fixture) stored(t *testing.T, userID string) *consent.Stored {
	t.Helper()
	st, _ := f.ledger(t, userID)
	return st
}

func (f *fixture) intact(t *testing.T, userID string) bool {
	t.Helper()
	ok, err := f.svc.LedgerIntact(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestGrantWithdrawGrantGivesThreeEventsAndIntactChain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		uid := f.newUser(t, false)
		r1 := must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
		r2 := must[*consent.Result](t)(f.svc.Withdraw(ctx, uid, policy.Newsletter))
		r3 := must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
		for i, r := range []*consent.Result{r1, r2, r3} {
			if !r.Changed || r.Event == nil || r.Event.Seq != int64(i+1) || r.Receipt != r.Event.Receipt {
				t.Fatalf("result %d: %+v", i+1, r)
			}
		}
		if !r3.Status.Granted || !r3.Status.Explicit || r2.Status.Granted {
			t.Fatalf("statuses after changes: %+v / %+v", r2.Status, r3.Status)
		}

		st, events := f.ledger(t, uid)
		if st.Head != 3 || len(events) != 3 {
			t.Fatalf("head %d with %d events, want 3", st.Head, len(events))
		}
		wantActions := []consent.Action{consent.Grant, consent.Withdraw, consent.Grant}
		prev := ""
		for i, e := range events {
			if e.Action != wantActions[i] || e.Purpose != policy.Newsletter || e.Method != consent.Explicit || e.PolicyVersion != "1" {
				t.Errorf("event %d: %+v", i+1, e)
			}
			if e.PrevHash != prev || len(e.Hash) != 64 {
				t.Errorf("event %d does not link: prev %q, want %q", i+1, e.PrevHash, prev)
			}
			prev = e.Hash
		}
		if st.HeadHash != prev || !st.State[policy.Newsletter].Granted || st.State[policy.Newsletter].Seq != 3 {
			t.Fatalf("state %+v / head hash %q", st.State, st.HeadHash)
		}
		if !f.intact(t, uid) {
			t.Fatal("ledger not intact after three honest changes")
		}

		// Receipts verify and carry the Kantara fields, but not the user id.
		check := f.svc.VerifyReceipt(ctx, r2.Receipt)
		if !check.Valid || check.Claims.Action != consent.Withdraw || check.Claims.Purpose != policy.Newsletter {
			t.Fatalf("receipt check %+v", check)
		}
		c := check.Claims
		subject := must[string](t)(f.svc.Pseudonym(ctx, uid))
		if c.Subject != subject || c.PIIPrincipalID != subject || c.Version != consent.KantaraVersion || c.ConsentReceiptID == "" ||
			c.PolicyURL != "/privacy" || c.PolicyVersion != "1" || len(c.PIIControllers) != 1 || c.PIIControllers[0].PIIController == "" ||
			c.Ledger == nil || c.Ledger.Sequence != 2 || c.Ledger.PreviousHash != events[0].Hash || c.Mechanism != "OPT_IN" {
			t.Fatalf("claims %+v", c)
		}
		if strings.Contains(r2.Receipt, uid) || strings.Contains(string(mustPayload(t, r2.Receipt)), uid) {
			t.Fatal("receipt contains the user id")
		}
	})
}

func mustPayload(t *testing.T, jws string) []byte {
	t.Helper()
	c, err := consent.ParseClaims(jws)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(fmt.Sprintf("%+v", *c))
}

func TestRepeatingCurrentStateIsNoOpWithReceipt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		uid := f.newUser(t, false)

		// Untouched OPT_IN: withdrawing repeats the default.
		r := must[*consent.Result](t)(f.svc.Withdraw(ctx, uid, policy.Surveys))
		if r.Changed || r.Event != nil || r.Receipt == "" {
			t.Fatalf("withdraw of default-off purpose: %+v", r)
		}
		check := f.svc.VerifyReceipt(ctx, r.Receipt)
		if !check.Valid || check.Claims.Action != consent.Withdraw || check.Claims.CollectionMethod != string(consent.Default) || check.Claims.Ledger != nil {
			t.Fatalf("default-state receipt: %+v", check)
		}
		// Untouched OPT_OUT: granting repeats the default; NOTICE_ONLY likewise.
		for _, p := range []string{policy.AggregateStatistics, policy.Essential} {
			r := must[*consent.Result](t)(f.svc.Grant(ctx, uid, p))
			if r.Changed || !r.Status.Granted || !f.svc.VerifyReceipt(ctx, r.Receipt).Valid {
				t.Fatalf("grant %s: %+v", p, r)
			}
		}

		first := must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
		again := must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
		if again.Changed || again.Receipt != first.Receipt || again.Event == nil || again.Event.Seq != 1 {
			t.Fatalf("repeated grant: %+v, want the first event's receipt", again)
		}
		if st := f.stored(t, uid); st.Head != 1 {
			t.Fatalf("head %d after one change and four repeats", st.Head)
		}
	})
}

func TestUnknownPurposeAndNoticeOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		uid := f.newUser(t, false)
		if _, err := f.svc.Grant(ctx, uid, "telepathy"); apperr.CodeOf(err) != apperr.NotFound {
			t.Fatalf("unknown purpose: %v", err)
		}
		_, err := f.svc.Withdraw(ctx, uid, policy.Essential)
		if ae, ok := apperr.As(err); !ok || ae.Code != apperr.BadUserInput || !strings.Contains(ae.Message, "notice-only") {
			t.Fatalf("withdraw notice-only: %v", err)
		}
		if _, err := f.svc.Grant(ctx, "nobody", policy.Newsletter); apperr.CodeOf(err) != apperr.NotFound {
			t.Fatalf("unknown user: %v", err)
		}
		if st := f.stored(t, uid); st.Head != 0 {
			t.Fatal("a refused change was recorded")
		}
	})
}

// threeEvents gives a fresh user a ledger of three events.
func (f *fixture) threeEvents(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	uid := f.newUser(t, false)
	must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
	must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Surveys))
	must[*consent.Result](t)(f.svc.Withdraw(ctx, uid, policy.Newsletter))
	if !f.intact(t, uid) {
		t.Fatal("fresh ledger not intact")
	}
	return uid
}

// stmt is one SQL statement of a tampering on the embedded store.
type stmt struct {
	sql  string
	args []any
}

// tamper edits stored consent behind the service's back: the statements on
// the embedded store (internal/store/sqlite/migrate.go), or mongo on the
// MongoDB layout (internal/store/mongostore/docs.go). Each must change
// something.
func (f *fixture) tamper(t *testing.T, stmts []stmt, mongo func(ctx context.Context, db *mongo.Database) (int64, error)) {
	t.Helper()
	if f.be.Kind() == "mongodb" {
		storetest.Tamper(t, f.be, "", nil, mongo)
		return
	}
	for _, s := range stmts {
		storetest.Tamper(t, f.be, s.sql, s.args, nil)
	}
}

// MongoDB layout: the ledger is the collection consent_events, one
// document per event, _id "<user>:<seq, 20 digits>"; the current consent
// is the field "consent" of the user's document in "users".
const (
	mongoUsers  = "users"
	mongoEvents = "consent_events"
)

func mongoEventID(userID string, seq int64) string { return fmt.Sprintf("%s:%020d", userID, seq) }

// mongoSet $sets fields of one document of coll.
func mongoSet(coll string, id any, set bson.D) func(ctx context.Context, db *mongo.Database) (int64, error) {
	return func(ctx context.Context, db *mongo.Database) (int64, error) {
		r, err := db.Collection(coll).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: set}})
		if err != nil {
			return 0, err
		}
		return r.ModifiedCount, nil
	}
}

// setEvent changes columns (fields) of one ledger event.
func (f *fixture) setEvent(t *testing.T, uid string, seq int64, sqlSet string, sqlArgs []any, set bson.D) {
	t.Helper()
	f.tamper(t, []stmt{{`UPDATE consent_events SET ` + sqlSet + ` WHERE user_id = ? AND seq = ?`, append(sqlArgs, uid, seq)}},
		mongoSet(mongoEvents, mongoEventID(uid, seq), set))
}

func TestHandEditedLedgerIsDetected(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		edits := map[string]func(t *testing.T, uid string){
			"action flipped": func(t *testing.T, uid string) {
				f.setEvent(t, uid, 2, `action = ?`, []any{"WITHDRAW"}, bson.D{{Key: "action", Value: "WITHDRAW"}})
			},
			"time moved": func(t *testing.T, uid string) {
				moved := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
				f.setEvent(t, uid, 1, `at = ?`, []any{moved.UnixMilli()}, bson.D{{Key: "at", Value: moved}})
			},
			"policy version changed": func(t *testing.T, uid string) {
				f.setEvent(t, uid, 3, `policy_version = ?`, []any{"0"}, bson.D{{Key: "policyVersion", Value: "0"}})
			},
			"receipt byte flipped": func(t *testing.T, uid string) {
				_, events := f.ledger(t, uid)
				b := []byte(events[1].Receipt)
				b[len(b)/2] ^= 1
				f.setEvent(t, uid, 2, `receipt = ?`, []any{string(b)}, bson.D{{Key: "receipt", Value: string(b)}})
			},
			"event deleted": func(t *testing.T, uid string) {
				f.tamper(t, []stmt{{`DELETE FROM consent_events WHERE user_id = ? AND seq = 2`, []any{uid}}},
					func(ctx context.Context, db *mongo.Database) (int64, error) {
						r, err := db.Collection(mongoEvents).DeleteOne(ctx, bson.D{{Key: "_id", Value: mongoEventID(uid, 2)}})
						if err != nil {
							return 0, err
						}
						return r.DeletedCount, nil
					})
			},
			"state edited": func(t *testing.T, uid string) {
				f.tamper(t, []stmt{{`UPDATE consent_state SET granted = 1 WHERE user_id = ? AND purpose = ?`, []any{uid, policy.Newsletter}}},
					mongoSet(mongoUsers, uid, bson.D{{Key: "consent.state." + policy.Newsletter + ".granted", Value: true}}))
			},
			// An attacker with store access rewrites an event and recomputes every
			// hash consistently: the signed receipts still give it away.
			"chain rewritten consistently": func(t *testing.T, uid string) {
				_, events := f.ledger(t, uid)
				subject := must[string](t)(f.svc.Pseudonym(ctx, uid))
				prev := ""
				for _, e := range events {
					old := e.Hash
					if e.Seq == 3 {
						e.Action = consent.Grant
					}
					e.PrevHash = prev
					e.Hash = consent.HashEvent(subject, &e)
					prev = e.Hash
					if e.Hash == old {
						continue
					}
					f.setEvent(t, uid, e.Seq, `action = ?, prev_hash = ?, hash = ?`, []any{string(e.Action), e.PrevHash, e.Hash},
						bson.D{{Key: "action", Value: string(e.Action)}, {Key: "prevHash", Value: e.PrevHash}, {Key: "hash", Value: e.Hash}})
				}
				f.tamper(t, []stmt{
					{`UPDATE consent_state SET granted = 1 WHERE user_id = ? AND purpose = ?`, []any{uid, policy.Newsletter}},
					{`UPDATE users SET consent_head_hash = ? WHERE id = ?`, []any{prev, uid}},
				}, mongoSet(mongoUsers, uid, bson.D{
					{Key: "consent.state." + policy.Newsletter + ".granted", Value: true},
					{Key: "consent.headHash", Value: prev},
				}))
			},
			"ledger moved from another user": func(t *testing.T, uid string) {
				other := f.threeEvents(t)
				f.tamper(t, []stmt{
					{`DELETE FROM consent_events WHERE user_id = ?`, []any{uid}},
					{`INSERT INTO consent_events (user_id, seq, purpose, action, policy_version, policy_n, at, method, receipt_id, receipt, prev_hash, hash)
						SELECT ?, seq, purpose, action, policy_version, policy_n, at, method, receipt_id, receipt, prev_hash, hash
						FROM consent_events WHERE user_id = ?`, []any{uid, other}},
					{`DELETE FROM consent_state WHERE user_id = ?`, []any{uid}},
					{`INSERT INTO consent_state (user_id, purpose, granted, seq, at, policy_version, policy_n, method)
						SELECT ?, purpose, granted, seq, at, policy_version, policy_n, method FROM consent_state WHERE user_id = ?`, []any{uid, other}},
					{`UPDATE users SET (consent_head, consent_head_hash) = (SELECT consent_head, consent_head_hash FROM users WHERE id = ?) WHERE id = ?`, []any{other, uid}},
				}, func(ctx context.Context, db *mongo.Database) (int64, error) {
					var doc struct {
						Consent bson.Raw `bson:"consent"`
					}
					if err := db.Collection(mongoUsers).FindOne(ctx, bson.D{{Key: "_id", Value: other}}).Decode(&doc); err != nil {
						return 0, err
					}
					cur, err := db.Collection(mongoEvents).Find(ctx, bson.D{{Key: "userId", Value: other}})
					if err != nil {
						return 0, err
					}
					var events []bson.M
					if err := cur.All(ctx, &events); err != nil {
						return 0, err
					}
					if _, err := db.Collection(mongoEvents).DeleteMany(ctx, bson.D{{Key: "userId", Value: uid}}); err != nil {
						return 0, err
					}
					docs := make([]any, 0, len(events))
					for _, e := range events {
						seq, _ := e["seq"].(int64)
						e["_id"], e["userId"] = mongoEventID(uid, seq), uid
						docs = append(docs, e)
					}
					if _, err := db.Collection(mongoEvents).InsertMany(ctx, docs); err != nil {
						return 0, err
					}
					return mongoSet(mongoUsers, uid, bson.D{{Key: "consent", Value: doc.Consent}})(ctx, db)
				})
			},
		}
		for name, edit := range edits {
			t.Run(name, func(t *testing.T) {
				uid := f.threeEvents(t)
				edit(t, uid)
				if f.intact(t, uid) {
					t.Fatal("tampering not detected")
				}
			})
		}
	})
}

func TestConcurrentChangesKeepStateAndLedgerInAgreement(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		uid := f.newUser(t, false)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			changed []*consent.Result
		)
		for i := range 20 {
			wg.Go(func() {
				var r *consent.Result
				var err error
				if i%2 == 0 {
					r, err = f.svc.Grant(ctx, uid, policy.Newsletter)
				} else {
					r, err = f.svc.Withdraw(ctx, uid, policy.Newsletter)
				}
				if err != nil {
					t.Error(err)
					return
				}
				if r.Changed {
					mu.Lock()
					changed = append(changed, r)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		st, events := f.ledger(t, uid)
		if int(st.Head) != len(changed) || len(events) != len(changed) || len(changed) == 0 {
			t.Fatalf("head %d, %d events, %d calls reported a change", st.Head, len(events), len(changed))
		}
		inLedger := map[string]bool{}
		for _, e := range events {
			inLedger[e.ReceiptID] = true
		}
		for _, r := range changed {
			if !inLedger[r.Event.ReceiptID] {
				t.Fatalf("change %d reported but lost", r.Event.Seq)
			}
		}
		last := events[len(events)-1]
		s, _ := f.svc.Rules().Status(st, policy.Newsletter)
		if s.Granted != (last.Action == consent.Grant) || st.State[policy.Newsletter].Seq != last.Seq {
			t.Fatalf("state %+v disagrees with last event %+v", st.State[policy.Newsletter], last)
		}
		if !f.intact(t, uid) {
			t.Fatal("ledger not intact after concurrent changes")
		}
	})
}

// hookItem is the work item a test hook contributes for a change.
func hookItem(ch consent.Change) work.Item {
	now := time.Now().UTC().Truncate(time.Millisecond)
	a := work.Forget
	if ch.Granted {
		a = work.Deliver
	}
	return work.Item{ID: "hook-" + ch.Event.ReceiptID, UserID: ch.UserID, Processor: "test", Purpose: ch.Purpose.ID, Action: a,
		Cause: "consent " + consent.EventKey(ch.Event.Seq), State: work.Pending, NextAt: now, CreatedAt: now, UpdatedAt: now}
}

// queued returns every work item in the outbox queue, after relaying any
// still held with the user's record.
func (f *fixture) queued(t *testing.T, uid string) []work.Item {
	t.Helper()
	ctx := context.Background()
	if _, err := f.be.Outbox().Relay(ctx, uid); err != nil {
		t.Fatal(err)
	}
	items, err := f.be.Outbox().Items(ctx, "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func TestWriteHookCommitsWithTheChange(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		var failNext atomic.Bool
		f.svc.AddWriteHook(func(_ context.Context, ch consent.Change) ([]work.Item, error) {
			if failNext.Load() {
				return nil, errors.New("outbox full")
			}
			return []work.Item{hookItem(ch)}, nil
		})
		uid := f.newUser(t, false)
		r := must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Surveys))

		items := f.queued(t, uid)
		if len(items) != 1 {
			t.Fatalf("outbox %+v, want the hook's one item", items)
		}
		item := items[0]
		if item.ID != "hook-"+r.Event.ReceiptID || item.UserID != uid || item.Purpose != policy.Surveys || item.Action != work.Deliver ||
			item.Cause != "consent e1" || item.State != work.Pending {
			t.Fatalf("outbox %+v", items)
		}

		failNext.Store(true)
		if _, err := f.svc.Withdraw(ctx, uid, policy.Surveys); err == nil || !strings.Contains(err.Error(), "outbox full") {
			t.Fatalf("failing hook: %v", err)
		}
		if st := f.stored(t, uid); st.Head != 1 || !st.State[policy.Surveys].Granted {
			t.Fatal("the change was recorded although its hook failed")
		}
		if items := f.queued(t, uid); len(items) != 1 {
			t.Fatalf("outbox after the failed change: %+v", items)
		}
	})
}

// TestWriteHookCannotTouchConsent: a hook only contributes work items; it
// gets a copy of the change, so whatever it does to that copy (here: it
// tries to move the ledger head and rewrite the event) cannot reach the
// ledger.
func TestWriteHookCannotTouchConsent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		f := setup(t, be)
		f.svc.AddWriteHook(func(_ context.Context, ch consent.Change) ([]work.Item, error) {
			ch.Event.Seq, ch.Event.Hash, ch.Event.Action, ch.Granted = 99, "forged", consent.Withdraw, false
			return nil, nil
		})
		uid := f.newUser(t, false)
		r, err := f.svc.Grant(context.Background(), uid, policy.Newsletter)
		if err != nil {
			t.Fatal(err)
		}
		if r.Event.Seq != 1 || r.Event.Action != consent.Grant || !r.Status.Granted {
			t.Fatalf("hook changed the result: %+v", r)
		}
		if st := f.stored(t, uid); st.Head != 1 || !st.State[policy.Newsletter].Granted || !f.intact(t, uid) {
			t.Fatalf("hook overwrote the ledger: %+v", st)
		}
	})
}

func TestOnChangeListener(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		type call struct {
			user, purpose string
			granted       bool
		}
		var calls []call
		f.svc.OnChange(func(_ context.Context, userID, purpose string, granted bool) {
			calls = append(calls, call{userID, purpose, granted})
		})
		uid := f.newUser(t, true) // sign-up with GPC: no call
		must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.AggregateStatistics))
		must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.AggregateStatistics)) // no-op: no call
		must[*consent.Result](t)(f.svc.Withdraw(ctx, uid, policy.AggregateStatistics))
		want := []call{{uid, policy.AggregateStatistics, true}, {uid, policy.AggregateStatistics, false}}
		if fmt.Sprint(calls) != fmt.Sprint(want) {
			t.Fatalf("listener calls %v, want %v", calls, want)
		}
	})
}

func TestReconsentAfterPublishPolicy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		var published []string
		f.svc.OnPolicyPublished(func(_ context.Context, v consent.PolicyVersion) { published = append(published, v.Version) })
		uid := f.newUser(t, false)
		must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
		must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Surveys))

		v2 := must[consent.PolicyVersion](t)(f.svc.PublishPolicy(ctx, "2", "https://example.org/privacy/v2", []string{policy.Newsletter, policy.Newsletter}))
		if v2.N != 2 || len(v2.Reconsent) != 1 || f.svc.Policy().Version != "2" || fmt.Sprint(published) != "[2]" {
			t.Fatalf("published %+v, current %+v, listeners %v", v2, f.svc.Policy(), published)
		}
		byID := map[string]consent.Status{}
		for _, s := range must[[]consent.Status](t)(f.svc.Statuses(ctx, uid)) {
			byID[s.Purpose.ID] = s
		}
		if nl := byID[policy.Newsletter]; nl.Granted || !nl.NeedsRenewal {
			t.Fatalf("newsletter after material change: %+v", nl)
		}
		if sv := byID[policy.Surveys]; !sv.Granted || sv.NeedsRenewal {
			t.Fatalf("surveys (not changed materially): %+v", sv)
		}
		if ok, _ := f.svc.InForce(ctx, uid, policy.Newsletter); ok {
			t.Fatal("newsletter still in force")
		}
		r := must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
		if !r.Changed || !r.Status.Granted || r.Status.NeedsRenewal || r.Event.PolicyVersion != "2" {
			t.Fatalf("renewed grant: %+v", r)
		}
		if c := f.svc.VerifyReceipt(ctx, r.Receipt); !c.Valid || c.Claims.PolicyURL != "https://example.org/privacy/v2" || c.Claims.PolicyVersion != "2" {
			t.Fatalf("receipt after renewal: %+v", c)
		}
		if !f.intact(t, uid) {
			t.Fatal("ledger not intact")
		}

		bad := []struct {
			version, url string
			reconsent    []string
			code         apperr.Code
			field        string
		}{
			{"2", "/p", nil, apperr.Conflict, "version"},
			{"3", "/p", []string{"nope"}, apperr.NotFound, "reconsent"},
			{"3", "/p", []string{policy.Essential}, apperr.BadUserInput, "reconsent"},
			{"3", "ftp://x", nil, apperr.BadUserInput, "url"},
			{" 3", "/p", nil, apperr.BadUserInput, "version"},
		}
		for _, b := range bad {
			_, err := f.svc.PublishPolicy(ctx, b.version, b.url, b.reconsent)
			ae, ok := apperr.As(err)
			if !ok || ae.Code != b.code || ae.Field != b.field {
				t.Errorf("publish %q %q %v: %v, want %s on %s", b.version, b.url, b.reconsent, err, b.code, b.field)
			}
		}
	})
}

func TestPolicyPublishedOnAnotherReplicaApplies(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		a := setup(t, be)
		b, err := consent.New(ctx, a.opts) // a second replica on the same store
		if err != nil {
			t.Fatal(err)
		}
		uid := a.newUser(t, false)
		must[consent.PolicyVersion](t)(a.svc.PublishPolicy(ctx, "2", "/privacy/2", nil))
		// Writes refresh first, so b records under version 2 without waiting.
		r := must[*consent.Result](t)(b.Grant(ctx, uid, policy.Newsletter))
		if r.Event.PolicyVersion != "2" || b.Policy().Version != "2" {
			t.Fatalf("replica b recorded under %q, current %q", r.Event.PolicyVersion, b.Policy().Version)
		}
		if _, err := consent.New(ctx, a.opts); err != nil { // restart keeps published versions
			t.Fatal(err)
		}
		if err := a.svc.Refresh(ctx); err != nil || len(a.svc.Rules().Versions()) != 2 {
			t.Fatalf("versions after restart: %v %v", a.svc.Rules().Versions(), err)
		}
	})
}

func TestGlobalPrivacyControl(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be, func(o *consent.Options) {
			ps := append(policy.DefaultPurposes(), policy.Purpose{
				ID: "product_improvement", Mechanism: policy.OptOut, Description: "Improving the product from usage counts.",
			})
			o.Purposes = must[*policy.Catalog](t)(policy.NewCatalog(ps))
		})

		// Sign-up with GPC: the sharing OPT_OUT purpose is withdrawn, atomically
		// with the account; the OPT_OUT purpose without third parties is not.
		uid := f.newUser(t, true)
		st, events := f.ledger(t, uid)
		if st.Head != 1 || len(events) != 1 {
			t.Fatalf("sign-up with GPC recorded %d events (head %d)", len(events), st.Head)
		}
		e := events[0]
		if e.Purpose != policy.AggregateStatistics || e.Action != consent.Withdraw || e.Method != consent.GPC {
			t.Fatalf("sign-up event %+v", e)
		}
		if f.svc.Rules().InForce(st, policy.AggregateStatistics) || !f.svc.Rules().InForce(st, "product_improvement") {
			t.Fatal("GPC at sign-up applied to the wrong purposes")
		}
		if !f.intact(t, uid) {
			t.Fatal("sign-up ledger not intact")
		}

		// Without GPC nothing is recorded at sign-up.
		plain := f.newUser(t, false)
		if st := f.stored(t, plain); st.Head != 0 || len(st.State) != 0 {
			t.Fatalf("sign-up without GPC recorded %+v", st)
		}
		// A later request with GPC withdraws, once.
		if n := must[int](t)(f.svc.ApplyGPC(ctx, plain)); n != 1 {
			t.Fatalf("ApplyGPC recorded %d withdrawals, want 1", n)
		}
		if n := must[int](t)(f.svc.ApplyGPC(ctx, plain)); n != 0 {
			t.Fatalf("repeated ApplyGPC recorded %d", n)
		}
		// An explicit grant made after the signal is respected.
		must[*consent.Result](t)(f.svc.Grant(ctx, plain, policy.AggregateStatistics))
		if n := must[int](t)(f.svc.ApplyGPC(ctx, plain)); n != 0 {
			t.Fatal("GPC overrode an explicit grant")
		}
		if ok, _ := f.svc.InForce(ctx, plain, policy.AggregateStatistics); !ok {
			t.Fatal("explicit grant not in force")
		}
		if _, events := f.ledger(t, plain); len(events) != 2 || events[0].Method != consent.GPC || events[1].Method != consent.Explicit {
			t.Fatalf("events %+v, want a GPC then an explicit one", events)
		}
	})
}

func TestProcessorsCountAsThirdParties(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be, func(o *consent.Options) {
			o.ThirdParties = func(p string) []string {
				if p == policy.Newsletter {
					return []string{"Mailchimp"}
				}
				return nil
			}
		})
		uid := f.newUser(t, false)
		r := must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
		c := f.svc.VerifyReceipt(ctx, r.Receipt).Claims
		if fmt.Sprint(c.ThirdParties) != "[Mailchimp]" || !c.Services[0].Purposes[0].ThirdPartyDisclosure {
			t.Fatalf("third parties in receipt: %+v", c)
		}
	})
}

func TestUserWithoutConsentFieldAndErasingUser(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		// Accounts created before consent existed (e.g. the first admin) have
		// no consent at all: on MongoDB, not even the field.
		f.createAccount(t, "legacy", consent.Initial{})
		if be.Kind() == "mongodb" {
			storetest.Tamper(t, be, "", nil, func(ctx context.Context, db *mongo.Database) (int64, error) {
				r, err := db.Collection(mongoUsers).UpdateOne(ctx, bson.D{{Key: "_id", Value: "legacy"}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "consent", Value: ""}}}})
				if err != nil {
					return 0, err
				}
				return r.ModifiedCount, nil
			})
		}
		if statuses := must[[]consent.Status](t)(f.svc.Statuses(ctx, "legacy")); len(statuses) != 4 {
			t.Fatalf("statuses %v", statuses)
		}
		must[*consent.Result](t)(f.svc.Grant(ctx, "legacy", policy.Newsletter))
		must[*consent.Result](t)(f.svc.Withdraw(ctx, "legacy", policy.Newsletter))
		if !f.intact(t, "legacy") || f.stored(t, "legacy").Head != 2 {
			t.Fatal("legacy user's ledger")
		}

		uid := f.newUser(t, false)
		if ok, err := be.Accounts().MarkErasing(ctx, uid, time.Now().UTC().Truncate(time.Millisecond)); err != nil || !ok {
			t.Fatalf("mark erasing: %v, %v", ok, err)
		}
		if _, err := f.svc.Grant(ctx, uid, policy.Newsletter); apperr.CodeOf(err) != apperr.NotFound {
			t.Fatalf("grant while erasing: %v", err)
		}
	})
}

func TestHistoryPagination(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		uid := f.newUser(t, false)
		for i := range 5 {
			must[*consent.Result](t)(f.svc.Set(ctx, uid, policy.Newsletter, i%2 == 0, consent.Explicit))
		}
		two := 2
		p1 := must[*consent.Page](t)(f.svc.History(ctx, uid, &two, nil))
		if len(p1.Events) != 2 || !p1.HasNextPage || p1.HasPreviousPage || p1.TotalCount != 5 || p1.Events[0].Seq != 1 {
			t.Fatalf("page 1 %+v", p1)
		}
		cur := consent.Cursor(p1.Events[1].Seq)
		p2 := must[*consent.Page](t)(f.svc.History(ctx, uid, nil, &cur))
		if len(p2.Events) != 3 || p2.HasNextPage || !p2.HasPreviousPage || p2.Events[0].Seq != 3 {
			t.Fatalf("page 2 %+v", p2)
		}
		bad := "not-a-cursor"
		if _, err := f.svc.History(ctx, uid, nil, &bad); apperr.CodeOf(err) != apperr.BadUserInput {
			t.Fatalf("bad cursor: %v", err)
		}
		tooMany := consent.MaxPageSize + 1
		if _, err := f.svc.History(ctx, uid, &tooMany, nil); apperr.CodeOf(err) != apperr.BadUserInput {
			t.Fatalf("first over the cap: %v", err)
		}
	})
}

func TestArchiveLedgerKeepsVerifiableProof(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		// A clock that moves on every reading, so a rewritten archive would
		// show another time.
		var ticks atomic.Int64
		base := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
		f := setup(t, be, func(o *consent.Options) {
			o.Now = func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Second) }
		})
		uid := f.threeEvents(t)
		subject := must[string](t)(f.svc.Pseudonym(ctx, uid))
		var first *consent.Archived
		for i := range 2 { // idempotent
			if err := f.svc.ArchiveLedger(ctx, uid); err != nil {
				t.Fatal(err)
			}
			a, err := be.Consent().Archived(ctx, subject)
			if err != nil || a == nil {
				t.Fatalf("archive after call %d: %v, %v", i+1, a, err)
			}
			if first == nil {
				first = a
			} else if !a.ArchivedAt.Equal(first.ArchivedAt) || len(a.Events) != len(first.Events) {
				t.Fatalf("second ArchiveLedger rewrote the archive: %v, then %v", first.ArchivedAt, a.ArchivedAt)
			}
		}
		if err := be.Accounts().DeleteAccount(ctx, uid); err != nil {
			t.Fatal(err)
		}
		if left, err := be.Consent().Events(ctx, uid, 0, 0); err != nil || len(left) != 0 {
			t.Fatalf("the deleted account's ledger: %d events, %v", len(left), err)
		}
		archived, err := be.Consent().Archived(ctx, subject)
		if err != nil || archived == nil {
			t.Fatalf("archive after deletion: %v, %v", archived, err)
		}
		verify := func(ctx context.Context, r string) (*consent.Claims, error) {
			c := f.svc.VerifyReceipt(ctx, r)
			if !c.Valid {
				return nil, errors.New(c.Reason)
			}
			return c.Claims, nil
		}
		if archived.Subject != subject || archived.State.Head != 3 || archived.State.Erasing ||
			consent.VerifyLedger(ctx, subject, &archived.State, archived.Events, verify) != nil {
			t.Fatalf("archived ledger %+v does not verify", archived)
		}
	})
}

func TestVerifyReceiptReasons(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		f := setup(t, be)
		uid := f.newUser(t, false)
		r := must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
		parts := strings.Split(r.Receipt, ".")
		other := setup(t, storetest.Open(t, be.Kind())) // another deployment's keys
		foreign := must[*consent.Result](t)(other.svc.Grant(ctx, other.newUser(t, false), policy.Newsletter))
		cases := map[string]struct {
			receipt string
			reason  string
		}{
			"altered payload": {parts[0] + "." + flip(parts[1]) + "." + parts[2], "altered or forged"},
			"altered sig":     {parts[0] + "." + parts[1] + "." + flip(parts[2]), "altered or forged"},
			"foreign key":     {foreign.Receipt, "does not publish"},
			"garbage":         {"hello", "not a compact JWS"},
			"too long":        {strings.Repeat("a", consent.MaxReceiptLength+1), "longer than"},
		}
		for name, c := range cases {
			got := f.svc.VerifyReceipt(ctx, c.receipt)
			if got.Valid || !strings.Contains(got.Reason, c.reason) {
				t.Errorf("%s: %+v, want invalid with %q", name, got, c.reason)
			}
		}
		// Signed by this service, but not a receipt.
		jws, err := f.opts.Signer.SignCompact(ctx, []byte(`{"purpose":"newsletter","action":"GRANT"}`), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := f.svc.VerifyReceipt(ctx, jws); got.Valid || !strings.Contains(got.Reason, "not a consent receipt") {
			t.Errorf("other signed document: %+v", got)
		}
	})
}

// flip changes one character of a base64url string to another valid one.
func flip(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
