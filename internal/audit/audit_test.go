package audit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// Issue 14: 300 audited actions at once (an aliased export flood did this
// through the API) all succeed and keep the chain intact. Three logs on one
// store stand for three replicas: each serializes its own appends, and the
// store's retries settle the races between them.
func TestAppendsNeverFailUnderContention(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		logs := []*audit.Log{
			audit.New(b.Audit(), slog.New(slog.DiscardHandler)),
			audit.New(b.Audit(), slog.New(slog.DiscardHandler)),
			audit.New(b.Audit(), slog.New(slog.DiscardHandler)),
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		const n = 300
		start := time.Now()
		var wg sync.WaitGroup
		var failed atomic.Int64
		for i := range n {
			wg.Go(func() {
				if err := logs[i%len(logs)].Append(ctx, fmt.Sprintf("user:%d", i), "export", fmt.Sprintf("user-%d", i), "exportMyData"); err != nil {
					failed.Add(1)
					t.Errorf("append %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		t.Logf("%d concurrent appends through %d logs in %v", n, len(logs), time.Since(start).Round(time.Millisecond))
		if failed.Load() > 0 {
			t.Fatalf("%d of %d appends failed", failed.Load(), n)
		}
		page, err := logs[0].Page(ctx, n+1, 0)
		if err != nil || len(page) != n || page[0].Seq != n {
			t.Fatalf("page: %d entries (newest %v), err %v; want %d", len(page), page[0].Seq, err, n)
		}
		if broken, err := logs[1].Verify(ctx); broken != 0 || err != nil {
			t.Fatalf("chain broken at %d (%v)", broken, err)
		}
	})
}

// An append waiting for its turn gives up when its request does, instead
// of holding the request past its deadline.
func TestAppendWaitingForItsTurnHonoursTheContext(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		l := audit.New(b.Audit(), slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Append(ctx, "user:1", "export", "", ""); !errors.Is(err, context.Canceled) {
			t.Fatalf("append with an ended context: %v", err)
		}
		if err := l.Append(context.Background(), "user:1", "export", "", ""); err != nil {
			t.Fatalf("the next append: %v", err)
		}
	})
}
