package demographics

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

func TestScratchFerret(t *testing.T) {
	ctx := context.Background()
	db := storetest.NewDB(t)
	for _, n := range []int{100, 1000, 10000} {
		docs := make([]any, n)
		for i := range n {
			docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("cell%08d", i)}, {Key: "n", Value: int64(1)}, {Key: "v", Value: []byte("0123456789012345678901234567890123456789012345678901234567890123")}}
		}
		coll := db.Collection(fmt.Sprintf("ins%d", n))
		t0 := time.Now()
		_, err := coll.InsertMany(ctx, docs)
		t.Logf("insertmany %d: %v %v", n, time.Since(t0), err)
		t0 = time.Now()
		for i := range 100 {
			_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("cell%08d", i)}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}})
		}
		t.Logf("n=%d 100 single updates: %v %v", n, time.Since(t0), err)
		t0 = time.Now()
		for i := range 100 {
			_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("cell%08d", i)}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}}, options.UpdateOne().SetUpsert(true))
		}
		t.Logf("n=%d 100 single upserts existing: %v %v", n, time.Since(t0), err)
		t0 = time.Now()
		for i := range 100 {
			_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("new%08d", i)}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}}, options.UpdateOne().SetUpsert(true))
		}
		t.Logf("n=%d 100 single upserts new: %v %v", n, time.Since(t0), err)
		t0 = time.Now()
		for i := range 100 {
			_ = coll.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("cell%08d", i)}}).Err()
		}
		t.Logf("n=%d 100 findone: %v", n, time.Since(t0))
		t0 = time.Now()
		for i := range 100 {
			_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("cell%08d", i)}, {Key: "ver", Value: bson.D{{Key: "$exists", Value: false}}}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}})
		}
		t.Logf("n=%d 100 compound-filter updates: %v %v", n, time.Since(t0), err)
		models := make([]mongo.WriteModel, 0, 100)
		for i := range 100 {
			models = append(models, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: fmt.Sprintf("cell%08d", i)}}).SetUpdate(bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}}))
		}
		t0 = time.Now()
		_, err = coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
		t.Logf("n=%d bulk 100 updates: %v %v", n, time.Since(t0), err)
		t0 = time.Now()
		cur, err := coll.Find(ctx, bson.D{})
		var all []bson.Raw
		err = cur.All(ctx, &all)
		t.Logf("find all %d: %v %v", len(all), time.Since(t0), err)
	}
}
