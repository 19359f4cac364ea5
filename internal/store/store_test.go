package store_test

import (
	"context"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// FerretDB v1 loses concurrent updates on one document unless commands are
// serialized; the store must detect it and keep $inc and conditional
// updates atomic.
func TestConcurrentUpdatesAreAtomic(t *testing.T) {
	db := storetest.NewDB(t)
	if !storetest.Shared(t).Serialized {
		t.Log("store is not FerretDB; checking atomicity anyway")
	}
	ctx := context.Background()
	c := db.Collection("counters")
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}, {Key: "v", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var wg sync.WaitGroup
	var casWins sync.Map
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}); err != nil {
				t.Error(err)
			}
			// Everyone tries to move v from 0 to its own number: one may win.
			r, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 0}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: i + 1}}}})
			if err == nil && r.ModifiedCount == 1 {
				casWins.Store(i, true)
			}
		}()
	}
	wg.Wait()
	var doc struct{ N, V int }
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	wins := 0
	casWins.Range(func(any, any) bool { wins++; return true })
	if doc.N != n || wins != 1 {
		t.Fatalf("after %d concurrent updates: n=%d, conditional winners=%d (want %d and 1)", n, doc.N, wins, n)
	}
}
