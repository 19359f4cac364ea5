package mongostore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/store/snapshot"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// The whole-store stream copy-store moves stores with (package snapshot).
//
// A dump only reads, so that it can run on a store it must not change (a
// data directory of the previous version, a production deployment being
// copied). Consent events and work items committed inside a user document
// and not yet relayed out of it are therefore merged into the dump instead
// of relayed first: events (also the previous version's whole ledger under
// consent.events) by a join of the users and the ledger collection, both
// in user id order; items by a join of the embedded ones with the outbox
// collection, in id order. Where a relay was interrupted between its
// insert and its unset, the copy in the collection wins. Events of an
// account that no longer exists (a deletion that raced a relay) are left
// out, in counts as in dumps: the deletion wanted them gone.
//
// A load inserts each batch unordered, in one InsertMany per collection.

var (
	_ snapshot.Source = (*DB)(nil)
	_ snapshot.Sink   = (*DB)(nil)
)

// plainColl names the collection holding one document per record of a
// kind, counted as it is.
var plainColl = map[snapshot.Kind]string{
	snapshot.Secrets:     secretsColl,
	snapshot.SigningKeys: signingKeysColl,
	snapshot.DataKeys:    dataKeysColl,
	snapshot.Accounts:    usersColl,
	snapshot.Sessions:    sessionsColl,
	snapshot.Archives:    archiveColl,
	snapshot.Disclosures: disclosuresColl,
	snapshot.Flags:       processorsColl,
	snapshot.PluginState: pluginStateColl,
	snapshot.Links:       linksColl,
	snapshot.Members:     membersColl,
	snapshot.Partners:    partnersColl,
	snapshot.Audit:       auditColl,
	snapshot.LogLeaves:   logLeavesColl,
	snapshot.LogNodes:    logNodesColl,
}

// Count counts the records of kind as Dump streams them.
func (d *DB) Count(ctx context.Context, kind snapshot.Kind) (int64, error) {
	n, err := d.count(ctx, kind)
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", kind, err)
	}
	return n, nil
}

func (d *DB) count(ctx context.Context, kind snapshot.Kind) (int64, error) {
	if name, ok := plainColl[kind]; ok {
		return d.coll(name).CountDocuments(ctx, bson.D{})
	}
	var n int64
	switch kind {
	case snapshot.Policies:
		vs, err := (&consentStore{d}).PolicyVersions(ctx)
		return int64(len(vs)), err
	case snapshot.Events:
		err := d.eachLedger(ctx, false, func(_ string, events []eventDoc) error {
			n += int64(len(events))
			return nil
		})
		return n, err
	case snapshot.Items:
		err := d.eachItem(ctx, true, func(*itemDoc) error {
			n++
			return nil
		})
		return n, err
	case snapshot.Cells:
		for mask := range 1 << len(demographics.Dimensions) {
			c, err := (&demoStore{d}).cells(mask)
			if err != nil {
				return 0, err
			}
			m, err := c.CountDocuments(ctx, bson.D{})
			if err != nil {
				return 0, err
			}
			n += m
		}
		return n, nil
	case snapshot.LogHead:
		return d.coll(logStateColl).CountDocuments(ctx, bson.D{{Key: "_id", Value: logHeadID}})
	case snapshot.Dirty:
		return d.coll(demoStateColl).CountDocuments(ctx, bson.D{{Key: "_id", Value: reconcileDocID},
			{Key: "dirtySince", Value: bson.D{{Key: "$exists", Value: true}}}})
	}
	return 0, fmt.Errorf("%w %q", snapshot.ErrUnknownKind, kind)
}

// errFn carries fn's error out of a dump unchanged.
type errFn struct{ err error }

func (e errFn) Error() string { return e.err.Error() }

// call hands r to fn, marking fn's error.
func call(fn func(snapshot.Record) error, r snapshot.Record) error {
	if err := fn(r); err != nil {
		return errFn{err}
	}
	return nil
}

