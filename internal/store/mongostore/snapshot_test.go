package mongostore

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/consentgraph/consentgraph/internal/store/snapshot"
	"github.com/consentgraph/consentgraph/internal/store/snapshot/snapshottest"
	"github.com/consentgraph/consentgraph/internal/store/sqlite"
	"github.com/consentgraph/consentgraph/internal/work"
)

// TestSnapshotMergesWhatUserDocumentsHold: a dump carries the events and
// items committed inside user documents and never relayed (the new
// layout's pending ones, the previous version's whole ledger, a relay
// interrupted between insert and unset), without changing the documents,
// and leaves out events of accounts that no longer exist; counts agree.
func TestSnapshotMergesWhatUserDocumentsHold(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	users := d.coll(usersColl)
	set := func(id string, fields bson.D) {
		t.Helper()
		if _, err := users.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: fields}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		if err := d.Accounts().CreateAccount(ctx, newAccount(id)); err != nil {
			t.Fatal(err)
		}
	}
	// a: event 1 relayed; event 2 and item xa committed, relay never ran.
	if ok, err := d.Consent().RecordChange(ctx, "a", ev(1, "newsletter", true), nil); !ok || err != nil {
		t.Fatal(ok, err)
	}
	e2 := ev(2, "newsletter", false)
	set("a", bson.D{{Key: "consent.head", Value: int64(2)}, {Key: "consent.headHash", Value: e2.Hash},
		{Key: "consent.state.newsletter", Value: entryOf(&e2)}, {Key: pendingField + ".e2", Value: newEventDoc(&e2)},
		{Key: embeddedField + ".xa", Value: newItemDoc(&work.Item{ID: "xa", UserID: "a", Processor: "hook", State: work.Pending, NextAt: t0})},
		{Key: relayField, Value: newTag()}})
	// b: the previous version's layout, the whole ledger in the document
	// and an item left embedded, no relay tag.
	e1, e2b := ev(1, "surveys", true), ev(2, "surveys", false)
	set("b", bson.D{{Key: "consent.head", Value: int64(2)}, {Key: "consent.headHash", Value: e2b.Hash},
		{Key: "consent.state.surveys", Value: entryOf(&e2b)},
		{Key: legacyEventsField, Value: bson.D{{Key: "e1", Value: newEventDoc(&e1)}, {Key: "e2", Value: newEventDoc(&e2b)}}},
		{Key: embeddedField + ".xb", Value: newItemDoc(&work.Item{ID: "xb", UserID: "b", Processor: "hook", State: work.Pending, NextAt: t0})}})
	// c: a relay that inserted event 1 and item xc and crashed before the
	// unset; the item was processed since, so the collection's copy is newer.
	c1 := ev(1, "newsletter", true)
	xc := work.Item{ID: "xc", UserID: "c", Processor: "hook", State: work.Pending, NextAt: t0}
	if ok, err := d.Consent().RecordChange(ctx, "c", c1, []work.Item{xc}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	set("c", bson.D{{Key: pendingField + ".e1", Value: newEventDoc(&c1)}, {Key: embeddedField + ".xc", Value: newItemDoc(&xc)}, {Key: relayField, Value: newTag()}})
	if _, err := d.coll(itemsColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: "xc"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: work.Done}}}}); err != nil {
		t.Fatal(err)
	}
	// Events of accounts deleted while a relay moved them, sorting before,
	// between and after the live ones.
	for _, gone := range []string{"0gone", "bb", "zgone"} {
		e := ev(1, "newsletter", true)
		if _, err := d.coll(eventsColl).InsertOne(ctx, eventRow{ID: eventID(gone, 1), UserID: gone, Event: newEventDoc(&e)}); err != nil {
			t.Fatal(err)
		}
	}

	dump := snapshottest.DumpAll(t, d) // also checks Count against each dump
	var got []string
	for _, r := range dump[snapshot.Events] {
		got = append(got, fmt.Sprintf("%s:%d:%s", r.Event.UserID, r.Event.Event.Seq, r.Event.Event.Hash))
	}
	want := []string{"a:1:" + ev(1, "newsletter", true).Hash, "a:2:" + e2.Hash, "b:1:" + e1.Hash, "b:2:" + e2b.Hash, "c:1:" + c1.Hash}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	got = nil
	for _, r := range dump[snapshot.Items] {
		got = append(got, r.Item.ID+":"+string(r.Item.State))
	}
	if want := []string{"xa:PENDING", "xb:PENDING", "xc:DONE"}; !reflect.DeepEqual(got, want) {
		t.Errorf("items %v, want %v", got, want)
	}
	for _, r := range dump[snapshot.Accounts] {
		if a := r.Account; a.Account.ID == "a" && (a.Consent.Head != 2 || a.Consent.State["newsletter"].Seq != 2) {
			t.Errorf("account a: %+v", a.Consent)
		}
	}
	// Nothing was relayed: the dump only read.
	if n := count(t, d, usersColl, bson.D{{Key: relayField, Value: bson.D{{Key: "$exists", Value: true}}}}); n != 2 {
		t.Errorf("%d documents still tagged for the relay, want 2 (a and c)", n)
	}
	if n := count(t, d, eventsColl, bson.D{}); n != 5 {
		t.Errorf("%d documents in consent_events, want the 5 written", n)
	}

	// The merged stream loads into the embedded store (whose ledger rows
	// need their account) and reads back the same.
	db, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "c.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	snapshottest.Copy(t, d, db, 100)
	snapshottest.Equal(t, dump, snapshottest.DumpAll(t, db))
}

// TestSnapshotLoadsPoliciesInSeveralBatches: the policy document takes
// versions batch after batch, and only in order.
func TestSnapshotLoadsPoliciesInSeveralBatches(t *testing.T) {
	ctx := context.Background()
	src := openTest(t, Options{})
	snapshottest.Fill(t, src, 4)
	dump := snapshottest.DumpAll(t, src)
	pol := dump[snapshot.Policies]
	if len(pol) != 2 {
		t.Fatalf("%d policy versions", len(pol))
	}
	dst := openTest(t, Options{})
	if err := dst.Load(ctx, snapshot.Policies, pol[1:]); err == nil {
		t.Fatal("version 2 loaded before version 1")
	}
	for i := range pol {
		if err := dst.Load(ctx, snapshot.Policies, pol[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.Load(ctx, snapshot.Policies, pol[:1]); err == nil {
		t.Fatal("version 1 loaded twice")
	}
	vs, err := dst.Consent().PolicyVersions(ctx)
	if err != nil || len(vs) != 2 || vs[1].Reconsent[1] != "surveys" {
		t.Fatalf("policies %+v %v", vs, err)
	}
}

// TestForeignCollectionsAreNamed: collections no port reads (a processor's
// own, as the previous version let them keep) are listed with their sizes;
// those of the ports are not, empty or not.
func TestForeignCollectionsAreNamed(t *testing.T) {
	ctx := context.Background()
	d := openTest(t, Options{})
	snapshottest.Fill(t, d, 4)
	if _, err := d.Database().Collection("plugin_letters").InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "s1"}}, bson.D{{Key: "_id", Value: "s2"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := d.Foreign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, map[string]int64{"plugin_letters": 2}) {
		t.Fatalf("foreign collections %v, want plugin_letters with 2 documents", got)
	}
}
