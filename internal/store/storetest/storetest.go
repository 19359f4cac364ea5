// Package storetest gives tests real stores: a fresh embedded SQLite store
// in a temporary directory, and a fresh database on the MongoDB adapter —
// on a real MongoDB when CONSENTGRAPH_TEST_MONGODB_URI is set, otherwise on
// an embedded FerretDB started once per test binary (a wire-protocol test
// double: it scans and serializes everything, so keep data small there).
package storetest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/ferret"
	"github.com/consentgraph/consentgraph/internal/store/mongostore"
	"github.com/consentgraph/consentgraph/internal/store/sqlite"
)

// MongoURIVariable names the variable pointing the tests at a real MongoDB.
const MongoURIVariable = "CONSENTGRAPH_TEST_MONGODB_URI"

// Kinds are the adapters Each runs on.
var Kinds = []string{"embedded", "mongodb"}

// Open returns a fresh, empty store of the given kind, closed (and for
// MongoDB dropped) when the test ends.
func Open(t testing.TB, kind string) store.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch kind {
	case "embedded":
		db, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), store.FileName), Logger: quiet})
		if err != nil {
			t.Fatalf("open embedded store: %v", err)
		}
		t.Cleanup(func() { _ = db.Close(context.Background()) })
		return db
	case "mongodb":
		uri := MongoURI(t)
		name := fmt.Sprintf("t%d_%d", os.Getpid(), counter.Add(1))
		db, err := mongostore.Open(ctx, mongostore.Options{URI: uri, Database: name, Logger: quiet})
		if err != nil {
			t.Fatalf("open MongoDB store: %v", err)
		}
		t.Cleanup(func() {
			_ = db.Database().Drop(context.Background())
			_ = db.Close(context.Background())
		})
		return db
	}
	t.Fatalf("unknown store kind %q", kind)
	return nil
}

// Each runs test once per adapter, as subtests named after the kind.
func Each(t *testing.T, test func(t *testing.T, b store.Backend)) {
	t.Helper()
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) { test(t, Open(t, kind)) })
	}
}

var (
	quiet   = slog.New(slog.DiscardHandler)
	counter atomic.Int64

	ferretOnce sync.Once
	ferretURI  string
	ferretErr  error
)

// MongoURI returns the MongoDB the tests use: CONSENTGRAPH_TEST_MONGODB_URI,
// or an embedded FerretDB started for this test binary (it lives until the
// process exits).
func MongoURI(t testing.TB) string {
	t.Helper()
	if uri := os.Getenv(MongoURIVariable); uri != "" {
		return uri
	}
	ferretOnce.Do(func() {
		dir, err := os.MkdirTemp("", "consentgraph-ferret-*")
		if err != nil {
			ferretErr = err
			return
		}
		ferretURI, _, ferretErr = ferret.Start(context.Background(), dir, quiet)
	})
	if ferretErr != nil {
		t.Fatalf("start embedded FerretDB: %v", ferretErr)
	}
	return ferretURI
}

// Tamper changes stored records behind the services' back, for tests that
// prove tampering is detected: sql (with args) runs on the embedded store,
// mongo on the MongoDB one. It fails the test when nothing changed.
func Tamper(t testing.TB, b store.Backend, sql string, args []any, mongo func(ctx context.Context, db *mongo.Database) (int64, error)) {
	t.Helper()
	ctx := context.Background()
	var n int64
	var err error
	switch db := b.(type) {
	case *sqlite.DB:
		n, err = db.ExecRaw(ctx, sql, args...)
	case *mongostore.DB:
		n, err = mongo(ctx, db.Database())
	default:
		t.Fatalf("cannot tamper with a %T", b)
	}
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
	if n == 0 {
		t.Fatal("tamper: nothing matched")
	}
}