// Dump streams every record of kind in the order snapshot.Source names.
func (d *DB) Dump(ctx context.Context, kind snapshot.Kind, fn func(snapshot.Record) error) error {
	err := d.dump(ctx, kind, fn)
	var fe errFn
	if errors.As(err, &fe) {
		return fe.err
	}
	if err != nil {
		return fmt.Errorf("dump %s: %w", kind, err)
	}
	return nil
}

func (d *DB) dump(ctx context.Context, kind snapshot.Kind, fn func(snapshot.Record) error) error {
	byID := bson.D{{Key: "_id", Value: 1}}
	switch kind {
	case snapshot.Secrets:
		return stream(ctx, d.coll(secretsColl), bson.D{}, options.Find().SetSort(byID), func(doc *secretDoc) error {
			r := doc.record()
			return call(fn, snapshot.Record{Kind: kind, Secret: &r})
		})
	case snapshot.SigningKeys:
		return stream(ctx, d.coll(signingKeysColl), bson.D{}, options.Find().SetSort(bson.D{{Key: "generation", Value: 1}}),
			func(doc *signingKeyDoc) error {
				k := doc.record()
				return call(fn, snapshot.Record{Kind: kind, SigningKey: &k})
			})
	case snapshot.Policies:
		vs, err := (&consentStore{d}).PolicyVersions(ctx)
		if err != nil {
			return err
		}
		for i := range vs {
			if err := call(fn, snapshot.Record{Kind: kind, Policy: &vs[i]}); err != nil {
				return err
			}
		}
		return nil
	case snapshot.DataKeys:
		return (&accountStore{d}).EachDataKey(ctx, func(k accounts.DataKey) error {
			return call(fn, snapshot.Record{Kind: kind, DataKey: &k})
		})
	case snapshot.Accounts:
		// Everything but what the relay moves out: that comes as events
		// and items.
		proj := bson.D{{Key: pendingField, Value: 0}, {Key: legacyEventsField, Value: 0}, {Key: embeddedField, Value: 0}, {Key: relayField, Value: 0}}
		return stream(ctx, d.coll(usersColl), bson.D{}, options.Find().SetSort(byID).SetProjection(proj), func(doc *userDoc) error {
			return call(fn, snapshot.Record{Kind: kind, Account: &snapshot.Account{Account: *doc.record(), Consent: *doc.stored(), Procs: doc.procs()}})
		})
	case snapshot.Sessions:
		return stream(ctx, d.coll(sessionsColl), bson.D{}, options.Find().SetSort(byID), func(doc *sessionDoc) error {
			s := doc.record()
			return call(fn, snapshot.Record{Kind: kind, Session: &s})
		})
	case snapshot.Events:
		return d.eachLedger(ctx, true, func(userID string, events []eventDoc) error {
			for i := range events {
				if err := call(fn, snapshot.Record{Kind: kind, Event: &snapshot.Event{UserID: userID, Event: events[i].event()}}); err != nil {
					return err
				}
			}
			return nil
		})
	case snapshot.Archives:
		return stream(ctx, d.coll(archiveColl), bson.D{}, options.Find().SetSort(byID), func(doc *archiveDoc) error {
			return call(fn, snapshot.Record{Kind: kind, Archive: doc.archived()})
		})
	case snapshot.Items:
		return d.eachItem(ctx, false, func(doc *itemDoc) error {
			it := doc.item()
			return call(fn, snapshot.Record{Kind: kind, Item: &it})
		})
	case snapshot.Disclosures:
		return stream(ctx, d.coll(disclosuresColl), bson.D{}, options.Find().SetSort(byID), func(doc *disclosureDoc) error {
			dc := doc.disclosure()
			return call(fn, snapshot.Record{Kind: kind, Disclosure: &dc})
		})
	case snapshot.Flags:
		return stream(ctx, d.coll(processorsColl), bson.D{}, options.Find().SetSort(byID), func(doc *flagDoc) error {
			return call(fn, snapshot.Record{Kind: kind, Flag: &snapshot.Flag{Processor: doc.ID, Enabled: doc.Enabled}})
		})
	case snapshot.PluginState:
		// _id is processor NUL key, and NUL sorts first: _id order is
		// processor, then key order.
		return stream(ctx, d.coll(pluginStateColl), bson.D{}, options.Find().SetSort(byID), func(doc *pluginStateDoc) error {
			v := doc.Value
			if v == nil {
				v = []byte{} // a stored value is never absent, only empty
			}
			return call(fn, snapshot.Record{Kind: kind, PluginState: &snapshot.PluginEntry{Processor: doc.Processor, Key: doc.Key, Value: v}})
		})
	case snapshot.Links:
		// _id is processor NUL subject: _id order is processor, then subject.
		return stream(ctx, d.coll(linksColl), bson.D{}, options.Find().SetSort(byID), func(doc *linkDoc) error {
			data := doc.Data
			if data == nil {
				data = []byte{}
			}
			return call(fn, snapshot.Record{Kind: kind, Link: &outbox.Link{Processor: doc.Processor, Subject: doc.Subject,
				State: doc.State, Data: data, UpdatedAt: doc.UpdatedAt.UTC()}})
		})
	case snapshot.Members:
		return (&demoStore{d}).EachMember(ctx, func(m *demographics.Member) error {
			return call(fn, snapshot.Record{Kind: kind, Member: m})
		})
	case snapshot.Cells:
		for mask := range 1 << len(demographics.Dimensions) {
			c, err := (&demoStore{d}).cells(mask)
			if err != nil {
				return err
			}
			err = stream(ctx, c, bson.D{}, options.Find().SetSort(byID), func(doc *cellDoc) error {
				return call(fn, snapshot.Record{Kind: kind, Cell: &snapshot.Cell{Mask: mask,
					Cell: demographics.CellRecord{ID: doc.ID, N: doc.N, Ver: doc.Ver, Values: doc.V}}})
			})
			if err != nil {
				return err
			}
		}
		return nil
	case snapshot.Dirty:
		since, err := (&demoStore{d}).DirtySince(ctx)
		if err != nil || since.IsZero() {
			return err
		}
		return call(fn, snapshot.Record{Kind: kind, Dirty: &since})
	case snapshot.Partners:
		return stream(ctx, d.coll(partnersColl), bson.D{}, options.Find().SetSort(byID), func(doc *partnerDoc) error {
			return call(fn, snapshot.Record{Kind: kind, Partner: doc.record()})
		})
	case snapshot.Audit:
		return (&auditStore{d}).Each(ctx, func(e audit.Entry) error {
			return call(fn, snapshot.Record{Kind: kind, Audit: &e})
		})
	case snapshot.LogLeaves:
		return stream(ctx, d.coll(logLeavesColl), bson.D{}, options.Find().SetSort(byID), func(doc *leafDoc) error {
			l := doc.leaf()
			return call(fn, snapshot.Record{Kind: kind, LogLeaf: &l})
		})
	case snapshot.LogNodes:
		return stream(ctx, d.coll(logNodesColl), bson.D{}, options.Find().SetSort(byID), func(doc *nodeDoc) error {
			return call(fn, snapshot.Record{Kind: kind, LogNode: &translog.Node{ID: translog.NodeIDOfKey(doc.Key), Hash: doc.Hash}})
		})
	case snapshot.LogHead:
		h, err := (&logStore{d}).Head(ctx)
		if err != nil || h.Size == 0 {
			return err
		}
		return call(fn, snapshot.Record{Kind: kind, LogHead: &h})
	}
	return fmt.Errorf("%w %q", snapshot.ErrUnknownKind, kind)
}

