// Package store opens the MongoDB database Consentgraph keeps everything in:
// a MongoDB deployment given by URI, or an embedded FerretDB (SQLite backend)
// started in-process when no URI is configured. Both are reached through the
// same driver, so the rest of the code cannot tell them apart.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// Config says which store to open.
type Config struct {
	// URI of a MongoDB deployment. Empty means: start the embedded store.
	URI string
	// Database name inside the deployment.
	Database string
	// DataDir holds the embedded store's files (ignored with a URI).
	DataDir string
	// Monitor, if set, sees every command (metrics count round trips).
	Monitor *event.CommandMonitor
	// Logger receives the store's own messages. The embedded FerretDB gets a
	// copy restricted to errors so it cannot flood the server's output.
	Logger *slog.Logger
}

// Store is an open database plus whatever must be stopped with it.
type Store struct {
	Client   *mongo.Client
	DB       *mongo.Database
	Embedded bool
	// Serialized means all commands go through one connection (FerretDB);
	// several server processes on one such store would still race, so the
	// embedded store is for a single replica — production uses MongoDB.
	Serialized bool
	// URI is what the client connected to (for the embedded store, its
	// loopback address), so tests can open further clients on it.
	URI string

	stopEmbedded func()
}

// Open connects to the configured store, starting the embedded one if needed.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Database == "" {
		cfg.Database = "consentgraph"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Store{}
	uri := cfg.URI
	if uri == "" {
		embeddedURI, stop, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		uri, s.stopEmbedded, s.Embedded = embeddedURI, stop, true
	}
	s.URI = uri
	pingCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The embedded store is FerretDB; a URI may point at one too.
	serialize := s.Embedded
	for {
		opts := options.Client().ApplyURI(uri).SetAppName("consentgraph")
		if cfg.Monitor != nil {
			opts.SetMonitor(cfg.Monitor)
		}
		if serialize {
			opts.SetMaxPoolSize(1)
		}
		client, err := mongo.Connect(opts)
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("connect to store: %w", err)
		}
		s.Client = client
		s.DB = client.Database(cfg.Database)
		if err := s.Ping(pingCtx); err != nil {
			_ = s.Close(context.Background())
			return nil, fmt.Errorf("store does not answer: %w", err)
		}
		if serialize || !isFerretDB(pingCtx, client) {
			s.Serialized = serialize
			return s, nil
		}
		// FerretDB v1 runs an update as read-then-write without locking, so
		// concurrent conditional updates and $inc on one document lose
		// writes. One connection makes it execute commands one at a time,
		// which restores the single-document atomicity the code relies on.
		cfg.Logger.Info("store is FerretDB: using one connection so single-document updates stay atomic")
		_ = client.Disconnect(context.Background())
		serialize = true
	}
}

// isFerretDB recognises FerretDB by the fields it adds to buildInfo.
func isFerretDB(ctx context.Context, c *mongo.Client) bool {
	var info bson.M
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return false
	}
	_, features := info["ferretdbFeatures"]
	_, version := info["ferretdbVersion"]
	return features || version
}

// Ping reports whether the store answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.Client.Ping(ctx, readpref.Primary())
}

// Close disconnects and stops the embedded store, if any.
func (s *Store) Close(ctx context.Context) error {
	var err error
	if s.Client != nil {
		err = s.Client.Disconnect(ctx)
	}
	s.stop()
	return err
}

func (s *Store) stop() {
	if s.stopEmbedded != nil {
		s.stopEmbedded()
		s.stopEmbedded = nil
	}
}

func startEmbedded(cfg Config) (uri string, stop func(), err error) {
	dir := cfg.DataDir
	if dir == "" {
		dir = "data"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", nil, fmt.Errorf("create data directory: %w", err)
	}
	quiet := slog.New(levelFilter{h: cfg.Logger.Handler(), min: slog.LevelError})
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    quiet.With("component", "ferretdb"),
	})
	if err != nil {
		return "", nil, fmt.Errorf("start embedded store: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	return f.MongoDBURI(), stop, nil
}

// levelFilter drops records below min; FerretDB logs every connection at info.
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (l levelFilter) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.h.Enabled(ctx, lv)
}
func (l levelFilter) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }
func (l levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: l.h.WithAttrs(a), min: l.min}
}
func (l levelFilter) WithGroup(name string) slog.Handler {
	return levelFilter{h: l.h.WithGroup(name), min: l.min}
}

// IsDuplicateKey reports whether err is a unique-index violation. FerretDB
// reports one raised by an update as an InternalError carrying SQLite's text.
func IsDuplicateKey(err error) bool {
	if err == nil {
		return false
	}
	return mongo.IsDuplicateKeyError(err) || strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// IsNotImplemented reports whether the store refused a feature it lacks
// (FerretDB v1 has no TTL indexes, for instance).
func IsNotImplemented(err error) bool {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return ce.Code == 238 || ce.Name == "NotImplemented"
	}
	return false
}

// EnsureIndexes creates indexes idempotently. Options the store does not
// implement (TTL on FerretDB) are dropped and the index is created without
// them; callers that rely on TTL must also sweep expired documents themselves.
func EnsureIndexes(ctx context.Context, coll *mongo.Collection, models ...mongo.IndexModel) error {
	for _, m := range models {
		_, err := coll.Indexes().CreateOne(ctx, m)
		if err != nil && IsNotImplemented(err) && m.Options != nil {
			// Retry without the option the store lacks: keep name and uniqueness only.
			plain := options.Index()
			var o options.IndexOptions
			for _, set := range m.Options.List() {
				_ = set(&o)
			}
			if o.Unique != nil {
				plain.SetUnique(*o.Unique)
			}
			if o.Name != nil {
				plain.SetName(*o.Name)
			}
			_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: m.Keys, Options: plain})
		}
		if err != nil {
			return fmt.Errorf("create index on %s: %w", coll.Name(), err)
		}
	}
	return nil
}
