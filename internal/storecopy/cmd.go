package storecopy

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/progress"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/ferret"
	"github.com/consentgraph/consentgraph/internal/store/mongostore"
	"github.com/consentgraph/consentgraph/internal/store/snapshot"
)

const usageText = `Usage: consentgraph copy-store --to <mongodb URI or data directory> [--to-database NAME] [server flags]

Copies everything the configured store holds (the same flags and variables
as the server: --data-dir, --mongodb-uri, --database) into another, empty
store, then verifies the copy: equal counts of every kind of record, every
consent ledger recomputed on the copy (receipt signatures too, given the
master key), and the demographic cells against the source and a recount.

A target starting with mongodb:// or mongodb+srv:// is a MongoDB database;
anything else is a data directory for the embedded store. A data directory
written by the previous, FerretDB-based version is read through FerretDB:
copy it into a new directory. Stop the server first: changes made during
the copy are not in it (and make the verification fail).

With the default master key file (DATA_DIR/master.key), copying into a data
directory copies the key file along; for MongoDB, start the servers with the
same key in CONSENTGRAPH_MASTER_KEY.

Flags:
`

const serverFlagsText = `
Server flags (see consentgraph -h) choose the store to copy, chiefly
  --data-dir DIR       the embedded store (default data)
  --mongodb-uri URI    a MongoDB deployment instead
  --database NAME      its database (default consentgraph)
and CONSENTGRAPH_MASTER_KEY the master key.

Examples:
  consentgraph copy-store --data-dir data --to 'mongodb://db1:27017,db2:27017,db3:27017/?replicaSet=rs0'
  consentgraph copy-store --mongodb-uri mongodb://db1:27017 --to ./local-data
  consentgraph copy-store --data-dir old-data --to new-data
`

// Main runs copy-store with the command line after its name.
func Main(args []string, getenv func(string) string, stderr, stdout io.Writer) error {
	fs := flag.NewFlagSet("consentgraph copy-store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "the target: a MongoDB URI (mongodb:// or mongodb+srv://) or a data directory")
	toDatabase := fs.String("to-database", "", "the target MongoDB database (default: the URI's, else --database)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
		fmt.Fprint(stderr, serverFlagsText)
	}
	own, serverArgs := splitOwn(fs, args)
	if err := fs.Parse(own); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("copy-store: --to is required: a MongoDB URI or a data directory (copy-store -h explains)")
	}
	cfg, err := config.Load(serverArgs, getenv, stderr)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return Run(ctx, cfg, Target{To: *to, Database: *toDatabase}, log, stderr, stdout)
}

// splitOwn separates the flags fs defines (and -h, -help) from the rest,
// which are the server's: a flag is -name or --name, its value attached
// with = or, unless it is a boolean flag, the next argument.
func splitOwn(fs *flag.FlagSet, args []string) (own, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return own, append(rest, args[i:]...)
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest = append(rest, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		if name == "h" || name == "help" {
			own = append(own, a)
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			rest = append(rest, a)
			continue
		}
		own = append(own, a)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); hasValue || ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			own = append(own, args[i])
		}
	}
	return own, rest
}

// Target says where to copy to.
type Target struct {
	// To is a MongoDB URI (mongodb://, mongodb+srv://) or a data directory.
	To string
	// Database is the MongoDB database; when empty, the URI's path names
	// it, else the source's.
	Database string
}

// IsMongoDB reports whether the target is a MongoDB deployment.
func (t Target) IsMongoDB() bool {
	return strings.HasPrefix(t.To, "mongodb://") || strings.HasPrefix(t.To, "mongodb+srv://")
}

// uriDatabase returns the database a MongoDB URI names in its path, or "".
func uriDatabase(uri string) string {
	_, rest, _ := strings.Cut(uri, "://")
	_, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	path, _, _ = strings.Cut(path, "?")
	if db, err := url.PathUnescape(path); err == nil {
		return db
	}
	return path
}

// redact drops the credentials from a MongoDB URI, for messages.
func redact(uri string) string {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return uri
	}
	hosts, tail, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(hosts, "@"); i >= 0 {
		hosts = "…@" + hosts[i+1:]
	}
	if tail != "" || strings.Contains(rest, "/") {
		return scheme + "://" + hosts + "/" + tail
	}
	return scheme + "://" + hosts
}

// opened is a store copy-store opened, and how to close it.
type opened struct {
	Store
	name string
	// database is the MongoDB database ("" for the embedded store).
	database string
	close    func()
}