// flagDoc is a document of processors.
type flagDoc struct {
	ID      string `bson:"_id"`
	Enabled bool   `bson:"enabled"`
}

// stream decodes every document filter finds into a fresh T and calls fn.
func stream[T any](ctx context.Context, c *mongo.Collection, filter bson.D, opts *options.FindOptionsBuilder, fn func(*T) error) error {
	cur, err := c.Find(ctx, filter, opts)
	if err != nil {
		return fmt.Errorf("read %s: %w", c.Name(), err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		doc := new(T)
		if err := cur.Decode(doc); err != nil {
			return fmt.Errorf("decode a document of %s: %w", c.Name(), err)
		}
		if err := fn(doc); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read %s: %w", c.Name(), err)
	}
	return nil
}

// ledgerHolder is what a user document holds of the ledger.
type ledgerHolder struct {
	ID      string      `bson:"_id"`
	Consent *consentDoc `bson:"consent"`
}

// eachLedger calls fn with the ledger of every account that has one, in
// user id order: the events of consent_events joined with those still in
// the user document, by sequence number. full=false reads only what counting
// needs.
func (d *DB) eachLedger(ctx context.Context, full bool, fn func(userID string, events []eventDoc) error) error {
	users, err := d.coll(usersColl).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).
		SetProjection(bson.D{{Key: pendingField, Value: 1}, {Key: legacyEventsField, Value: 1}}))
	if err != nil {
		return fmt.Errorf("read users: %w", err)
	}
	defer users.Close(context.WithoutCancel(ctx))
	evOpts := options.Find().SetSort(bson.D{{Key: "userId", Value: 1}, {Key: "seq", Value: 1}})
	if !full {
		evOpts.SetProjection(bson.D{{Key: "userId", Value: 1}, {Key: "seq", Value: 1}})
	}
	events, err := d.coll(eventsColl).Find(ctx, bson.D{}, evOpts)
	if err != nil {
		return fmt.Errorf("read consent events: %w", err)
	}
	defer events.Close(context.WithoutCancel(ctx))
	var ev eventRow
	more := false
	next := func() error {
		more = events.Next(ctx)
		if !more {
			if err := events.Err(); err != nil {
				return fmt.Errorf("read consent events: %w", err)
			}
			return nil
		}
		ev = eventRow{}
		if err := events.Decode(&ev); err != nil {
			return fmt.Errorf("decode a consent event: %w", err)
		}
		return nil
	}
	if err := next(); err != nil {
		return err
	}
	orphans := 0
	for users.Next(ctx) {
		var u ledgerHolder
		if err := users.Decode(&u); err != nil {
			return fmt.Errorf("decode a user: %w", err)
		}
		for more && ev.UserID < u.ID {
			orphans++
			if err := next(); err != nil {
				return err
			}
		}
		bySeq := map[int64]eventDoc{}
		for more && ev.UserID == u.ID {
			bySeq[ev.Event.Seq] = ev.Event
			if err := next(); err != nil {
				return err
			}
		}
		held := (&userDoc{Consent: u.Consent}).pendingEvents()
		for _, k := range slices.Sorted(maps.Keys(held)) {
			e := held[k]
			if _, moved := bySeq[e.Seq]; !moved {
				bySeq[e.Seq] = e
			}
		}
		if len(bySeq) == 0 {
			continue
		}
		list := make([]eventDoc, 0, len(bySeq))
		for _, seq := range slices.Sorted(maps.Keys(bySeq)) {
			list = append(list, bySeq[seq])
		}
		if err := fn(u.ID, list); err != nil {
			return err
		}
	}
	if err := users.Err(); err != nil {
		return fmt.Errorf("read users: %w", err)
	}
	for more {
		orphans++
		if err := next(); err != nil {
			return err
		}
	}
	if orphans > 0 {
		d.log.WarnContext(ctx, "left out consent events of accounts that no longer exist", "events", orphans)
	}
	return nil
}

