// Package ferret starts an embedded FerretDB v1 (SQLite backend) that speaks
// the MongoDB wire protocol on a loopback port.
//
// It is a TEST DOUBLE for the MongoDB adapter (internal/store/mongostore),
// and the reader of data directories written by the previous,
// FerretDB-based version of Consentgraph (copy-store imports them through
// it). Never serve from it: FerretDB v1 evaluates most filters by scanning
// every document of a collection, and it runs an update as
// read-modify-write without a lock, so updates are not atomic across
// connections (the MongoDB adapter therefore talks to it over one
// connection).
package ferret

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Start runs FerretDB on the SQLite files in dir (created if missing) and
// returns its MongoDB URI and a function that stops it. Only errors of
// FerretDB's own log reach logger: it logs every connection at info level.
func Start(ctx context.Context, dir string, logger *slog.Logger) (uri string, stop func(), err error) {
	if err := ctx.Err(); err != nil {
		return "", nil, fmt.Errorf("start ferretdb: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("ferretdb data directory: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", nil, fmt.Errorf("create ferretdb data directory: %w", err)
	}
	quiet := slog.New(errorsOnly{h: logger.Handler()})
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    quiet.With("component", "ferretdb"),
	})
	if err != nil {
		return "", nil, fmt.Errorf("start ferretdb: %w", err)
	}
	// FerretDB runs until its context ends; it must outlive ctx (which may
	// be a start-up timeout), so stop is the only way to end it.
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(runCtx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	return f.MongoDBURI(), stop, nil
}

// errorsOnly passes on records of level error and above.
type errorsOnly struct{ h slog.Handler }

func (e errorsOnly) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= slog.LevelError && e.h.Enabled(ctx, lv)
}

func (e errorsOnly) Handle(ctx context.Context, r slog.Record) error { return e.h.Handle(ctx, r) }

func (e errorsOnly) WithAttrs(a []slog.Attr) slog.Handler { return errorsOnly{h: e.h.WithAttrs(a)} }

func (e errorsOnly) WithGroup(name string) slog.Handler { return errorsOnly{h: e.h.WithGroup(name)} }
