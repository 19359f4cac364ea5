package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

func TestChainUnderConcurrencyAndTampering(t *testing.T) {
	db := storetest.NewDB(t)
	l := New(db, slog.New(slog.DiscardHandler))
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
	if _, err := db.Collection(Collection).UpdateOne(ctx, bson.D{{Key: "_id", Value: 7}}, bson.D{{Key: "$set", Value: bson.D{{Key: "subject", Value: "someone-else"}}}}); err != nil {
		t.Fatal(err)
	}
	if broken, _ := l.Verify(ctx); broken != 7 {
		t.Fatalf("edited entry 7: verify says %d", broken)
	}
}