// eachItem calls fn for every work item in id order: those of the outbox
// collection, and those still embedded in a user document that the
// collection does not hold yet. idsOnly reads just the collection's ids.
func (d *DB) eachItem(ctx context.Context, idsOnly bool, fn func(*itemDoc) error) error {
	// Few documents hold items (only those whose relay has not run), but
	// finding them is a scan: no index covers the previous version's
	// documents.
	var embedded []itemDoc
	err := stream(ctx, d.coll(usersColl), bson.D{{Key: embeddedField, Value: bson.D{{Key: "$exists", Value: true}}}},
		options.Find().SetProjection(bson.D{{Key: embeddedField, Value: 1}}), func(doc *userDoc) error {
			for _, it := range doc.Outbox {
				embedded = append(embedded, it)
			}
			return nil
		})
	if err != nil {
		return err
	}
	slices.SortFunc(embedded, func(a, b itemDoc) int { return cmp.Compare(a.ID, b.ID) })
	// One document could hold an item twice only under two keys, which
	// the relay never writes; keep the first all the same.
	embedded = slices.CompactFunc(embedded, func(a, b itemDoc) bool { return a.ID == b.ID })
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})
	if idsOnly {
		opts.SetProjection(bson.D{{Key: "_id", Value: 1}})
	}
	err = stream(ctx, d.coll(itemsColl), bson.D{}, opts, func(doc *itemDoc) error {
		for len(embedded) > 0 && embedded[0].ID <= doc.ID {
			if embedded[0].ID < doc.ID {
				if err := fn(&embedded[0]); err != nil {
					return err
				}
			}
			embedded = embedded[1:]
		}
		return fn(doc)
	})
	if err != nil {
		return err
	}
	for i := range embedded {
		if err := fn(&embedded[i]); err != nil {
			return err
		}
	}
	return nil
}

