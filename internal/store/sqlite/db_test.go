package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOpenCreatesPrivateFileWhereAsked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	path := filepath.Join(dir, "consentgraph.db")
	d, err := Open(context.Background(), Options{Path: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	if d.Path() != path || d.Kind() != "embedded" {
		t.Errorf("Path %q Kind %q", d.Path(), d.Kind())
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", dst.Mode().Perm())
	}
	// The WAL and shared-memory files take the database file's mode.
	if err := d.Accounts().CreateAccount(context.Background(), newAccount("u1", "alice")); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		st, err := os.Stat(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s mode %v is readable by others", suffix, st.Mode().Perm())
		}
	}
	if err := d.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestOpenTightensAnExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cg.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(context.Background(), Options{Path: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
}

func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cg.db")

	// An empty file is migrated to the current version.
	d, err := Open(ctx, Options{Path: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Accounts().CreateAccount(ctx, newAccount("u1", "alice")); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if v := userVersion(t, path); v != SchemaVersion() || v < 1 {
		t.Fatalf("user_version %d, want %d", v, SchemaVersion())
	}
	// Close checkpointed the WAL into the file and truncated it.
	if st, err := os.Stat(path + "-wal"); err == nil && st.Size() != 0 {
		t.Errorf("WAL holds %d bytes after Close", st.Size())
	}

	// Reopening changes nothing and keeps the data.
	d, err = Open(ctx, Options{Path: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Accounts().Account(ctx, "u1")
	if err != nil || r == nil {
		t.Fatalf("account after reopen: %v %v", r, err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if v := userVersion(t, path); v != SchemaVersion() {
		t.Fatalf("user_version %d after reopen", v)
	}

	// A database from a newer build is refused, untouched.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(ctx, Options{Path: path, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "newer than this build") {
		t.Fatalf("Open of a too-new database: %v", err)
	}
	if v := userVersion(t, path); v != 999 {
		t.Fatalf("refused database was changed: user_version %d", v)
	}
}

func TestMigrationsRefuseAnotherProgramsDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t (x); PRAGMA user_version = 3"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(context.Background(), Options{Path: path, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "not a Consentgraph database") {
		t.Fatalf("Open of a foreign database: %v", err)
	}
}

func TestMigrationStepIsOneTransaction(t *testing.T) {
	// A failing step leaves the version (and the schema) as they were.
	saved := migrations
	defer func() { migrations = saved }()
	migrations = append(append([]migration(nil), saved...), migration{name: "broken", stmts: []string{
		`CREATE TABLE half_done (x INTEGER) STRICT`,
		`THIS IS NOT SQL`,
	}})
	path := filepath.Join(t.TempDir(), "cg.db")
	_, err := Open(context.Background(), Options{Path: path, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("Open with a broken migration: %v", err)
	}
	if v := userVersion(t, path); v != len(saved) {
		t.Fatalf("user_version %d after a failed step, want %d", v, len(saved))
	}
	db, _ := sql.Open("sqlite", path)
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'half_done'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("half of the failed step stayed: %d %v", n, err)
	}
}

func pragma(t *testing.T, db *sql.DB, name string) string {
	t.Helper()
	var v string
	if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func TestPragmasOnBothPools(t *testing.T) {
	d := openTest(t)
	want := map[string]string{
		"journal_mode":  "wal",
		"secure_delete": "1",
		"foreign_keys":  "1",
		"temp_store":    "2", // MEMORY
		"synchronous":   "1", // NORMAL
	}
	for name, db := range map[string]*sql.DB{"writer": d.w, "reader": d.r} {
		// Take several connections of the pool at once, so that more than
		// the first one is checked.
		var conns []*sql.Conn
		for i := 0; i < 3 && (name == "reader" || i == 0); i++ {
			c, err := db.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			for p, v := range want {
				var got string
				if err := c.QueryRowContext(context.Background(), "PRAGMA "+p).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != v {
					t.Errorf("%s: PRAGMA %s = %s, want %s", name, p, got, v)
				}
			}
			var cache int
			if err := c.QueryRowContext(context.Background(), "PRAGMA cache_size").Scan(&cache); err != nil || cache >= 0 {
				t.Errorf("%s: cache_size %d %v, want a size in KiB", name, cache, err)
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	if got := pragma(t, d.r, "query_only"); got != "1" {
		t.Errorf("reader query_only = %s", got)
	}
	if got := pragma(t, d.w, "query_only"); got != "0" {
		t.Errorf("writer query_only = %s", got)
	}
	if _, err := d.r.Exec(`DELETE FROM users`); err == nil {
		t.Error("a reader connection could write")
	}
}

func TestSynchronousOption(t *testing.T) {
	ctx := context.Background()
	d, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "a.db"), Synchronous: "full", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	if got := pragma(t, d.w, "synchronous"); got != "2" {
		t.Errorf("synchronous = %s, want 2 (FULL)", got)
	}
	if _, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "b.db"), Synchronous: "OFF"}); err == nil {
		t.Error("Synchronous OFF was accepted")
	}
	if _, err := Open(ctx, Options{}); err == nil {
		t.Error("an empty path was accepted")
	}
}

// Reads run on their own connections while a write transaction is open:
// they neither wait for it nor see its uncommitted rows.
func TestReadersRunBesideAnOpenWriteTransaction(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	if err := d.Accounts().CreateAccount(ctx, newAccount("u1", "alice")); err != nil {
		t.Fatal(err)
	}
	inTx := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- d.write(ctx, func(t *tx) error {
			a := newAccount("u2", "bob")
			if err := insertAccount(t, &a); err != nil {
				return err
			}
			close(inTx)
			<-release
			return nil
		})
	}()
	<-inTx
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := d.Accounts().Account(rctx, "u1")
			if err == nil && r == nil {
				err = errors.New("committed account not found")
			}
			if err == nil {
				if r2, err2 := d.Accounts().Account(rctx, "u2"); err2 != nil || r2 != nil {
					err = errors.New("uncommitted account visible to a reader")
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r, err := d.Accounts().Account(ctx, "u2"); err != nil || r == nil {
		t.Fatalf("committed account: %v %v", r, err)
	}
}

func TestObserverSeesEachRoundTrip(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	d, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "cg.db"), Logger: quiet,
		Observer: func(_ context.Context, command string, _ error) {
			mu.Lock()
			calls[command]++
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	ctx := context.Background()
	if err := d.Accounts().CreateAccount(ctx, newAccount("u1", "alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Accounts().Account(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Consent().State(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Outbox().Relay(ctx, ""); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["write"] != 1 || calls["read"] != 2 || len(calls) != 2 {
		t.Errorf("observed %v, want 1 write and 2 reads", calls)
	}
}

// A call whose context has already ended returns its error and still
// reports the round trip with a usable context (observers read its values).
func TestCancelledCallReportsItsRoundTrip(t *testing.T) {
	var seen []error
	d, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "c.db"),
		Observer: func(ctx context.Context, _ string, err error) {
			_ = ctx.Value(struct{}{}) // a nil context would panic here
			seen = append(seen, err)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Accounts().Account(ctx, "nobody"); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with an ended context: %v", err)
	}
	if err := d.Accounts().SetPasswordHash(ctx, "nobody", "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("write with an ended context: %v", err)
	}
	if len(seen) == 0 || !errors.Is(seen[len(seen)-1], context.Canceled) {
		t.Fatalf("observer saw %v", seen)
	}
}
