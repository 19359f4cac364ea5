// Package store opens the storage the server runs on: the embedded SQLite
// store in the data directory by default, or MongoDB when a URI is
// configured. Both adapters implement every domain's storage port, so the
// rest of the code cannot tell them apart.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"go.opentelemetry.io/otel/trace"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/ratelimit"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store/mongostore"
	"github.com/consentgraph/consentgraph/internal/store/sqlite"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
	"github.com/consentgraph/consentgraph/internal/telemetry"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// Backend is one open store: every domain's storage port, from one adapter.
type Backend interface {
	Accounts() accounts.Store
	Consent() consent.Store
	Outbox() outbox.Store
	Demographics() demographics.Store
	Partners() partners.Store
	RateLimits() ratelimit.Store
	Audit() audit.Store
	Signing() signing.Store
	Secrets() envelope.SecretStore
	Translog() translog.Store
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close(ctx context.Context) error
	// Kind is "embedded" or "mongodb".
	Kind() string
}

// Config says which store to open.
type Config struct {
	// MongoDBURI of a MongoDB deployment. Empty means: the embedded store.
	MongoDBURI string
	// Database name inside the MongoDB deployment.
	Database string
	// DataDir holds the embedded store's database file (FileName).
	DataDir string
	// Observer, if set, learns of every round trip to the store.
	Observer storectx.Observer
	// Tracer, if set, gets a span per round trip made inside a trace.
	Tracer trace.Tracer
	Logger *slog.Logger
}

// FileName is the embedded store's database file inside the data directory.
const FileName = "consentgraph.db"

// ErrLegacyDataDir means the data directory was written by the earlier,
// FerretDB-based embedded store; copy-store imports it.
var ErrLegacyDataDir = errors.New("data directory holds the earlier FerretDB-based embedded store")

// Open opens the configured store.
func Open(ctx context.Context, cfg Config) (Backend, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Database == "" {
		cfg.Database = "consentgraph"
	}
	if cfg.MongoDBURI != "" {
		opts := mongostore.Options{URI: cfg.MongoDBURI, Database: cfg.Database, Observer: cfg.Observer, Logger: cfg.Logger}
		if cfg.Tracer != nil {
			opts.Monitor = telemetry.MongoMonitor(cfg.Tracer)
		}
		db, err := mongostore.Open(ctx, opts)
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if legacy := LegacyFile(cfg.DataDir, cfg.Database); legacy != "" {
		return nil, fmt.Errorf("%w (%s). Import it into the new store with\n\n"+
			"    consentgraph copy-store --data-dir %s --to %s\n\n"+
			"(go run . copy-store ... from a checkout), then start with --data-dir %s",
			ErrLegacyDataDir, legacy, cfg.DataDir, cfg.DataDir+"-new", cfg.DataDir+"-new")
	}
	db, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(cfg.DataDir, FileName), Observer: cfg.Observer, Tracer: cfg.Tracer, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return db, nil
}

// LegacyFile returns the database file of the earlier FerretDB-based
// embedded store in dir ("<database>.sqlite"), or "" when dir holds none or
// already holds the new store's file.
func LegacyFile(dir, database string) string {
	if database == "" {
		database = "consentgraph"
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		return ""
	}
	legacy := filepath.Join(dir, database+".sqlite")
	if _, err := os.Stat(legacy); err == nil {
		return legacy
	}
	return ""
}
