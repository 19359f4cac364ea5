package mongostore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/ratelimit"
)

// rateStore implements ratelimit.Store: one document per key and minute,
// {_id: "<minute>|<key>", minute, n}, counted up with $inc (atomic per
// document on MongoDB).
type rateStore struct{ d *DB }

var _ ratelimit.Store = (*rateStore)(nil)

type rateDoc struct {
	ID     string `bson:"_id"`
	Minute int64  `bson:"minute"`
	N      int64  `bson:"n"`
}

func rateID(window int64, key string) string { return strconv.FormatInt(window, 10) + "|" + key }

func (s *rateStore) AddCounts(ctx context.Context, window int64, deltas map[string]int64) (map[string]int64, error) {
	c := s.d.coll(rateCountsColl)
	ids := make([]string, 0, len(deltas))
	models := make([]mongo.WriteModel, 0, len(deltas))
	upsert := func(id string, n int64) *mongo.UpdateOneModel {
		return mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).SetUpsert(true).SetUpdate(bson.D{
			{Key: "$inc", Value: bson.D{{Key: "n", Value: n}}},
			{Key: "$setOnInsert", Value: bson.D{{Key: "minute", Value: window}}},
		})
	}
	for key, n := range deltas {
		id := rateID(window, key)
		ids = append(ids, id)
		models = append(models, upsert(id, n))
	}
	if len(models) > 0 {
		_, err := c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
		var bwe mongo.BulkWriteException
		if err != nil && errors.As(err, &bwe) && allDup(err) {
			// Two replicas created the same counter at once: the loser's
			// increment goes to the winner's document.
			for _, we := range bwe.WriteErrors {
				m := models[we.Index].(*mongo.UpdateOneModel)
				if _, err := c.UpdateOne(ctx, m.Filter, m.Update, options.UpdateOne().SetUpsert(true)); err != nil {
					return nil, fmt.Errorf("count rate: %w", err)
				}
			}
			err = nil
		}
		if err != nil {
			return nil, fmt.Errorf("count rate: %w", err)
		}
	}
	cur, err := c.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return nil, fmt.Errorf("read rate counts: %w", err)
	}
	var docs []rateDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read rate counts: %w", err)
	}
	prefix := len(rateID(window, ""))
	out := make(map[string]int64, len(docs))
	for _, d := range docs {
		out[d.ID[prefix:]] = d.N
	}
	return out, nil
}

func (s *rateStore) DeleteCountsBefore(ctx context.Context, window int64) (int64, error) {
	res, err := s.d.coll(rateCountsColl).DeleteMany(ctx, bson.D{{Key: "minute", Value: bson.D{{Key: "$lt", Value: window}}}})
	if err != nil {
		return 0, fmt.Errorf("delete old rate counts: %w", err)
	}
	return res.DeletedCount, nil
}
