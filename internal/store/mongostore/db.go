// Package mongostore is the MongoDB adapter of Consentgraph's storage ports
// (accounts.Store, consent.Store, outbox.Store, demographics.Store,
// partners.Store, audit.Store, signing.Store, envelope.SecretStore and the
// plugins' State).
//
// Every invariant holds with single-document atomic operations, so the
// adapter runs on a replica set or a sharded cluster keyed by user id
// without multi-document transactions. A user's account, current consent,
// per-processor delivery state and work not yet queued live in one
// document of "users"; a write that must change several of them at once is
// one update of that document, and whatever belongs elsewhere (consent
// events, work items) is moved out of it afterwards by an idempotent relay
// (see relay.go).
//
// The document layout and collection names are those of the previous,
// MongoDB-based version, so existing deployments keep working; the
// additions are the consent ledger's own collection, consent_events, the
// user document's "relay" marker, and plugin_state. A user document:
//
//	{_id, username, usernameKey, passwordHash, role, createdAt,
//	 email, emailIndex, emailVerified, emailVerification: {tokenHash, expiresAt},
//	 profile: {birthYear, country, gender, language},   (sealed by the domain)
//	 erasingSince,
//	 consent: {head, headHash, state: {<purpose>: {granted, seq, at, policyVersion, policyN, method}},
//	           pending: {e<seq>: event}},               (until moved to consent_events)
//	 outbox: {<item id>: item},                         (until relayed to the outbox collection)
//	 procs: {<processor>: {attempted, delivered, ref}},
//	 relay: <tag>}                                      (while pending or outbox holds anything)
//
// The previous version kept the whole ledger under consent.events; such
// documents are read as they are (their events count as pending) and the
// relay moves them out like any other.
//
// FerretDB v1 (internal/store/ferret) serves as a wire-protocol test
// double: Open recognizes it and talks to it over one connection, because
// it runs updates as unlocked read-modify-write.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

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
	"github.com/consentgraph/consentgraph/internal/translog"
)

// Collection names. They are those of the previous version, plus
// consent_events and plugin_state.
const (
	usersColl         = "users"
	dataKeysColl      = "data_keys"
	sessionsColl      = "sessions"
	policyColl        = "consent_policy"
	archiveColl       = "consent_archive"
	eventsColl        = "consent_events"
	itemsColl         = "outbox"
	locksColl         = "outbox_locks"
	disclosuresColl   = "disclosures"
	processorsColl    = "processors"
	membersColl       = "demographics_members"
	demoStateColl     = "demographics_state"
	cellsCollPrefix   = "demographics_cells_"
	partnersColl      = "partners"
	auditColl         = "audit_log"
	signingKeysColl   = "signing_keys"
	secretsColl       = "secrets"
	pluginStateColl   = "plugin_state"
	linksColl         = "processor_links"
	rateCountsColl    = "rate_counts"
	logLeavesColl     = "consent_log_leaves"
	logNodesColl      = "consent_log_nodes"
	logStateColl      = "consent_log_state"
	defaultDatabase   = "consentgraph"
	connectTimeout    = 30 * time.Second
	ferretPoolSize    = 1
	ferretInfoVersion = "ferretdbVersion"
	ferretInfoFeature = "ferretdbFeatures"
)

// Options say which deployment to open and who watches it.
type Options struct {
	// URI of the MongoDB deployment (or of a FerretDB test double).
	URI string
	// Database name; "consentgraph" when empty.
	Database string
	// Observer, if set, learns of every command (one round trip each) and
	// its outcome.
	Observer storectx.Observer
	// Monitor, if set, sees every command as well.
	Monitor *event.CommandMonitor
	// Logger receives the adapter's own messages (slog.Default when nil).
	Logger *slog.Logger
	// SkipIndexes opens the database without creating the indexes: for a
	// tool that only reads a store it must not change (copy-store's
	// source, which may be the previous version's data). A server always
	// creates them.
	SkipIndexes bool
}

// DB is an open MongoDB database with every storage port on it.
type DB struct {
	client *mongo.Client
	db     *mongo.Database
	log    *slog.Logger
	// ferret is set when the server is FerretDB: one connection, and no
	// projection on findAndModify (FerretDB v1 does not implement it).
	ferret bool

	// memoMu makes "look up or create the memo entry" one step, so
	// concurrent resolvers of one query share a single read.
	memoMu sync.Mutex
	// legacyClean is set once a sweep found no user document left in the
	// previous version's layout (ledger or work items inside it without a
	// relay marker); later sweeps then skip that unindexed search.
	legacyClean atomic.Bool
}

