package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/demographics"
)

// demoStore implements demographics.Store.
type demoStore struct{ d *DB }

const memberCols = `user_id, ver, tuple, pending_op, pending_since, pending_from, pending_to`

var (
	qMember       = sqlq(`SELECT ` + memberCols + ` FROM members WHERE user_id = ?`)
	qMembersAfter = sqlq(`SELECT ` + memberCols + ` FROM members WHERE user_id > ? ORDER BY user_id LIMIT ?`)
	qBeginFirst   = sqlq(`INSERT INTO members (` + memberCols + `) VALUES (?, 1, NULL, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING`)
	qBeginMove    = sqlq(`UPDATE members SET pending_op = ?, pending_since = ?, pending_from = ?, pending_to = ?, ver = ver + 1
		WHERE user_id = ? AND ver = ?`)
	qSettleMove = sqlq(`UPDATE members SET tuple = ?, pending_op = NULL, pending_since = NULL, pending_from = NULL,
		pending_to = NULL, ver = ver + 1 WHERE user_id = ? AND pending_op = ?`)
	qSettleDelete = sqlq(`DELETE FROM members WHERE user_id = ? AND pending_op = ?`)
	qDeleteMember = sqlq(`DELETE FROM members WHERE user_id = ? AND ver = ? AND pending_op IS NULL`)
	qImportMember = sqlq(`INSERT INTO members (` + memberCols + `) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING`)

	qAddToCell = sqlq(`INSERT INTO cells (mask, id, n, ver, vals) VALUES (?, ?, ?, 1, ?)
		ON CONFLICT (mask, id) DO UPDATE SET n = n + excluded.n, ver = ver + 1`)
	qCellCounts = sqlq(`SELECT id, n, ver FROM cells WHERE mask = ? ORDER BY id`)
	qCellValues = sqlq(`SELECT id, vals FROM cells WHERE mask = ? AND id IN (SELECT value FROM json_each(?))`)
	qSetCell    = sqlq(`UPDATE cells SET n = ?, ver = ver + 1 WHERE mask = ? AND id = ? AND ver = ?`)
	qCreateCell = sqlq(`INSERT INTO cells (mask, id, n, ver, vals) VALUES (?, ?, ?, ?, ?) ON CONFLICT (mask, id) DO NOTHING`)
	qInsertCell = sqlq(`INSERT INTO cells (mask, id, n, ver, vals) VALUES (?, ?, ?, ?, ?)`)
	qClearCells = sqlq(`DELETE FROM cells WHERE mask = ?`)

	qDirtySince = sqlq(`SELECT dirty_since FROM demographics_state WHERE id = 1`)
	qMarkDirty  = sqlq(`INSERT INTO demographics_state (id, dirty_since) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET dirty_since = excluded.dirty_since`)
	qClearDirty = sqlq(`UPDATE demographics_state SET dirty_since = NULL WHERE id = 1 AND dirty_since = ?`)
)

func scanMember(sc scanner) (*demographics.Member, error) {
	var m demographics.Member
	var op sql.NullString
	var since sql.NullInt64
	var from, to []byte
	if err := sc.Scan(&m.UserID, &m.Ver, &m.Tuple, &op, &since, &from, &to); err != nil {
		return nil, err
	}
	if op.Valid {
		m.Pending = &demographics.Pending{Op: op.String, Since: fromMS(since.Int64), From: from, To: to}
	}
	return &m, nil
}

