package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/work"
	"github.com/consentgraph/consentgraph/plugins"
)

type outboxStore struct{ d *DB }

var _ outbox.Store = (*outboxStore)(nil)

// Relay moves the consent events and work items committed inside a user
// document out of it (see relay.go); "" sweeps every user that still
// holds some.
func (s *outboxStore) Relay(ctx context.Context, userID string) (int, error) {
	if userID == "" {
		return s.d.sweep(ctx)
	}
	had, err := s.d.relayUser(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("relay user %s: %w", userID, err)
	}
	if had {
		return 1, nil
	}
	return 0, nil
}

func (s *outboxStore) Enqueue(ctx context.Context, it work.Item) (bool, error) {
	_, err := s.d.coll(itemsColl).InsertOne(ctx, newItemDoc(&it))
	if isDup(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("enqueue work item: %w", err)
	}
	return true, nil
}

func (s *outboxStore) WakeWaiting(ctx context.Context, userID string, now time.Time) error {
	_, err := s.d.coll(itemsColl).UpdateMany(ctx, bson.D{{Key: "userId", Value: userID}, {Key: "state", Value: work.Waiting}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: work.Pending}, {Key: "nextAt", Value: now}, {Key: "note", Value: ""}, {Key: "updatedAt", Value: now}}}})
	if err != nil {
		return fmt.Errorf("wake waiting items: %w", err)
	}
	return nil
}

// claimScan bounds how many due items one Claim looks at per item it may
// take: items whose user and processor are busy are skipped.
const claimScan = 4

// Claim finds due items (index state_nextAt), and for each takes the lock
// document of its processor and user (outbox_locks, a unique _id insert,
// or an update guarded on the old lock having expired; its token is the
// item id), then leases the item with one findAndModify guarded on state
// and lease. A failed lease releases the lock.
func (s *outboxStore) Claim(ctx context.Context, owner string, processors []string, now, until time.Time, limit int) ([]work.Item, error) {
	if limit <= 0 || len(processors) == 0 {
		return nil, nil
	}
	filter := bson.D{
		{Key: "state", Value: work.Pending},
		{Key: "nextAt", Value: bson.D{{Key: "$lte", Value: now}}},
		{Key: "leaseUntil", Value: bson.D{{Key: "$lte", Value: now}}},
		{Key: "processor", Value: bson.D{{Key: "$in", Value: processors}}},
	}
	// Sorting on nextAt alone lets MongoDB walk the state_nextAt index.
	opts := options.Find().SetSort(bson.D{{Key: "nextAt", Value: 1}}).SetLimit(int64(limit * claimScan)).
		SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "userId", Value: 1}, {Key: "processor", Value: 1}})
	cur, err := s.d.coll(itemsColl).Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("find due items: %w", err)
	}
	var due []itemDoc
	if err := cur.All(ctx, &due); err != nil {
		return nil, fmt.Errorf("find due items: %w", err)
	}
	var out []work.Item
	seen := map[string]bool{}
	for _, x := range due {
		if len(out) == limit {
			break
		}
		key := lockKey(x.Processor, x.UserID)
		if seen[key] {
			continue // at most one item per user and processor
		}
		seen[key] = true
		ok, err := s.lock(ctx, key, x.ID, now, until)
		if err != nil {
			return out, err
		}
		if !ok {
			continue // another item of this user and processor is leased
		}
		it, err := s.lease(ctx, x.ID, owner, now, until)
		if err != nil || it == nil {
			s.unlock(ctx, key, x.ID)
			if err != nil {
				return out, err
			}
			continue // someone else leased it meanwhile
		}
		out = append(out, *it)
	}
	return out, nil
}

func lockKey(processor, userID string) string { return processor + "|" + userID }

type lockDoc struct {
	ID    string    `bson:"_id"`
	Token string    `bson:"token"`
	Until time.Time `bson:"until"`
}

// lock takes the lock of key for token until until; false when another
// holds it and it has not expired.
func (s *outboxStore) lock(ctx context.Context, key, token string, now, until time.Time) (bool, error) {
	locks := s.d.coll(locksColl)
	_, err := locks.InsertOne(ctx, lockDoc{ID: key, Token: token, Until: until})
	if err == nil {
		return true, nil
	}
	if !isDup(err) {
		return false, fmt.Errorf("lock %s: %w", key, err)
	}
	r, err := locks.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "until", Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "token", Value: token}, {Key: "until", Value: until}}}})
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", key, err)
	}
	return r.MatchedCount == 1, nil
}

func (s *outboxStore) unlock(ctx context.Context, key, token string) {
	if _, err := s.d.coll(locksColl).DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: key}, {Key: "token", Value: token}}); err != nil {
		s.d.log.WarnContext(ctx, "releasing an outbox lock failed; it expires with the lease", "key", key, "err", err)
	}
}

