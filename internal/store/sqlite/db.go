// Package sqlite is the embedded store adapter: every storage port of the
// domains (accounts, consent, outbox, demographics, partners, audit,
// signing keys, secrets, plugin state) on one SQLite database file, through
// the pure-Go driver modernc.org/sqlite.
//
// One writer connection takes every write, in short immediate
// transactions, so writers queue in Go instead of spinning on SQLITE_BUSY;
// a separate pool of query-only connections reads in parallel beside it
// (WAL), and a checkpointer connection copies the WAL into the database
// file in the background. Every port call that writes more than one row
// is one transaction; every lookup on a request path uses an index (see
// plan_test.go). Every statement is prepared once (see sqlq).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"modernc.org/sqlite"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/ratelimit"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
	"github.com/consentgraph/consentgraph/internal/telemetry"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// Options configure Open.
type Options struct {
	// Path is the database file (e.g. DATA_DIR/consentgraph.db). Its
	// directory is created (0700) and the file is created 0600; SQLite
	// gives the -wal and -shm files the same mode.
	Path string
	// Readers is the size of the read pool; 0 means max(4, 2*GOMAXPROCS).
	Readers int
	// Observer, if set, learns of every round trip ("read" or "write").
	Observer storectx.Observer
	// Tracer, if set, gets a span per round trip made inside a trace.
	Tracer trace.Tracer
	// Logger receives the adapter's own messages; nil means slog.Default().
	Logger *slog.Logger
	// Synchronous is PRAGMA synchronous: "NORMAL" (the default; in WAL
	// mode a crash loses at most the last commits, never consistency) or
	// "FULL" (every commit is durable).
	Synchronous string
}

// DB is an open embedded store.
type DB struct {
	path   string
	w      *sql.DB // the one writer connection
	r      *sql.DB // query-only readers
	ckpt   *sql.DB // the checkpointer's connection
	obs    storectx.Observer
	tracer trace.Tracer
	log    *slog.Logger

	// wstmts are the registered statements, prepared on the writer at
	// Open; rstmts are prepared on the readers when first used.
	wstmts []*sql.Stmt
	rmu    sync.Mutex
	rstmts []*sql.Stmt

	stopCkpt chan struct{}
	ckptDone chan struct{}
	// scrubPending: an erasure left its old pages in the WAL and the
	// checkpointer must truncate the WAL (see scrubWAL).
	scrubPending atomic.Bool

	// policies caches the published policy versions (see PolicyVersions).
	policies atomic.Pointer[[]consent.PolicyVersion]

	closeOnce sync.Once
	closeErr  error
}

// Kind names the adapter.
func (d *DB) Kind() string { return "embedded" }

// Path is the database file.
func (d *DB) Path() string { return d.path }

// Accounts is the accounts port.
func (d *DB) Accounts() accounts.Store { return accountStore{d} }

// Consent is the consent port.
func (d *DB) Consent() consent.Store { return consentStore{d} }

// Outbox is the outbox port.
func (d *DB) Outbox() outbox.Store { return outboxStore{d} }

// Demographics is the aggregates port.
func (d *DB) Demographics() demographics.Store { return demoStore{d} }

// Partners is the partners port.
func (d *DB) Partners() partners.Store { return partnerStore{d} }

// RateLimits is the port of the rate-limit counters replicas share.
func (d *DB) RateLimits() ratelimit.Store { return rateStore{d} }

// Audit is the audit log port.
func (d *DB) Audit() audit.Store { return auditStore{d} }

// Signing is the signing key port.
func (d *DB) Signing() signing.Store { return signingStore{d} }

// Secrets is the named secrets port.
func (d *DB) Secrets() envelope.SecretStore { return secretStore{d} }

// Translog is the public consent log's port.
func (d *DB) Translog() translog.Store { return logStore{d} }

// Page cache per connection, in KiB. Reads mostly come through the memory
// map; the writer's cache holds the pages a transaction dirties. They stay
// moderate: with a 64 MiB writer cache every small commit got slower (the
// end of a transaction may sweep the whole cache's hash table).
const (
	writerCacheKiB = 16 << 10
	readerCacheKiB = 16 << 10
	// mmapBytes maps the file (SQLite caps it at 2 GiB) so that readers
	// share the OS page cache instead of each copying pages into its own.
	mmapBytes = 1<<31 - 1
	// busyMillis only matters against other processes (a backup, the
	// sqlite3 shell): in this process writers queue for the one writer.
	busyMillis = 10000
	// checkpointEvery is how often the checkpointer copies the WAL into
	// the database file. Commits then only append to the WAL; the copy
	// and its fsyncs run beside them instead of inside the unlucky commit
	// that crosses the auto-checkpoint threshold.
	checkpointEvery = 200 * time.Millisecond
	// backstopPages lets the writer checkpoint by itself should the WAL
	// grow this large anyway (≈80 MiB): it keeps the WAL bounded.
	backstopPages = 20000
)

