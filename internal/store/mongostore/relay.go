package mongostore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The relay. A consent change (or a sign-up) commits in ONE write of the
// user document: the new state, the event under consent.pending.e<seq>,
// its work items under outbox.<id>, and a fresh relay tag. What is
// committed there is the truth; moving it to where it lives for good is
// derived from it, idempotently:
//
//  1. insert each event into consent_events under _id "<user>:<seq>"
//     (a duplicate key means an earlier relay already did);
//  2. insert each item into the outbox collection under its id (likewise);
//  3. remove them from the user document. When the relay knows everything
//     the document holds (it read it, or it made the write that tagged
//     it), it removes the whole consent.pending, consent.events and outbox
//     fields and the tag, in one update conditional on the tag still being
//     the one it knows: any later write would have changed it. Otherwise it
//     removes just the keys it moved and leaves the tag to the relay of
//     the later write.
//
// A crash anywhere leaves the document tagged, and Relay (per user, or the
// sweep over the relay_sparse index) finishes the job. Readers never see a
// gap: they read the document before the collection, and an event leaves
// the document only after it is in the collection.

// moveOut is what one relay moves out of one user document.
type moveOut struct {
	userID string
	// tag is the relay tag the document had when its contents were known;
	// "" for a document without one (written by the previous version).
	tag string
	// complete says events and items are ALL the document holds under
	// consent.pending, consent.events and outbox (while tag is unchanged).
	complete bool
	// events and items by their field path in the user document.
	events map[string]eventDoc
	items  map[string]itemDoc
}

// newTag returns a fresh relay tag.
func newTag() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// followUp relays right after a committed write. The write stands whatever
// happens here: a failure is logged and the sweep retries.
func (d *DB) followUp(ctx context.Context, mv *moveOut) {
	if err := d.move(context.WithoutCancel(ctx), mv); err != nil {
		d.log.WarnContext(ctx, "moving committed consent events and work items out of the user document failed; the relay sweep will finish it",
			"user", mv.userID, "err", err)
	}
}

// followUpMany relays after a bulk import: all events in one insert, all
// items in another, and one batch of conditional updates.
func (d *DB) followUpMany(ctx context.Context, mvs []*moveOut) {
	if len(mvs) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var events, items []any
	var models []mongo.WriteModel
	for _, mv := range mvs {
		for _, e := range mv.events {
			events = append(events, eventRow{ID: eventID(mv.userID, e.Seq), UserID: mv.userID, Event: e})
		}
		for _, it := range mv.items {
			items = append(items, it)
		}
		models = append(models, mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: "_id", Value: mv.userID}, {Key: relayField, Value: mv.tag}}).
			SetUpdate(bson.D{{Key: "$unset", Value: wholeFields()}}))
	}
	err := insertAll(ctx, d.coll(eventsColl), events)
	if err == nil {
		err = insertAll(ctx, d.coll(itemsColl), items)
	}
	if err == nil {
		_, err = d.coll(usersColl).BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	}
	if err != nil {
		d.log.WarnContext(ctx, "moving imported consent events and work items out of the user documents failed; the relay sweep will finish it", "err", err)
	}
}

// insertAll inserts docs, treating those that exist already as done.
func insertAll(ctx context.Context, c *mongo.Collection, docs []any) error {
	if len(docs) == 0 {
		return nil
	}
	_, err := c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err != nil && !allDup(err) {
		return fmt.Errorf("relay into %s: %w", c.Name(), err)
	}
	return nil
}

// wholeFields unsets everything a relay moves, and the tag.
func wholeFields() bson.D {
	return bson.D{{Key: pendingField, Value: ""}, {Key: legacyEventsField, Value: ""}, {Key: embeddedField, Value: ""}, {Key: relayField, Value: ""}}
}

