package sqlite

import (
	"context"
	"fmt"
)

// applicationID marks a database file as Consentgraph's (PRAGMA
// application_id), so Open refuses some other program's SQLite file
// instead of adding tables to it.
const applicationID = 0x43475342 // "CGSB"

// migration is one schema step. Migration i (0-based) takes the database
// from PRAGMA user_version i to i+1, in one transaction. Append only: a
// released migration never changes.
type migration struct {
	name  string
	stmts []string
}

var migrations = []migration{
	{name: "initial schema", stmts: schemaV1},
	{name: "shared rate-limit counters", stmts: schemaRateCounts},
	{name: "accounts: verified email unique, password reset and back-off, notices", stmts: schemaAccountsV3},
	{name: "consent log", stmts: schemaConsentLog},
	{name: "processor links", stmts: schemaProcessorLinks},
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int { return len(migrations) }

// schemaV1: a table per record kind, STRICT, an index for every lookup a
// port makes on a request path. Times are INTEGER unix milliseconds (0 for
// the zero time, NULL for an absent optional time); sealed values are BLOBs.
var schemaV1 = []string{
	// Accounts. The consent head lives in the account row: RecordChange's
	// condition (head, existence, not erasing) is then one guarded UPDATE.
	// Tables keyed by a text id are WITHOUT ROWID where rows are small: one
	// b-tree instead of a table plus its primary key index, so a lookup
	// by id is one descent and an insert writes one page fewer.
	`CREATE TABLE users (
		id                TEXT PRIMARY KEY,
		username          TEXT NOT NULL,
		username_key      TEXT NOT NULL,
		password_hash     TEXT NOT NULL,
		role              TEXT NOT NULL,
		created_at        INTEGER NOT NULL,
		email             BLOB,
		email_index       TEXT,
		email_verified    INTEGER NOT NULL DEFAULT 0,
		verify_token_hash TEXT,
		verify_expires_at INTEGER,
		birth_year        BLOB,
		country           BLOB,
		gender            BLOB,
		language          BLOB,
		erasing_since     INTEGER,
		consent_head      INTEGER NOT NULL DEFAULT 0,
		consent_head_hash TEXT NOT NULL DEFAULT ''
	) STRICT, WITHOUT ROWID`,
	`CREATE UNIQUE INDEX users_username_key ON users (username_key)`,
	// NULL (no email) is outside the partial index: any number of
	// accounts may have none.
	`CREATE UNIQUE INDEX users_email_index ON users (email_index) WHERE email_index IS NOT NULL`,
	`CREATE INDEX users_verify_token ON users (verify_token_hash) WHERE verify_token_hash IS NOT NULL`,
	`CREATE INDEX users_erasing ON users (erasing_since) WHERE erasing_since IS NOT NULL`,

	// Data keys and sessions outlive nothing on their own: no foreign key,
	// the accounts service removes them by their own calls.
	`CREATE TABLE data_keys (
		user_id    TEXT PRIMARY KEY,
		wrapped    BLOB,
		created_at INTEGER NOT NULL
	) STRICT, WITHOUT ROWID`,
	`CREATE TABLE sessions (
		id         TEXT PRIMARY KEY,
		user_id    TEXT NOT NULL,
		role       TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	) STRICT, WITHOUT ROWID`,
	`CREATE INDEX sessions_user ON sessions (user_id)`,
	`CREATE INDEX sessions_expiry ON sessions (expires_at)`,

	// Consent: one row per purpose a user ever changed, and the ledger.
	// Both go with the account (ON DELETE CASCADE).
	`CREATE TABLE consent_state (
		user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		purpose        TEXT NOT NULL,
		granted        INTEGER NOT NULL,
		seq            INTEGER NOT NULL,
		at             INTEGER NOT NULL,
		policy_version TEXT NOT NULL,
		policy_n       INTEGER NOT NULL,
		method         TEXT NOT NULL,
		PRIMARY KEY (user_id, purpose)
	) STRICT, WITHOUT ROWID`,
	// Serves GrantedBefore (covering: the user id is the row's key).
	`CREATE INDEX consent_state_grants ON consent_state (purpose, granted, policy_n)`,
	// A rowid table, unlike the small-row tables: an event carries a signed
	// receipt of about a kilobyte, which a WITHOUT ROWID b-tree (an index
	// b-tree, ~1000 bytes of local payload per 4 KiB page) would spill to
	// an overflow page per event.
	`CREATE TABLE consent_events (
		user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		seq            INTEGER NOT NULL,
		purpose        TEXT NOT NULL,
		action         TEXT NOT NULL,
		policy_version TEXT NOT NULL,
		policy_n       INTEGER NOT NULL,
		at             INTEGER NOT NULL,
		method         TEXT NOT NULL,
		receipt_id     TEXT NOT NULL,
		receipt        TEXT NOT NULL,
		prev_hash      TEXT NOT NULL,
		hash           TEXT NOT NULL,
		PRIMARY KEY (user_id, seq)
	) STRICT`,
	`CREATE TABLE consent_archive (
		subject     TEXT PRIMARY KEY,
		doc         BLOB NOT NULL,
		archived_at INTEGER NOT NULL
	) STRICT`,
	`CREATE TABLE policy_versions (
		n            INTEGER PRIMARY KEY,
		version      TEXT NOT NULL,
		url          TEXT NOT NULL,
		published_at INTEGER NOT NULL,
		reconsent    TEXT NOT NULL
	) STRICT`,

	// The outbox queue. Items stay when their account goes (no foreign key).
	`CREATE TABLE outbox_items (
		id          TEXT PRIMARY KEY,
		user_id     TEXT NOT NULL,
		processor   TEXT NOT NULL,
		purpose     TEXT NOT NULL,
		action      TEXT NOT NULL,
		erase       INTEGER NOT NULL,
		ref         TEXT NOT NULL,
		cause       TEXT NOT NULL,
		state       TEXT NOT NULL,
		attempts    INTEGER NOT NULL,
		next_at     INTEGER NOT NULL,
		lease_until INTEGER NOT NULL,
		lease_owner TEXT NOT NULL,
		last_error  TEXT NOT NULL,
		note        TEXT NOT NULL,
		created_at  INTEGER NOT NULL,
		updated_at  INTEGER NOT NULL
	) STRICT, WITHOUT ROWID`,
	// Partial indexes hold only the items their lookups want, so queuing
	// an item touches few b-trees and finished items leave them.
	// Claim walks each processor's due items in (next_at, id) order.
	`CREATE INDEX outbox_due ON outbox_items (processor, next_at, id) WHERE state = 'PENDING'`,
	// WakeWaiting.
	`CREATE INDEX outbox_waiting ON outbox_items (user_id) WHERE state = 'WAITING'`,
	// Claim's "no other leased item of this user and processor": only
	// items that were ever leased and not finished since.
	`CREATE INDEX outbox_leased ON outbox_items (user_id, processor, lease_until) WHERE state = 'PENDING' AND lease_until > 0`,
	// Items of one state in id order (admin listing).
	`CREATE INDEX outbox_state_id ON outbox_items (state, id)`,
	// Item counts per state, kept by triggers so CountByState (a metric,
	// read often) never counts a million rows.
	`CREATE TABLE outbox_counts (
		state TEXT PRIMARY KEY,
		n     INTEGER NOT NULL
	) STRICT, WITHOUT ROWID`,
	`CREATE TRIGGER outbox_count_insert AFTER INSERT ON outbox_items BEGIN
		INSERT OR IGNORE INTO outbox_counts (state, n) VALUES (new.state, 0);
		UPDATE outbox_counts SET n = n + 1 WHERE state = new.state;
	END`,
	`CREATE TRIGGER outbox_count_delete AFTER DELETE ON outbox_items BEGIN
		UPDATE outbox_counts SET n = n - 1 WHERE state = old.state;
	END`,
	`CREATE TRIGGER outbox_count_update AFTER UPDATE OF state ON outbox_items WHEN old.state <> new.state BEGIN
		UPDATE outbox_counts SET n = n - 1 WHERE state = old.state;
		INSERT OR IGNORE INTO outbox_counts (state, n) VALUES (new.state, 0);
		UPDATE outbox_counts SET n = n + 1 WHERE state = new.state;
	END`,
	`CREATE TABLE disclosures (
		id        TEXT PRIMARY KEY,
		user_id   TEXT NOT NULL,
		processor TEXT NOT NULL,
		purpose   TEXT NOT NULL,
		fields    TEXT NOT NULL,
		action    TEXT NOT NULL,
		cause     TEXT NOT NULL,
		at        INTEGER NOT NULL
	) STRICT, WITHOUT ROWID`,
	`CREATE INDEX disclosures_user ON disclosures (user_id, id)`,
	`CREATE TABLE proc_state (
		user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
		processor TEXT NOT NULL,
		attempted INTEGER NOT NULL DEFAULT 0,
		delivered INTEGER NOT NULL DEFAULT 0,
		ref       TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (user_id, processor)
	) STRICT, WITHOUT ROWID`,
	`CREATE TABLE processor_flags (
		name    TEXT PRIMARY KEY,
		enabled INTEGER NOT NULL
	) STRICT, WITHOUT ROWID`,
	`CREATE TABLE plugin_state (
		processor TEXT NOT NULL,
		key       TEXT NOT NULL,
		value     BLOB,
		PRIMARY KEY (processor, key)
	) STRICT`,

	// Demographics: members are the source of truth the cells derive from;
	// both are managed by the aggregates (no foreign key to users).
	`CREATE TABLE members (
		user_id       TEXT PRIMARY KEY,
		ver           INTEGER NOT NULL,
		tuple         BLOB,
		pending_op    TEXT,
		pending_since INTEGER,
		pending_from  BLOB,
		pending_to    BLOB
	) STRICT, WITHOUT ROWID`,
	`CREATE TABLE cells (
		mask INTEGER NOT NULL,
		id   TEXT NOT NULL,
		n    INTEGER NOT NULL,
		ver  INTEGER NOT NULL,
		vals BLOB,
		PRIMARY KEY (mask, id)
	) STRICT, WITHOUT ROWID`,
	`CREATE TABLE demographics_state (
		id          INTEGER PRIMARY KEY CHECK (id = 1),
		dirty_since INTEGER
	) STRICT`,

	`CREATE TABLE partners (
		id          TEXT PRIMARY KEY,
		name        TEXT NOT NULL,
		key_hash    TEXT NOT NULL,
		budget      INTEGER NOT NULL,
		period_days INTEGER NOT NULL,
		created_at  INTEGER NOT NULL,
		revoked_at  INTEGER,
		period      INTEGER NOT NULL,
		spent       INTEGER NOT NULL
	) STRICT`,
	`CREATE INDEX partners_created ON partners (created_at, id)`,

	`CREATE TABLE audit_log (
		seq     INTEGER PRIMARY KEY,
		at      INTEGER NOT NULL,
		actor   TEXT NOT NULL,
		action  TEXT NOT NULL,
		subject TEXT NOT NULL,
		detail  TEXT NOT NULL,
		prev    TEXT NOT NULL,
		hash    TEXT NOT NULL
	) STRICT`,

	`CREATE TABLE signing_keys (
		kid           TEXT PRIMARY KEY,
		generation    INTEGER NOT NULL UNIQUE,
		alg           TEXT NOT NULL,
		public_key    BLOB,
		private_key   BLOB,
		master_key_id TEXT NOT NULL,
		created_at    INTEGER NOT NULL,
		retired_at    INTEGER,
		expires_at    INTEGER
	) STRICT`,
	`CREATE TABLE secrets (
		name       TEXT PRIMARY KEY,
		value      BLOB,
		key_id     TEXT NOT NULL,
		created_at INTEGER NOT NULL
	) STRICT`,
}

// schemaRateCounts: the per-minute counters replicas share (see
// ratelimit.Shared); rows of past minutes are deleted every minute.
var schemaRateCounts = []string{
	`CREATE TABLE rate_counts (
		minute INTEGER NOT NULL,
		key    TEXT NOT NULL,
		n      INTEGER NOT NULL,
		PRIMARY KEY (minute, key)
	) STRICT, WITHOUT ROWID`,
}

// schemaAccountsV3: an unverified address belongs to nobody, so the email index is
// unique only among verified addresses (and stays indexed for the
// lookups that clear other accounts' unverified copies); accounts gain a
// pending password reset, the count of consecutive wrong passwords and
// notices for the user.
var schemaAccountsV3 = []string{
	`ALTER TABLE users ADD COLUMN reset_token_hash TEXT`,
	`ALTER TABLE users ADD COLUMN reset_expires_at INTEGER`,
	`ALTER TABLE users ADD COLUMN pw_failures INTEGER NOT NULL DEFAULT 0`,
	`ALTER TABLE users ADD COLUMN pw_failed_at INTEGER`,
	// JSON array of {kind, at}; NULL when there are none.
	`ALTER TABLE users ADD COLUMN notices TEXT`,
	`DROP INDEX users_email_index`,
	`CREATE INDEX users_email_index ON users (email_index) WHERE email_index IS NOT NULL`,
	`CREATE UNIQUE INDEX users_verified_email ON users (email_index) WHERE email_verified = 1 AND email_index IS NOT NULL`,
	`CREATE INDEX users_reset_token ON users (reset_token_hash) WHERE reset_token_hash IS NOT NULL`,
}

// schemaConsentLog: the public consent log (package translog). Consent events and
// audit entries get a "logged" mark, 0 when written, so the appender finds
// what to log through a partial index holding only those; events and
// entries written before this version start unlogged and are logged too.
var schemaConsentLog = []string{
	`ALTER TABLE consent_events ADD COLUMN logged INTEGER NOT NULL DEFAULT 0`,
	`CREATE INDEX consent_events_unlogged ON consent_events (at, user_id, seq) WHERE logged = 0`,
	`ALTER TABLE audit_log ADD COLUMN logged INTEGER NOT NULL DEFAULT 0`,
	`CREATE INDEX audit_log_unlogged ON audit_log (seq) WHERE logged = 0`,
	// Leaves under their index (the rowid), unique by item.
	`CREATE TABLE log_leaves (
		idx  INTEGER PRIMARY KEY,
		item TEXT NOT NULL UNIQUE,
		data BLOB NOT NULL,
		hash BLOB NOT NULL,
		at   INTEGER NOT NULL
	) STRICT`,
	// Complete subtrees of level 1 and up under level<<56 | index, so a
	// proof reads its nodes by one rowid list and a dump comes in (level,
	// index) order.
	`CREATE TABLE log_nodes (
		id   INTEGER PRIMARY KEY,
		hash BLOB NOT NULL
	) STRICT`,
	`CREATE TABLE log_head (
		id   INTEGER PRIMARY KEY CHECK (id = 1),
		size INTEGER NOT NULL,
		root BLOB NOT NULL,
		at   INTEGER NOT NULL
	) STRICT`,
	`CREATE TABLE log_lease (
		id    INTEGER PRIMARY KEY CHECK (id = 1),
		owner TEXT NOT NULL,
		until INTEGER NOT NULL
	) STRICT`,
}

// schemaProcessorLinks: what processors report about users (outbox.Link),
// under the processor and the subject pseudonym the processor knows the
// user by; data is the status's JSON (items, details, actions).
var schemaProcessorLinks = []string{
	`CREATE TABLE processor_links (
		processor  TEXT NOT NULL,
		subject    TEXT NOT NULL,
		state      TEXT NOT NULL,
		data       BLOB NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (processor, subject)
	) STRICT, WITHOUT ROWID`,
}

// migrate brings the schema to SchemaVersion, one transaction per step.
// It refuses a database written by a newer build (it cannot know what
// that build's schema means) and a SQLite file of another program.
func (d *DB) migrate(ctx context.Context) error {
	var appID, version int
	if err := d.w.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return fmt.Errorf("sqlite: read application_id of %s: %w", d.path, err)
	}
	if err := d.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("sqlite: read schema version of %s: %w", d.path, err)
	}
	if appID != 0 && appID != applicationID || appID == 0 && version != 0 {
		return fmt.Errorf("sqlite: %s is not a Consentgraph database (application_id %#x, user_version %d)", d.path, appID, version)
	}
	if version > len(migrations) {
		return fmt.Errorf("sqlite: %s has schema version %d, newer than this build knows (%d): it was written by a newer Consentgraph; run that version or restore a backup", d.path, version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		m := migrations[v]
		err := func() error {
			tx, err := d.w.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			// Another process may have migrated since we looked.
			var cur int
			if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&cur); err != nil {
				return err
			}
			if cur != v {
				return nil
			}
			for _, s := range m.stmts {
				if _, err := tx.ExecContext(ctx, s); err != nil {
					return fmt.Errorf("%w in %q", err, s)
				}
			}
			// Both pragmas write the file header, inside this transaction.
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d", applicationID)); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
				return err
			}
			return tx.Commit()
		}()
		if err != nil {
			return fmt.Errorf("sqlite: migrate %s to version %d (%s): %w", d.path, v+1, m.name, err)
		}
		d.log.InfoContext(ctx, "migrated database schema", "path", d.path, "version", v+1, "step", m.name)
	}
	return nil
}