// openSource opens the configured store for reading: MongoDB, the
// embedded store, or the previous version's data directory through
// FerretDB. It creates nothing in it.
func openSource(ctx context.Context, cfg config.Config, log *slog.Logger) (*opened, error) {
	if cfg.MongoDBURI != "" {
		db, err := mongostore.Open(ctx, mongostore.Options{URI: cfg.MongoDBURI, Database: cfg.Database, Logger: log, SkipIndexes: true})
		if err != nil {
			return nil, fmt.Errorf("open the source: %w", err)
		}
		return &opened{Store: db, name: fmt.Sprintf("MongoDB database %s at %s", cfg.Database, redact(cfg.MongoDBURI)),
			close: func() { _ = db.Close(context.Background()) }}, nil
	}
	if legacy := store.LegacyFile(cfg.DataDir, cfg.Database); legacy != "" {
		// The previous version kept its data as FerretDB's SQLite files;
		// FerretDB reads them, speaking MongoDB to the MongoDB adapter.
		quiet := slog.New(levelAtLeast{h: log.Handler(), min: slog.LevelError})
		uri, stop, err := ferret.Start(ctx, cfg.DataDir, quiet)
		if err != nil {
			return nil, fmt.Errorf("read the previous version's data in %s: %w", cfg.DataDir, err)
		}
		db, err := mongostore.Open(ctx, mongostore.Options{URI: uri, Database: cfg.Database, Logger: quiet, SkipIndexes: true})
		if err != nil {
			stop()
			return nil, fmt.Errorf("read the previous version's data in %s: %w", cfg.DataDir, err)
		}
		return &opened{Store: db, name: fmt.Sprintf("the previous version's store in %s (%s, read through FerretDB)", cfg.DataDir, filepath.Base(legacy)),
			close: func() { _ = db.Close(context.Background()); stop() }}, nil
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, store.FileName)); err != nil {
		return nil, fmt.Errorf("no store to copy in %s (no %s there): point --data-dir or --mongodb-uri at the store to copy", cfg.DataDir, store.FileName)
	}
	return openStore(ctx, store.Config{DataDir: cfg.DataDir, Database: cfg.Database, Logger: log}, "the embedded store in "+cfg.DataDir)
}

// openTarget opens (creating) the store to copy into.
func openTarget(ctx context.Context, cfg config.Config, t Target, log *slog.Logger) (*opened, error) {
	if t.IsMongoDB() {
		db := t.Database
		if db == "" {
			db = uriDatabase(t.To)
		}
		if db == "" {
			db = cfg.Database
		}
		if cfg.MongoDBURI == t.To && cfg.Database == db {
			return nil, errors.New("the target is the configured store itself")
		}
		o, err := openStore(ctx, store.Config{MongoDBURI: t.To, Database: db, Logger: log}, fmt.Sprintf("MongoDB database %s at %s", db, redact(t.To)))
		if err == nil {
			o.database = db
		}
		return o, err
	}
	if t.Database != "" {
		return nil, errors.New("--to-database names a MongoDB database; the target is a data directory")
	}
	if cfg.MongoDBURI == "" && samePath(cfg.DataDir, t.To) {
		return nil, errors.New("the target is the configured data directory itself: copy into another directory")
	}
	if legacy := store.LegacyFile(t.To, cfg.Database); legacy != "" {
		return nil, fmt.Errorf("the target %s holds the previous version's store (%s): copy into an empty directory", t.To, filepath.Base(legacy))
	}
	return openStore(ctx, store.Config{DataDir: t.To, Database: cfg.Database, Logger: log}, "the embedded store in "+t.To)
}

func openStore(ctx context.Context, c store.Config, name string) (*opened, error) {
	b, err := store.Open(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	s, ok := b.(Store)
	if !ok {
		_ = b.Close(context.Background())
		return nil, fmt.Errorf("the %s store cannot be copied", b.Kind())
	}
	return &opened{Store: s, name: name, close: func() { _ = s.Close(context.Background()) }}, nil
}

func samePath(a, b string) bool {
	x, err1 := filepath.Abs(a)
	y, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && filepath.Clean(x) == filepath.Clean(y)
}

// masterKey is the key the source is sealed under, as the server would
// find it.
type masterKey struct {
	keyring *envelope.Keyring
	current []byte
	// file is the key file it came from; "" for CONSENTGRAPH_MASTER_KEY.
	file string
}

// loadMasterKey reads CONSENTGRAPH_MASTER_KEY, else DATA_DIR/master.key if
// it exists (never creating one: a new key opens nothing); nil when there
// is neither.
func loadMasterKey(cfg config.Config) (*masterKey, error) {
	var mk masterKey
	if cfg.MasterKey != "" {
		k, err := envelope.ParseKey(cfg.MasterKey)
		if err != nil {
			return nil, fmt.Errorf("CONSENTGRAPH_MASTER_KEY: %w", err)
		}
		mk.current = k
	} else {
		path := filepath.Join(cfg.DataDir, "master.key")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		k, _, err := envelope.LoadOrCreateKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("master key file: %w", err)
		}
		mk.current, mk.file = k, path
	}
	var previous [][]byte
	for i, p := range cfg.PreviousMasterKeys {
		k, err := envelope.ParseKey(p)
		if err != nil {
			return nil, fmt.Errorf("CONSENTGRAPH_PREVIOUS_MASTER_KEYS entry %d: %w", i+1, err)
		}
		previous = append(previous, k)
	}
	kr, err := envelope.NewKeyring(mk.current, previous...)
	if err != nil {
		return nil, err
	}
	mk.keyring = kr
	return &mk, nil
}