// move runs the three steps for one user document.
func (d *DB) move(ctx context.Context, mv *moveOut) error {
	events := make([]any, 0, len(mv.events))
	seqs := make([]string, 0, len(mv.events))
	for _, e := range mv.events {
		id := eventID(mv.userID, e.Seq)
		events = append(events, eventRow{ID: id, UserID: mv.userID, Event: e})
		seqs = append(seqs, id)
	}
	if err := insertAll(ctx, d.coll(eventsColl), events); err != nil {
		return err
	}
	items := make([]any, 0, len(mv.items))
	for _, it := range mv.items {
		items = append(items, it)
	}
	if err := insertAll(ctx, d.coll(itemsColl), items); err != nil {
		return err
	}
	users := d.coll(usersColl)
	if mv.complete {
		tag := bson.E{Key: relayField, Value: mv.tag}
		if mv.tag == "" {
			tag.Value = bson.D{{Key: "$exists", Value: false}}
		}
		r, err := users.UpdateOne(ctx, bson.D{{Key: "_id", Value: mv.userID}, tag}, bson.D{{Key: "$unset", Value: wholeFields()}})
		if err != nil {
			return fmt.Errorf("clear relayed fields: %w", err)
		}
		if r.MatchedCount == 1 {
			return nil
		}
	}
	// A later write added more (its own relay takes the tag), or the
	// account is gone: remove just what was moved.
	keys := bson.D{}
	for _, k := range slices.Sorted(maps.Keys(mv.events)) {
		keys = append(keys, bson.E{Key: k, Value: ""})
	}
	for _, k := range slices.Sorted(maps.Keys(mv.items)) {
		keys = append(keys, bson.E{Key: k, Value: ""})
	}
	if len(keys) == 0 {
		return nil
	}
	r, err := users.UpdateOne(ctx, bson.D{{Key: "_id", Value: mv.userID}}, bson.D{{Key: "$unset", Value: keys}})
	if err != nil {
		return fmt.Errorf("clear relayed keys: %w", err)
	}
	if r.MatchedCount == 0 && len(seqs) > 0 {
		// The account was deleted while its events were being moved: the
		// deletion may have missed the ones just inserted.
		if _, err := d.coll(eventsColl).DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: seqs}}}}); err != nil {
			return fmt.Errorf("remove events of a deleted account: %w", err)
		}
	}
	return nil
}

// relayProjection loads what a relay moves, and the tag.
func relayProjection() bson.D {
	return bson.D{{Key: pendingField, Value: 1}, {Key: legacyEventsField, Value: 1}, {Key: embeddedField, Value: 1}, {Key: relayField, Value: 1}}
}

// relayUser moves out whatever one user document holds; it reports
// whether there was anything.
func (d *DB) relayUser(ctx context.Context, userID string) (bool, error) {
	doc, err := d.findUser(ctx, userID, relayProjection())
	if err != nil || doc == nil {
		return false, err
	}
	mv := &moveOut{userID: userID, tag: doc.Relay, complete: true, events: doc.pendingEvents(), items: embeddedItems(doc)}
	if len(mv.events) == 0 && len(mv.items) == 0 && doc.Relay == "" && !hasEmptyFields(doc) {
		return false, nil
	}
	if err := d.move(ctx, mv); err != nil {
		return false, err
	}
	return len(mv.events)+len(mv.items) > 0, nil
}

// hasEmptyFields reports leftovers of an earlier relay that removed keys
// one by one (empty maps), which a complete relay tidies up.
func hasEmptyFields(doc *userDoc) bool {
	c := doc.Consent
	return doc.Outbox != nil || c != nil && (c.Pending != nil || c.Events != nil)
}

// sweep relays every user document that still holds something: those
// tagged (an index lookup), and, until one sweep finds none, those in the
// previous version's layout (a scan).
func (d *DB) sweep(ctx context.Context) (int, error) {
	users := d.coll(usersColl)
	var ids []string
	cur, err := users.Find(ctx, bson.D{{Key: relayField, Value: bson.D{{Key: "$exists", Value: true}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("find users to relay: %w", err)
	}
	if ids, err = decodeIDs(ctx, cur); err != nil {
		return 0, err
	}
	legacy := !d.legacyClean.Load()
	if legacy {
		// The previous version's relay left empty maps behind in most
		// documents; clear those in bulk so the scan below finds only
		// documents with something to move.
		for _, f := range []string{embeddedField, legacyEventsField, pendingField} {
			if _, err := users.UpdateMany(ctx, bson.D{{Key: relayField, Value: bson.D{{Key: "$exists", Value: false}}}, {Key: f, Value: bson.D{}}},
				bson.D{{Key: "$unset", Value: bson.D{{Key: f, Value: ""}}}}); err != nil {
				return 0, fmt.Errorf("clear empty %s fields: %w", f, err)
			}
		}
		exists := bson.D{{Key: "$exists", Value: true}}
		cur, err := users.Find(ctx, bson.D{
			{Key: relayField, Value: bson.D{{Key: "$exists", Value: false}}},
			{Key: "$or", Value: bson.A{
				bson.D{{Key: legacyEventsField, Value: exists}},
				bson.D{{Key: pendingField, Value: exists}},
				bson.D{{Key: embeddedField, Value: exists}},
			}},
		}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			return 0, fmt.Errorf("find users in the previous layout: %w", err)
		}
		more, err := decodeIDs(ctx, cur)
		if err != nil {
			return 0, err
		}
		ids = append(ids, more...)
	}
	n := 0
	var errs []error
	for _, id := range ids {
		had, err := d.relayUser(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("user %s: %w", id, err))
			continue
		}
		if had {
			n++
		}
	}
	if legacy && len(errs) == 0 {
		d.legacyClean.Store(true)
	}
	return n, errors.Join(errs...)
}