// Open opens (creating if needed) the database at o.Path, migrates its
// schema and prepares the statements.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.Path == "" {
		return nil, errors.New("sqlite: Options.Path is required")
	}
	if strings.ContainsAny(o.Path, "?#") {
		// The driver splits its DSN at '?'.
		return nil, fmt.Errorf("sqlite: database path %q must not contain '?' or '#'", o.Path)
	}
	syncMode := strings.ToUpper(o.Synchronous)
	switch syncMode {
	case "":
		syncMode = "NORMAL"
	case "NORMAL", "FULL":
	default:
		return nil, fmt.Errorf("sqlite: Synchronous must be NORMAL or FULL, not %q", o.Synchronous)
	}
	if o.Readers <= 0 {
		o.Readers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	path, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := prepareFile(path); err != nil {
		return nil, err
	}

	common := []string{
		fmt.Sprintf("busy_timeout(%d)", busyMillis),
		"foreign_keys(ON)",
		"secure_delete(ON)",
		"temp_store(MEMORY)",
		fmt.Sprintf("mmap_size(%d)", mmapBytes),
		"synchronous(" + syncMode + ")",
	}
	wdsn := dsn(path, slices.Concat(common, []string{fmt.Sprintf("cache_size(-%d)", writerCacheKiB), "journal_mode(WAL)",
		"journal_size_limit(67108864)", fmt.Sprintf("wal_autocheckpoint(%d)", backstopPages)}), "&_txlock=immediate")
	// query_only goes through its own DSN key, which the driver applies
	// after the pragmas.
	rdsn := dsn(path, slices.Concat(common, []string{fmt.Sprintf("cache_size(-%d)", readerCacheKiB)}), "&_query_only=1")
	cdsn := dsn(path, slices.Concat(common, []string{"cache_size(-2048)", "wal_autocheckpoint(0)"}), "")

	w, err := sql.Open("sqlite", wdsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	// One connection: writes queue in database/sql, never on SQLite's lock.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	d := &DB{path: path, w: w, obs: o.Observer, tracer: o.Tracer, log: o.Logger.With("component", "sqlite")}
	if err := w.PingContext(ctx); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := d.migrate(ctx); err != nil {
		_ = w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", rdsn)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	r.SetMaxOpenConns(o.Readers)
	r.SetMaxIdleConns(o.Readers)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	d.r = r
	if err := r.PingContext(ctx); err != nil {
		_ = r.Close()
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	ckpt, err := sql.Open("sqlite", cdsn)
	if err != nil {
		_ = d.closePools()
		return nil, fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	ckpt.SetMaxOpenConns(1)
	d.ckpt = ckpt
	if err := ckpt.PingContext(ctx); err != nil {
		_ = d.closePools()
		return nil, fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	// Prepared on the writer now: later, inside a transaction that holds
	// the only connection, preparing through the pool would wait forever.
	d.wstmts = make([]*sql.Stmt, len(registry))
	d.rstmts = make([]*sql.Stmt, len(registry))
	for i, q := range registry {
		s, err := w.PrepareContext(ctx, q.text)
		if err != nil {
			_ = d.closePools()
			return nil, fmt.Errorf("sqlite: prepare %q: %w", q.text, err)
		}
		d.wstmts[i] = s
	}
	d.stopCkpt, d.ckptDone = make(chan struct{}), make(chan struct{})
	go d.checkpointer()
	return d, nil
}

// checkpointer runs PASSIVE checkpoints until Close: they copy what the
// WAL holds into the database file without blocking the writer or the
// readers (pages a reader still needs stay for the next round).
func (d *DB) checkpointer() {
	defer close(d.ckptDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-d.stopCkpt:
			return
		case <-t.C:
		}
		if d.scrubPending.Load() {
			d.scrubWAL(context.Background())
			continue
		}
		var busy, logPages, done int
		err := d.ckpt.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &done)
		if err != nil && !failing {
			d.log.Warn("WAL checkpoint failed; the writer checkpoints by itself once the WAL is large", "err", err)
		}
		failing = err != nil
	}
}

// scrubWAL removes erased records from the files. secure_delete zeroes
// deleted content in the database file, but the WAL still holds the pages
// as they were before the deletion until it is rewritten; a truncating
// checkpoint copies the WAL into the database and cuts it to zero bytes. It
// waits for readers of older snapshots (up to the busy timeout); if one
// outlasts that, the checkpointer tries again every round.
func (d *DB) scrubWAL(ctx context.Context) {
	d.scrubPending.Store(true)
	var busy, logPages, done int
	err := d.ckpt.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done)
	switch {
	case err != nil:
		d.log.WarnContext(ctx, "truncating checkpoint after an erasure failed; retrying", "err", err)
	case busy != 0:
		d.log.InfoContext(ctx, "truncating checkpoint after an erasure waits for readers; retrying")
	default:
		d.scrubPending.Store(false)
	}
}

// prepareFile creates the directory (0700) and the database file (0600)
// before SQLite does, so the file never exists with a wider mode; an
// existing file is tightened to 0600.
func prepareFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("sqlite: create data directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: create database file: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sqlite: database file mode: %w", err)
	}
	return nil
}