// lease claims one item; nil when it is no longer due or someone else
// holds it.
func (s *outboxStore) lease(ctx context.Context, id, owner string, now, until time.Time) (*work.Item, error) {
	var doc itemDoc
	err := s.d.coll(itemsColl).FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "state", Value: work.Pending},
			{Key: "nextAt", Value: bson.D{{Key: "$lte", Value: now}}},
			{Key: "leaseUntil", Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "leaseUntil", Value: until}, {Key: "leaseOwner", Value: owner}, {Key: "updatedAt", Value: now}}},
			{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}},
		},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lease item %s: %w", id, err)
	}
	it := doc.item()
	return &it, nil
}

// Finish writes, in this order: the processor state (guarded on the
// account being live), the disclosure (a duplicate means it is recorded),
// and the item, guarded on the lease of this attempt (owner, attempts,
// PENDING) and clearing it; then it frees the user and processor by
// deleting the lock this claim took. The first two are what any finisher
// of the item writes, so writing them for a lease that turns out lost is
// harmless.
func (s *outboxStore) Finish(ctx context.Context, f outbox.Finish) (bool, error) {
	it := &f.Item
	if f.Proc != nil {
		if err := checkKey("processor", it.Processor); err != nil {
			return false, fmt.Errorf("finish item: %w", err)
		}
		p := procsField + "." + it.Processor
		set := bson.D{{Key: p + ".delivered", Value: f.Proc.Delivered}}
		if f.Proc.Delivered {
			set = append(set, bson.E{Key: p + ".ref", Value: f.Proc.Ref})
		}
		if _, err := s.d.coll(usersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: it.UserID}, live()}, bson.D{{Key: "$set", Value: set}}); err != nil {
			return false, fmt.Errorf("record processor state: %w", err)
		}
	}
	if dl := f.Disclosure; dl != nil {
		if _, err := s.d.coll(disclosuresColl).InsertOne(ctx, newDisclosureDoc(dl)); err != nil && !isDup(err) {
			return false, fmt.Errorf("record disclosure: %w", err)
		}
	}
	set := bson.D{
		{Key: "state", Value: f.State},
		{Key: "note", Value: f.Note},
		{Key: "lastError", Value: f.LastError},
		{Key: "leaseUntil", Value: time.Time{}},
		{Key: "updatedAt", Value: f.At},
	}
	if !f.NextAt.IsZero() {
		set = append(set, bson.E{Key: "nextAt", Value: f.NextAt})
	}
	update := bson.D{{Key: "$unset", Value: bson.D{{Key: "leaseOwner", Value: ""}}}}
	switch {
	case f.ResetAttempts:
		set = append(set, bson.E{Key: "attempts", Value: 0})
	case f.Throttled:
		// Matched on attempts below, so this gives back exactly the
		// attempt of this lease.
		set = append(set, bson.E{Key: "attempts", Value: it.Attempts - 1})
	}
	update = append(update, bson.E{Key: "$set", Value: set})
	r, err := s.d.coll(itemsColl).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: it.ID}, {Key: "leaseOwner", Value: it.LeaseOwner}, {Key: "attempts", Value: it.Attempts}, {Key: "state", Value: work.Pending}},
		update)
	if err != nil {
		return false, fmt.Errorf("finish item %s: %w", it.ID, err)
	}
	if r.MatchedCount == 0 {
		// The lease was lost: its lock, if any, belongs to the new holder.
		return false, nil
	}
	s.unlock(ctx, lockKey(it.Processor, it.UserID), it.ID)
	return true, nil
}

func (s *outboxStore) Item(ctx context.Context, id string) (*work.Item, error) {
	var doc itemDoc
	err := s.d.coll(itemsColl).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read work item: %w", err)
	}
	it := doc.item()
	return &it, nil
}

func (s *outboxStore) Items(ctx context.Context, state work.State, after string, limit int) ([]work.Item, error) {
	f := bson.D{}
	if state != "" {
		f = append(f, bson.E{Key: "state", Value: state})
	}
	if after != "" {
		f = append(f, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: after}}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := s.d.coll(itemsColl).Find(ctx, f, opts)
	if err != nil {
		return nil, fmt.Errorf("list work items: %w", err)
	}
	var docs []itemDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list work items: %w", err)
	}
	out := make([]work.Item, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].item())
	}
	return out, nil
}

func (s *outboxStore) Retry(ctx context.Context, id string, now time.Time) (bool, error) {
	r, err := s.d.coll(itemsColl).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{work.Dead, work.Waiting}}}}},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "state", Value: work.Pending}, {Key: "attempts", Value: 0}, {Key: "nextAt", Value: now},
				{Key: "leaseUntil", Value: time.Time{}}, {Key: "updatedAt", Value: now}}},
			{Key: "$unset", Value: bson.D{{Key: "leaseOwner", Value: ""}}},
		})
	if err != nil {
		return false, fmt.Errorf("retry work item: %w", err)
	}
	return r.MatchedCount == 1, nil
}

