package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store/snapshot"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// The whole-store stream copy-store moves stores with (package snapshot).
// Dumps page through each table in key order, a chunk per query on the
// read pool, so a dump of a million rows never holds a reader (or keeps
// the WAL from being checkpointed) for long, and runs beside a serving
// server. Loads are one write transaction per batch, through statements
// prepared on the writer at Open; they insert plainly, so a row that
// exists already fails the batch, which then stores nothing.

var (
	_ snapshot.Source = (*DB)(nil)
	_ snapshot.Sink   = (*DB)(nil)
)

// countQueries count each kind's rows.
var countQueries = map[snapshot.Kind]*query{
	snapshot.Secrets:     sqlq(`SELECT count(*) FROM secrets`),
	snapshot.SigningKeys: sqlq(`SELECT count(*) FROM signing_keys`),
	snapshot.Policies:    sqlq(`SELECT count(*) FROM policy_versions`),
	snapshot.DataKeys:    sqlq(`SELECT count(*) FROM data_keys`),
	snapshot.Accounts:    sqlq(`SELECT count(*) FROM users`),
	snapshot.Sessions:    sqlq(`SELECT count(*) FROM sessions`),
	snapshot.Events:      sqlq(`SELECT count(*) FROM consent_events`),
	snapshot.Archives:    sqlq(`SELECT count(*) FROM consent_archive`),
	snapshot.Items:       sqlq(`SELECT count(*) FROM outbox_items`),
	snapshot.Disclosures: sqlq(`SELECT count(*) FROM disclosures`),
	snapshot.Flags:       sqlq(`SELECT count(*) FROM processor_flags`),
	snapshot.PluginState: sqlq(`SELECT count(*) FROM plugin_state`),
	snapshot.Links:       sqlq(`SELECT count(*) FROM processor_links`),
	snapshot.Members:     sqlq(`SELECT count(*) FROM members`),
	snapshot.Cells:       sqlq(`SELECT count(*) FROM cells`),
	// The state row stays once created; only a set time is a request.
	snapshot.Dirty:     sqlq(`SELECT count(*) FROM demographics_state WHERE dirty_since IS NOT NULL`),
	snapshot.Partners:  sqlq(`SELECT count(*) FROM partners`),
	snapshot.Audit:     sqlq(`SELECT count(*) FROM audit_log`),
	snapshot.LogLeaves: sqlq(`SELECT count(*) FROM log_leaves`),
	snapshot.LogNodes:  sqlq(`SELECT count(*) FROM log_nodes`),
	snapshot.LogHead:   sqlq(`SELECT count(*) FROM log_head`),
}