// dsn builds a driver DSN whose pragmas run on every new pooled connection.
func dsn(path string, pragmas []string, extra string) string {
	var b strings.Builder
	b.WriteString(path)
	b.WriteString("?")
	for i, p := range pragmas {
		if i > 0 {
			b.WriteString("&")
		}
		b.WriteString("_pragma=")
		b.WriteString(url.QueryEscape(p))
	}
	b.WriteString(extra)
	return b.String()
}

// Ping checks that both pools answer.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.w.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping writer: %w", err)
	}
	if err := d.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping readers: %w", err)
	}
	return nil
}

// Close closes the readers, checkpoints the WAL into the database file
// (truncating it, so the data directory is one self-contained file) and
// closes the writer. Later calls return the first result.
func (d *DB) Close(ctx context.Context) error {
	d.closeOnce.Do(func() {
		close(d.stopCkpt)
		<-d.ckptDone
		errC := d.ckpt.Close()
		// Readers first: an open read snapshot would keep the checkpoint
		// from reaching the end of the WAL.
		errR := d.r.Close()
		var errW error
		if _, err := d.w.ExecContext(ctx, "PRAGMA optimize"); err != nil {
			d.log.WarnContext(ctx, "PRAGMA optimize failed", "err", err)
		}
		var busy, logPages, done int
		if err := d.w.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done); err != nil {
			errW = fmt.Errorf("sqlite: checkpoint: %w", err)
		} else if busy != 0 {
			d.log.WarnContext(ctx, "WAL checkpoint could not complete; the WAL is kept and replayed at the next open")
		}
		for _, s := range d.wstmts {
			if s != nil {
				_ = s.Close()
			}
		}
		d.closeErr = errors.Join(errC, errR, errW, d.w.Close())
	})
	return d.closeErr
}

// closePools closes what Open opened when Open fails half-way.
func (d *DB) closePools() error {
	var errR, errC error
	if d.r != nil {
		errR = d.r.Close()
	}
	if d.ckpt != nil {
		errC = d.ckpt.Close()
	}
	return errors.Join(errR, errC, d.w.Close())
}

// observe reports one round trip that began at start.
func (d *DB) observe(ctx context.Context, command string, start time.Time, err error) {
	if d.obs != nil {
		d.obs(ctx, command, err)
	}
	if d.tracer != nil {
		telemetry.RoundTrip(ctx, d.tracer, "sqlite", command, start, err)
	}
}

// query is one registered SQL statement. Every statement the adapter runs
// is registered (package variables, via sqlq), so the writer can prepare
// them all once at Open.
type query struct {
	id   int
	text string
}

var registry []*query

// sqlq registers a statement; call it only from package variable
// initializers.
func sqlq(text string) *query {
	q := &query{id: len(registry), text: text}
	registry = append(registry, q)
	return q
}

// rstmt returns q prepared on the read pool (prepared lazily: the read
// pool never deadlocks, and most statements are never read there).
func (d *DB) rstmt(ctx context.Context, q *query) (*sql.Stmt, error) {
	d.rmu.Lock()
	s := d.rstmts[q.id]
	d.rmu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := d.r.PrepareContext(ctx, q.text)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.rstmts[q.id] != nil {
		_ = s.Close()
		return d.rstmts[q.id], nil
	}
	d.rstmts[q.id] = s
	return s, nil
}

// bounded returns the context a statement or transaction runs under: the
// caller's values without its cancellation, once it is checked not to be
// cancelled already. Every statement here is short (lists are read in
// chunks, bulk loads in batches), and the driver watches a cancellable
// context with a goroutine per statement — a large share of a point read's
// cost. A request that ends meanwhile lets its statement finish, which
// keeps an operation whole.
// On error it returns ctx itself, so a caller that reassigns its ctx still
// reports the round trip with a valid context.
func bounded(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return ctx, err
	}
	return context.WithoutCancel(ctx), nil
}