func (s *outboxStore) CountByState(ctx context.Context) (map[work.State]int64, error) {
	cur, err := s.d.coll(itemsColl).Aggregate(ctx, mongo.Pipeline{
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$state"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("count work items: %w", err)
	}
	var rows []struct {
		State work.State `bson:"_id"`
		N     int64      `bson:"n"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, fmt.Errorf("count work items: %w", err)
	}
	out := make(map[work.State]int64, len(rows))
	for _, r := range rows {
		out[r.State] = r.N
	}
	return out, nil
}

// recipientProjection loads consent state, erasure and processor state.
func recipientProjection() bson.D {
	return append(stateProjection(), bson.E{Key: procsField, Value: 1})
}

// Recipient reads through the query's read memo when there is one.
func (s *outboxStore) Recipient(ctx context.Context, userID string) (*outbox.Recipient, error) {
	doc, err := s.d.readUser(ctx, userID, recipientProjection())
	if err != nil || doc == nil {
		return nil, err
	}
	st := doc.stored()
	return &outbox.Recipient{Consent: *st, Erasing: st.Erasing, Procs: doc.procs()}, nil
}

func (s *outboxStore) MarkAttempted(ctx context.Context, userID, processor string) (bool, error) {
	if err := checkKey("processor", processor); err != nil {
		return false, fmt.Errorf("mark attempt: %w", err)
	}
	r, err := s.d.coll(usersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: userID}, live()},
		bson.D{{Key: "$set", Value: bson.D{{Key: procsField + "." + processor + ".attempted", Value: true}}}})
	if err != nil {
		return false, fmt.Errorf("mark attempt: %w", err)
	}
	return r.MatchedCount == 1, nil
}

// disclosureDoc is a document of disclosures; its id is the item's.
type disclosureDoc struct {
	ID        string    `bson:"_id"`
	UserID    string    `bson:"userId"`
	Processor string    `bson:"processor"`
	Purpose   string    `bson:"purpose"`
	Fields    []string  `bson:"fields"`
	Action    string    `bson:"action"`
	Cause     string    `bson:"cause"`
	At        time.Time `bson:"at"`
}

func newDisclosureDoc(d *outbox.Disclosure) disclosureDoc {
	fields := d.Fields
	if fields == nil {
		fields = []string{}
	}
	return disclosureDoc{ID: d.ID, UserID: d.UserID, Processor: d.Processor, Purpose: d.Purpose, Fields: fields, Action: d.Action, Cause: d.Cause, At: d.At}
}

func (d *disclosureDoc) disclosure() outbox.Disclosure {
	return outbox.Disclosure{ID: d.ID, UserID: d.UserID, Processor: d.Processor, Purpose: d.Purpose,
		Fields: d.Fields, Action: d.Action, Cause: d.Cause, At: d.At}
}

func (s *outboxStore) Disclosures(ctx context.Context, userID, before string, limit int) ([]outbox.Disclosure, error) {
	f := bson.D{{Key: "userId", Value: userID}}
	if before != "" {
		f = append(f, bson.E{Key: "_id", Value: bson.D{{Key: "$lt", Value: before}}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: -1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := s.d.coll(disclosuresColl).Find(ctx, f, opts)
	if err != nil {
		return nil, fmt.Errorf("list disclosures: %w", err)
	}
	var docs []disclosureDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list disclosures: %w", err)
	}
	out := make([]outbox.Disclosure, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].disclosure())
	}
	return out, nil
}

func (s *outboxStore) CountDisclosures(ctx context.Context, userID string) (int64, error) {
	n, err := s.d.coll(disclosuresColl).CountDocuments(ctx, bson.D{{Key: "userId", Value: userID}})
	if err != nil {
		return 0, fmt.Errorf("count disclosures: %w", err)
	}
	return n, nil
}

func (s *outboxStore) ProcessorFlags(ctx context.Context) (map[string]bool, error) {
	cur, err := s.d.coll(processorsColl).Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("read processor flags: %w", err)
	}
	var docs []struct {
		ID      string `bson:"_id"`
		Enabled bool   `bson:"enabled"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read processor flags: %w", err)
	}
	out := make(map[string]bool, len(docs))
	for _, d := range docs {
		out[d.ID] = d.Enabled
	}
	return out, nil
}

func (s *outboxStore) SetProcessorFlag(ctx context.Context, name string, enabled bool) error {
	err := upsertRetry(func() error {
		_, err := s.d.coll(processorsColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: name}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "enabled", Value: enabled}}}}, options.UpdateOne().SetUpsert(true))
		return err
	})
	if err != nil {
		return fmt.Errorf("set processor flag: %w", err)
	}
	return nil
}

// PluginState is the processor's key-value storage in plugin_state.
func (s *outboxStore) PluginState(processor string) plugins.State {
	return &pluginState{d: s.d, processor: processor}
}

// upsertRetry runs an upsert again when it lost a race to create the same
// document (MongoDB reports that as a duplicate key; the retry updates).
func upsertRetry(op func() error) error {
	err := op()
	if isDup(err) {
		err = op()
	}
	return err
}