var (
	// Accounts of every state (erasing ones too), with their consent head.
	qDumpUsers = sqlq(`SELECT ` + userCols + `, consent_head, consent_head_hash FROM users WHERE id > ? ORDER BY id LIMIT ?`)
	// The state and processor rows of the accounts of one chunk: a range
	// of the primary key.
	qDumpStates = sqlq(`SELECT user_id, purpose, granted, seq, at, policy_version, policy_n, method FROM consent_state
		WHERE user_id > ? AND user_id <= ? ORDER BY user_id`)
	qDumpProcs = sqlq(`SELECT user_id, processor, attempted, delivered, ref FROM proc_state
		WHERE user_id > ? AND user_id <= ? ORDER BY user_id`)
	qDumpSessions = sqlq(`SELECT id, user_id, role, created_at, expires_at FROM sessions WHERE id > ? ORDER BY id LIMIT ?`)
	qDumpEvents   = sqlq(`SELECT user_id, ` + eventCols + ` FROM consent_events
		WHERE (user_id, seq) > (?, ?) ORDER BY user_id, seq LIMIT ?`)
	qDumpArchives    = sqlq(`SELECT subject, doc, archived_at FROM consent_archive WHERE subject > ? ORDER BY subject LIMIT ?`)
	qDumpDisclosures = sqlq(`SELECT id, user_id, processor, purpose, fields, action, cause, at FROM disclosures
		WHERE id > ? ORDER BY id LIMIT ?`)
	qDumpPluginState = sqlq(`SELECT processor, key, value FROM plugin_state
		WHERE (processor, key) > (?, ?) ORDER BY processor, key LIMIT ?`)
	qDumpLinks = sqlq(`SELECT processor, subject, state, data, updated_at FROM processor_links
		WHERE (processor, subject) > (?, ?) ORDER BY processor, subject LIMIT ?`)
	qDumpLogNodes = sqlq(`SELECT id, hash FROM log_nodes WHERE id > ? ORDER BY id LIMIT ?`)
	qDumpCells    = sqlq(`SELECT mask, id, n, ver, vals FROM cells WHERE (mask, id) > (?, ?) ORDER BY mask, id LIMIT ?`)

	// Plain inserts for loads where the ports' own statements would skip
	// or overwrite a row that exists.
	qLoadSecret     = sqlq(`INSERT INTO secrets (name, value, key_id, created_at) VALUES (?, ?, ?, ?)`)
	qLoadKey        = sqlq(`INSERT INTO signing_keys (` + keyCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	qLoadPolicy     = sqlq(`INSERT INTO policy_versions (n, version, url, published_at, reconsent) VALUES (?, ?, ?, ?, ?)`)
	qLoadState      = sqlq(`INSERT INTO consent_state (user_id, purpose, granted, seq, at, policy_version, policy_n, method) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	qLoadProc       = sqlq(`INSERT INTO proc_state (user_id, processor, attempted, delivered, ref) VALUES (?, ?, ?, ?, ?)`)
	qLoadArchive    = sqlq(`INSERT INTO consent_archive (subject, doc, archived_at) VALUES (?, ?, ?)`)
	qLoadDisclosure = sqlq(`INSERT INTO disclosures (id, user_id, processor, purpose, fields, action, cause, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	qLoadLeaf       = sqlq(`INSERT INTO log_leaves (` + leafCols + `) VALUES (?, ?, ?, ?, ?)`)
	qLoadNode       = sqlq(`INSERT INTO log_nodes (id, hash) VALUES (?, ?)`)
	qLoadHead       = sqlq(`INSERT INTO log_head (id, size, root, at) VALUES (1, ?, ?, ?)`)
	qLoadFlag       = sqlq(`INSERT INTO processor_flags (name, enabled) VALUES (?, ?)`)
	qLoadPlugin     = sqlq(`INSERT INTO plugin_state (processor, key, value) VALUES (?, ?, ?)`)
	qLoadLink       = sqlq(`INSERT INTO processor_links (processor, subject, state, data, updated_at) VALUES (?, ?, ?, ?, ?)`)
	qLoadMember     = sqlq(`INSERT INTO members (` + memberCols + `) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	// The state row may exist without a request (a reconciliation cleared
	// it); a request that is set is a record that exists.
	qLoadDirty = sqlq(`INSERT INTO demographics_state (id, dirty_since) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET dirty_since = excluded.dirty_since WHERE dirty_since IS NULL`)
)

// Count counts the rows of kind.
func (d *DB) Count(ctx context.Context, kind snapshot.Kind) (int64, error) {
	q, ok := countQueries[kind]
	if !ok {
		return 0, fmt.Errorf("count: %w %q", snapshot.ErrUnknownKind, kind)
	}
	var n int64
	if _, err := d.readRow(ctx, q, nil, &n); err != nil {
		return 0, fmt.Errorf("count %s: %w", kind, err)
	}
	return n, nil
}

// Dump streams every row of kind in the order snapshot.Source names.
func (d *DB) Dump(ctx context.Context, kind snapshot.Kind, fn func(snapshot.Record) error) error {
	err := d.dump(ctx, kind, fn)
	var stop errStop
	if errors.As(err, &stop) {
		return stop.err // fn's own error, unchanged
	}
	if err != nil {
		return fmt.Errorf("dump %s: %w", kind, err)
	}
	return nil
}

// emit calls fn for each record; fn's error comes back as errStop, so
// that Dump tells it from a read error.
func emit(recs []snapshot.Record, fn func(snapshot.Record) error) error {
	for _, r := range recs {
		if err := fn(r); err != nil {
			return errStop{err}
		}
	}
	return nil
}

func (d *DB) dump(ctx context.Context, kind snapshot.Kind, fn func(snapshot.Record) error) error {
	switch kind {
	case snapshot.Secrets:
		list, err := secretStore{d}.Secrets(ctx) // by name
		if err != nil {
			return err
		}
		return emit(mapRecords(list, func(r *snapshot.Record, s envelope.SecretRecord) { r.Secret = &s }, kind), fn)
	case snapshot.SigningKeys:
		list, err := signingStore{d}.Keys(ctx) // by generation
		if err != nil {
			return err
		}
		return emit(mapRecords(list, func(r *snapshot.Record, k signing.KeyRecord) { r.SigningKey = &k }, kind), fn)
	case snapshot.Policies:
		list, err := consentStore{d}.PolicyVersions(ctx) // by number
		if err != nil {
			return err
		}
		return emit(mapRecords(list, func(r *snapshot.Record, v consent.PolicyVersion) { r.Policy = &v }, kind), fn)
	case snapshot.DataKeys:
		return accountStore{d}.EachDataKey(ctx, func(k accounts.DataKey) error {
			return errStopOf(fn(snapshot.Record{Kind: kind, DataKey: &k}))
		})
	case snapshot.Accounts:
		return d.dumpAccounts(ctx, fn)
	case snapshot.Sessions:
		return pages(ctx, d, qDumpSessions, "", func(after string) []any { return []any{after} },
			func(rows *sql.Rows) (snapshot.Record, string, error) {
				s, err := scanSession(rows)
				return snapshot.Record{Kind: kind, Session: &s}, s.ID, err
			}, fn)
	case snapshot.Events:
		type key struct {
			user string
			seq  int64
		}
		return pages(ctx, d, qDumpEvents, key{}, func(k key) []any { return []any{k.user, k.seq} },
			func(rows *sql.Rows) (snapshot.Record, key, error) {
				ev := &snapshot.Event{}
				e, err := scanEvent(prefixed{rows, []any{&ev.UserID}})
				ev.Event = e
				return snapshot.Record{Kind: kind, Event: ev}, key{ev.UserID, e.Seq}, err
			}, fn)
	case snapshot.Archives:
		return pages(ctx, d, qDumpArchives, "", func(after string) []any { return []any{after} },
			func(rows *sql.Rows) (snapshot.Record, string, error) {
				var subject string
				var doc []byte
				var at int64
				if err := rows.Scan(&subject, &doc, &at); err != nil {
					return snapshot.Record{}, "", err
				}
				a, err := decodeArchive(subject, doc, at)
				return snapshot.Record{Kind: kind, Archive: a}, subject, err
			}, fn)
	case snapshot.Items:
		return pages(ctx, d, qItemsAfter, "", func(after string) []any { return []any{after} },
			func(rows *sql.Rows) (snapshot.Record, string, error) {
				it, err := scanItem(rows)
				return snapshot.Record{Kind: kind, Item: &it}, it.ID, err
			}, fn)
	case snapshot.Disclosures:
		return pages(ctx, d, qDumpDisclosures, "", func(after string) []any { return []any{after} },
			func(rows *sql.Rows) (snapshot.Record, string, error) {
				dc, err := scanDisclosure(rows)
				return snapshot.Record{Kind: kind, Disclosure: &dc}, dc.ID, err
			}, fn)
	case snapshot.Flags:
		flags, err := outboxStore{d}.ProcessorFlags(ctx)
		if err != nil {
			return err
		}
		var recs []snapshot.Record
		for _, name := range slices.Sorted(maps.Keys(flags)) {
			recs = append(recs, snapshot.Record{Kind: kind, Flag: &snapshot.Flag{Processor: name, Enabled: flags[name]}})
		}
		return emit(recs, fn)
	case snapshot.PluginState:
		type key struct{ processor, key string }
		return pages(ctx, d, qDumpPluginState, key{}, func(k key) []any { return []any{k.processor, k.key} },
			func(rows *sql.Rows) (snapshot.Record, key, error) {
				e := &snapshot.PluginEntry{}
				err := rows.Scan(&e.Processor, &e.Key, &e.Value)
				if e.Value == nil {
					e.Value = []byte{} // a stored value is never absent, only empty
				}
				return snapshot.Record{Kind: kind, PluginState: e}, key{e.Processor, e.Key}, err
			}, fn)
	case snapshot.Links:
		type key struct{ processor, subject string }
		return pages(ctx, d, qDumpLinks, key{}, func(k key) []any { return []any{k.processor, k.subject} },
			func(rows *sql.Rows) (snapshot.Record, key, error) {
				l := &outbox.Link{}
				var at int64
				err := rows.Scan(&l.Processor, &l.Subject, &l.State, &l.Data, &at)
				if l.Data == nil {
					l.Data = []byte{}
				}
				l.UpdatedAt = fromMS(at)
				return snapshot.Record{Kind: kind, Link: l}, key{l.Processor, l.Subject}, err
			}, fn)
	case snapshot.Members:
		return demoStore{d}.EachMember(ctx, func(m *demographics.Member) error {
			return errStopOf(fn(snapshot.Record{Kind: kind, Member: m}))
		})
	case snapshot.Cells:
		type key struct {
			mask int
			id   string
		}
		// Before every cell: mask -1 sorts below mask 0.
		return pages(ctx, d, qDumpCells, key{mask: -1}, func(k key) []any { return []any{k.mask, k.id} },
			func(rows *sql.Rows) (snapshot.Record, key, error) {
				c := &snapshot.Cell{}
				err := rows.Scan(&c.Mask, &c.Cell.ID, &c.Cell.N, &c.Cell.Ver, &c.Cell.Values)
				return snapshot.Record{Kind: kind, Cell: c}, key{c.Mask, c.Cell.ID}, err
			}, fn)
	case snapshot.Dirty:
		since, err := demoStore{d}.DirtySince(ctx)
		if err != nil || since.IsZero() {
			return err
		}
		return emit([]snapshot.Record{{Kind: kind, Dirty: &since}}, fn)
	case snapshot.Partners:
		list, err := partnerStore{d}.List(ctx)
		if err != nil {
			return err
		}
		slices.SortFunc(list, func(a, b partners.Record) int { return cmp.Compare(a.ID, b.ID) })
		return emit(mapRecords(list, func(r *snapshot.Record, p partners.Record) { r.Partner = &p }, kind), fn)
	case snapshot.Audit:
		return auditStore{d}.Each(ctx, func(e audit.Entry) error {
			return errStopOf(fn(snapshot.Record{Kind: kind, Audit: &e}))
		})
	case snapshot.LogLeaves:
		return pages(ctx, d, qLogLeavesFrom, int64(0), func(from int64) []any { return []any{from} },
			func(rows *sql.Rows) (snapshot.Record, int64, error) {
				l, err := scanLeaf(rows)
				return snapshot.Record{Kind: kind, LogLeaf: &l}, l.Index + 1, err
			}, fn)
	case snapshot.LogNodes:
		return pages(ctx, d, qDumpLogNodes, int64(-1), func(after int64) []any { return []any{after} },
			func(rows *sql.Rows) (snapshot.Record, int64, error) {
				var key int64
				var h []byte
				err := rows.Scan(&key, &h)
				return snapshot.Record{Kind: kind, LogNode: &translog.Node{ID: translog.NodeIDOfKey(key), Hash: h}}, key, err
			}, fn)
	case snapshot.LogHead:
		h, err := logStore{d}.Head(ctx)
		if err != nil || h.Size == 0 {
			return err
		}
		return emit([]snapshot.Record{{Kind: kind, LogHead: &h}}, fn)
	}
	return fmt.Errorf("%w %q", snapshot.ErrUnknownKind, kind)
}

// errStopOf marks fn's error inside a port's Each pass, which hands it back
// unchanged.
func errStopOf(err error) error {
	if err != nil {
		return errStop{err}
	}
	return nil
}

// mapRecords wraps each element of list in a record of kind.
func mapRecords[T any](list []T, set func(*snapshot.Record, T), kind snapshot.Kind) []snapshot.Record {
	out := make([]snapshot.Record, len(list))
	for i, v := range list {
		out[i].Kind = kind
		set(&out[i], v)
	}
	return out
}

// prefixed scans leading columns into pre, the rest into what Scan is given.
type prefixed struct {
	rows *sql.Rows
	pre  []any
}

func (p prefixed) Scan(dest ...any) error {
	return p.rows.Scan(append(p.pre[:len(p.pre):len(p.pre)], dest...)...)
}

// pages runs a keyset-paginated pass: q takes the key after which to
// continue (args) and a limit, and returns rows in key order; scan turns a
// row into a record and its key. Each chunk is read completely before fn
// sees it, so no reader stays busy while fn works.
func pages[K any](ctx context.Context, d *DB, q *query, first K, args func(K) []any,
	scan func(*sql.Rows) (snapshot.Record, K, error), fn func(snapshot.Record) error) error {
	after := first
	for {
		var recs []snapshot.Record
		var last K
		err := d.readRows(ctx, q, append(args(after), eachChunk), func(rows *sql.Rows) error {
			r, k, err := scan(rows)
			recs, last = append(recs, r), k
			return err
		})
		if err != nil {
			return err
		}
		if err := emit(recs, fn); err != nil {
			return err
		}
		if len(recs) < eachChunk {
			return nil
		}
		after = last
	}
}

// dumpAccounts reads accounts a chunk at a time, then the consent state and
// processor state rows of the chunk's id range.
func (d *DB) dumpAccounts(ctx context.Context, fn func(snapshot.Record) error) error {
	after := ""
	for {
		var list []*snapshot.Account
		err := d.readRows(ctx, qDumpUsers, []any{after, eachChunk}, func(rows *sql.Rows) error {
			var a accountRow
			acc := &snapshot.Account{}
			if err := rows.Scan(append(a.dest(), &acc.Consent.Head, &acc.Consent.HeadHash)...); err != nil {
				return err
			}
			acc.Account = *a.record()
			acc.Consent.Erasing = acc.Account.ErasingSince != nil
			list = append(list, acc)
			return nil
		})
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return nil
		}
		last := list[len(list)-1].Account.ID
		byID := make(map[string]*snapshot.Account, len(list))
		for _, a := range list {
			byID[a.Account.ID] = a
		}
		// An account created between the two reads is not in byID: it
		// belongs to the next dump, not this one.
		err = d.readRows(ctx, qDumpStates, []any{after, last}, func(rows *sql.Rows) error {
			var id string
			var r stateRow
			if err := rows.Scan(append([]any{&id}, r.dest()...)...); err != nil {
				return err
			}
			if a := byID[id]; a != nil {
				r.addTo(&a.Consent)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = d.readRows(ctx, qDumpProcs, []any{after, last}, func(rows *sql.Rows) error {
			var id, processor string
			var p outbox.ProcState
			if err := rows.Scan(&id, &processor, &p.Attempted, &p.Delivered, &p.Ref); err != nil {
				return err
			}
			if a := byID[id]; a != nil {
				if a.Procs == nil {
					a.Procs = map[string]outbox.ProcState{}
				}
				a.Procs[processor] = p
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, a := range list {
			if err := fn(snapshot.Record{Kind: snapshot.Accounts, Account: a}); err != nil {
				return errStop{err}
			}
		}
		if len(list) < eachChunk {
			return nil
		}
		after = last
	}
}

// Load inserts recs in one transaction: all of them, or none.
func (d *DB) Load(ctx context.Context, kind snapshot.Kind, recs []snapshot.Record) error {
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		if err := recs[i].Check(kind); err != nil {
			return fmt.Errorf("load %s: %w", kind, err)
		}
	}
	err := d.write(ctx, func(t *tx) error {
		for i := range recs {
			if err := loadOne(t, &recs[i]); err != nil {
				if col := uniqueViolation(err); col != "" {
					return fmt.Errorf("%s exists already (%s): the store was not empty: %w", describe(&recs[i]), col, err)
				}
				return fmt.Errorf("%s: %w", describe(&recs[i]), err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load %s: %w", kind, err)
	}
	return nil
}

// describe names a record in an error.
func describe(r *snapshot.Record) string {
	switch r.Kind {
	case snapshot.Secrets:
		return "secret " + r.Secret.Name
	case snapshot.SigningKeys:
		return "signing key " + r.SigningKey.Kid
	case snapshot.Policies:
		return fmt.Sprintf("policy version %d", r.Policy.N)
	case snapshot.DataKeys:
		return "data key of " + r.DataKey.UserID
	case snapshot.Accounts:
		return "account " + r.Account.Account.ID
	case snapshot.Sessions:
		return "session of " + r.Session.UserID
	case snapshot.Events:
		return fmt.Sprintf("consent event %d of %s", r.Event.Event.Seq, r.Event.UserID)
	case snapshot.Archives:
		return "consent archive " + r.Archive.Subject
	case snapshot.Items:
		return "work item " + r.Item.ID
	case snapshot.Disclosures:
		return "disclosure " + r.Disclosure.ID
	case snapshot.Flags:
		return "flag of processor " + r.Flag.Processor
	case snapshot.PluginState:
		return fmt.Sprintf("state %q of processor %s", r.PluginState.Key, r.PluginState.Processor)
	case snapshot.Links:
		return fmt.Sprintf("link of processor %s with %s", r.Link.Processor, r.Link.Subject)
	case snapshot.Members:
		return "demographics member " + r.Member.UserID
	case snapshot.Cells:
		return fmt.Sprintf("cell %s of subset %d", r.Cell.Cell.ID, r.Cell.Mask)
	case snapshot.Dirty:
		return "reconciliation request"
	case snapshot.Partners:
		return "partner " + r.Partner.ID
	case snapshot.Audit:
		return fmt.Sprintf("audit entry %d", r.Audit.Seq)
	case snapshot.LogLeaves:
		return fmt.Sprintf("log leaf %d", r.LogLeaf.Index)
	case snapshot.LogNodes:
		return "log node " + r.LogNode.ID.String()
	case snapshot.LogHead:
		return "log head"
	}
	return string(r.Kind)
}

// loadOne inserts one record inside t.
func loadOne(t *tx, r *snapshot.Record) error {
	var err error
	switch r.Kind {
	case snapshot.Secrets:
		s := r.Secret
		_, err = t.exec(qLoadSecret, s.Name, blob(s.Value), s.KeyID, ms(s.CreatedAt))
	case snapshot.SigningKeys:
		k := r.SigningKey
		_, err = t.exec(qLoadKey, k.Kid, k.Generation, k.Alg, blob(k.PublicKey), blob(k.PrivateKey), k.MasterKeyID,
			ms(k.CreatedAt), msPtr(k.RetiredAt), msPtr(k.ExpiresAt))
	case snapshot.Policies:
		var args []any
		if args, err = policyArgs(*r.Policy); err == nil {
			_, err = t.exec(qLoadPolicy, args...)
		}
	case snapshot.DataKeys:
		k := r.DataKey
		_, err = t.exec(qInsertDataKey, k.UserID, blob(k.Wrapped), ms(k.CreatedAt))
	case snapshot.Accounts:
		err = loadAccount(t, r.Account)
	case snapshot.Sessions:
		s := r.Session
		_, err = t.exec(qInsertSession, s.ID, s.UserID, string(s.Role), ms(s.CreatedAt), ms(s.ExpiresAt))
	case snapshot.Events:
		err = insertEvent(t, r.Event.UserID, &r.Event.Event)
	case snapshot.Archives:
		var doc []byte
		if doc, err = encodeArchive(r.Archive); err == nil {
			_, err = t.exec(qLoadArchive, r.Archive.Subject, doc, ms(r.Archive.ArchivedAt))
		}
	case snapshot.Items:
		err = insertItem(t, r.Item)
	case snapshot.Disclosures:
		err = loadDisclosure(t, r.Disclosure)
	case snapshot.Flags:
		_, err = t.exec(qLoadFlag, r.Flag.Processor, r.Flag.Enabled)
	case snapshot.PluginState:
		e := r.PluginState
		v := e.Value
		if v == nil {
			v = []byte{}
		}
		_, err = t.exec(qLoadPlugin, e.Processor, e.Key, v)
	case snapshot.Links:
		l := r.Link
		data := l.Data
		if data == nil {
			data = []byte{}
		}
		_, err = t.exec(qLoadLink, l.Processor, l.Subject, l.State, data, ms(l.UpdatedAt))
	case snapshot.Members:
		m := r.Member
		var op, since, from, to any
		if p := m.Pending; p != nil {
			op, since, from, to = p.Op, ms(p.Since), blob(p.From), blob(p.To)
		}
		_, err = t.exec(qLoadMember, m.UserID, m.Ver, blob(m.Tuple), op, since, from, to)
	case snapshot.Cells:
		c := r.Cell
		_, err = t.exec(qInsertCell, c.Mask, c.Cell.ID, c.Cell.N, c.Cell.Ver, blob(c.Cell.Values))
	case snapshot.Dirty:
		var n int64
		if n, err = t.exec(qLoadDirty, ms(*r.Dirty)); err == nil && n == 0 {
			err = errors.New("a reconciliation request exists already: the store was not empty")
		}
	case snapshot.Partners:
		p := r.Partner
		_, err = t.exec(qInsertPartner, p.ID, p.Name, p.KeyHash, p.Budget, p.PeriodDays, ms(p.CreatedAt), msPtr(p.RevokedAt), p.Period, p.Spent)
	case snapshot.Audit:
		e := r.Audit
		_, err = t.exec(qAuditInsert, e.Seq, ms(e.At), e.Actor, e.Action, e.Subject, e.Detail, e.Prev, e.Hash, e.Logged)
	case snapshot.LogLeaves:
		l := r.LogLeaf
		_, err = t.exec(qLoadLeaf, l.Index, l.Item, l.Data, l.Hash, ms(l.At))
	case snapshot.LogNodes:
		_, err = t.exec(qLoadNode, r.LogNode.ID.Key(), r.LogNode.Hash)
	case snapshot.LogHead:
		h := r.LogHead
		_, err = t.exec(qLoadHead, h.Size, h.Root, ms(h.At))
	default:
		err = fmt.Errorf("%w %q", snapshot.ErrUnknownKind, r.Kind)
	}
	return err
}

// loadAccount inserts the account row with its consent head, then its
// consent state and processor state rows.
func loadAccount(t *tx, a *snapshot.Account) error {
	r := &a.Account
	args, err := userArgs(r, a.Consent.Head, a.Consent.HeadHash)
	if err != nil {
		return err
	}
	if _, err := t.exec(qInsertUser, args...); err != nil {
		return err
	}
	for _, purpose := range slices.Sorted(maps.Keys(a.Consent.State)) {
		e := a.Consent.State[purpose]
		if _, err := t.exec(qLoadState, r.ID, purpose, e.Granted, e.Seq, ms(e.At), e.PolicyVersion, e.PolicyN, string(e.Method)); err != nil {
			return fmt.Errorf("consent state of %q: %w", purpose, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(a.Procs)) {
		p := a.Procs[name]
		if _, err := t.exec(qLoadProc, r.ID, name, p.Attempted, p.Delivered, p.Ref); err != nil {
			return fmt.Errorf("state of processor %s: %w", name, err)
		}
	}
	return nil
}

func loadDisclosure(t *tx, dc *outbox.Disclosure) error {
	b, err := json.Marshal(dc.Fields)
	if err != nil {
		return err
	}
	_, err = t.exec(qLoadDisclosure, dc.ID, dc.UserID, dc.Processor, dc.Purpose, string(b), dc.Action, dc.Cause, ms(dc.At))
	return err
}