// readRow runs a one-row read and scans it; found is false on no row.
func (d *DB) readRow(ctx context.Context, q *query, args []any, dest ...any) (found bool, err error) {
	start := time.Now()
	defer func() { d.observe(ctx, "read", start, err) }()
	if ctx, err = bounded(ctx); err != nil {
		return false, err
	}
	s, err := d.rstmt(ctx, q)
	if err != nil {
		return false, err
	}
	err = s.QueryRowContext(ctx, args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// readRows runs a read and calls each for every row.
func (d *DB) readRows(ctx context.Context, q *query, args []any, each func(*sql.Rows) error) (err error) {
	start := time.Now()
	defer func() { d.observe(ctx, "read", start, err) }()
	return d.scanRows(ctx, q, args, each)
}

// scanRows is readRows without the observer (for callers reporting a
// whole port call themselves).
func (d *DB) scanRows(ctx context.Context, q *query, args []any, each func(*sql.Rows) error) error {
	ctx, err := bounded(ctx)
	if err != nil {
		return err
	}
	s, err := d.rstmt(ctx, q)
	if err != nil {
		return err
	}
	rows, err := s.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// exec runs one write statement on its own (SQLite makes a single
// statement atomic) and returns the rows it changed.
func (d *DB) exec(ctx context.Context, q *query, args ...any) (n int64, err error) {
	start := time.Now()
	defer func() { d.observe(ctx, "write", start, err) }()
	if ctx, err = bounded(ctx); err != nil {
		return 0, err
	}
	res, err := d.wstmts[q.id].ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// writeRow runs one write statement with RETURNING and scans its row;
// found is false when it changed nothing.
func (d *DB) writeRow(ctx context.Context, q *query, args []any, dest ...any) (found bool, err error) {
	start := time.Now()
	defer func() { d.observe(ctx, "write", start, err) }()
	if ctx, err = bounded(ctx); err != nil {
		return false, err
	}
	err = d.wstmts[q.id].QueryRowContext(ctx, args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// tx is a write transaction on the writer connection.
type tx struct {
	ctx   context.Context
	tx    *sql.Tx
	d     *DB
	stmts map[int]*sql.Stmt
}

// errRollback ends a transaction without an error for the caller: the
// operation's condition did not hold and nothing may be written.
var errRollback = errors.New("rollback")

// write runs fn in one immediate transaction (BEGIN IMMEDIATE through the
// DSN's _txlock): fn's error or errRollback rolls back, anything else
// commits. It reports one round trip.
func (d *DB) write(ctx context.Context, fn func(t *tx) error) (err error) {
	start := time.Now()
	defer func() {
		if errors.Is(err, errRollback) {
			d.observe(ctx, "write", start, nil)
			return
		}
		d.observe(ctx, "write", start, err)
	}()
	bctx, err := bounded(ctx)
	if err != nil {
		return err
	}
	sqlTx, err := d.w.BeginTx(bctx, nil)
	if err != nil {
		return err
	}
	t := &tx{ctx: bctx, tx: sqlTx, d: d}
	if err := fn(t); err != nil {
		if rerr := sqlTx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(err, rerr)
		}
		return err
	}
	return sqlTx.Commit()
}

// stmt returns q bound to the transaction (reusing the statement prepared
// on the writer at Open).
func (t *tx) stmt(q *query) *sql.Stmt {
	if s, ok := t.stmts[q.id]; ok {
		return s
	}
	if t.stmts == nil {
		t.stmts = make(map[int]*sql.Stmt, 4)
	}
	s := t.tx.StmtContext(t.ctx, t.d.wstmts[q.id])
	t.stmts[q.id] = s
	return s
}

func (t *tx) exec(q *query, args ...any) (int64, error) {
	res, err := t.stmt(q).ExecContext(t.ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *tx) queryRow(q *query, args []any, dest ...any) (bool, error) {
	err := t.stmt(q).QueryRowContext(t.ctx, args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (t *tx) query(q *query, args ...any) (*sql.Rows, error) {
	return t.stmt(q).QueryContext(t.ctx, args...)
}

// Times are INTEGER unix milliseconds; the zero time is 0.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// msPtr maps an optional time to NULL or milliseconds.
func msPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMilli(v.Int64).UTC()
	return &t
}

// nullText maps "" to NULL (columns whose unique index skips absent values).
func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// blob keeps nil as NULL and anything else as a BLOB (a STRICT BLOB column
// refuses TEXT).
func blob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// uniqueViolation returns the "table.column" list SQLite names in a UNIQUE
// or PRIMARY KEY constraint error, or "" for any other error.
func uniqueViolation(err error) string {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return ""
	}
	const unique, primaryKey = 2067, 1555 // SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY
	if se.Code() != unique && se.Code() != primaryKey {
		return ""
	}
	msg := se.Error()
	const marker = "constraint failed: "
	i := strings.LastIndex(msg, marker)
	if i < 0 {
		return msg
	}
	cols := msg[i+len(marker):]
	if j := strings.Index(cols, " ("); j >= 0 {
		cols = cols[:j]
	}
	return cols
}
