// Package storetest gives tests a real database on the embedded store, the
// same FerretDB the server uses by default, reached through the real driver.
package storetest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/store"
)

var (
	once    sync.Once
	shared  *store.Store
	openErr error
	counter atomic.Int64
)

// Shared returns one embedded store per test binary; it lives until the
// process exits. Tests isolate themselves with NewDB.
func Shared(t testing.TB) *store.Store {
	t.Helper()
	once.Do(func() {
		dir, err := os.MkdirTemp("", "consentgraph-test-*")
		if err != nil {
			openErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shared, openErr = store.Open(ctx, store.Config{
			URI:      os.Getenv("CONSENTGRAPH_TEST_MONGODB_URI"),
			DataDir:  dir,
			Database: "unused",
			Logger:   slog.New(slog.DiscardHandler),
		})
	})
	if openErr != nil {
		t.Fatalf("open embedded store: %v", openErr)
	}
	return shared
}

// NewDB returns a fresh, empty database on the shared store, dropped when
// the test ends.
func NewDB(t testing.TB) *mongo.Database {
	t.Helper()
	s := Shared(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), counter.Add(1))
	db := s.Client.Database(name)
	t.Cleanup(func() { _ = db.Drop(context.Background()) })
	return db
}
