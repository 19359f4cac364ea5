package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/work"
)

// consentStore implements consent.Store.
type consentStore struct{ d *DB }

const stateCols = `s.purpose, s.granted, s.seq, s.at, s.policy_version, s.policy_n, s.method`

const eventCols = `seq, purpose, action, policy_version, policy_n, at, method, receipt_id, receipt, prev_hash, hash, logged`

var (
	// One statement reads head and every state entry: a consistent
	// snapshot without a read transaction, and never the ledger.
	qState = sqlq(`SELECT u.consent_head, u.consent_head_hash, u.erasing_since IS NOT NULL, ` + stateCols + `
		FROM users u LEFT JOIN consent_state s ON s.user_id = u.id WHERE u.id = ?`)
	qStatesAfter = sqlq(`SELECT u.id, u.consent_head, u.consent_head_hash, ` + stateCols + `
		FROM (SELECT id, consent_head, consent_head_hash FROM users
		      WHERE id > ? AND erasing_since IS NULL ORDER BY id LIMIT ?) u
		LEFT JOIN consent_state s ON s.user_id = u.id ORDER BY u.id`)
	// The condition of RecordChange: the head is still the one the event
	// follows, and the account exists and is not being erased.
	qAdvanceHead = sqlq(`UPDATE users SET consent_head = ?, consent_head_hash = ?
		WHERE id = ? AND consent_head = ? AND erasing_since IS NULL`)
	qPutState = sqlq(`INSERT INTO consent_state (user_id, purpose, granted, seq, at, policy_version, policy_n, method)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id, purpose) DO UPDATE SET granted = excluded.granted, seq = excluded.seq, at = excluded.at,
		policy_version = excluded.policy_version, policy_n = excluded.policy_n, method = excluded.method`)
	qInsertEvent = sqlq(`INSERT INTO consent_events (user_id, ` + eventCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	qEvents      = sqlq(`SELECT ` + eventCols + ` FROM consent_events WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?`)
	qEvent       = sqlq(`SELECT ` + eventCols + ` FROM consent_events WHERE user_id = ? AND seq = ?`)
	qGranted     = sqlq(`SELECT user_id FROM consent_state WHERE purpose = ? AND granted = 1 AND policy_n < ?`)
	// The log appender's queue: a partial index holds only the events
	// not yet logged, in the order they are logged.
	qUnloggedEvents  = sqlq(`SELECT user_id, ` + eventCols + ` FROM consent_events WHERE logged = 0 ORDER BY at, user_id, seq LIMIT ?`)
	qMarkEventLogged = sqlq(`UPDATE consent_events SET logged = 1 WHERE user_id = ? AND seq = ? AND logged = 0`)

	qArchive = sqlq(`INSERT INTO consent_archive (subject, doc, archived_at) VALUES (?, ?, ?)
		ON CONFLICT (subject) DO UPDATE SET doc = excluded.doc, archived_at = excluded.archived_at`)
	qArchived = sqlq(`SELECT doc, archived_at FROM consent_archive WHERE subject = ?`)

	qFirstPolicy = sqlq(`INSERT INTO policy_versions (n, version, url, published_at, reconsent)
		SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM policy_versions)`)
	qAppendPolicy = sqlq(`INSERT INTO policy_versions (n, version, url, published_at, reconsent)
		SELECT ?1, ?2, ?3, ?4, ?5 WHERE (SELECT count(*) FROM policy_versions) = ?1 - 1
		ON CONFLICT (n) DO NOTHING`)
	qPolicies = sqlq(`SELECT n, version, url, published_at, reconsent FROM policy_versions ORDER BY n`)
)

// entryOf is the state entry an event sets (consent keeps its own copy
// unexported).
func entryOf(ev *consent.Event) consent.Entry {
	return consent.Entry{Granted: ev.Action == consent.Grant, Seq: ev.Seq, At: ev.At, PolicyVersion: ev.PolicyVersion, PolicyN: ev.PolicyN, Method: ev.Method}
}

func putState(t *tx, userID, purpose string, e consent.Entry) error {
	if _, err := t.exec(qPutState, userID, purpose, e.Granted, e.Seq, ms(e.At), e.PolicyVersion, e.PolicyN, string(e.Method)); err != nil {
		return fmt.Errorf("write consent state: %w", err)
	}
	return nil
}

func insertEvent(t *tx, userID string, ev *consent.Event) error {
	if _, err := t.exec(qInsertEvent, userID, ev.Seq, ev.Purpose, string(ev.Action), ev.PolicyVersion, ev.PolicyN, ms(ev.At),
		string(ev.Method), ev.ReceiptID, ev.Receipt, ev.PrevHash, ev.Hash, ev.Logged); err != nil {
		return fmt.Errorf("write consent event %d: %w", ev.Seq, err)
	}
	return nil
}

// stateRow scans the nullable state columns of a LEFT JOIN.
type stateRow struct {
	purpose, version, method sql.NullString
	granted                  sql.NullBool
	seq, at, n               sql.NullInt64
}

func (r *stateRow) dest() []any {
	return []any{&r.purpose, &r.granted, &r.seq, &r.at, &r.version, &r.n, &r.method}
}

// addTo puts the entry, if the row has one, into st.
func (r *stateRow) addTo(st *consent.Stored) {
	if !r.purpose.Valid {
		return
	}
	if st.State == nil {
		st.State = map[string]consent.Entry{}
	}
	st.State[r.purpose.String] = consent.Entry{Granted: r.granted.Bool, Seq: r.seq.Int64, At: fromMS(r.at.Int64),
		PolicyVersion: r.version.String, PolicyN: r.n.Int64, Method: consent.Method(r.method.String)}
}

func (s consentStore) State(ctx context.Context, userID string) (*consent.Stored, error) {
	if snap, ok, err := s.d.snapshot(ctx, userID); ok {
		if err != nil {
			return nil, fmt.Errorf("read consent state: %w", err)
		}
		return snap.state(), nil
	}
	var st *consent.Stored
	err := s.d.readRows(ctx, qState, []any{userID}, func(rows *sql.Rows) error {
		var head int64
		var hash string
		var erasing bool
		var r stateRow
		if err := rows.Scan(append([]any{&head, &hash, &erasing}, r.dest()...)...); err != nil {
			return err
		}
		if st == nil {
			st = &consent.Stored{Head: head, HeadHash: hash, Erasing: erasing}
		}
		r.addTo(st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read consent state: %w", err)
	}
	return st, nil
}

func (s consentStore) RecordChange(ctx context.Context, userID string, ev consent.Event, items []work.Item) (bool, error) {
	err := s.d.write(ctx, func(t *tx) error {
		n, err := t.exec(qAdvanceHead, ev.Seq, ev.Hash, userID, ev.Seq-1)
		if err != nil {
			return fmt.Errorf("advance ledger head: %w", err)
		}
		if n == 0 {
			return errRollback
		}
		if err := insertEvent(t, userID, &ev); err != nil {
			return err
		}
		if err := putState(t, userID, ev.Purpose, entryOf(&ev)); err != nil {
			return err
		}
		for i := range items {
			if err := insertItem(t, &items[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errRollback) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record consent change: %w", err)
	}
	return true, nil
}

func scanEvent(sc scanner) (consent.Event, error) {
	var ev consent.Event
	var action, method string
	var at int64
	err := sc.Scan(&ev.Seq, &ev.Purpose, &action, &ev.PolicyVersion, &ev.PolicyN, &at, &method, &ev.ReceiptID, &ev.Receipt, &ev.PrevHash, &ev.Hash, &ev.Logged)
	ev.Action, ev.Method, ev.At = consent.Action(action), consent.Method(method), fromMS(at)
	return ev, err
}

func (s consentStore) Events(ctx context.Context, userID string, after int64, limit int) ([]consent.Event, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var out []consent.Event
	err := s.d.readRows(ctx, qEvents, []any{userID, after, limit}, func(rows *sql.Rows) error {
		ev, err := scanEvent(rows)
		out = append(out, ev)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read consent events: %w", err)
	}
	return out, nil
}

func (s consentStore) Event(ctx context.Context, userID string, seq int64) (*consent.Event, error) {
	var out *consent.Event
	err := s.d.readRows(ctx, qEvent, []any{userID, seq}, func(rows *sql.Rows) error {
		ev, err := scanEvent(rows)
		out = &ev
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read consent event: %w", err)
	}
	return out, nil
}

func (s consentStore) Unlogged(ctx context.Context, limit int) ([]consent.UserEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []consent.UserEvent
	err := s.d.readRows(ctx, qUnloggedEvents, []any{limit}, func(rows *sql.Rows) error {
		var ue consent.UserEvent
		ev, err := scanEvent(prefixed{rows, []any{&ue.UserID}})
		ue.Event = ev
		out = append(out, ue)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read unlogged consent events: %w", err)
	}
	return out, nil
}

// MarkLogged marks the whole batch in one transaction.
func (s consentStore) MarkLogged(ctx context.Context, events []consent.EventRef) error {
	if len(events) == 0 {
		return nil
	}
	err := s.d.write(ctx, func(t *tx) error {
		for _, e := range events {
			if _, err := t.exec(qMarkEventLogged, e.UserID, e.Seq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark consent events logged: %w", err)
	}
	return nil
}

func (s consentStore) EachState(ctx context.Context, fn func(userID string, st *consent.Stored) error) error {
	return s.d.each(ctx, func(after string) ([]string, func(int) error, error) {
		var ids []string
		var states []*consent.Stored
		err := s.d.scanRows(ctx, qStatesAfter, []any{after, eachChunk}, func(rows *sql.Rows) error {
			var id, hash string
			var head int64
			var r stateRow
			if err := rows.Scan(append([]any{&id, &head, &hash}, r.dest()...)...); err != nil {
				return err
			}
			if len(ids) == 0 || ids[len(ids)-1] != id {
				ids = append(ids, id)
				states = append(states, &consent.Stored{Head: head, HeadHash: hash})
			}
			r.addTo(states[len(states)-1])
			return nil
		})
		return ids, func(i int) error { return fn(ids[i], states[i]) }, err
	})
}

func (s consentStore) GrantedBefore(ctx context.Context, purpose string, n int64) ([]string, error) {
	var ids []string
	err := s.d.readRows(ctx, qGranted, []any{purpose, n}, func(rows *sql.Rows) error {
		var id string
		err := rows.Scan(&id)
		ids = append(ids, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list grants before policy %d: %w", n, err)
	}
	return ids, nil
}

// archiveDoc is how an archive is kept: one JSON document per subject (it
// is read whole, only to verify an erased user's proof).
type archiveDoc struct {
	Head     int64                `json:"head"`
	HeadHash string               `json:"headHash"`
	State    map[string]entryJSON `json:"state,omitempty"`
	Events   []eventJSON          `json:"events"`
}

type entryJSON struct {
	Granted       bool   `json:"granted"`
	Seq           int64  `json:"seq"`
	At            int64  `json:"at"`
	PolicyVersion string `json:"policyVersion"`
	PolicyN       int64  `json:"policyN"`
	Method        string `json:"method"`
}

type eventJSON struct {
	Seq           int64  `json:"seq"`
	Purpose       string `json:"purpose"`
	Action        string `json:"action"`
	PolicyVersion string `json:"policyVersion"`
	PolicyN       int64  `json:"policyN"`
	At            int64  `json:"at"`
	Method        string `json:"method"`
	ReceiptID     string `json:"receiptId"`
	Receipt       string `json:"receipt"`
	PrevHash      string `json:"prevHash"`
	Hash          string `json:"hash"`
	Logged        bool   `json:"logged,omitempty"`
}

func (s consentStore) Archive(ctx context.Context, a consent.Archived) error {
	b, err := encodeArchive(&a)
	if err != nil {
		return fmt.Errorf("archive consent: %w", err)
	}
	if _, err := s.d.exec(ctx, qArchive, a.Subject, b, ms(a.ArchivedAt)); err != nil {
		return fmt.Errorf("archive consent: %w", err)
	}
	return nil
}

// encodeArchive is the doc column of an archive.
func encodeArchive(a *consent.Archived) ([]byte, error) {
	doc := archiveDoc{Head: a.State.Head, HeadHash: a.State.HeadHash, Events: make([]eventJSON, 0, len(a.Events))}
	if a.State.State != nil {
		doc.State = make(map[string]entryJSON, len(a.State.State))
		for p, e := range a.State.State {
			doc.State[p] = entryJSON{Granted: e.Granted, Seq: e.Seq, At: ms(e.At), PolicyVersion: e.PolicyVersion, PolicyN: e.PolicyN, Method: string(e.Method)}
		}
	}
	for _, ev := range a.Events {
		doc.Events = append(doc.Events, eventJSON{Seq: ev.Seq, Purpose: ev.Purpose, Action: string(ev.Action), PolicyVersion: ev.PolicyVersion,
			PolicyN: ev.PolicyN, At: ms(ev.At), Method: string(ev.Method), ReceiptID: ev.ReceiptID, Receipt: ev.Receipt, PrevHash: ev.PrevHash, Hash: ev.Hash,
			Logged: ev.Logged})
	}
	return json.Marshal(doc)
}

func (s consentStore) Archived(ctx context.Context, subject string) (*consent.Archived, error) {
	var b []byte
	var at int64
	found, err := s.d.readRow(ctx, qArchived, []any{subject}, &b, &at)
	if err != nil {
		return nil, fmt.Errorf("read consent archive: %w", err)
	}
	if !found {
		return nil, nil
	}
	return decodeArchive(subject, b, at)
}

// decodeArchive reads an archive row back.
func decodeArchive(subject string, b []byte, at int64) (*consent.Archived, error) {
	var doc archiveDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("decode consent archive of %s: %w", subject, err)
	}
	a := &consent.Archived{Subject: subject, ArchivedAt: fromMS(at), State: consent.Stored{Head: doc.Head, HeadHash: doc.HeadHash}}
	if doc.State != nil {
		a.State.State = make(map[string]consent.Entry, len(doc.State))
		for p, e := range doc.State {
			a.State.State[p] = consent.Entry{Granted: e.Granted, Seq: e.Seq, At: fromMS(e.At), PolicyVersion: e.PolicyVersion, PolicyN: e.PolicyN, Method: consent.Method(e.Method)}
		}
	}
	if len(doc.Events) > 0 {
		a.Events = make([]consent.Event, 0, len(doc.Events))
	}
	for _, e := range doc.Events {
		a.Events = append(a.Events, consent.Event{Seq: e.Seq, Purpose: e.Purpose, Action: consent.Action(e.Action), PolicyVersion: e.PolicyVersion,
			PolicyN: e.PolicyN, At: fromMS(e.At), Method: consent.Method(e.Method), ReceiptID: e.ReceiptID, Receipt: e.Receipt, PrevHash: e.PrevHash, Hash: e.Hash,
			Logged: e.Logged})
	}
	return a, nil
}

func policyArgs(v consent.PolicyVersion) ([]any, error) {
	rc, err := json.Marshal(v.Reconsent)
	if err != nil {
		return nil, err
	}
	return []any{v.N, v.Version, v.URL, ms(v.PublishedAt), string(rc)}, nil
}

func (s consentStore) AddFirstPolicy(ctx context.Context, v consent.PolicyVersion) error {
	args, err := policyArgs(v)
	if err == nil {
		_, err = s.d.exec(ctx, qFirstPolicy, args...)
	}
	if err != nil {
		return fmt.Errorf("store first policy: %w", err)
	}
	s.d.policies.Store(nil)
	return nil
}

// PolicyVersions is read before every consent change, so that a version
// published by another replica applies at once. Versions are only ever
// appended, by the server process through AppendPolicy, and the embedded
// store serves one server process: after the first read they are served
// from memory, and AppendPolicy drops the copy.
func (s consentStore) PolicyVersions(ctx context.Context) ([]consent.PolicyVersion, error) {
	if vs := s.d.policies.Load(); vs != nil {
		return slices.Clone(*vs), nil
	}
	vs, err := s.readPolicyVersions(ctx)
	if err != nil {
		return nil, err
	}
	s.d.policies.Store(&vs)
	return slices.Clone(vs), nil
}

func (s consentStore) readPolicyVersions(ctx context.Context) ([]consent.PolicyVersion, error) {
	var out []consent.PolicyVersion
	err := s.d.readRows(ctx, qPolicies, nil, func(rows *sql.Rows) error {
		var v consent.PolicyVersion
		var at int64
		var rc string
		if err := rows.Scan(&v.N, &v.Version, &v.URL, &at, &rc); err != nil {
			return err
		}
		v.PublishedAt = fromMS(at)
		if err := json.Unmarshal([]byte(rc), &v.Reconsent); err != nil {
			return fmt.Errorf("policy %d reconsent: %w", v.N, err)
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policy versions: %w", err)
	}
	return out, nil
}

func (s consentStore) AppendPolicy(ctx context.Context, v consent.PolicyVersion) (bool, error) {
	args, err := policyArgs(v)
	var n int64
	if err == nil {
		n, err = s.d.exec(ctx, qAppendPolicy, args...)
	}
	s.d.policies.Store(nil)
	if err != nil {
		return false, fmt.Errorf("publish policy: %w", err)
	}
	return n == 1, nil
}
