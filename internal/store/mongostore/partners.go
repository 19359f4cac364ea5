package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/partners"
)

type partnerStore struct{ d *DB }

var _ partners.Store = (*partnerStore)(nil)

// partnerDoc is a document of partners.
type partnerDoc struct {
	ID         string     `bson:"_id"`
	Name       string     `bson:"name"`
	KeyHash    string     `bson:"keyHash"`
	Budget     int64      `bson:"budget"`
	PeriodDays int        `bson:"periodDays"`
	CreatedAt  time.Time  `bson:"createdAt"`
	RevokedAt  *time.Time `bson:"revokedAt,omitempty"`
	Period     int64      `bson:"period"`
	Spent      int64      `bson:"spent"`
}

func (d *partnerDoc) record() *partners.Record {
	return &partners.Record{ID: d.ID, Name: d.Name, KeyHash: d.KeyHash, Budget: d.Budget, PeriodDays: d.PeriodDays,
		CreatedAt: d.CreatedAt, RevokedAt: d.RevokedAt, Period: d.Period, Spent: d.Spent}
}

func notRevoked() bson.E {
	return bson.E{Key: "revokedAt", Value: bson.D{{Key: "$exists", Value: false}}}
}

func (s *partnerStore) Insert(ctx context.Context, r partners.Record) error {
	doc := partnerDoc{ID: r.ID, Name: r.Name, KeyHash: r.KeyHash, Budget: r.Budget, PeriodDays: r.PeriodDays,
		CreatedAt: r.CreatedAt, RevokedAt: r.RevokedAt, Period: r.Period, Spent: r.Spent}
	if _, err := s.d.coll(partnersColl).InsertOne(ctx, doc); err != nil {
		return fmt.Errorf("store partner: %w", err)
	}
	return nil
}

func (s *partnerStore) Get(ctx context.Context, id string) (*partners.Record, error) {
	var doc partnerDoc
	err := s.d.coll(partnersColl).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read partner: %w", err)
	}
	return doc.record(), nil
}

func (s *partnerStore) List(ctx context.Context) ([]partners.Record, error) {
	cur, err := s.d.coll(partnersColl).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "createdAt", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list partners: %w", err)
	}
	var docs []partnerDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list partners: %w", err)
	}
	out := make([]partners.Record, 0, len(docs))
	for i := range docs {
		out = append(out, *docs[i].record())
	}
	return out, nil
}

func (s *partnerStore) Page(ctx context.Context, after string, limit int) ([]partners.Record, error) {
	f := bson.D{}
	if after != "" {
		from, err := s.Get(ctx, after)
		if err != nil || from == nil {
			return nil, err
		}
		// After (createdAt, _id) of the cursor's partner, in List's order:
		// a range on createdAt (so the createdAt_id index gives the order)
		// without the partners up to the cursor at the same time.
		f = bson.D{
			{Key: "createdAt", Value: bson.D{{Key: "$gte", Value: from.CreatedAt}}},
			{Key: "$nor", Value: bson.A{bson.D{{Key: "createdAt", Value: from.CreatedAt}, {Key: "_id", Value: bson.D{{Key: "$lte", Value: from.ID}}}}}},
		}
	}
	opts := options.Find().SetSort(bson.D{{Key: "createdAt", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(limit))
	cur, err := s.d.coll(partnersColl).Find(ctx, f, opts)
	if err != nil {
		return nil, fmt.Errorf("page partners: %w", err)
	}
	var docs []partnerDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("page partners: %w", err)
	}
	out := make([]partners.Record, 0, len(docs))
	for i := range docs {
		out = append(out, *docs[i].record())
	}
	return out, nil
}

func (s *partnerStore) Count(ctx context.Context) (int64, error) {
	n, err := s.d.coll(partnersColl).CountDocuments(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("count partners: %w", err)
	}
	return n, nil
}

func (s *partnerStore) Revoke(ctx context.Context, id string, at time.Time) error {
	if _, err := s.d.coll(partnersColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, notRevoked()},
		bson.D{{Key: "$set", Value: bson.D{{Key: "revokedAt", Value: at}}}}); err != nil {
		return fmt.Errorf("revoke partner: %w", err)
	}
	return nil
}

// SpendInPeriod is one findAndModify whose filter is the whole condition,
// so concurrent charges never overspend.
func (s *partnerStore) SpendInPeriod(ctx context.Context, id string, period, cost, limit int64) (*partners.Record, error) {
	return s.modify(ctx, bson.D{{Key: "_id", Value: id}, notRevoked(), {Key: "period", Value: period},
		{Key: "spent", Value: bson.D{{Key: "$lte", Value: limit - cost}}}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "spent", Value: cost}}}})
}

func (s *partnerStore) StartPeriod(ctx context.Context, id string, from, period, cost int64) (*partners.Record, error) {
	return s.modify(ctx, bson.D{{Key: "_id", Value: id}, notRevoked(), {Key: "period", Value: from}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "period", Value: period}, {Key: "spent", Value: cost}}}})
}

// Refund is one conditional update when the record holds at least cost
// (always, for a refund of a charge of the same period), and otherwise a
// second conditional update that floors Spent at 0. Each is a single
// conditional update of one document, so a concurrent charge is never lost.
func (s *partnerStore) Refund(ctx context.Context, id string, period, cost int64) (bool, error) {
	c := s.d.coll(partnersColl)
	res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "period", Value: period},
		{Key: "spent", Value: bson.D{{Key: "$gte", Value: cost}}}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "spent", Value: -cost}}}})
	if err != nil {
		return false, fmt.Errorf("refund partner budget: %w", err)
	}
	if res.MatchedCount > 0 {
		return true, nil
	}
	res, err = c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "period", Value: period},
		{Key: "spent", Value: bson.D{{Key: "$lt", Value: cost}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "spent", Value: int64(0)}}}})
	if err != nil {
		return false, fmt.Errorf("refund partner budget: %w", err)
	}
	return res.MatchedCount > 0, nil
}

func (s *partnerStore) modify(ctx context.Context, filter, update bson.D) (*partners.Record, error) {
	var doc partnerDoc
	err := s.d.coll(partnersColl).FindOneAndUpdate(ctx, filter, update, options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("charge partner budget: %w", err)
	}
	return doc.record(), nil
}
