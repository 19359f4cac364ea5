package mongostore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/work"
)

type consentStore struct{ d *DB }

var _ consent.Store = (*consentStore)(nil)

// stateProjection loads the current consent and nothing of the ledger.
func stateProjection() bson.D {
	return bson.D{{Key: consentField + ".head", Value: 1}, {Key: consentField + ".headHash", Value: 1},
		{Key: consentField + ".state", Value: 1}, {Key: erasingField, Value: 1}}
}

// State reads through the query's read memo when there is one.
func (s *consentStore) State(ctx context.Context, userID string) (*consent.Stored, error) {
	doc, err := s.d.readUser(ctx, userID, stateProjection())
	if err != nil || doc == nil {
		return nil, err
	}
	return doc.stored(), nil
}

// headIs matches a user document whose ledger head is head; a document
// without one (never changed, or created before consent existed) has head 0.
func headIs(head int64) bson.E {
	if head == 0 {
		return bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: consentField + ".head", Value: int64(0)}},
			bson.D{{Key: consentField + ".head", Value: bson.D{{Key: "$exists", Value: false}}}},
		}}
	}
	return bson.E{Key: consentField + ".head", Value: head}
}

// RecordChange is ONE findAndModify of the user document, conditional on
// the account being live and the head being ev.Seq-1: it sets head,
// headHash, state.<purpose>, the event under consent.pending and each item
// under outbox, and tags the document. The document as it was comes back,
// so the relay that follows knows everything pending in it and can clear
// it whole.
func (s *consentStore) RecordChange(ctx context.Context, userID string, ev consent.Event, items []work.Item) (bool, error) {
	if ev.Seq < 1 {
		return false, nil // no head is ever below 0
	}
	if err := checkKey("purpose", ev.Purpose); err != nil {
		return false, fmt.Errorf("record consent change: %w", err)
	}
	tag := newTag()
	e := newEventDoc(&ev)
	key := pendingField + "." + pendingKey(ev.Seq)
	set := bson.D{
		{Key: consentField + ".head", Value: ev.Seq},
		{Key: consentField + ".headHash", Value: ev.Hash},
		{Key: consentField + ".state." + ev.Purpose, Value: entryOf(&ev)},
		{Key: key, Value: e},
		{Key: relayField, Value: tag},
	}
	mv := &moveOut{userID: userID, tag: tag, complete: true, events: map[string]eventDoc{key: e}, items: map[string]itemDoc{}}
	for i := range items {
		if err := checkKey("work item id", items[i].ID); err != nil {
			return false, fmt.Errorf("record consent change: %w", err)
		}
		it := newItemDoc(&items[i])
		k := embeddedField + "." + it.ID
		set = append(set, bson.E{Key: k, Value: it})
		mv.items[k] = it
	}
	opts := options.FindOneAndUpdate().SetReturnDocument(options.Before)
	if !s.d.ferret { // FerretDB v1 implements no projection here
		opts.SetProjection(relayProjection())
	}
	var before userDoc
	err := s.d.coll(usersColl).FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: userID}, live(), headIs(ev.Seq - 1)},
		bson.D{{Key: "$set", Value: set}}, opts).Decode(&before)
	if errNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record consent change: %w", err)
	}
	// Whatever an interrupted earlier relay left is moved along.
	maps.Copy(mv.events, before.pendingEvents())
	maps.Copy(mv.items, embeddedItems(&before))
	s.d.followUp(ctx, mv)
	return true, nil
}

// pendingOf reads the events still held in a user document (new and
// legacy layout), by sequence number.
func (s *consentStore) pendingOf(ctx context.Context, userID string, proj bson.D) (map[int64]consent.Event, error) {
	doc, err := s.d.findUser(ctx, userID, proj)
	if err != nil || doc == nil {
		return nil, err
	}
	out := map[int64]consent.Event{}
	for _, e := range doc.pendingEvents() {
		out[e.Seq] = e.event()
	}
	return out, nil
}