// placeKeyFile puts the master key file into the target data directory
// (0600), unless the same key is there already; a different key there is
// an error, before anything is copied.
func placeKeyFile(mk *masterKey, dir string) (string, error) {
	path := filepath.Join(dir, "master.key")
	if existing, err := os.ReadFile(path); err == nil {
		k, err := envelope.ParseKey(string(existing))
		if err != nil || !bytes.Equal(k, mk.current) {
			return "", fmt.Errorf("%s holds another master key than %s: the copy would not open under it; copy into another directory", path, mk.file)
		}
		return path, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	src, err := os.ReadFile(mk.file)
	if err != nil {
		return "", fmt.Errorf("read the master key file: %w", err)
	}
	// Written beside and linked into place: the key file is never seen
	// half-written, and an existing one is never replaced.
	tmp, err := os.CreateTemp(dir, ".master-key-*")
	if err != nil {
		return "", fmt.Errorf("copy the master key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(src)
	if werr == nil {
		werr = tmp.Chmod(0o600)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Link(tmp.Name(), path)
	}
	if werr != nil {
		return "", fmt.Errorf("copy the master key file: %w", werr)
	}
	return path, nil
}

// Run copies the configured store to t and verifies the copy, reporting
// on out (progress on errOut).
func Run(ctx context.Context, cfg config.Config, t Target, log *slog.Logger, errOut, out io.Writer) error {
	file, err := config.LoadFile(cfg.ConfigFile)
	if err != nil {
		return err
	}
	mk, err := loadMasterKey(cfg)
	if err != nil {
		return err
	}
	src, err := openSource(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer src.close()
	srcHeld, err := Holdings(ctx, src)
	if err != nil {
		return fmt.Errorf("count the source's records: %w", err)
	}
	var total int64
	for _, n := range srcHeld {
		total += n
	}
	if total == 0 {
		return fmt.Errorf("the source, %s, holds no records: nothing to copy (are --data-dir, --mongodb-uri and --database right?)", src.name)
	}
	dst, err := openTarget(ctx, cfg, t, log)
	if err != nil {
		return err
	}
	defer dst.close()
	held, err := Holdings(ctx, dst)
	if err != nil {
		return fmt.Errorf("look into the target: %w", err)
	}
	if len(held) > 0 {
		clear := "drop that database"
		if !t.IsMongoDB() {
			clear = "remove " + filepath.Join(t.To, store.FileName)
		}
		return fmt.Errorf("the target, %s, is not empty: it holds %s. copy-store copies only into an empty store: "+
			"choose another target, or (if it is a copy you no longer want) %s first", dst.name, describeCounts(held), clear)
	}
	var keyFile string
	if mk != nil && mk.file != "" && !t.IsMongoDB() {
		if keyFile, err = placeKeyFile(mk, t.To); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "copying %d records from %s to %s\n", total, src.name, dst.name)
	bar := progress.New(errOut, total, "records")
	rep, err := Copy(ctx, src, dst, Options{Progress: bar.Set, Logger: log})
	bar.Finish()
	if err != nil {
		return fmt.Errorf("%w\nThe target is incomplete: remove what was copied before trying again", err)
	}
	printCopy(out, rep)
	if f, ok := src.Store.(interface {
		Foreign(context.Context) (map[string]int64, error)
	}); ok {
		foreign, err := f.Foreign(ctx)
		if err != nil {
			return err
		}
		for _, name := range slices.Sorted(maps.Keys(foreign)) {
			fmt.Fprintf(out, "  note: the source's collection %s (%d documents) is read by nothing in this version and was not copied. "+
				"The previous version let processors keep collections of their own; this one keeps processor state in plugin_state.\n", name, foreign[name])
		}
	}

	var vbar *progress.Bar
	vopts := VerifyOptions{File: file, Logger: log, Progress: func(done, total int64) {
		if vbar == nil {
			vbar = progress.New(errOut, total, "records verified")
		}
		vbar.Set(done)
	}}
	if mk != nil {
		vopts.Keyring = mk.keyring
	}
	fmt.Fprintln(out, "verifying the copy")
	vrep, err := Verify(ctx, src, dst, vopts)
	if vbar != nil {
		vbar.Finish()
	}
	if err != nil {
		return fmt.Errorf("verify the copy: %w", err)
	}
	printVerify(out, vrep, mk)
	if err := vrep.Err(); err != nil {
		return fmt.Errorf("%w: %d problems, listed above; do not use the copy", ErrMismatch, len(vrep.Problems))
	}
	printNextSteps(out, cfg, t, dst, mk, keyFile)
	return nil
}

func describeCounts(held map[snapshot.Kind]int64) string {
	var parts []string
	for _, kind := range snapshot.Kinds {
		if n := held[kind]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, kind))
		}
	}
	return strings.Join(parts, ", ")
}

func printCopy(out io.Writer, rep *CopyReport) {
	fmt.Fprintf(out, "copied %d records in %s:\n", rep.Total(), rep.Duration.Round(time.Millisecond))
	for _, kind := range snapshot.Kinds {
		fmt.Fprintf(out, "  %-22s %d\n", kind, rep.Records[kind])
	}
	if rep.ExpiredSessions > 0 {
		fmt.Fprintf(out, "  (%d expired sessions left behind)\n", rep.ExpiredSessions)
	}
}

func printVerify(out io.Writer, r *VerifyReport, mk *masterKey) {
	status := "verified"
	if len(r.Problems) > 0 {
		status = "VERIFICATION FAILED"
	}
	fmt.Fprintf(out, "%s in %s:\n", status, r.Duration.Round(time.Millisecond))
	equal := 0
	for _, n := range r.Counts {
		if n[0] == n[1] {
			equal++
		}
	}
	fmt.Fprintf(out, "  counts equal on both sides for %d of %d kinds of record (sessions: those live at %s)\n",
		equal, len(snapshot.Kinds), r.SessionCutoff.Format(time.RFC3339))
	how := "hash chains, links and current state; receipt signatures against the copy's signing keys"
	if !r.Signatures {
		how = "hash chains, links and current state only"
	}
	fmt.Fprintf(out, "  %d users; %d consent ledgers recomputed (%d events): %s\n", r.Users, r.Ledgers, r.Events, how)
	fmt.Fprintf(out, "  %d demographic cells equal the source's", r.Cells)
	if r.Recount != nil {
		fmt.Fprintf(out, "; %d checked against a recount of the copy's %d members", r.Recount.CellsChecked, r.Recount.Members)
		if r.Recount.CellsMoving > 0 {
			fmt.Fprintf(out, " (%d touched by %d moves in flight left out)", r.Recount.CellsMoving, r.Recount.Moving)
		}
	}
	fmt.Fprintln(out)
	if mk == nil {
		fmt.Fprintln(out, "  no master key (neither CONSENTGRAPH_MASTER_KEY nor DATA_DIR/master.key): receipt signatures were not checked and the cells not recounted")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(out, "  note: %s\n", n)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(out, "  PROBLEM: %s\n", p)
	}
}

func printNextSteps(out io.Writer, cfg config.Config, t Target, dst *opened, mk *masterKey, keyFile string) {
	fmt.Fprintln(out, "the copy is complete and verified.")
	if !t.IsMongoDB() {
		fmt.Fprintf(out, "start the server on it with --data-dir %s", t.To)
		switch {
		case keyFile != "":
			fmt.Fprintf(out, " (the master key file was copied along: %s)\n", keyFile)
		case mk != nil:
			fmt.Fprintln(out, " and the same CONSENTGRAPH_MASTER_KEY")
		default:
			fmt.Fprintln(out, " and the master key the source's servers use")
		}
		return
	}
	fmt.Fprintf(out, "start the servers with CONSENTGRAPH_MONGODB_URI set to the target URI")
	if dst.database != "consentgraph" {
		fmt.Fprintf(out, " and CONSENTGRAPH_DATABASE=%s", dst.database)
	}
	fmt.Fprintln(out, ", and the same master key:")
	switch {
	case mk == nil:
		fmt.Fprintln(out, "  CONSENTGRAPH_MASTER_KEY as the source's servers have it")
	case mk.file != "":
		fmt.Fprintf(out, "  CONSENTGRAPH_MASTER_KEY=\"$(cat %s)\"   (the base64 content of the key file; keep it secret)\n", shellQuote(mk.file))
	default:
		fmt.Fprintln(out, "  the same CONSENTGRAPH_MASTER_KEY as now")
	}
	if len(cfg.PreviousMasterKeys) > 0 {
		fmt.Fprintln(out, "  and the same CONSENTGRAPH_PREVIOUS_MASTER_KEYS")
	}
}

// shellQuote quotes a path for the shell when it needs it.
func shellQuote(s string) string {
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
