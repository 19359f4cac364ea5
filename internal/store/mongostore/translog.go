package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/translog"
)

// The public consent log (translog.Store), in three collections:
//
//	consent_log_leaves  {_id: index, item, data, hash, at}   item unique
//	consent_log_nodes   {_id: level<<56 | index, hash}        levels 1 and up
//	consent_log_state   {_id: "head", size, root, at}, {_id: "lease", owner, until},
//	                    {_id: "marked"} once the previous version's records are marked
//
// Every write is a single-document one: a leaf insert fails on a taken
// index (_id) or item (unique index), a node insert on an existing node
// (same hash: nodes follow from leaves), the head moves only forward.
type logStore struct{ d *DB }

var _ translog.Store = (*logStore)(nil)

type leafDoc struct {
	Index int64     `bson:"_id"`
	Item  string    `bson:"item"`
	Data  []byte    `bson:"data"`
	Hash  []byte    `bson:"hash"`
	At    time.Time `bson:"at"`
}

func (d *leafDoc) leaf() translog.Leaf {
	return translog.Leaf{Index: d.Index, Item: d.Item, Data: d.Data, Hash: d.Hash, At: d.At}
}

type nodeDoc struct {
	Key  int64  `bson:"_id"`
	Hash []byte `bson:"hash"`
}

type headDoc struct {
	ID   string    `bson:"_id"`
	Size int64     `bson:"size"`
	Root []byte    `bson:"root"`
	At   time.Time `bson:"at"`
}

const (
	logHeadID  = "head"
	logLeaseID = "lease"
	// logMarkedID records that the consent events and audit entries written
	// before the log existed were given their "logged: false" mark.
	logMarkedID = "marked"
)

func (s *logStore) Head(ctx context.Context) (translog.Head, error) {
	var doc headDoc
	err := s.d.coll(logStateColl).FindOne(ctx, bson.D{{Key: "_id", Value: logHeadID}}).Decode(&doc)
	if errNotFound(err) {
		return translog.Head{}, nil
	}
	if err != nil {
		return translog.Head{}, fmt.Errorf("read log head: %w", err)
	}
	return translog.Head{Size: doc.Size, Root: doc.Root, At: doc.At}, nil
}

func (s *logStore) find(ctx context.Context, filter bson.D, opts *options.FindOptionsBuilder) ([]translog.Leaf, error) {
	cur, err := s.d.coll(logLeavesColl).Find(ctx, filter, opts)
	if err != nil {
		return nil, err
	}
	var docs []leafDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, nil
	}
	out := make([]translog.Leaf, len(docs))
	for i := range docs {
		out[i] = docs[i].leaf()
	}
	return out, nil
}

func (s *logStore) Leaves(ctx context.Context, from int64, limit int) ([]translog.Leaf, error) {
	if limit <= 0 {
		return nil, nil
	}
	out, err := s.find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: from}}}},
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("read log leaves: %w", err)
	}
	return out, nil
}

func (s *logStore) LeavesByItem(ctx context.Context, items []string) ([]translog.Leaf, error) {
	if len(items) == 0 {
		return nil, nil
	}
	out, err := s.find(ctx, bson.D{{Key: "item", Value: bson.D{{Key: "$in", Value: items}}}}, options.Find())
	if err != nil {
		return nil, fmt.Errorf("read log leaves by item: %w", err)
	}
	return out, nil
}

func (s *logStore) ItemLeaves(ctx context.Context, prefix string) ([]translog.Leaf, error) {
	hi, ok := prefixEnd(prefix)
	if !ok {
		return nil, fmt.Errorf("read log leaves of %q: not a prefix of item names", prefix)
	}
	out, err := s.find(ctx, bson.D{{Key: "item", Value: bson.D{{Key: "$gte", Value: prefix}, {Key: "$lt", Value: hi}}}},
		options.Find().SetSort(bson.D{{Key: "item", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("read log leaves of %q: %w", prefix, err)
	}
	return out, nil
}

// prefixEnd is the least string above every string starting with prefix
// (bytewise, as MongoDB compares strings without a collation).
func prefixEnd(prefix string) (string, bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0x7f { // stay within ASCII, so the bound is valid UTF-8
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

func (s *logStore) Nodes(ctx context.Context, ids []translog.NodeID) ([]translog.Node, error) {
	leaves, inner := translog.SplitNodeIDs(ids)
	var out []translog.Node
	if len(leaves) > 0 {
		cur, err := s.d.coll(logLeavesColl).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: leaves}}}},
			options.Find().SetProjection(bson.D{{Key: "hash", Value: 1}}))
		if err != nil {
			return nil, fmt.Errorf("read log leaf hashes: %w", err)
		}
		var docs []leafDoc
		if err := cur.All(ctx, &docs); err != nil {
			return nil, fmt.Errorf("read log leaf hashes: %w", err)
		}
		for _, d := range docs {
			out = append(out, translog.Node{ID: translog.NodeID{Index: d.Index}, Hash: d.Hash})
		}
	}
	if len(inner) > 0 {
		cur, err := s.d.coll(logNodesColl).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: inner}}}})
		if err != nil {
			return nil, fmt.Errorf("read log nodes: %w", err)
		}
		var docs []nodeDoc
		if err := cur.All(ctx, &docs); err != nil {
			return nil, fmt.Errorf("read log nodes: %w", err)
		}
		for _, d := range docs {
			out = append(out, translog.Node{ID: translog.NodeIDOfKey(d.Key), Hash: d.Hash})
		}
	}
	return out, nil
}