// Events reads the user document's pending events BEFORE the ledger
// collection: an event leaves the document only after it is in the
// collection, so in this order every event is seen at least once.
func (s *consentStore) Events(ctx context.Context, userID string, after int64, limit int) ([]consent.Event, error) {
	pending, err := s.pendingOf(ctx, userID, bson.D{{Key: pendingField, Value: 1}, {Key: legacyEventsField, Value: 1}})
	if err != nil {
		return nil, err
	}
	opts := options.Find().SetSort(bson.D{{Key: "seq", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := s.d.coll(eventsColl).Find(ctx, bson.D{{Key: "userId", Value: userID}, {Key: "seq", Value: bson.D{{Key: "$gt", Value: after}}}}, opts)
	if err != nil {
		return nil, fmt.Errorf("read consent ledger: %w", err)
	}
	var rows []eventRow
	if err := cur.All(ctx, &rows); err != nil {
		return nil, fmt.Errorf("read consent ledger: %w", err)
	}
	bySeq := make(map[int64]consent.Event, len(rows)+len(pending))
	for seq, e := range pending {
		if seq > after {
			bySeq[seq] = e
		}
	}
	for i := range rows {
		bySeq[rows[i].Event.Seq] = rows[i].Event.event()
	}
	seqs := slices.Sorted(maps.Keys(bySeq))
	if limit > 0 && len(seqs) > limit {
		// The collection gave its first limit; the pending ones are all
		// here, so the first limit of the union are among these.
		seqs = seqs[:limit]
	}
	if len(seqs) == 0 {
		return nil, nil
	}
	out := make([]consent.Event, 0, len(seqs))
	for _, seq := range seqs {
		out = append(out, bySeq[seq])
	}
	return out, nil
}

// Event looks in the ledger collection first (where events almost always
// are), then in the user document, then in the collection again in case
// the event moved between the two reads.
func (s *consentStore) Event(ctx context.Context, userID string, seq int64) (*consent.Event, error) {
	if e, err := s.storedEvent(ctx, userID, seq); e != nil || err != nil {
		return e, err
	}
	k := pendingKey(seq)
	pending, err := s.pendingOf(ctx, userID, bson.D{{Key: pendingField + "." + k, Value: 1}, {Key: legacyEventsField + "." + k, Value: 1}})
	if err != nil {
		return nil, err
	}
	if e, ok := pending[seq]; ok {
		return &e, nil
	}
	return s.storedEvent(ctx, userID, seq)
}

func (s *consentStore) storedEvent(ctx context.Context, userID string, seq int64) (*consent.Event, error) {
	var row eventRow
	err := s.d.coll(eventsColl).FindOne(ctx, bson.D{{Key: "_id", Value: eventID(userID, seq)}}).Decode(&row)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read consent event: %w", err)
	}
	e := row.Event.event()
	return &e, nil
}

// Unlogged reads the events the relay has moved to consent_events; those
// still in a user document get there first (the relay runs right after
// their write, the sweep after a crash).
func (s *consentStore) Unlogged(ctx context.Context, limit int) ([]consent.UserEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	cur, err := s.d.coll(eventsColl).Find(ctx, bson.D{{Key: "logged", Value: false}},
		options.Find().SetSort(unloggedOrder()).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("read unlogged consent events: %w", err)
	}
	var rows []eventRow
	if err := cur.All(ctx, &rows); err != nil {
		return nil, fmt.Errorf("read unlogged consent events: %w", err)
	}
	out := make([]consent.UserEvent, len(rows))
	for i := range rows {
		out[i] = consent.UserEvent{UserID: rows[i].UserID, Event: rows[i].Event.event()}
	}
	return out, nil
}

// unloggedOrder is the order events are logged in: by time, then user and
// sequence number (the fields of the unlogged index after logged).
func unloggedOrder() bson.D {
	return bson.D{{Key: "at", Value: 1}, {Key: "userId", Value: 1}, {Key: "seq", Value: 1}}
}

func (s *consentStore) MarkLogged(ctx context.Context, events []consent.EventRef) error {
	if len(events) == 0 {
		return nil
	}
	ids := make(bson.A, len(events))
	for i, e := range events {
		ids[i] = eventID(e.UserID, e.Seq)
	}
	_, err := s.d.coll(eventsColl).UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "logged", Value: true}}}})
	if err != nil {
		return fmt.Errorf("mark consent events logged: %w", err)
	}
	return nil
}

func (s *consentStore) EachState(ctx context.Context, fn func(userID string, st *consent.Stored) error) error {
	cur, err := s.d.coll(usersColl).Find(ctx, bson.D{live()},
		options.Find().SetProjection(stateProjection()).SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return fmt.Errorf("read consent states: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var doc userDoc
		if err := cur.Decode(&doc); err != nil {
			return fmt.Errorf("decode consent state: %w", err)
		}
		if err := fn(doc.ID, doc.stored()); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read consent states: %w", err)
	}
	return nil
}

func (s *consentStore) GrantedBefore(ctx context.Context, purpose string, n int64) ([]string, error) {
	if err := checkKey("purpose", purpose); err != nil {
		return nil, err
	}
	state := consentField + ".state." + purpose
	cur, err := s.d.coll(usersColl).Find(ctx, bson.D{
		{Key: state + ".granted", Value: true},
		{Key: state + ".policyN", Value: bson.D{{Key: "$lt", Value: n}}},
	}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find grants under older policies: %w", err)
	}
	return decodeIDs(ctx, cur)
}

// archiveDoc is a document of consent_archive, laid out as the previous
// version did: the final state and the ledger keyed "e<seq>".
type archiveDoc struct {
	Subject    string              `bson:"_id"`
	Head       int64               `bson:"head"`
	HeadHash   string              `bson:"headHash"`
	State      map[string]entryDoc `bson:"state"`
	Events     map[string]eventDoc `bson:"events"`
	ArchivedAt time.Time           `bson:"archivedAt"`
}

// Archive replaces the subject's archive document in one write.
func (s *consentStore) Archive(ctx context.Context, a consent.Archived) error {
	doc, err := newArchiveDoc(&a)
	if err != nil {
		return fmt.Errorf("archive consent: %w", err)
	}
	if _, err := s.d.coll(archiveColl).ReplaceOne(ctx, bson.D{{Key: "_id", Value: a.Subject}}, doc, options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("archive consent: %w", err)
	}
	return nil
}

func newArchiveDoc(a *consent.Archived) (archiveDoc, error) {
	doc := archiveDoc{Subject: a.Subject, Head: a.State.Head, HeadHash: a.State.HeadHash,
		State: map[string]entryDoc{}, Events: map[string]eventDoc{}, ArchivedAt: a.ArchivedAt}
	for p, e := range a.State.State {
		if err := checkKey("purpose", p); err != nil {
			return archiveDoc{}, err
		}
		doc.State[p] = newEntryDoc(e)
	}
	for i := range a.Events {
		doc.Events[pendingKey(a.Events[i].Seq)] = newEventDoc(&a.Events[i])
	}
	return doc, nil
}

func (s *consentStore) Archived(ctx context.Context, subject string) (*consent.Archived, error) {
	var doc archiveDoc
	err := s.d.coll(archiveColl).FindOne(ctx, bson.D{{Key: "_id", Value: subject}}).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read consent archive: %w", err)
	}
	return doc.archived(), nil
}