// Open connects to the deployment, recognizes FerretDB (then using a
// single connection), and creates the indexes every port needs,
// idempotently.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.Database == "" {
		o.Database = defaultDatabase
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// The timeout bounds reaching the server only: building indexes on an
	// existing deployment may take longer.
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	monitor := commandMonitor(o.Observer, o.Monitor)
	client, err := connect(cctx, o.URI, monitor, 0)
	if err != nil {
		return nil, err
	}
	ferret, err := isFerretDB(cctx, client)
	if err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	if ferret {
		// FerretDB v1 runs an update as read-then-write without a lock, so
		// concurrent conditional updates and $inc on one document lose
		// writes. Over one connection it executes commands one at a time,
		// which restores the single-document atomicity the adapter relies on.
		_ = client.Disconnect(context.WithoutCancel(ctx))
		if client, err = connect(cctx, o.URI, monitor, ferretPoolSize); err != nil {
			return nil, err
		}
		o.Logger.WarnContext(ctx, "store is FerretDB, a wire-protocol test double: using one connection so single-document updates stay atomic; never serve from it")
	}
	d := &DB{client: client, db: client.Database(o.Database), log: o.Logger, ferret: ferret}
	if o.SkipIndexes {
		return d, nil
	}
	if err := d.ensureIndexes(ctx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	if err := d.markUnlogged(ctx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	return d, nil
}

func connect(ctx context.Context, uri string, monitor *event.CommandMonitor, pool uint64) (*mongo.Client, error) {
	opts := options.Client().ApplyURI(uri).SetAppName("consentgraph")
	if monitor != nil {
		opts.SetMonitor(monitor)
	}
	if pool > 0 {
		opts.SetMaxPoolSize(pool)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to mongodb: %w", err)
	}
	if err := client.Ping(ctx, readpref.Primary()); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("mongodb does not answer: %w", err)
	}
	return client, nil
}

// isFerretDB recognizes FerretDB by the fields it adds to buildInfo.
func isFerretDB(ctx context.Context, c *mongo.Client) (bool, error) {
	var info bson.M
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return false, fmt.Errorf("read buildInfo: %w", err)
	}
	_, version := info[ferretInfoVersion]
	_, features := info[ferretInfoFeature]
	return version || features, nil
}

// commandMonitor reports each command to the observer once, when its
// outcome is known (one round trip, with its error), and passes every event
// on to extra.
func commandMonitor(obs storectx.Observer, extra *event.CommandMonitor) *event.CommandMonitor {
	if obs == nil {
		return extra
	}
	m := &event.CommandMonitor{
		Succeeded: func(ctx context.Context, e *event.CommandSucceededEvent) {
			obs(ctx, e.CommandName, nil)
		},
		Failed: func(ctx context.Context, e *event.CommandFailedEvent) {
			obs(ctx, e.CommandName, e.Failure)
		},
	}
	if extra == nil {
		return m
	}
	m.Started = extra.Started
	if extra.Succeeded != nil {
		m.Succeeded = func(ctx context.Context, e *event.CommandSucceededEvent) {
			obs(ctx, e.CommandName, nil)
			extra.Succeeded(ctx, e)
		}
	}
	if extra.Failed != nil {
		m.Failed = func(ctx context.Context, e *event.CommandFailedEvent) {
			obs(ctx, e.CommandName, e.Failure)
			extra.Failed(ctx, e)
		}
	}
	return m
}

// Ping reports whether the deployment answers.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.client.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("ping mongodb: %w", err)
	}
	return nil
}

// Close disconnects.
func (d *DB) Close(ctx context.Context) error {
	if err := d.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("disconnect from mongodb: %w", err)
	}
	return nil
}

// Kind names the adapter: "mongodb".
func (d *DB) Kind() string { return "mongodb" }

// Database is the underlying database, for tests and tools (copy-store).
func (d *DB) Database() *mongo.Database { return d.db }

// Accounts is the accounts port (accounts, data keys, sessions).
func (d *DB) Accounts() accounts.Store { return &accountStore{d} }

// Consent is the consent port.
func (d *DB) Consent() consent.Store { return &consentStore{d} }

// Outbox is the outbox port.
func (d *DB) Outbox() outbox.Store { return &outboxStore{d} }

// Demographics is the aggregates port.
func (d *DB) Demographics() demographics.Store { return &demoStore{d} }

// Partners is the partners port.
func (d *DB) Partners() partners.Store { return &partnerStore{d} }

// RateLimits is the port of the rate-limit counters replicas share.
func (d *DB) RateLimits() ratelimit.Store { return &rateStore{d} }

// Audit is the audit log port.
func (d *DB) Audit() audit.Store { return &auditStore{d} }

// Signing is the signing key set port.
func (d *DB) Signing() signing.Store { return &signingStore{d} }

// Secrets is the named secrets port.
func (d *DB) Secrets() envelope.SecretStore { return &secretStore{d} }

// Translog is the public consent log's port.
func (d *DB) Translog() translog.Store { return &logStore{d} }

func (d *DB) coll(name string) *mongo.Collection { return d.db.Collection(name) }

// errNotFound reports whether err says no document matched.
func errNotFound(err error) bool { return errors.Is(err, mongo.ErrNoDocuments) }