// Append inserts the leaves in one ordered InsertMany, which stops at the
// first leaf whose index or item is taken; the nodes in one unordered
// InsertMany that skips existing ones; then moves the head forward.
func (s *logStore) Append(ctx context.Context, b translog.Batch) (int, error) {
	added, err := s.insertLeaves(ctx, b.Leaves)
	if err != nil || added < len(b.Leaves) {
		return added, err
	}
	nodes := make([]any, 0, len(b.Nodes))
	for _, n := range b.Nodes {
		if n.ID.Level == 0 {
			return added, fmt.Errorf("append to the log: node %s: leaves are not stored as nodes", n.ID)
		}
		nodes = append(nodes, nodeDoc{Key: n.ID.Key(), Hash: n.Hash})
	}
	if err := insertAll(ctx, s.d.coll(logNodesColl), nodes); err != nil {
		return added, fmt.Errorf("append to the log: %w", err)
	}
	if b.Head.Size > 0 {
		_, err := s.d.coll(logStateColl).UpdateOne(ctx,
			bson.D{{Key: "_id", Value: logHeadID}, {Key: "size", Value: bson.D{{Key: "$lt", Value: b.Head.Size}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "size", Value: b.Head.Size}, {Key: "root", Value: b.Head.Root}, {Key: "at", Value: b.Head.At}}}},
			options.UpdateOne().SetUpsert(true))
		// A duplicate: the head exists and is at least as large already.
		if err != nil && !isDup(err) {
			return added, fmt.Errorf("append to the log: set head: %w", err)
		}
	}
	return added, nil
}

// insertLeaves inserts leaves in order and returns how many went in before
// the first that clashed.
func (s *logStore) insertLeaves(ctx context.Context, leaves []translog.Leaf) (int, error) {
	if len(leaves) == 0 {
		return 0, nil
	}
	docs := make([]any, len(leaves))
	for i, l := range leaves {
		docs[i] = leafDoc{Index: l.Index, Item: l.Item, Data: l.Data, Hash: l.Hash, At: l.At}
	}
	_, err := s.d.coll(logLeavesColl).InsertMany(ctx, docs, options.InsertMany().SetOrdered(true))
	if err == nil {
		return len(leaves), nil
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0 && isDup(bwe.WriteErrors[0].WriteError) {
		// Ordered: everything before the first failed write went in.
		first := bwe.WriteErrors[0].Index
		for _, we := range bwe.WriteErrors[1:] {
			first = min(first, we.Index)
		}
		return first, nil
	}
	if isDup(err) && len(leaves) == 1 {
		return 0, nil
	}
	return 0, fmt.Errorf("append to the log: insert leaves: %w", err)
}

func (s *logStore) Lease(ctx context.Context, owner string, now, until time.Time) (bool, error) {
	r, err := s.d.coll(logStateColl).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: logLeaseID}, {Key: "$or", Value: bson.A{
			bson.D{{Key: "owner", Value: owner}},
			bson.D{{Key: "until", Value: bson.D{{Key: "$lte", Value: now}}}},
		}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: owner}, {Key: "until", Value: until}}}},
		options.UpdateOne().SetUpsert(true))
	if isDup(err) {
		return false, nil // held by another, unexpired
	}
	if err != nil {
		return false, fmt.Errorf("take the log lease: %w", err)
	}
	return r.MatchedCount+r.UpsertedCount > 0, nil
}

// markUnlogged gives the consent events and audit entries written before
// this version their "logged: false" mark, so the appender logs them too.
// It runs once per database (a scan; later writes carry the mark).
func (d *DB) markUnlogged(ctx context.Context) error {
	state := d.coll(logStateColl)
	err := state.FindOne(ctx, bson.D{{Key: "_id", Value: logMarkedID}}).Err()
	if err == nil {
		return nil
	}
	if !errNotFound(err) {
		return fmt.Errorf("read the log state: %w", err)
	}
	for _, name := range []string{eventsColl, auditColl} {
		if _, err := d.coll(name).UpdateMany(ctx, bson.D{{Key: "logged", Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "logged", Value: false}}}}); err != nil {
			return fmt.Errorf("mark the %s written before the consent log: %w", name, err)
		}
	}
	if _, err := state.InsertOne(ctx, bson.D{{Key: "_id", Value: logMarkedID}, {Key: "at", Value: time.Now().UTC().Truncate(time.Millisecond)}}); err != nil && !isDup(err) {
		return fmt.Errorf("record the marking: %w", err)
	}
	return nil
}