// Load inserts recs unordered, one InsertMany per collection (cells: one
// per subset).
func (d *DB) Load(ctx context.Context, kind snapshot.Kind, recs []snapshot.Record) error {
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		if err := recs[i].Check(kind); err != nil {
			return fmt.Errorf("load %s: %w", kind, err)
		}
	}
	if err := d.load(ctx, kind, recs); err != nil {
		return fmt.Errorf("load %s: %w", kind, err)
	}
	return nil
}

func (d *DB) load(ctx context.Context, kind snapshot.Kind, recs []snapshot.Record) error {
	docs := make([]any, 0, len(recs))
	switch kind {
	case snapshot.Secrets:
		for _, r := range recs {
			s := r.Secret
			docs = append(docs, secretDoc{Name: s.Name, Value: s.Value, KeyID: s.KeyID, CreatedAt: s.CreatedAt})
		}
	case snapshot.SigningKeys:
		for _, r := range recs {
			docs = append(docs, newSigningKeyDoc(r.SigningKey))
		}
	case snapshot.Policies:
		return d.loadPolicies(ctx, recs)
	case snapshot.DataKeys:
		for _, r := range recs {
			k := r.DataKey
			docs = append(docs, dataKeyDoc{ID: k.UserID, Wrapped: k.Wrapped, CreatedAt: k.CreatedAt})
		}
	case snapshot.Accounts:
		for _, r := range recs {
			doc, err := accountDoc(r.Account)
			if err != nil {
				return err
			}
			docs = append(docs, doc)
		}
	case snapshot.Sessions:
		for _, r := range recs {
			s := r.Session
			docs = append(docs, sessionDoc{ID: s.ID, UserID: s.UserID, Role: s.Role, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt})
		}
	case snapshot.Events:
		for _, r := range recs {
			e := r.Event
			docs = append(docs, eventRow{ID: eventID(e.UserID, e.Event.Seq), UserID: e.UserID, Event: newEventDoc(&e.Event)})
		}
	case snapshot.Archives:
		for _, r := range recs {
			doc, err := newArchiveDoc(r.Archive)
			if err != nil {
				return fmt.Errorf("consent archive %s: %w", r.Archive.Subject, err)
			}
			docs = append(docs, doc)
		}
	case snapshot.Items:
		for _, r := range recs {
			docs = append(docs, newItemDoc(r.Item))
		}
	case snapshot.Disclosures:
		for _, r := range recs {
			docs = append(docs, newDisclosureDoc(r.Disclosure))
		}
	case snapshot.Flags:
		for _, r := range recs {
			docs = append(docs, flagDoc{ID: r.Flag.Processor, Enabled: r.Flag.Enabled})
		}
	case snapshot.PluginState:
		// The copy is when the value was written here; nothing reads it.
		now := time.Now().UTC().Truncate(time.Millisecond)
		for _, r := range recs {
			e := r.PluginState
			id, err := (&pluginState{processor: e.Processor}).id(e.Key)
			if err != nil {
				return err
			}
			v := e.Value
			if v == nil {
				v = []byte{}
			}
			docs = append(docs, pluginStateDoc{ID: id, Processor: e.Processor, Key: e.Key, Value: v, UpdatedAt: now})
		}
	case snapshot.Links:
		for _, r := range recs {
			l := r.Link
			id, err := linkID(outbox.LinkKey{Processor: l.Processor, Subject: l.Subject})
			if err != nil {
				return err
			}
			data := l.Data
			if data == nil {
				data = []byte{}
			}
			docs = append(docs, linkDoc{ID: id, Processor: l.Processor, Subject: l.Subject, State: l.State, Data: data, UpdatedAt: l.UpdatedAt})
		}
	case snapshot.Members:
		for _, r := range recs {
			m := r.Member
			doc := memberDoc{ID: m.UserID, Ver: m.Ver, T: m.Tuple}
			if m.Pending != nil {
				doc.Pending = newPendingDoc(m.Pending)
			}
			docs = append(docs, doc)
		}
	case snapshot.Cells:
		return d.loadCells(ctx, recs)
	case snapshot.Dirty:
		return d.loadDirty(ctx, recs)
	case snapshot.Partners:
		for _, r := range recs {
			p := r.Partner
			docs = append(docs, partnerDoc{ID: p.ID, Name: p.Name, KeyHash: p.KeyHash, Budget: p.Budget, PeriodDays: p.PeriodDays,
				CreatedAt: p.CreatedAt, RevokedAt: p.RevokedAt, Period: p.Period, Spent: p.Spent})
		}
	case snapshot.Audit:
		for _, r := range recs {
			e := r.Audit
			docs = append(docs, newAuditDoc(e))
		}
	case snapshot.LogLeaves:
		for _, r := range recs {
			l := r.LogLeaf
			docs = append(docs, leafDoc{Index: l.Index, Item: l.Item, Data: l.Data, Hash: l.Hash, At: l.At})
		}
	case snapshot.LogNodes:
		for _, r := range recs {
			docs = append(docs, nodeDoc{Key: r.LogNode.ID.Key(), Hash: r.LogNode.Hash})
		}
	case snapshot.LogHead:
		for _, r := range recs {
			h := r.LogHead
			docs = append(docs, headDoc{ID: logHeadID, Size: h.Size, Root: h.Root, At: h.At})
		}
		return insertNew(ctx, d.coll(logStateColl), docs)
	default:
		return fmt.Errorf("%w %q", snapshot.ErrUnknownKind, kind)
	}
	name := plainColl[kind]
	if kind == snapshot.Events {
		name = eventsColl
	} else if kind == snapshot.Items {
		name = itemsColl
	}
	return insertNew(ctx, d.coll(name), docs)
}

