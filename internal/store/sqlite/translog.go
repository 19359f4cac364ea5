package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/translog"
)

// logStore implements translog.Store. Append is one transaction, so on
// this store a crash never leaves leaves beyond the head; the appender's
// recovery is for stores without transactions.
type logStore struct{ d *DB }

const leafCols = `idx, item, data, hash, at`

var (
	qLogHead       = sqlq(`SELECT size, root, at FROM log_head WHERE id = 1`)
	qLogLeavesFrom = sqlq(`SELECT ` + leafCols + ` FROM log_leaves WHERE idx >= ? ORDER BY idx LIMIT ?`)
	qLogLeavesOf   = sqlq(`SELECT ` + leafCols + ` FROM log_leaves WHERE item IN (SELECT value FROM json_each(?))`)
	qLogItemRange  = sqlq(`SELECT ` + leafCols + ` FROM log_leaves WHERE item >= ? AND item < ? ORDER BY item`)
	qLogLeafHashes = sqlq(`SELECT idx, hash FROM log_leaves WHERE idx IN (SELECT value FROM json_each(?))`)
	qLogNodes      = sqlq(`SELECT id, hash FROM log_nodes WHERE id IN (SELECT value FROM json_each(?))`)
	// A leaf goes in only while its index and its item are both free.
	qLogInsertLeaf = sqlq(`INSERT INTO log_leaves (` + leafCols + `) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	qLogInsertNode = sqlq(`INSERT INTO log_nodes (id, hash) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`)
	qLogSetHead    = sqlq(`INSERT INTO log_head (id, size, root, at) VALUES (1, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root, at = excluded.at WHERE excluded.size > log_head.size`)
	qLogLease = sqlq(`INSERT INTO log_lease (id, owner, until) VALUES (1, ?1, ?2)
		ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, until = excluded.until
		WHERE log_lease.owner = excluded.owner OR log_lease.until <= ?3`)
)

func scanLeaf(sc scanner) (translog.Leaf, error) {
	var l translog.Leaf
	var at int64
	err := sc.Scan(&l.Index, &l.Item, &l.Data, &l.Hash, &at)
	l.At = fromMS(at)
	return l, err
}

func (s logStore) Head(ctx context.Context) (translog.Head, error) {
	var h translog.Head
	var at int64
	if _, err := s.d.readRow(ctx, qLogHead, nil, &h.Size, &h.Root, &at); err != nil {
		return translog.Head{}, fmt.Errorf("read log head: %w", err)
	}
	h.At = fromMS(at)
	return h, nil
}

func (s logStore) leaves(ctx context.Context, q *query, args ...any) ([]translog.Leaf, error) {
	var out []translog.Leaf
	err := s.d.readRows(ctx, q, args, func(rows *sql.Rows) error {
		l, err := scanLeaf(rows)
		out = append(out, l)
		return err
	})
	return out, err
}

func (s logStore) Leaves(ctx context.Context, from int64, limit int) ([]translog.Leaf, error) {
	if limit <= 0 {
		return nil, nil
	}
	out, err := s.leaves(ctx, qLogLeavesFrom, from, limit)
	if err != nil {
		return nil, fmt.Errorf("read log leaves: %w", err)
	}
	return out, nil
}

func (s logStore) LeavesByItem(ctx context.Context, items []string) ([]translog.Leaf, error) {
	if len(items) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(items)
	if err != nil {
		return nil, fmt.Errorf("read log leaves by item: %w", err)
	}
	out, err := s.leaves(ctx, qLogLeavesOf, string(list))
	if err != nil {
		return nil, fmt.Errorf("read log leaves by item: %w", err)
	}
	return out, nil
}

func (s logStore) ItemLeaves(ctx context.Context, prefix string) ([]translog.Leaf, error) {
	lo, hi, ok := prefixRange(prefix)
	if !ok {
		return nil, fmt.Errorf("read log leaves of %q: not a prefix of item names", prefix)
	}
	out, err := s.leaves(ctx, qLogItemRange, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read log leaves of %q: %w", prefix, err)
	}
	return out, nil
}

// prefixRange turns a prefix into the bytewise range [lo, hi) of the
// strings that start with it; ok is false when no such hi exists (a prefix
// of nothing but 0xff bytes, which item names never are).
func prefixRange(prefix string) (lo, hi string, ok bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return prefix, string(b[:i+1]), true
		}
	}
	return prefix, "", false
}

func (s logStore) Nodes(ctx context.Context, ids []translog.NodeID) ([]translog.Node, error) {
	leaves, inner := translog.SplitNodeIDs(ids)
	var out []translog.Node
	read := func(q *query, keys []int64, id func(int64) translog.NodeID) error {
		if len(keys) == 0 {
			return nil
		}
		list, err := json.Marshal(keys)
		if err != nil {
			return err
		}
		return s.d.readRows(ctx, q, []any{string(list)}, func(rows *sql.Rows) error {
			var k int64
			var h []byte
			if err := rows.Scan(&k, &h); err != nil {
				return err
			}
			out = append(out, translog.Node{ID: id(k), Hash: h})
			return nil
		})
	}
	if err := read(qLogLeafHashes, leaves, func(i int64) translog.NodeID { return translog.NodeID{Index: i} }); err != nil {
		return nil, fmt.Errorf("read log leaf hashes: %w", err)
	}
	if err := read(qLogNodes, inner, translog.NodeIDOfKey); err != nil {
		return nil, fmt.Errorf("read log nodes: %w", err)
	}
	return out, nil
}

func (s logStore) Append(ctx context.Context, b translog.Batch) (int, error) {
	added := 0
	err := s.d.write(ctx, func(t *tx) error {
		for _, l := range b.Leaves {
			n, err := t.exec(qLogInsertLeaf, l.Index, l.Item, l.Data, l.Hash, ms(l.At))
			if err != nil {
				return fmt.Errorf("insert leaf %d: %w", l.Index, err)
			}
			if n == 0 {
				return nil // the leaves so far commit; nodes and head wait
			}
			added++
		}
		for _, n := range b.Nodes {
			if n.ID.Level == 0 {
				return fmt.Errorf("node %s: leaves are not stored as nodes", n.ID)
			}
			if _, err := t.exec(qLogInsertNode, n.ID.Key(), n.Hash); err != nil {
				return fmt.Errorf("insert node %s: %w", n.ID, err)
			}
		}
		if b.Head.Size > 0 {
			if _, err := t.exec(qLogSetHead, b.Head.Size, b.Head.Root, ms(b.Head.At)); err != nil {
				return fmt.Errorf("set head: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("append to the log: %w", err)
	}
	return added, nil
}

func (s logStore) Lease(ctx context.Context, owner string, now, until time.Time) (bool, error) {
	n, err := s.d.exec(ctx, qLogLease, owner, ms(until), ms(now))
	if err != nil {
		return false, fmt.Errorf("take the log lease: %w", err)
	}
	return n == 1, nil
}
