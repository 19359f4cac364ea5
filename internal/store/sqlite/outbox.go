package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/work"
	"github.com/consentgraph/consentgraph/plugins"
)

// outboxStore implements outbox.Store. Work items are written straight
// into the queue by the transactions that create them, so Relay has
// nothing to do.
type outboxStore struct{ d *DB }

const itemCols = `id, user_id, processor, purpose, action, erase, ref, cause, state, attempts, next_at, lease_until,
	lease_owner, last_error, note, created_at, updated_at`

var (
	qInsertItem  = sqlq(`INSERT INTO outbox_items (` + itemCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	qEnqueueItem = sqlq(`INSERT INTO outbox_items (` + itemCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`)
	qWakeWaiting = sqlq(`UPDATE outbox_items SET state = 'PENDING', next_at = ?, note = '', updated_at = ?
		WHERE user_id = ? AND state = 'WAITING'`)
	// The due items of one processor after a (next_at, id) cursor, in
	// that order (index outbox_due).
	qDue = sqlq(`SELECT id, user_id, next_at FROM outbox_items
		WHERE state = 'PENDING' AND processor = ?1 AND next_at <= ?2 AND (next_at, id) > (?3, ?4) AND lease_until <= ?2
		ORDER BY next_at, id LIMIT ?5`)
	// Whether another item of the user and processor is leased (index
	// outbox_leased).
	qPairLeased = sqlq(`SELECT 1 FROM outbox_items
		WHERE user_id = ? AND processor = ? AND state = 'PENDING' AND lease_until > 0 AND lease_until > ? LIMIT 1`)
	qLease = sqlq(`UPDATE outbox_items SET attempts = attempts + 1, lease_owner = ?, lease_until = ?, updated_at = ?
		WHERE id = ? RETURNING ` + itemCols)
	// Guarded on the lease of the attempt being finished: the item is
	// leased (an item nobody claimed cannot be finished) by that owner for
	// that attempt. A lease that ran out still counts until someone else
	// claims the item (which changes owner and attempts).
	qFinishItem = sqlq(`UPDATE outbox_items SET state = ?1, next_at = CASE WHEN ?2 = 0 THEN next_at ELSE ?2 END,
		note = ?3, last_error = ?4, attempts = CASE WHEN ?5 THEN 0 WHEN ?10 THEN attempts - 1 ELSE attempts END,
		lease_until = 0, lease_owner = '', updated_at = ?6
		WHERE id = ?7 AND state = 'PENDING' AND lease_owner = ?8 AND attempts = ?9 AND lease_until > 0`)
	qProcOutcome = sqlq(`INSERT INTO proc_state (user_id, processor, attempted, delivered, ref)
		SELECT ?1, ?2, 0, ?3, CASE WHEN ?3 THEN ?4 ELSE '' END
		WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1 AND erasing_since IS NULL)
		ON CONFLICT (user_id, processor) DO UPDATE SET delivered = excluded.delivered,
		ref = CASE WHEN excluded.delivered THEN excluded.ref ELSE ref END`)
	qMarkAttempted = sqlq(`INSERT INTO proc_state (user_id, processor, attempted)
		SELECT ?1, ?2, 1 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1 AND erasing_since IS NULL)
		ON CONFLICT (user_id, processor) DO UPDATE SET attempted = 1`)
	qInsertDisclosure = sqlq(`INSERT INTO disclosures (id, user_id, processor, purpose, fields, action, cause, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
	qItem         = sqlq(`SELECT ` + itemCols + ` FROM outbox_items WHERE id = ?`)
	qItemsAfter   = sqlq(`SELECT ` + itemCols + ` FROM outbox_items WHERE id > ? ORDER BY id LIMIT ?`)
	qItemsOfState = sqlq(`SELECT ` + itemCols + ` FROM outbox_items WHERE state = ? AND id > ? ORDER BY id LIMIT ?`)
	qRetryItem    = sqlq(`UPDATE outbox_items SET state = 'PENDING', attempts = 0, next_at = ?1, lease_until = 0, lease_owner = '', updated_at = ?1
		WHERE id = ?2 AND state IN ('DEAD', 'WAITING')`)
	qCountByState = sqlq(`SELECT state, n FROM outbox_counts WHERE n <> 0`)
	// Account, consent state and processor state in one statement, so one
	// consistent snapshot.
	qRecipient = sqlq(`SELECT 0, u.consent_head, u.consent_head_hash, u.erasing_since IS NOT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
			FROM users u WHERE u.id = ?1
		UNION ALL
		SELECT 1, NULL, NULL, NULL, s.purpose, s.granted, s.seq, s.at, s.policy_version, s.policy_n, s.method
			FROM consent_state s WHERE s.user_id = ?1
		UNION ALL
		SELECT 2, NULL, NULL, NULL, p.processor, p.attempted, p.delivered, NULL, p.ref, NULL, NULL
			FROM proc_state p WHERE p.user_id = ?1`)
	qDisclosures = sqlq(`SELECT id, user_id, processor, purpose, fields, action, cause, at FROM disclosures
		WHERE user_id = ? ORDER BY id DESC LIMIT ?`)
	qCountDisclosures  = sqlq(`SELECT COUNT(*) FROM disclosures WHERE user_id = ?`)
	qDisclosuresBefore = sqlq(`SELECT id, user_id, processor, purpose, fields, action, cause, at FROM disclosures
		WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?`)
	qProcessorFlags   = sqlq(`SELECT name, enabled FROM processor_flags`)
	qSetProcessorFlag = sqlq(`INSERT INTO processor_flags (name, enabled) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled`)
	qPluginGet = sqlq(`SELECT value FROM plugin_state WHERE processor = ? AND key = ?`)
	qPluginPut = sqlq(`INSERT INTO plugin_state (processor, key, value) VALUES (?, ?, ?)
		ON CONFLICT (processor, key) DO UPDATE SET value = excluded.value`)
	qPluginDelete = sqlq(`DELETE FROM plugin_state WHERE processor = ? AND key = ?`)
)

func itemArgs(it *work.Item) []any {
	return []any{it.ID, it.UserID, it.Processor, it.Purpose, string(it.Action), it.Erase, it.Ref, it.Cause, string(it.State),
		it.Attempts, ms(it.NextAt), ms(it.LeaseUntil), it.LeaseOwner, it.LastError, it.Note, ms(it.CreatedAt), ms(it.UpdatedAt)}
}

func insertItem(t *tx, it *work.Item) error {
	if _, err := t.exec(qInsertItem, itemArgs(it)...); err != nil {
		return fmt.Errorf("queue work item %s: %w", it.ID, err)
	}
	return nil
}

func scanItem(sc scanner) (work.Item, error) {
	var it work.Item
	var action, state string
	var next, lease, created, updated int64
	err := sc.Scan(&it.ID, &it.UserID, &it.Processor, &it.Purpose, &action, &it.Erase, &it.Ref, &it.Cause, &state, &it.Attempts,
		&next, &lease, &it.LeaseOwner, &it.LastError, &it.Note, &created, &updated)
	it.Action, it.State = work.Action(action), work.State(state)
	it.NextAt, it.LeaseUntil, it.CreatedAt, it.UpdatedAt = fromMS(next), fromMS(lease), fromMS(created), fromMS(updated)
	return it, err
}

// Relay has nothing to move: items are stored in the queue directly.
func (s outboxStore) Relay(context.Context, string) (int, error) { return 0, nil }

func (s outboxStore) Enqueue(ctx context.Context, it work.Item) (bool, error) {
	n, err := s.d.exec(ctx, qEnqueueItem, itemArgs(&it)...)
	if err != nil {
		return false, fmt.Errorf("enqueue work item: %w", err)
	}
	return n == 1, nil
}

func (s outboxStore) WakeWaiting(ctx context.Context, userID string, now time.Time) error {
	if _, err := s.d.exec(ctx, qWakeWaiting, ms(now), ms(now), userID); err != nil {
		return fmt.Errorf("wake waiting items: %w", err)
	}
	return nil
}

// dueCursor walks one processor's due items in (next_at, id) order.
type dueCursor struct {
	processor string
	buf       []dueItem
	lastAt    int64
	lastID    string
	done      bool
}

type dueItem struct {
	id, userID string
	nextAt     int64
}

// Claim runs in one write transaction: nobody else writes while it picks,
// so its checks and leases cannot race. It merges the processors' due
// items, oldest first, taking at most one per user and processor and none
// for a pair that already has a leased item.
func (s outboxStore) Claim(ctx context.Context, owner string, processors []string, now, until time.Time, limit int) ([]work.Item, error) {
	if limit <= 0 || len(processors) == 0 {
		return nil, nil
	}
	procs := slices.Clone(processors)
	slices.Sort(procs)
	procs = slices.Compact(procs)
	nowMS, untilMS := ms(now), ms(until)
	batch := max(limit, 16)
	var out []work.Item
	err := s.d.write(ctx, func(t *tx) error {
		out = out[:0]
		cursors := make([]*dueCursor, len(procs))
		for i, p := range procs {
			cursors[i] = &dueCursor{processor: p, lastAt: math.MinInt64}
		}
		fill := func(c *dueCursor) error {
			rows, err := t.query(qDue, c.processor, nowMS, c.lastAt, c.lastID, batch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var d dueItem
				if err := rows.Scan(&d.id, &d.userID, &d.nextAt); err != nil {
					return err
				}
				c.buf = append(c.buf, d)
				c.lastAt, c.lastID = d.nextAt, d.id
			}
			if err := rows.Err(); err != nil {
				return err
			}
			c.done = len(c.buf) < batch
			return nil
		}
		type pair struct{ user, proc string }
		seen := map[pair]bool{}
		for len(out) < limit {
			var best *dueCursor
			for _, c := range cursors {
				if len(c.buf) == 0 && !c.done {
					if err := fill(c); err != nil {
						return fmt.Errorf("find due items: %w", err)
					}
				}
				if len(c.buf) == 0 {
					continue
				}
				if best == nil || less(c.buf[0], best.buf[0]) {
					best = c
				}
			}
			if best == nil {
				break
			}
			cand := best.buf[0]
			best.buf = best.buf[1:]
			p := pair{cand.userID, best.processor}
			if seen[p] {
				continue
			}
			seen[p] = true
			leased, err := t.queryRow(qPairLeased, []any{cand.userID, best.processor, nowMS}, new(int))
			if err != nil {
				return fmt.Errorf("check leases: %w", err)
			}
			if leased {
				continue
			}
			rows, err := t.query(qLease, owner, untilMS, nowMS, cand.id)
			if err != nil {
				return fmt.Errorf("lease item: %w", err)
			}
			var it work.Item
			if rows.Next() {
				it, err = scanItem(rows)
			}
			if err == nil {
				err = rows.Err()
			}
			if cerr := rows.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("lease item: %w", err)
			}
			out = append(out, it)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim work items: %w", err)
	}
	return out, nil
}

func less(a, b dueItem) bool {
	if a.nextAt != b.nextAt {
		return a.nextAt < b.nextAt
	}
	return a.id < b.id
}

// Finish writes the outcome, the processor state and the disclosure in one
// transaction; when the item's lease check fails it writes nothing.
func (s outboxStore) Finish(ctx context.Context, f outbox.Finish) (bool, error) {
	err := s.d.write(ctx, func(t *tx) error {
		n, err := t.exec(qFinishItem, string(f.State), ms(f.NextAt), f.Note, f.LastError, f.ResetAttempts, ms(f.At),
			f.Item.ID, f.Item.LeaseOwner, f.Item.Attempts, f.Throttled)
		if err != nil {
			return fmt.Errorf("record outcome: %w", err)
		}
		if n == 0 {
			return errRollback
		}
		if p := f.Proc; p != nil {
			if _, err := t.exec(qProcOutcome, f.Item.UserID, f.Item.Processor, p.Delivered, p.Ref); err != nil {
				return fmt.Errorf("record processor state: %w", err)
			}
		}
		if dc := f.Disclosure; dc != nil {
			if err := insertDisclosure(t, dc); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errRollback) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("finish work item: %w", err)
	}
	return true, nil
}

func insertDisclosure(t *tx, dc *outbox.Disclosure) error {
	fields, err := json.Marshal(dc.Fields)
	if err == nil {
		_, err = t.exec(qInsertDisclosure, dc.ID, dc.UserID, dc.Processor, dc.Purpose, string(fields), dc.Action, dc.Cause, ms(dc.At))
	}
	if err != nil {
		return fmt.Errorf("record disclosure: %w", err)
	}
	return nil
}

func (s outboxStore) Item(ctx context.Context, id string) (*work.Item, error) {
	var out *work.Item
	err := s.d.readRows(ctx, qItem, []any{id}, func(rows *sql.Rows) error {
		it, err := scanItem(rows)
		out = &it
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read work item: %w", err)
	}
	return out, nil
}

func (s outboxStore) Items(ctx context.Context, state work.State, after string, limit int) ([]work.Item, error) {
	if limit <= 0 {
		limit = -1
	}
	q, args := qItemsAfter, []any{after, limit}
	if state != "" {
		q, args = qItemsOfState, []any{string(state), after, limit}
	}
	var out []work.Item
	err := s.d.readRows(ctx, q, args, func(rows *sql.Rows) error {
		it, err := scanItem(rows)
		out = append(out, it)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list work items: %w", err)
	}
	return out, nil
}

func (s outboxStore) Retry(ctx context.Context, id string, now time.Time) (bool, error) {
	n, err := s.d.exec(ctx, qRetryItem, ms(now), id)
	if err != nil {
		return false, fmt.Errorf("retry work item: %w", err)
	}
	return n == 1, nil
}

func (s outboxStore) CountByState(ctx context.Context) (map[work.State]int64, error) {
	out := map[work.State]int64{}
	err := s.d.readRows(ctx, qCountByState, nil, func(rows *sql.Rows) error {
		var st string
		var n int64
		err := rows.Scan(&st, &n)
		out[work.State(st)] = n
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count work items: %w", err)
	}
	return out, nil
}

func (s outboxStore) Recipient(ctx context.Context, userID string) (*outbox.Recipient, error) {
	var found bool
	r := &outbox.Recipient{Procs: map[string]outbox.ProcState{}}
	err := s.d.readRows(ctx, qRecipient, []any{userID}, func(rows *sql.Rows) error {
		var kind int
		var head sql.NullInt64
		var hash sql.NullString
		var erasing sql.NullBool
		var sr stateRow
		if err := rows.Scan(append([]any{&kind, &head, &hash, &erasing}, sr.dest()...)...); err != nil {
			return err
		}
		switch kind {
		case 0:
			found = true
			r.Consent.Head, r.Consent.HeadHash = head.Int64, hash.String
			r.Erasing, r.Consent.Erasing = erasing.Bool, erasing.Bool
		case 1:
			sr.addTo(&r.Consent)
		case 2:
			// Columns reused: purpose=processor, granted=attempted,
			// seq=delivered, policy_version=ref.
			r.Procs[sr.purpose.String] = outbox.ProcState{Attempted: sr.granted.Bool, Delivered: sr.seq.Int64 != 0, Ref: sr.version.String}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read recipient: %w", err)
	}
	if !found {
		return nil, nil
	}
	return r, nil
}

func (s outboxStore) MarkAttempted(ctx context.Context, userID, processor string) (bool, error) {
	n, err := s.d.exec(ctx, qMarkAttempted, userID, processor)
	if err != nil {
		return false, fmt.Errorf("mark attempted: %w", err)
	}
	return n == 1, nil
}

func (s outboxStore) Disclosures(ctx context.Context, userID, before string, limit int) ([]outbox.Disclosure, error) {
	if limit <= 0 {
		limit = -1
	}
	q, args := qDisclosures, []any{userID, limit}
	if before != "" {
		q, args = qDisclosuresBefore, []any{userID, before, limit}
	}
	var out []outbox.Disclosure
	err := s.d.readRows(ctx, q, args, func(rows *sql.Rows) error {
		dc, err := scanDisclosure(rows)
		out = append(out, dc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list disclosures: %w", err)
	}
	return out, nil
}

func (s outboxStore) CountDisclosures(ctx context.Context, userID string) (int64, error) {
	var n int64
	if _, err := s.d.readRow(ctx, qCountDisclosures, []any{userID}, &n); err != nil {
		return 0, fmt.Errorf("count disclosures: %w", err)
	}
	return n, nil
}

// scanDisclosure scans the columns id, user_id, processor, purpose, fields,
// action, cause, at.
func scanDisclosure(sc scanner) (outbox.Disclosure, error) {
	var dc outbox.Disclosure
	var fields string
	var at int64
	if err := sc.Scan(&dc.ID, &dc.UserID, &dc.Processor, &dc.Purpose, &fields, &dc.Action, &dc.Cause, &at); err != nil {
		return dc, err
	}
	dc.At = fromMS(at)
	if err := json.Unmarshal([]byte(fields), &dc.Fields); err != nil {
		return dc, fmt.Errorf("disclosure %s fields: %w", dc.ID, err)
	}
	return dc, nil
}

func (s outboxStore) ProcessorFlags(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := s.d.readRows(ctx, qProcessorFlags, nil, func(rows *sql.Rows) error {
		var name string
		var on bool
		err := rows.Scan(&name, &on)
		out[name] = on
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read processor flags: %w", err)
	}
	return out, nil
}

func (s outboxStore) SetProcessorFlag(ctx context.Context, name string, enabled bool) error {
	if _, err := s.d.exec(ctx, qSetProcessorFlag, name, enabled); err != nil {
		return fmt.Errorf("set processor flag: %w", err)
	}
	return nil
}

func (s outboxStore) PluginState(processor string) plugins.State {
	return pluginState{d: s.d, processor: processor}
}

// pluginState is one processor instance's key-value storage.
type pluginState struct {
	d         *DB
	processor string
}

func (p pluginState) Get(ctx context.Context, key string) ([]byte, bool, error) {
	var v []byte
	found, err := p.d.readRow(ctx, qPluginGet, []any{p.processor, key}, &v)
	if err != nil {
		return nil, false, fmt.Errorf("read %s state: %w", p.processor, err)
	}
	if found && v == nil {
		v = []byte{} // stored empty; found all the same
	}
	return v, found, nil
}

func (p pluginState) Put(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	if _, err := p.d.exec(ctx, qPluginPut, p.processor, key, value); err != nil {
		return fmt.Errorf("write %s state: %w", p.processor, err)
	}
	return nil
}

func (p pluginState) Delete(ctx context.Context, key string) error {
	if _, err := p.d.exec(ctx, qPluginDelete, p.processor, key); err != nil {
		return fmt.Errorf("delete %s state: %w", p.processor, err)
	}
	return nil
}
