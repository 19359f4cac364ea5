package demographics

import (
	"context"
	"fmt"
)

// Entry is one user of a bulk import.
type Entry struct {
	UserID  string
	Subject *Subject
}

const importBatch = 5000

// Import records users who have no record yet (a bulk load of demo data).
// Call Rebuild after the last batch: the cells are built from the records,
// so a crash in between leaves cells that Rebuild or Reconcile repairs.
// Like Rebuild, it is for a store without live traffic.
func (s *Service) Import(ctx context.Context, entries []Entry) error {
	docs := make([]Member, 0, importBatch)
	flush := func() error {
		if len(docs) == 0 {
			return nil
		}
		if err := s.store.ImportMembers(ctx, docs); err != nil {
			return fmt.Errorf("import members: %w", err)
		}
		docs = docs[:0]
		return nil
	}
	for _, e := range entries {
		if e.Subject == nil {
			continue
		}
		t := TupleOf(e.Subject)
		sealed, err := s.sealTuple(e.UserID, &t)
		if err != nil {
			return err
		}
		docs = append(docs, Member{UserID: e.UserID, Ver: 1, Tuple: sealed})
		if len(docs) == importBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Rebuild recomputes every cell from the member records and replaces the
// cells wholesale. It is the fast path for bulk loads and is not safe
// beside live traffic: a Sync between reading the records and replacing
// the cells would be lost. Use Reconcile on a live store.
func (s *Service) Rebuild(ctx context.Context) error {
	s.reconcile.Lock()
	defer s.reconcile.Unlock()
	counts := newTally()
	var pending []*Member
	err := s.store.EachMember(ctx, func(m *Member) error {
		sealed := m.Tuple
		if m.Pending != nil {
			pending = append(pending, m)
			sealed = m.Pending.To
		}
		t, err := s.openTuple(m.UserID, sealed)
		if err != nil || t == nil {
			return err
		}
		counts.add(t)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read members: %w", err)
	}
	// Pending moves were counted at their target: settle them to match.
	for _, m := range pending {
		if _, err := s.store.SettleMove(ctx, m.UserID, m.Pending.Op, m.Pending.To); err != nil {
			return fmt.Errorf("settle member %s: %w", m.UserID, err)
		}
	}
	for mask := range numMasks {
		byID := counts.byID(s.cells, mask)
		cells := make([]CellRecord, 0, len(byID))
		for cid, e := range byID {
			sealed, err := s.cells.seal(cid, e.values)
			if err != nil {
				return err
			}
			cells = append(cells, CellRecord{ID: cid, N: e.n, Ver: 1, Values: sealed})
		}
		if err := s.store.ReplaceCells(ctx, mask, cells); err != nil {
			return fmt.Errorf("rebuild %s: %w", maskName(mask), err)
		}
	}
	return nil
}
