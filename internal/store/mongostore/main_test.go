package mongostore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/store/ferret"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
)

// testMongoURIEnv names a real MongoDB to run the tests against instead of
// the embedded FerretDB.
const testMongoURIEnv = "CONSENTGRAPH_TEST_MONGODB_URI"

var (
	testURI string
	// testIsFerret is whether the tests run against FerretDB.
	testIsFerret bool
	dbCounter    atomic.Int64
)

// TestMain starts one FerretDB for the whole test binary, unless a real
// MongoDB is named; each test gets a database of its own on it.
func TestMain(m *testing.M) {
	testURI = os.Getenv(testMongoURIEnv)
	stop := func() {}
	if testURI == "" {
		dir, err := os.MkdirTemp("", "mongostore-test-*")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		uri, s, err := ferret.Start(context.Background(), dir, slog.New(slog.DiscardHandler))
		if err != nil {
			fmt.Fprintln(os.Stderr, "start ferretdb:", err)
			os.Exit(1)
		}
		testURI, testIsFerret = uri, true
		stop = func() {
			s()
			_ = os.RemoveAll(dir)
		}
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// freshName returns a database name no other test uses.
func freshName() string {
	return fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.Add(1))
}

// openTest opens the adapter on a fresh database, dropped when the test ends.
func openTest(t testing.TB, o Options) *DB {
	t.Helper()
	if o.Database == "" {
		o.Database = freshName()
	}
	o.URI = testURI
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = d.Database().Drop(ctx)
		_ = d.Close(ctx)
	})
	return d
}

// roundTrips counts the commands issued under a context made by counting.
type roundTrips struct{}

func counting(ctx context.Context) (context.Context, *atomic.Int64) {
	n := new(atomic.Int64)
	return context.WithValue(ctx, roundTrips{}, n), n
}

// countingObserver adds one to the counter of the command's context.
var countingObserver storectx.Observer = func(ctx context.Context, _ string, _ error) {
	if n, ok := ctx.Value(roundTrips{}).(*atomic.Int64); ok {
		n.Add(1)
	}
}

func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }
