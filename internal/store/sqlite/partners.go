package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/partners"
)

// partnerStore implements partners.Store. Each charge is one conditional
// UPDATE ... RETURNING: SQLite runs it atomically on the one writer, so
// concurrent charges never overspend.
type partnerStore struct{ d *DB }

const partnerCols = `id, name, key_hash, budget, period_days, created_at, revoked_at, period, spent`

var (
	qInsertPartner = sqlq(`INSERT INTO partners (` + partnerCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	qPartner       = sqlq(`SELECT ` + partnerCols + ` FROM partners WHERE id = ?`)
	qPartners      = sqlq(`SELECT ` + partnerCols + ` FROM partners ORDER BY created_at, id`)
	qPartnersFirst = sqlq(`SELECT ` + partnerCols + ` FROM partners ORDER BY created_at, id LIMIT ?`)
	qPartnersAfter = sqlq(`SELECT ` + partnerCols + ` FROM partners
		WHERE (created_at, id) > (SELECT created_at, id FROM partners WHERE id = ?) ORDER BY created_at, id LIMIT ?`)
	qCountPartners = sqlq(`SELECT COUNT(*) FROM partners`)
	qRevokePartner = sqlq(`UPDATE partners SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`)
	qSpend         = sqlq(`UPDATE partners SET spent = spent + ?1
		WHERE id = ?2 AND revoked_at IS NULL AND period = ?3 AND spent <= ?4 - ?1 RETURNING ` + partnerCols)
	qStartPeriod = sqlq(`UPDATE partners SET period = ?1, spent = ?2
		WHERE id = ?3 AND revoked_at IS NULL AND period = ?4 RETURNING ` + partnerCols)
	qRefund = sqlq(`UPDATE partners SET spent = max(spent - ?1, 0) WHERE id = ?2 AND period = ?3`)
)

// partnerRow scans a partners row.
type partnerRow struct {
	r       partners.Record
	created int64
	revoked sql.NullInt64
}

func (p *partnerRow) dest() []any {
	r := &p.r
	return []any{&r.ID, &r.Name, &r.KeyHash, &r.Budget, &r.PeriodDays, &p.created, &p.revoked, &r.Period, &r.Spent}
}

func (p *partnerRow) record() *partners.Record {
	r := p.r
	r.CreatedAt, r.RevokedAt = fromMS(p.created), fromNullMS(p.revoked)
	return &r
}

func (s partnerStore) Insert(ctx context.Context, r partners.Record) error {
	if _, err := s.d.exec(ctx, qInsertPartner, r.ID, r.Name, r.KeyHash, r.Budget, r.PeriodDays, ms(r.CreatedAt), msPtr(r.RevokedAt), r.Period, r.Spent); err != nil {
		return fmt.Errorf("insert partner: %w", err)
	}
	return nil
}

func (s partnerStore) Get(ctx context.Context, id string) (*partners.Record, error) {
	var p partnerRow
	found, err := s.d.readRow(ctx, qPartner, []any{id}, p.dest()...)
	if err != nil {
		return nil, fmt.Errorf("read partner: %w", err)
	}
	if !found {
		return nil, nil
	}
	return p.record(), nil
}

func (s partnerStore) List(ctx context.Context) ([]partners.Record, error) {
	out, err := s.scan(ctx, qPartners, nil)
	if err != nil {
		return nil, fmt.Errorf("list partners: %w", err)
	}
	return out, nil
}

// scan reads the partners rows q selects.
func (s partnerStore) scan(ctx context.Context, q *query, args []any) ([]partners.Record, error) {
	var out []partners.Record
	err := s.d.readRows(ctx, q, args, func(rows *sql.Rows) error {
		var p partnerRow
		if err := rows.Scan(p.dest()...); err != nil {
			return err
		}
		out = append(out, *p.record())
		return nil
	})
	return out, err
}

func (s partnerStore) Page(ctx context.Context, after string, limit int) ([]partners.Record, error) {
	q, args := qPartnersFirst, []any{limit}
	if after != "" {
		q, args = qPartnersAfter, []any{after, limit}
	}
	out, err := s.scan(ctx, q, args)
	if err != nil {
		return nil, fmt.Errorf("page partners: %w", err)
	}
	return out, nil
}

func (s partnerStore) Count(ctx context.Context) (int64, error) {
	var n int64
	if _, err := s.d.readRow(ctx, qCountPartners, nil, &n); err != nil {
		return 0, fmt.Errorf("count partners: %w", err)
	}
	return n, nil
}

func (s partnerStore) Revoke(ctx context.Context, id string, at time.Time) error {
	if _, err := s.d.exec(ctx, qRevokePartner, at.UnixMilli(), id); err != nil {
		return fmt.Errorf("revoke partner: %w", err)
	}
	return nil
}

func (s partnerStore) SpendInPeriod(ctx context.Context, id string, period, cost, limit int64) (*partners.Record, error) {
	var p partnerRow
	found, err := s.d.writeRow(ctx, qSpend, []any{cost, id, period, limit}, p.dest()...)
	if err != nil {
		return nil, fmt.Errorf("charge partner budget: %w", err)
	}
	if !found {
		return nil, nil
	}
	return p.record(), nil
}

func (s partnerStore) StartPeriod(ctx context.Context, id string, from, period, cost int64) (*partners.Record, error) {
	var p partnerRow
	found, err := s.d.writeRow(ctx, qStartPeriod, []any{period, cost, id, from}, p.dest()...)
	if err != nil {
		return nil, fmt.Errorf("start budget period: %w", err)
	}
	if !found {
		return nil, nil
	}
	return p.record(), nil
}

func (s partnerStore) Refund(ctx context.Context, id string, period, cost int64) (bool, error) {
	n, err := s.d.exec(ctx, qRefund, cost, id, period)
	if err != nil {
		return false, fmt.Errorf("refund partner budget: %w", err)
	}
	return n > 0, nil
}

// auditStore implements audit.Store.
type auditStore struct{ d *DB }

const auditCols = `seq, at, actor, action, subject, detail, prev, hash, logged`

var (
	qAuditHead   = sqlq(`SELECT ` + auditCols + ` FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)`)
	qAuditInsert = sqlq(`INSERT INTO audit_log (` + auditCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	qAuditPage   = sqlq(`SELECT ` + auditCols + ` FROM audit_log WHERE seq < ? ORDER BY seq DESC LIMIT ?`)
	qAuditAfter  = sqlq(`SELECT ` + auditCols + ` FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`)
	// The log appender's queue (a partial index of the unlogged entries).
	qAuditUnlogged = sqlq(`SELECT ` + auditCols + ` FROM audit_log WHERE logged = 0 ORDER BY seq LIMIT ?`)
	qAuditMark     = sqlq(`UPDATE audit_log SET logged = 1 WHERE seq IN (SELECT value FROM json_each(?)) AND logged = 0`)
)

func scanAudit(sc scanner) (audit.Entry, error) {
	var e audit.Entry
	var at int64
	err := sc.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Subject, &e.Detail, &e.Prev, &e.Hash, &e.Logged)
	e.At = fromMS(at)
	return e, err
}

// Append reads the head, builds and inserts the entry in one write
// transaction: no other append can run in between, so next is called once
// and an append never loses a race.
func (s auditStore) Append(ctx context.Context, next func(head *audit.Entry) audit.Entry) (audit.Entry, error) {
	var e audit.Entry
	err := s.d.write(ctx, func(t *tx) error {
		rows, err := t.query(qAuditHead)
		if err != nil {
			return err
		}
		var head *audit.Entry
		if rows.Next() {
			h, err := scanAudit(rows)
			if err != nil {
				rows.Close()
				return err
			}
			head = &h
		}
		if err := rows.Close(); err != nil {
			return err
		}
		e = next(head)
		_, err = t.exec(qAuditInsert, e.Seq, ms(e.At), e.Actor, e.Action, e.Subject, e.Detail, e.Prev, e.Hash, e.Logged)
		return err
	})
	if err != nil {
		return audit.Entry{}, fmt.Errorf("append audit entry: %w", err)
	}
	return e, nil
}

func (s auditStore) Page(ctx context.Context, before int64, limit int) ([]audit.Entry, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	if limit <= 0 {
		limit = -1
	}
	var out []audit.Entry
	err := s.d.readRows(ctx, qAuditPage, []any{before, limit}, func(rows *sql.Rows) error {
		e, err := scanAudit(rows)
		out = append(out, e)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}

func (s auditStore) Each(ctx context.Context, fn func(e audit.Entry) error) error {
	var last int64
	return s.d.each(ctx, func(string) ([]string, func(int) error, error) {
		var list []audit.Entry
		err := s.d.scanRows(ctx, qAuditAfter, []any{last, eachChunk}, func(rows *sql.Rows) error {
			e, err := scanAudit(rows)
			list = append(list, e)
			return err
		})
		if len(list) > 0 {
			last = list[len(list)-1].Seq
		}
		// each only needs as many keys as rows; the cursor is last.
		return make([]string, len(list)), func(i int) error { return fn(list[i]) }, err
	})
}

func (s auditStore) Unlogged(ctx context.Context, limit int) ([]audit.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []audit.Entry
	err := s.d.readRows(ctx, qAuditUnlogged, []any{limit}, func(rows *sql.Rows) error {
		e, err := scanAudit(rows)
		out = append(out, e)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read unlogged audit entries: %w", err)
	}
	return out, nil
}

func (s auditStore) MarkLogged(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	list, err := json.Marshal(seqs)
	if err == nil {
		_, err = s.d.exec(ctx, qAuditMark, string(list))
	}
	if err != nil {
		return fmt.Errorf("mark audit entries logged: %w", err)
	}
	return nil
}