// insertNew inserts docs unordered; a document that exists already is an
// error (the store was not empty).
func insertNew(ctx context.Context, c *mongo.Collection, docs []any) error {
	if len(docs) == 0 {
		return nil
	}
	_, err := c.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if isDup(err) {
		return fmt.Errorf("%s holds some of these records already: the store was not empty: %w", c.Name(), err)
	}
	if err != nil {
		return fmt.Errorf("insert into %s: %w", c.Name(), err)
	}
	return nil
}

// accountDoc is the user document of an account: the account, its consent
// state and its processor state; nothing waits to be relayed.
func accountDoc(a *snapshot.Account) (userDoc, error) {
	doc := newUserDoc(&a.Account)
	c := &consentDoc{Head: a.Consent.Head, HeadHash: a.Consent.HeadHash, State: map[string]entryDoc{}}
	for p, e := range a.Consent.State {
		if err := checkKey("purpose", p); err != nil {
			return userDoc{}, fmt.Errorf("account %s: %w", a.Account.ID, err)
		}
		c.State[p] = newEntryDoc(e)
	}
	doc.Consent = c
	if len(a.Procs) > 0 {
		doc.Procs = make(map[string]procDoc, len(a.Procs))
		for name, p := range a.Procs {
			if err := checkKey("processor", name); err != nil {
				return userDoc{}, fmt.Errorf("account %s: %w", a.Account.ID, err)
			}
			doc.Procs[name] = procDoc{Attempted: p.Attempted, Delivered: p.Delivered, Ref: p.Ref}
		}
	}
	return doc, nil
}

