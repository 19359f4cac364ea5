// Package snapshottest checks store adapters' snapshot.Source and
// snapshot.Sink: Fill writes records of every kind through the storage
// ports, Copy streams one store into another, and Equal compares two
// stores record by record. Each adapter's tests and the cross-adapter test
// of this package use them; the package imports no adapter, so an
// adapter's own tests can use it.
package snapshottest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store/snapshot"
	"github.com/consentgraph/consentgraph/internal/translog"
	"github.com/consentgraph/consentgraph/internal/work"
)

// Store is an adapter under test: its ports and its stream.
type Store interface {
	Accounts() accounts.Store
	Consent() consent.Store
	Outbox() outbox.Store
	Demographics() demographics.Store
	Partners() partners.Store
	Audit() audit.Store
	Signing() signing.Store
	Secrets() envelope.SecretStore
	Translog() translog.Store
	snapshot.Source
	snapshot.Sink
}

// T0 is the base of every time Fill writes: milliseconds, as stored.
var T0 = time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

func at(d time.Duration) time.Time { return T0.Add(d) }

func ptr[T any](v T) *T { return &v }

// Filled says what Fill wrote.
type Filled struct {
	// Users are the account ids, in id order.
	Users []string
	// Events is how many ledger events Fill recorded.
	Events int
}

