package audit_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

func TestChainUnderConcurrencyAndTampering(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		l := audit.New(b.Audit(), slog.New(slog.DiscardHandler))
		ctx := context.Background()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := l.Append(ctx, "admin:1", "export", fmt.Sprintf("user-%d", i), ""); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		page, err := l.Page(ctx, 100, 0)
		if err != nil || len(page) != 20 || page[0].Seq != 20 {
			t.Fatalf("page: %d entries, err %v", len(page), err)
		}
		if broken, err := l.Verify(ctx); broken != 0 || err != nil {
			t.Fatalf("intact chain reported broken at %d (%v)", broken, err)
		}
		older, _ := l.Page(ctx, 5, 11)
		if len(older) != 5 || older[0].Seq != 10 {
			t.Fatalf("paging: %+v", older)
		}
		storetest.Tamper(t, b, `UPDATE audit_log SET subject = ? WHERE seq = ?`, []any{"someone-else", 7},
			func(ctx context.Context, db *mongo.Database) (int64, error) {
				res, err := db.Collection("audit_log").UpdateOne(ctx, bson.D{{Key: "_id", Value: 7}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "subject", Value: "someone-else"}}}})
				if err != nil {
					return 0, err
				}
				return res.ModifiedCount, nil
			})
		if broken, _ := l.Verify(ctx); broken != 7 {
			t.Fatalf("edited entry 7: verify says %d", broken)
		}
		// A deleted entry leaves a gap the chain cannot bridge.
		storetest.Tamper(t, b, `DELETE FROM audit_log WHERE seq = ?`, []any{3},
			func(ctx context.Context, db *mongo.Database) (int64, error) {
				res, err := db.Collection("audit_log").DeleteOne(ctx, bson.D{{Key: "_id", Value: 3}})
				if err != nil {
					return 0, err
				}
				return res.DeletedCount, nil
			})
		if broken, _ := l.Verify(ctx); broken != 3 {
			t.Fatalf("deleted entry 3: verify says %d", broken)
		}
	})
}
