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
	c := db.Collection("cells")
	r, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}, {Key: "ver", Value: int64(1)}}}, {Key: "$setOnInsert", Value: bson.D{{Key: "v", Value: []byte("xyz")}}}}, options.UpdateOne().SetUpsert(true))
	t.Logf("upsert1 %+v %v", r, err)
	r, err = c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}, {Key: "ver", Value: int64(1)}}}, {Key: "$setOnInsert", Value: bson.D{{Key: "v", Value: []byte("zzz")}}}}, options.UpdateOne().SetUpsert(true))
	t.Logf("upsert2 %+v %v", r, err)
	raw, _ := c.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Raw()
	t.Logf("doc %v", raw)
	// CAS on ver
	r, err = c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "ver", Value: int64(2)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: int64(7)}}}, {Key: "$inc", Value: bson.D{{Key: "ver", Value: int64(1)}}}})
	t.Logf("cas %+v %v", r, err)
	// Bulk upserts speed
	for _, n := range []int{1000, 5000} {
		coll := db.Collection(fmt.Sprintf("bulk%d", n))
		models := make([]mongo.WriteModel, 0, n)
		for i := range n {
			models = append(models, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: fmt.Sprintf("cell%08d", i)}}).SetUpdate(bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}, {Key: "ver", Value: int64(1)}}}, {Key: "$setOnInsert", Value: bson.D{{Key: "v", Value: []byte("0123456789012345678901234567890123456789012345678901234567890123")}}}}).SetUpsert(true))
		}
		t0 := time.Now()
		_, err := coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
		t.Logf("bulk upsert new %d: %v %v", n, time.Since(t0), err)
		t0 = time.Now()
		_, err = coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
		t.Logf("bulk upsert existing %d: %v %v", n, time.Since(t0), err)
		docs := make([]any, n)
		for i := range n {
			docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("cell%08d", i)}, {Key: "n", Value: int64(1)}, {Key: "v", Value: []byte("0123456789012345678901234567890123456789012345678901234567890123")}}
		}
		t0 = time.Now()
		_, err = db.Collection(fmt.Sprintf("ins%d", n)).InsertMany(ctx, docs)
		t.Logf("insertmany %d: %v %v", n, time.Since(t0), err)
		t0 = time.Now()
		cur, err := coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "n", Value: 1}, {Key: "v", Value: 1}}))
		var all []bson.Raw
		err = cur.All(ctx, &all)
		t.Logf("find all %d: %v %v", len(all), time.Since(t0), err)
		t0 = time.Now()
		for i := range 200 {
			_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("cell%08d", i)}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}})
		}
		t.Logf("200 single updates: %v %v", time.Since(t0), err)
	}
	// $pull scalar
	c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "ops", Value: bson.A{"x", "y"}}}}})
	r, err = c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "pending", Value: ""}}}, {Key: "$set", Value: bson.D{{Key: "t", Value: []byte("abc")}}}})
	t.Logf("unset+set %+v %v", r, err)
	// group
	g := db.Collection("plain")
	g.InsertMany(ctx, []any{bson.D{{Key: "by", Value: 1990}, {Key: "c", Value: "DE"}}, bson.D{{Key: "by", Value: 1990}, {Key: "c", Value: "DE"}}, bson.D{{Key: "c", Value: "FR"}}})
	cur, err := g.Aggregate(ctx, mongo.Pipeline{{{Key: "$group", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "by", Value: "$by"}, {Key: "c", Value: "$c"}}}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var res []bson.M
	cur.All(ctx, &res)
	t.Logf("group %v", res)
}