// Fill writes records of every kind into s through its ports, with the
// edge cases a copy must keep: absent and present optional fields, sealed
// blobs, an account being erased, retired keys, a leased item, a move in
// flight, a revoked partner. users accounts are created (at least 4).
func Fill(t testing.TB, s Store, users int) Filled {
	t.Helper()
	if users < 4 {
		users = 4
	}
	ctx := context.Background()
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("fill: %s: %v", what, err)
		}
	}
	mustTrue := func(ok bool, err error, what string) {
		t.Helper()
		must(err, what)
		if !ok {
			t.Fatalf("fill: %s: the condition did not hold", what)
		}
	}

	for i, name := range []string{"subject", "blind-index"} {
		ok, err := s.Secrets().InsertSecret(ctx, envelope.SecretRecord{Name: name, Value: []byte{1, 2, byte(i), 0, 255}, KeyID: "mk1", CreatedAt: at(time.Duration(i) * time.Second)})
		mustTrue(ok, err, "insert secret")
	}
	for g := int64(1); g <= 3; g++ {
		ok, err := s.Signing().InsertKey(ctx, signing.KeyRecord{Kid: fmt.Sprintf("kid-%d", g), Generation: g, Alg: "EdDSA",
			PublicKey: []byte{byte(g), 9, 9}, PrivateKey: []byte{byte(g), 7, 7}, MasterKeyID: "mk1", CreatedAt: at(time.Duration(g) * time.Hour)})
		mustTrue(ok, err, "insert signing key")
	}
	must(s.Signing().RetireBelow(ctx, 3, at(4*time.Hour)), "retire keys")
	must(s.Signing().SetExpiry(ctx, "kid-1", at(5*time.Hour)), "expire key")

	must(s.Consent().AddFirstPolicy(ctx, consent.PolicyVersion{N: 1, Version: "2026-01", URL: "https://example.org/p1", PublishedAt: at(0), Reconsent: []string{}}), "first policy")
	ok, err := s.Consent().AppendPolicy(ctx, consent.PolicyVersion{N: 2, Version: "2026-02", URL: "https://example.org/p2", PublishedAt: at(time.Minute), Reconsent: []string{"newsletter", "surveys"}})
	mustTrue(ok, err, "append policy")

	var f Filled
	var batch []accounts.NewAccount
	for i := range users {
		id := fmt.Sprintf("u%04d-%s", i, strings.Repeat("x", i%3))
		f.Users = append(f.Users, id)
		r := accounts.Record{ID: id, Username: fmt.Sprintf("ユーザー%d", i), UsernameKey: fmt.Sprintf("user%d", i),
			PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", Role: auth.RoleUser, CreatedAt: at(time.Duration(i) * time.Minute)}
		if i == 0 {
			r.Role = auth.RoleAdmin
		}
		if i%2 == 0 {
			r.Email, r.EmailIndex = []byte{0xe0, byte(i)}, fmt.Sprintf("idx-%d", i)
		}
		if i%4 == 0 {
			r.Verification = &accounts.Verification{TokenHash: fmt.Sprintf("tok-%d", i), ExpiresAt: at(48 * time.Hour)}
		}
		if i%3 != 0 {
			r.Profile = accounts.SealedProfile{BirthYear: []byte{0xb1, byte(i)}, Country: []byte{0xc1}}
		}
		if i%5 == 1 {
			r.Profile.Gender, r.Profile.Language = []byte{0x61}, []byte{0x1a}
		}
		na := accounts.NewAccount{Account: r}
		if i%4 == 1 { // a sign-up under Global Privacy Control
			ev := event(1, "", "surveys", false, consent.GPC, at(time.Duration(i)*time.Minute))
			na.Consent = consent.Initial{State: consent.Stored{Head: 1, HeadHash: ev.Hash,
				State: map[string]consent.Entry{"surveys": entry(&ev)}}, Events: []consent.Event{ev}}
			na.Work = []work.Item{item(fmt.Sprintf("w-%s-0", id), id, "hook", at(time.Duration(i)*time.Minute))}
			f.Events++
		}
		batch = append(batch, na)
	}
	must(s.Accounts().ImportAccounts(ctx, batch), "import accounts")
	for i, id := range f.Users {
		must(s.Accounts().InsertDataKey(ctx, accounts.DataKey{UserID: id, Wrapped: []byte{0xd4, byte(i)}, CreatedAt: at(time.Duration(i) * time.Minute)}), "insert data key")
		if i%3 == 2 {
			continue // never chose anything
		}
		st, err := s.Consent().State(ctx, id)
		must(err, "read state")
		head, hash := st.Head, st.HeadHash
		for j, purpose := range []string{"newsletter", "aggregate_statistics", "newsletter"} {
			if j > i%3 {
				break
			}
			ev := event(head+1, hash, purpose, j != 1, consent.Explicit, at(time.Duration(i)*time.Minute+time.Duration(j+1)*time.Second))
			var items []work.Item
			if purpose == "newsletter" {
				items = []work.Item{item(fmt.Sprintf("w-%s-%d", id, head+1), id, "letters", ev.At)}
			}
			ok, err := s.Consent().RecordChange(ctx, id, ev, items)
			mustTrue(ok, err, "record consent change")
			head, hash = ev.Seq, ev.Hash
			f.Events++
		}
	}
	for i, id := range f.Users[:2] {
		must(s.Accounts().InsertSession(ctx, accounts.SessionRecord{ID: fmt.Sprintf("sess-%d", i), UserID: id, Role: auth.RoleUser,
			CreatedAt: at(time.Hour), ExpiresAt: at(time.Duration(i*48) * time.Hour)}), "insert session")
	}
	// Processor outcomes: one item delivered (a disclosure and processor
	// state), one leased and left so.
	due := at(24 * time.Hour)
	claimed, err := s.Outbox().Claim(ctx, "worker-1", []string{"letters"}, due, due.Add(time.Minute), 2)
	must(err, "claim")
	if len(claimed) < 2 {
		t.Fatalf("fill: want 2 claimable items, got %d", len(claimed))
	}
	done := claimed[0]
	ok, err = s.Outbox().MarkAttempted(ctx, done.UserID, "letters")
	mustTrue(ok, err, "mark attempted")
	ok, err = s.Outbox().Finish(ctx, outbox.Finish{Item: done, State: work.Done, Note: "sent", At: due.Add(time.Second),
		Disclosure: &outbox.Disclosure{ID: done.ID, UserID: done.UserID, Processor: "letters", Purpose: "newsletter",
			Fields: []string{"user.contact.email"}, Action: "DELIVER", Cause: done.Cause, At: due.Add(time.Second)},
		Proc: &outbox.ProcUpdate{Delivered: true, Ref: "ref-1"}})
	mustTrue(ok, err, "finish")
	ok, err = s.Outbox().Enqueue(ctx, work.Item{ID: "w-zz-erase", UserID: "gone", Processor: "hook", Purpose: "surveys", Action: work.Forget,
		Erase: true, Ref: "ref-gone", Cause: "erasure", State: work.Dead, Attempts: 9, NextAt: due, LastError: "HTTP 500", CreatedAt: due, UpdatedAt: due})
	mustTrue(ok, err, "enqueue")
	must(s.Outbox().SetProcessorFlag(ctx, "hook", false), "processor flag")
	must(s.Outbox().SetProcessorFlag(ctx, "letters", true), "processor flag")
	must(s.Outbox().PluginState("letters").Put(ctx, "s:abc", []byte(`{"confirmed":true}`)), "plugin state")
	must(s.Outbox().PluginState("letters").Put(ctx, "t:empty", nil), "plugin state")
	must(s.Outbox().PluginState("hook").Put(ctx, "k", []byte{0, 1}), "plugin state")
	must(s.Outbox().PutLink(ctx, outbox.Link{Processor: "letters", Subject: "sub-a", State: "PENDING_CONFIRMATION",
		Data: []byte(`{"actions":["resendConfirmation"]}`), UpdatedAt: due}), "link")
	must(s.Outbox().PutLink(ctx, outbox.Link{Processor: "hook", Subject: "sub-a", State: "ACTIVE", Data: []byte{}, UpdatedAt: due.Add(time.Second)}), "link")

	// Demographics: settled members, one imported, one move in flight.
	for i, id := range f.Users[1:4] {
		op := fmt.Sprintf("op-%d", i)
		ok, err := s.Demographics().BeginMove(ctx, id, 0, demographics.Pending{Op: op, Since: at(time.Hour), To: []byte{0x70, byte(i)}})
		mustTrue(ok, err, "begin move")
		if i == 2 {
			continue // in flight
		}
		ok, err = s.Demographics().SettleMove(ctx, id, op, []byte{0x70, byte(i)})
		mustTrue(ok, err, "settle move")
	}
	must(s.Demographics().ImportMembers(ctx, []demographics.Member{{UserID: f.Users[0], Ver: 3, Tuple: []byte{0x71}}}), "import member")
	must(s.Demographics().AddToCells(ctx, []demographics.CellDelta{
		{Mask: 0, ID: "total", Values: []byte{0x00}, Delta: 3},
		{Mask: 1, ID: "age-a", Values: []byte{0xa1}, Delta: 2},
		{Mask: 1, ID: "age-b", Values: []byte{0xa2}, Delta: 1},
		{Mask: 31, ID: "all-a", Values: []byte{0xff, 1}, Delta: 1},
	}), "add to cells")
	ok, err = s.Demographics().CreateCell(ctx, 6, demographics.CellRecord{ID: "cg-a", N: 0, Ver: 4, Values: []byte{0xc6}})
	mustTrue(ok, err, "create cell")
	must(s.Demographics().MarkDirty(ctx, at(2*time.Hour)), "mark dirty")

	for i, name := range []string{"Acme Research", "Beta Labs"} {
		must(s.Partners().Insert(ctx, partners.Record{ID: fmt.Sprintf("p%d", i), Name: name, KeyHash: fmt.Sprintf("kh%d", i),
			Budget: 1_000_000, PeriodDays: 30, CreatedAt: at(time.Duration(i) * time.Hour), Period: 7}), "insert partner")
	}
	rec, err := s.Partners().SpendInPeriod(ctx, "p0", 7, 250_000, 1_000_000)
	mustTrue(rec != nil, err, "spend budget")
	must(s.Partners().Revoke(ctx, "p1", at(3*time.Hour)), "revoke partner")

	for i, action := range []string{"partner.create", "consent.publish", "user.read"} {
		_, err := s.Audit().Append(ctx, func(head *audit.Entry) audit.Entry {
			e := audit.Entry{Seq: 1, At: at(time.Duration(i) * time.Second), Actor: "root", Action: action, Hash: fmt.Sprintf("h%d", i)}
			if head != nil {
				e.Seq, e.Prev = head.Seq+1, head.Hash
			}
			if i == 2 {
				e.Subject, e.Detail = f.Users[1], "profile"
			}
			return e
		})
		must(err, "append audit entry")
	}

	// The public log: five leaves, the subtrees they complete, the head.
	var leaves []translog.Leaf
	var hashes [][]byte
	for i := range int64(5) {
		data := []byte(fmt.Sprintf(`{"leaf":%d}`, i))
		leaves = append(leaves, translog.Leaf{Index: i, Item: fmt.Sprintf("audit/%020d", i+1), Data: data, Hash: translog.LeafHash(data), At: at(time.Duration(i) * time.Second)})
		hashes = append(hashes, leaves[i].Hash)
	}
	n01, n23 := translog.NodeHash(hashes[0], hashes[1]), translog.NodeHash(hashes[2], hashes[3])
	n03 := translog.NodeHash(n01, n23)
	nodes := []translog.Node{{ID: translog.NodeID{Level: 1, Index: 0}, Hash: n01}, {ID: translog.NodeID{Level: 1, Index: 1}, Hash: n23},
		{ID: translog.NodeID{Level: 2, Index: 0}, Hash: n03}}
	added, err := s.Translog().Append(ctx, translog.Batch{Leaves: leaves, Nodes: nodes,
		Head: translog.Head{Size: 5, Root: translog.NodeHash(n03, hashes[4]), At: at(5 * time.Second)}})
	mustTrue(added == 5, err, "append to the log")

	// An erased user's archived ledger, and an account being erased.
	ev := event(1, "", "newsletter", true, consent.Explicit, at(time.Minute))
	must(s.Consent().Archive(ctx, consent.Archived{Subject: "subj-erased", ArchivedAt: at(time.Hour),
		State: consent.Stored{Head: 1, HeadHash: ev.Hash, State: map[string]consent.Entry{"newsletter": entry(&ev)}}, Events: []consent.Event{ev}}), "archive")
	ok, err = s.Accounts().MarkErasing(ctx, f.Users[len(f.Users)-1], at(6*time.Hour))
	mustTrue(ok, err, "mark erasing")
	return f
}

