package mongostore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/demographics"
)

type demoStore struct{ d *DB }

var _ demographics.Store = (*demoStore)(nil)

// maskInitials name the dimensions of demographics.Dimensions, in order,
// in the cell collections' names (Age band, Country, Gender, Language,
// signup Month), as the previous version named them.
const maskInitials = "ACGLM"

// cellsCollection names the collection of a mask's cells, e.g.
// demographics_cells_AC; "total" for the empty mask.
func cellsCollection(mask int) (string, error) {
	if mask < 0 || mask >= 1<<len(demographics.Dimensions) || len(demographics.Dimensions) != len(maskInitials) {
		return "", fmt.Errorf("no dimension subset %d", mask)
	}
	if mask == 0 {
		return cellsCollPrefix + "total", nil
	}
	var b strings.Builder
	for i := range len(maskInitials) {
		if mask&(1<<i) != 0 {
			b.WriteByte(maskInitials[i])
		}
	}
	return cellsCollPrefix + b.String(), nil
}

func (s *demoStore) cells(mask int) (*mongo.Collection, error) {
	name, err := cellsCollection(mask)
	if err != nil {
		return nil, err
	}
	return s.d.coll(name), nil
}

// memberDoc is a document of demographics_members.
type memberDoc struct {
	ID      string      `bson:"_id"`
	Ver     int64       `bson:"ver"`
	T       []byte      `bson:"t,omitempty"`
	Pending *pendingDoc `bson:"pending,omitempty"`
}

type pendingDoc struct {
	Op    string    `bson:"op"`
	Since time.Time `bson:"since"`
	From  []byte    `bson:"from,omitempty"`
	To    []byte    `bson:"to,omitempty"`
}

func (m *memberDoc) member() *demographics.Member {
	out := &demographics.Member{UserID: m.ID, Ver: m.Ver, Tuple: m.T}
	if p := m.Pending; p != nil {
		out.Pending = &demographics.Pending{Op: p.Op, Since: p.Since, From: p.From, To: p.To}
	}
	return out
}

func newPendingDoc(p *demographics.Pending) *pendingDoc {
	return &pendingDoc{Op: p.Op, Since: p.Since, From: p.From, To: p.To}
}

func (s *demoStore) Member(ctx context.Context, userID string) (*demographics.Member, error) {
	var doc memberDoc
	err := s.d.coll(membersColl).FindOne(ctx, bson.D{{Key: "_id", Value: userID}}).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read member %s: %w", userID, err)
	}
	return doc.member(), nil
}

func (s *demoStore) EachMember(ctx context.Context, fn func(m *demographics.Member) error) error {
	cur, err := s.d.coll(membersColl).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return fmt.Errorf("read members: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var doc memberDoc
		if err := cur.Decode(&doc); err != nil {
			return fmt.Errorf("decode member: %w", err)
		}
		if err := fn(doc.member()); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read members: %w", err)
	}
	return nil
}

// BeginMove creates the record by a unique insert (ver 0), or updates it
// conditional on its version.
func (s *demoStore) BeginMove(ctx context.Context, userID string, ver int64, p demographics.Pending) (bool, error) {
	members := s.d.coll(membersColl)
	if ver == 0 {
		_, err := members.InsertOne(ctx, memberDoc{ID: userID, Ver: 1, Pending: newPendingDoc(&p)})
		if isDup(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("begin move of %s: %w", userID, err)
		}
		return true, nil
	}
	r, err := members.UpdateOne(ctx, bson.D{{Key: "_id", Value: userID}, {Key: "ver", Value: ver}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "pending", Value: newPendingDoc(&p)}}}, {Key: "$inc", Value: bson.D{{Key: "ver", Value: int64(1)}}}})
	if err != nil {
		return false, fmt.Errorf("begin move of %s: %w", userID, err)
	}
	return r.MatchedCount == 1, nil
}