func (s demoStore) Member(ctx context.Context, userID string) (*demographics.Member, error) {
	var out *demographics.Member
	err := s.d.readRows(ctx, qMember, []any{userID}, func(rows *sql.Rows) error {
		m, err := scanMember(rows)
		out = m
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read member: %w", err)
	}
	return out, nil
}

func (s demoStore) EachMember(ctx context.Context, fn func(m *demographics.Member) error) error {
	return s.d.each(ctx, func(after string) ([]string, func(int) error, error) {
		var list []*demographics.Member
		err := s.d.scanRows(ctx, qMembersAfter, []any{after, eachChunk}, func(rows *sql.Rows) error {
			m, err := scanMember(rows)
			list = append(list, m)
			return err
		})
		keys := make([]string, len(list))
		for i, m := range list {
			if m != nil {
				keys[i] = m.UserID
			}
		}
		return keys, func(i int) error { return fn(list[i]) }, err
	})
}

func (s demoStore) BeginMove(ctx context.Context, userID string, ver int64, p demographics.Pending) (bool, error) {
	var n int64
	var err error
	if ver == 0 {
		n, err = s.d.exec(ctx, qBeginFirst, userID, p.Op, ms(p.Since), blob(p.From), blob(p.To))
	} else {
		n, err = s.d.exec(ctx, qBeginMove, p.Op, ms(p.Since), blob(p.From), blob(p.To), userID, ver)
	}
	if err != nil {
		return false, fmt.Errorf("begin move: %w", err)
	}
	return n == 1, nil
}

func (s demoStore) SettleMove(ctx context.Context, userID, op string, to []byte) (bool, error) {
	var n int64
	var err error
	if to == nil {
		n, err = s.d.exec(ctx, qSettleDelete, userID, op)
	} else {
		n, err = s.d.exec(ctx, qSettleMove, to, userID, op)
	}
	if err != nil {
		return false, fmt.Errorf("settle move: %w", err)
	}
	return n == 1, nil
}

func (s demoStore) DeleteMember(ctx context.Context, userID string, ver int64) (bool, error) {
	n, err := s.d.exec(ctx, qDeleteMember, userID, ver)
	if err != nil {
		return false, fmt.Errorf("delete member: %w", err)
	}
	return n == 1, nil
}

func (s demoStore) ImportMembers(ctx context.Context, members []demographics.Member) error {
	if len(members) == 0 {
		return nil
	}
	err := s.d.write(ctx, func(t *tx) error {
		for _, i := range keyOrder(len(members), func(i int) string { return members[i].UserID }) {
			m := &members[i]
			var op, since, from, to any
			if p := m.Pending; p != nil {
				op, since, from, to = p.Op, ms(p.Since), blob(p.From), blob(p.To)
			}
			if _, err := t.exec(qImportMember, m.UserID, m.Ver, blob(m.Tuple), op, since, from, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import members: %w", err)
	}
	return nil
}

// AddToCells applies the whole batch in one transaction (stronger than the
// port asks: a crash never leaves half a move in the cells).
func (s demoStore) AddToCells(ctx context.Context, deltas []demographics.CellDelta) error {
	if len(deltas) == 0 {
		return nil
	}
	err := s.d.write(ctx, func(t *tx) error {
		for _, c := range deltas {
			if _, err := t.exec(qAddToCell, c.Mask, c.ID, c.Delta, blob(c.Values)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add to cells: %w", err)
	}
	return nil
}

func (s demoStore) CellCounts(ctx context.Context, mask int) ([]demographics.CellCount, error) {
	var out []demographics.CellCount
	err := s.d.readRows(ctx, qCellCounts, []any{mask}, func(rows *sql.Rows) error {
		var c demographics.CellCount
		err := rows.Scan(&c.ID, &c.N, &c.Ver)
		out = append(out, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read cell counts: %w", err)
	}
	return out, nil
}

func (s demoStore) CellValues(ctx context.Context, mask int, ids []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("read cell values: %w", err)
	}
	err = s.d.readRows(ctx, qCellValues, []any{mask, string(list)}, func(rows *sql.Rows) error {
		var id string
		var v []byte
		err := rows.Scan(&id, &v)
		out[id] = v
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read cell values: %w", err)
	}
	return out, nil
}

func (s demoStore) SetCellIfUnchanged(ctx context.Context, mask int, id string, ver, n int64) (bool, error) {
	c, err := s.d.exec(ctx, qSetCell, n, mask, id, ver)
	if err != nil {
		return false, fmt.Errorf("set cell: %w", err)
	}
	return c == 1, nil
}

func (s demoStore) CreateCell(ctx context.Context, mask int, c demographics.CellRecord) (bool, error) {
	n, err := s.d.exec(ctx, qCreateCell, mask, c.ID, c.N, c.Ver, blob(c.Values))
	if err != nil {
		return false, fmt.Errorf("create cell: %w", err)
	}
	return n == 1, nil
}

func (s demoStore) ReplaceCells(ctx context.Context, mask int, cells []demographics.CellRecord) error {
	err := s.d.write(ctx, func(t *tx) error {
		if _, err := t.exec(qClearCells, mask); err != nil {
			return err
		}
		for _, c := range cells {
			if _, err := t.exec(qInsertCell, mask, c.ID, c.N, c.Ver, blob(c.Values)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replace cells: %w", err)
	}
	return nil
}

func (s demoStore) DirtySince(ctx context.Context) (time.Time, error) {
	var v sql.NullInt64
	if _, err := s.d.readRow(ctx, qDirtySince, nil, &v); err != nil {
		return time.Time{}, fmt.Errorf("read reconciliation request: %w", err)
	}
	if !v.Valid {
		return time.Time{}, nil
	}
	return fromMS(v.Int64), nil
}

func (s demoStore) MarkDirty(ctx context.Context, at time.Time) error {
	if _, err := s.d.exec(ctx, qMarkDirty, ms(at)); err != nil {
		return fmt.Errorf("request reconciliation: %w", err)
	}
	return nil
}

func (s demoStore) ClearDirty(ctx context.Context, since time.Time) error {
	if _, err := s.d.exec(ctx, qClearDirty, ms(since)); err != nil {
		return fmt.Errorf("clear reconciliation request: %w", err)
	}
	return nil
}