// event makes a ledger event; its hash is made up (the stores do not check
// chains), but unique.
func event(seq int64, prev, purpose string, grant bool, method consent.Method, when time.Time) consent.Event {
	action := consent.Withdraw
	if grant {
		action = consent.Grant
	}
	return consent.Event{Seq: seq, Purpose: purpose, Action: action, PolicyVersion: "2026-02", PolicyN: 2, At: when, Method: method,
		ReceiptID: fmt.Sprintf("rcpt-%s-%d", purpose, when.UnixMilli()), Receipt: "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
		PrevHash: prev, Hash: fmt.Sprintf("hash-%d-%s-%d", seq, purpose, when.UnixMilli())}
}

func entry(ev *consent.Event) consent.Entry {
	return consent.Entry{Granted: ev.Action == consent.Grant, Seq: ev.Seq, At: ev.At, PolicyVersion: ev.PolicyVersion, PolicyN: ev.PolicyN, Method: ev.Method}
}

func item(id, userID, processor string, when time.Time) work.Item {
	return work.Item{ID: id, UserID: userID, Processor: processor, Purpose: "newsletter", Action: work.Deliver, Cause: "consent e1",
		State: work.Pending, NextAt: when, CreatedAt: when, UpdatedAt: when}
}

// DumpAll returns every record of every kind of src, by kind.
func DumpAll(t testing.TB, src snapshot.Source) map[snapshot.Kind][]snapshot.Record {
	t.Helper()
	out := map[snapshot.Kind][]snapshot.Record{}
	for _, kind := range snapshot.Kinds {
		var recs []snapshot.Record
		if err := src.Dump(context.Background(), kind, func(r snapshot.Record) error {
			recs = append(recs, r)
			return nil
		}); err != nil {
			t.Fatalf("dump %s: %v", kind, err)
		}
		n, err := src.Count(context.Background(), kind)
		if err != nil {
			t.Fatalf("count %s: %v", kind, err)
		}
		if n != int64(len(recs)) {
			t.Errorf("count %s says %d, the dump streamed %d", kind, n, len(recs))
		}
		out[kind] = recs
	}
	return out
}