func (s *demoStore) SettleMove(ctx context.Context, userID, op string, to []byte) (bool, error) {
	members := s.d.coll(membersColl)
	filter := bson.D{{Key: "_id", Value: userID}, {Key: "pending.op", Value: op}}
	if to == nil {
		r, err := members.DeleteOne(ctx, filter)
		if err != nil {
			return false, fmt.Errorf("settle move of %s: %w", userID, err)
		}
		return r.DeletedCount == 1, nil
	}
	r, err := members.UpdateOne(ctx, filter, bson.D{
		{Key: "$set", Value: bson.D{{Key: "t", Value: to}}},
		{Key: "$unset", Value: bson.D{{Key: "pending", Value: ""}}},
		{Key: "$inc", Value: bson.D{{Key: "ver", Value: int64(1)}}},
	})
	if err != nil {
		return false, fmt.Errorf("settle move of %s: %w", userID, err)
	}
	return r.MatchedCount == 1, nil
}

func (s *demoStore) DeleteMember(ctx context.Context, userID string, ver int64) (bool, error) {
	r, err := s.d.coll(membersColl).DeleteOne(ctx, bson.D{{Key: "_id", Value: userID}, {Key: "ver", Value: ver},
		{Key: "pending", Value: bson.D{{Key: "$exists", Value: false}}}})
	if err != nil {
		return false, fmt.Errorf("delete member %s: %w", userID, err)
	}
	return r.DeletedCount == 1, nil
}

// importBatch bounds one insert of a bulk load.
const importBatch = 5000

// ImportMembers inserts unordered; users who have a record keep it.
func (s *demoStore) ImportMembers(ctx context.Context, members []demographics.Member) error {
	docs := make([]any, 0, min(len(members), importBatch))
	flush := func() error {
		if err := insertAll(ctx, s.d.coll(membersColl), docs); err != nil {
			return fmt.Errorf("import members: %w", err)
		}
		docs = docs[:0]
		return nil
	}
	for i := range members {
		m := &members[i]
		doc := memberDoc{ID: m.UserID, Ver: m.Ver, T: m.Tuple}
		if doc.Ver == 0 {
			doc.Ver = 1
		}
		if m.Pending != nil {
			doc.Pending = newPendingDoc(m.Pending)
		}
		docs = append(docs, doc)
		if len(docs) == importBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// cellDoc is a document of a cell collection.
type cellDoc struct {
	ID  string `bson:"_id"`
	N   int64  `bson:"n"`
	Ver int64  `bson:"ver"`
	V   []byte `bson:"v,omitempty"`
}

// AddToCells sends one batch of upserts per mask; each is a
// single-document $inc (creating the cell with its values when missing).
// Two upserts racing to create one cell make the loser fail with a
// duplicate key; it is retried as a plain update.
func (s *demoStore) AddToCells(ctx context.Context, deltas []demographics.CellDelta) error {
	byMask := map[int][]demographics.CellDelta{}
	var masks []int
	for _, d := range deltas {
		if _, ok := byMask[d.Mask]; !ok {
			masks = append(masks, d.Mask)
		}
		byMask[d.Mask] = append(byMask[d.Mask], d)
	}
	for _, mask := range masks {
		c, err := s.cells(mask)
		if err != nil {
			return err
		}
		ds := byMask[mask]
		models := make([]mongo.WriteModel, 0, len(ds))
		for _, d := range ds {
			models = append(models, cellUpsert(d))
		}
		_, err = c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
		var bwe mongo.BulkWriteException
		if err != nil && errors.As(err, &bwe) && allDup(err) {
			for _, we := range bwe.WriteErrors {
				if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: ds[we.Index].ID}}, cellUpsert(ds[we.Index]).Update,
					options.UpdateOne().SetUpsert(true)); err != nil {
					return fmt.Errorf("update cell %s of %s: %w", ds[we.Index].ID, c.Name(), err)
				}
			}
			err = nil
		}
		if err != nil {
			return fmt.Errorf("update cells of %s: %w", c.Name(), err)
		}
	}
	return nil
}

func cellUpsert(d demographics.CellDelta) *mongo.UpdateOneModel {
	return mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: d.ID}}).SetUpsert(true).SetUpdate(bson.D{
		{Key: "$inc", Value: bson.D{{Key: "n", Value: d.Delta}, {Key: "ver", Value: int64(1)}}},
		{Key: "$setOnInsert", Value: bson.D{{Key: "v", Value: d.Values}}},
	})
}