// archived is the archive a document holds, events in sequence order.
func (doc *archiveDoc) archived() *consent.Archived {
	a := &consent.Archived{Subject: doc.Subject, ArchivedAt: doc.ArchivedAt,
		State: consent.Stored{Head: doc.Head, HeadHash: doc.HeadHash}}
	if len(doc.State) > 0 {
		a.State.State = make(map[string]consent.Entry, len(doc.State))
		for p, e := range doc.State {
			a.State.State[p] = e.entry()
		}
	}
	for _, e := range doc.Events {
		a.Events = append(a.Events, e.event())
	}
	slices.SortFunc(a.Events, func(x, y consent.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	return a
}

// Policy versions: one document {_id: "policy", n, versions: [...]}, so
// that publishing is a compare-and-swap on n.

const policyDocID = "policy"

type policyVersionDoc struct {
	N           int64     `bson:"n"`
	Version     string    `bson:"version"`
	URL         string    `bson:"url"`
	PublishedAt time.Time `bson:"publishedAt"`
	Reconsent   []string  `bson:"reconsent"`
}

type policyDoc struct {
	ID       string             `bson:"_id"`
	N        int64              `bson:"n"`
	Versions []policyVersionDoc `bson:"versions"`
}

func newPolicyVersionDoc(v *consent.PolicyVersion) policyVersionDoc {
	r := v.Reconsent
	if r == nil {
		r = []string{}
	}
	return policyVersionDoc{N: v.N, Version: v.Version, URL: v.URL, PublishedAt: v.PublishedAt, Reconsent: r}
}

// AddFirstPolicy inserts the policy document; a duplicate means some
// version is stored already.
func (s *consentStore) AddFirstPolicy(ctx context.Context, v consent.PolicyVersion) error {
	doc := policyDoc{ID: policyDocID, N: 1, Versions: []policyVersionDoc{newPolicyVersionDoc(&v)}}
	if _, err := s.d.coll(policyColl).InsertOne(ctx, doc); err != nil && !isDup(err) {
		return fmt.Errorf("store first policy version: %w", err)
	}
	return nil
}

func (s *consentStore) PolicyVersions(ctx context.Context) ([]consent.PolicyVersion, error) {
	var doc policyDoc
	err := s.d.coll(policyColl).FindOne(ctx, bson.D{{Key: "_id", Value: policyDocID}}).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read policy versions: %w", err)
	}
	out := make([]consent.PolicyVersion, 0, len(doc.Versions))
	for _, v := range doc.Versions {
		out = append(out, consent.PolicyVersion{N: v.N, Version: v.Version, URL: v.URL, PublishedAt: v.PublishedAt, Reconsent: v.Reconsent})
	}
	return out, nil
}

// AppendPolicy pushes v only while n is still v.N-1.
func (s *consentStore) AppendPolicy(ctx context.Context, v consent.PolicyVersion) (bool, error) {
	coll := s.d.coll(policyColl)
	if v.N < 1 {
		return false, fmt.Errorf("publish policy: version number %d", v.N)
	}
	if v.N == 1 {
		_, err := coll.InsertOne(ctx, policyDoc{ID: policyDocID, N: 1, Versions: []policyVersionDoc{newPolicyVersionDoc(&v)}})
		if isDup(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("publish policy: %w", err)
		}
		return true, nil
	}
	r, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: policyDocID}, {Key: "n", Value: v.N - 1}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: v.N}}}, {Key: "$push", Value: bson.D{{Key: "versions", Value: newPolicyVersionDoc(&v)}}}})
	if err != nil {
		return false, fmt.Errorf("publish policy: %w", err)
	}
	return r.MatchedCount == 1, nil
}