// Copy streams every kind of src into dst in batches of at most batch
// records and returns how many records of each kind it copied.
func Copy(t testing.TB, src snapshot.Source, dst snapshot.Sink, batch int) map[snapshot.Kind]int {
	t.Helper()
	ctx := context.Background()
	n := map[snapshot.Kind]int{}
	for _, kind := range snapshot.Kinds {
		var buf []snapshot.Record
		flush := func() error {
			err := dst.Load(ctx, kind, buf)
			buf = buf[:0]
			return err
		}
		err := src.Dump(ctx, kind, func(r snapshot.Record) error {
			n[kind]++
			if buf = append(buf, r); len(buf) == batch {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			t.Fatalf("copy %s: %v", kind, err)
		}
	}
	return n
}

// Equal fails the test unless a and b hold the same records, in the same
// order. Times must be the same instants in UTC; a nil []byte (an absent
// sealed value) differs from an empty one; other nil slices and maps equal
// empty ones (the ports give them no meaning).
func Equal(t testing.TB, want, got map[snapshot.Kind][]snapshot.Record) {
	t.Helper()
	for _, kind := range snapshot.Kinds {
		w, g := want[kind], got[kind]
		if len(w) != len(g) {
			t.Errorf("%s: want %d records, got %d", kind, len(w), len(g))
		}
		for i := range min(len(w), len(g)) {
			ws, gs := Canon(w[i]), Canon(g[i])
			if ws != gs {
				t.Errorf("%s record %d differs:\nwant %s\n got %s", kind, i, ws, gs)
			}
		}
	}
}

// Canon renders a value for comparison: struct fields by name, map keys
// sorted, times as UTC milliseconds (flagging a time not in UTC), nil and
// empty []byte told apart, other nil and empty collections alike.
func Canon(v any) string {
	var b strings.Builder
	canon(&b, reflect.ValueOf(v))
	return b.String()
}

var timeType = reflect.TypeOf(time.Time{})

func canon(b *strings.Builder, v reflect.Value) {
	if !v.IsValid() {
		b.WriteString("<nil>")
		return
	}
	if v.Type() == timeType {
		tm := v.Interface().(time.Time)
		if tm.Location() != time.UTC {
			b.WriteString("NOT-UTC:")
		}
		b.WriteString(tm.UTC().Format("2006-01-02T15:04:05.000000000Z"))
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		b.WriteString("&")
		canon(b, v.Elem())
	case reflect.Struct:
		b.WriteString("{")
		for i := range v.NumField() {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(v.Type().Field(i).Name + ":")
			canon(b, v.Field(i))
		}
		b.WriteString("}")
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			if v.IsNil() {
				b.WriteString("bytes(nil)")
				return
			}
			fmt.Fprintf(b, "bytes(%x)", v.Bytes())
			return
		}
		b.WriteString("[")
		for i := range v.Len() {
			if i > 0 {
				b.WriteString(" ")
			}
			canon(b, v.Index(i))
		}
		b.WriteString("]")
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		b.WriteString("map[")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(b, "%v:", k)
			canon(b, v.MapIndex(k))
		}
		b.WriteString("]")
	default:
		fmt.Fprintf(b, "%#v", v.Interface())
	}
}

// Kinds returns the kinds with at least one record in dump, for messages.
func Kinds(dump map[snapshot.Kind][]snapshot.Record) []string {
	var out []string
	for k, recs := range dump {
		if len(recs) > 0 {
			out = append(out, fmt.Sprintf("%s=%d", k, len(recs)))
		}
	}
	slices.Sort(out)
	return out
}