func (s *demoStore) CellCounts(ctx context.Context, mask int) ([]demographics.CellCount, error) {
	c, err := s.cells(mask)
	if err != nil {
		return nil, err
	}
	cur, err := c.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "n", Value: 1}, {Key: "ver", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("read cells of %s: %w", c.Name(), err)
	}
	var docs []cellDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read cells of %s: %w", c.Name(), err)
	}
	out := make([]demographics.CellCount, 0, len(docs))
	for _, d := range docs {
		out = append(out, demographics.CellCount{ID: d.ID, N: d.N, Ver: d.Ver})
	}
	return out, nil
}

func (s *demoStore) CellValues(ctx context.Context, mask int, ids []string) (map[string][]byte, error) {
	c, err := s.cells(mask)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	cur, err := c.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, options.Find().SetProjection(bson.D{{Key: "v", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("read cell values of %s: %w", c.Name(), err)
	}
	var docs []cellDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read cell values of %s: %w", c.Name(), err)
	}
	for _, d := range docs {
		out[d.ID] = d.V
	}
	return out, nil
}

func (s *demoStore) SetCellIfUnchanged(ctx context.Context, mask int, id string, ver, n int64) (bool, error) {
	c, err := s.cells(mask)
	if err != nil {
		return false, err
	}
	r, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "ver", Value: ver}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: n}}}, {Key: "$inc", Value: bson.D{{Key: "ver", Value: int64(1)}}}})
	if err != nil {
		return false, fmt.Errorf("repair cell %s of %s: %w", id, c.Name(), err)
	}
	return r.MatchedCount == 1, nil
}

func (s *demoStore) CreateCell(ctx context.Context, mask int, cr demographics.CellRecord) (bool, error) {
	c, err := s.cells(mask)
	if err != nil {
		return false, err
	}
	_, err = c.InsertOne(ctx, cellDoc{ID: cr.ID, N: cr.N, Ver: cr.Ver, V: cr.Values})
	if isDup(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create cell %s of %s: %w", cr.ID, c.Name(), err)
	}
	return true, nil
}

// ReplaceCells drops the mask's collection and inserts the cells anew (a
// bulk load: inserting many is far cheaper than updating each).
func (s *demoStore) ReplaceCells(ctx context.Context, mask int, cells []demographics.CellRecord) error {
	c, err := s.cells(mask)
	if err != nil {
		return err
	}
	if err := c.Drop(ctx); err != nil {
		return fmt.Errorf("replace cells of %s: %w", c.Name(), err)
	}
	for len(cells) > 0 {
		n := min(len(cells), importBatch)
		docs := make([]any, 0, n)
		for _, cr := range cells[:n] {
			docs = append(docs, cellDoc{ID: cr.ID, N: cr.N, Ver: cr.Ver, V: cr.Values})
		}
		if _, err := c.InsertMany(ctx, docs); err != nil {
			return fmt.Errorf("replace cells of %s: %w", c.Name(), err)
		}
		cells = cells[n:]
	}
	return nil
}

// The reconciliation request: demographics_state {_id: "reconcile",
// dirtySince}.

const reconcileDocID = "reconcile"

func (s *demoStore) DirtySince(ctx context.Context) (time.Time, error) {
	var doc struct {
		DirtySince time.Time `bson:"dirtySince"`
	}
	err := s.d.coll(demoStateColl).FindOne(ctx, bson.D{{Key: "_id", Value: reconcileDocID}}).Decode(&doc)
	if err != nil && !errNotFound(err) {
		return time.Time{}, fmt.Errorf("read reconciliation request: %w", err)
	}
	return doc.DirtySince, nil
}

func (s *demoStore) MarkDirty(ctx context.Context, at time.Time) error {
	err := upsertRetry(func() error {
		_, err := s.d.coll(demoStateColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: reconcileDocID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "dirtySince", Value: at}}}}, options.UpdateOne().SetUpsert(true))
		return err
	})
	if err != nil {
		return fmt.Errorf("request reconciliation: %w", err)
	}
	return nil
}

func (s *demoStore) ClearDirty(ctx context.Context, since time.Time) error {
	if since.IsZero() {
		return nil
	}
	if _, err := s.d.coll(demoStateColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: reconcileDocID}, {Key: "dirtySince", Value: since}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "dirtySince", Value: ""}}}}); err != nil {
		return fmt.Errorf("clear reconciliation request: %w", err)
	}
	return nil
}