// loadPolicies stores policy versions in the one policy document: the first
// batch creates it (a duplicate means some version exists), a later one
// appends while the document ends just before the batch.
func (d *DB) loadPolicies(ctx context.Context, recs []snapshot.Record) error {
	vs := make([]policyVersionDoc, 0, len(recs))
	for i, r := range recs {
		if i > 0 && r.Policy.N != recs[i-1].Policy.N+1 {
			return fmt.Errorf("policy versions %d and %d are not consecutive", recs[i-1].Policy.N, r.Policy.N)
		}
		vs = append(vs, newPolicyVersionDoc(r.Policy))
	}
	first, last := recs[0].Policy.N, recs[len(recs)-1].Policy.N
	coll := d.coll(policyColl)
	if first == 1 {
		_, err := coll.InsertOne(ctx, policyDoc{ID: policyDocID, N: last, Versions: vs})
		if isDup(err) {
			return errors.New("a policy version is stored already: the store was not empty")
		}
		return err
	}
	r, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: policyDocID}, {Key: "n", Value: first - 1}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: last}}}, {Key: "$push", Value: bson.D{{Key: "versions", Value: bson.D{{Key: "$each", Value: vs}}}}}})
	if err != nil {
		return err
	}
	if r.MatchedCount != 1 {
		return fmt.Errorf("policy version %d does not follow the stored ones", first)
	}
	return nil
}

// loadCells inserts each subset's cells into its collection.
func (d *DB) loadCells(ctx context.Context, recs []snapshot.Record) error {
	byMask := map[int][]any{}
	for _, r := range recs {
		c := r.Cell
		byMask[c.Mask] = append(byMask[c.Mask], cellDoc{ID: c.Cell.ID, N: c.Cell.N, Ver: c.Cell.Ver, V: c.Cell.Values})
	}
	for _, mask := range slices.Sorted(maps.Keys(byMask)) {
		c, err := (&demoStore{d}).cells(mask)
		if err != nil {
			return err
		}
		if err := insertNew(ctx, c, byMask[mask]); err != nil {
			return err
		}
	}
	return nil
}

// loadDirty stores the reconciliation request; the state document may
// exist without one (a reconciliation cleared it).
func (d *DB) loadDirty(ctx context.Context, recs []snapshot.Record) error {
	if len(recs) != 1 {
		return fmt.Errorf("%d reconciliation requests: there is at most one", len(recs))
	}
	_, err := d.coll(demoStateColl).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: reconcileDocID}, {Key: "dirtySince", Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "dirtySince", Value: *recs[0].Dirty}}}}, options.UpdateOne().SetUpsert(true))
	if isDup(err) {
		return errors.New("a reconciliation request exists already: the store was not empty")
	}
	return err
}

// Foreign lists the collections of the database that no port reads, with
// their document counts: a copy leaves them behind, so copy-store names
// them. The previous version let processors keep collections of their own
// ("plugin_<name>", through plugins.Env.DB); this one gives them
// plugin_state instead.
func (d *DB) Foreign(ctx context.Context) (map[string]int64, error) {
	// rate_counts holds only the current minute's counters: nothing to copy.
	known := map[string]bool{locksColl: true, eventsColl: true, itemsColl: true, policyColl: true, demoStateColl: true,
		rateCountsColl: true, logLeavesColl: true, logNodesColl: true, logStateColl: true}
	for _, name := range plainColl {
		known[name] = true
	}
	for mask := range 1 << len(demographics.Dimensions) {
		name, err := cellsCollection(mask)
		if err != nil {
			return nil, err
		}
		known[name] = true
	}
	names, err := d.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("list collections: %w", err)
	}
	out := map[string]int64{}
	for _, name := range names {
		if known[name] || strings.HasPrefix(name, "system.") {
			continue
		}
		n, err := d.coll(name).CountDocuments(ctx, bson.D{})
		if err != nil {
			return nil, fmt.Errorf("count %s: %w", name, err)
		}
		out[name] = n
	}
	return out, nil
}
