package demographics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/consentgraph/consentgraph/internal/ordered"
)

// ReconcileReport says what a reconciliation found and repaired.
type ReconcileReport struct {
	StartedAt time.Time
	Duration  time.Duration
	// UsersCounted is how many users count (have not withdrawn).
	UsersCounted int
	// MembersRepaired is how many users were counted with stale values
	// (a change whose follow-up update never ran) and were moved.
	MembersRepaired int
	// CellsChecked is how many cells were compared with the recount.
	CellsChecked int
	// CellsRepaired is how many of them held a wrong count and were fixed.
	CellsRepaired int
	// Drift is the sum over the repaired cells of |stored - recounted|.
	Drift int64
	// CellsSkipped were changing while they were checked; the next run
	// (requested right away) checks them again.
	CellsSkipped int
}

// Reconcile recounts the aggregates from the users and repairs what
// differs, in two steps:
//
//  1. Every user's recorded tuple is compared with their current profile and
//     consent (one pass over the users), and stale ones are moved with Sync.
//  2. The cells are recounted from the recorded tuples and repaired where
//     they differ. Cells are read before and after the records; a cell is
//     repaired only if it did not change in between and no move touching it
//     was in progress, and only by an update conditional on its version, so
//     a concurrent Sync is never overwritten (see the package comment).
func (s *Service) Reconcile(ctx context.Context) (*ReconcileReport, error) {
	s.reconcile.Lock()
	defer s.reconcile.Unlock()
	rep := &ReconcileReport{StartedAt: s.now()}
	requested, err := s.dirtySince(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.syncAll(ctx, rep); err != nil {
		return nil, err
	}
	if err := s.repairCells(ctx, rep); err != nil {
		return nil, err
	}
	if rep.CellsSkipped > 0 {
		if err := s.markDirty(ctx); err != nil {
			return nil, err
		}
	} else if err := s.clearDirty(ctx, requested); err != nil {
		return nil, err
	}
	rep.Duration = s.now().Sub(rep.StartedAt)
	if rep.MembersRepaired > 0 || rep.CellsRepaired > 0 {
		s.log.WarnContext(ctx, "demographics reconciliation repaired drift", "members", rep.MembersRepaired,
			"cells", rep.CellsRepaired, "drift", rep.Drift, "skipped", rep.CellsSkipped)
	}
	return rep, nil
}

// ReconcileIfDirty runs a reconciliation if one was requested (after a
// recovered or interrupted move); the periodic job calls it often.
func (s *Service) ReconcileIfDirty(ctx context.Context) (*ReconcileReport, error) {
	since, err := s.dirtySince(ctx)
	if err != nil || since.IsZero() {
		return nil, err
	}
	return s.Reconcile(ctx)
}

// syncAll compares every user's record with their current tuple in one
// ordered pass over both (memory stays flat at any number of users) and
// moves the stale ones.
func (s *Service) syncAll(ctx context.Context, rep *ReconcileReport) error {
	members := ordered.Follow(ctx, func(m *Member) string { return m.UserID }, func(ctx context.Context, yield func(*Member) error) error {
		return s.store.EachMember(ctx, yield)
	})
	var stale []string
	gone := func(m *Member) { stale = append(stale, m.UserID) } // counted, but no longer counts
	err := s.opts.Source.Each(ctx, func(id string, subj *Subject) error {
		rep.UsersCounted++
		m, ok := members.SeekSkipping(id, gone)
		if !ok || m.Pending != nil {
			stale = append(stale, id)
			return nil
		}
		cur, err := s.openTuple(id, m.Tuple)
		if err != nil {
			return err
		}
		t := TupleOf(subj)
		if !sameTuple(cur, &t) {
			stale = append(stale, id)
		}
		return nil
	})
	if rerr := members.Rest(gone); err == nil && rerr != nil {
		err = fmt.Errorf("read members: %w", rerr)
	}
	if err != nil {
		return fmt.Errorf("read users: %w", err)
	}
	for _, id := range stale {
		moved, err := s.sync(ctx, id, false)
		switch {
		case errors.Is(err, errBusy):
			rep.CellsSkipped++
		case err != nil:
			return err
		case moved:
			rep.MembersRepaired++
		}
	}
	return nil
}

func (s *Service) repairCells(ctx context.Context, rep *ReconcileReport) error {
	before, err := s.cells.snapshot(ctx)
	if err != nil {
		return err
	}
	counted, moving, _, err := s.countMembers(ctx)
	if err != nil {
		return err
	}
	after, err := s.cells.snapshot(ctx)
	if err != nil {
		return err
	}
	for mask := range numMasks {
		expected, busy := counted.byID(s.cells, mask), moving.byID(s.cells, mask)
		ids := map[string]bool{}
		for id := range after[mask] {
			ids[id] = true
		}
		for id := range expected {
			ids[id] = true
		}
		for id := range ids {
			rep.CellsChecked++
			var want int64
			if e := expected[id]; e != nil {
				want = e.n
			}
			got, exists := after[mask][id]
			if exists && got.N == want || !exists && want == 0 {
				continue
			}
			old, existed := before[mask][id]
			if busy[id] != nil || exists != existed || exists && old.Ver != got.Ver {
				rep.CellsSkipped++
				continue
			}
			var ok bool
			if exists {
				ok, err = s.cells.setIfUnchanged(ctx, mask, id, got.Ver, want)
			} else {
				ok, err = s.cells.create(ctx, mask, expected[id].values, want)
			}
			if err != nil {
				return err
			}
			if !ok {
				rep.CellsSkipped++
				continue
			}
			rep.CellsRepaired++
			rep.Drift += abs(got.N - want)
		}
	}
	return nil
}

// countMembers tallies the tuples the member records count (counted) and
// those of moves in flight (moving: their cells are neither here nor there
// yet), and says how many records it read and how many were moving. The
// records are counted as they stream by: memory grows with the number of
// cells, not of users.
func (s *Service) countMembers(ctx context.Context) (counted, moving *tally, n [2]int, err error) {
	counted, moving = newTally(), newTally()
	err = s.store.EachMember(ctx, func(m *Member) error {
		n[0]++
		if m.Pending != nil {
			n[1]++
			for _, sealed := range [][]byte{m.Pending.From, m.Pending.To} {
				t, err := s.openTuple(m.UserID, sealed)
				if err != nil {
					return err
				}
				if t != nil {
					moving.add(t)
				}
			}
			return nil
		}
		t, err := s.openTuple(m.UserID, m.Tuple)
		if err != nil || t == nil {
			return err
		}
		counted.add(t)
		return nil
	})
	if err != nil {
		return nil, nil, n, fmt.Errorf("read members: %w", err)
	}
	return counted, moving, n, nil
}

// RecountReport says how the stored cells compare with a recount of the
// member records.
type RecountReport struct {
	// Members is how many member records were counted; Moving how many of
	// them had a move in flight.
	Members, Moving int
	// CellsChecked is how many cells were compared (stored ones and
	// recounted ones, each once).
	CellsChecked int
	// CellsMoving were touched by a move in flight and not compared: the
	// move's owner or a reconciliation settles them.
	CellsMoving int
	// Wrong lists the cells whose stored count differs from the recount.
	Wrong []CellMismatch
}

// CellMismatch is a cell whose stored count is not the recount's.
type CellMismatch struct {
	// Subset names the cell's dimensions by their initials ("AC": age band
	// and country; "total").
	Subset string
	ID     string
	// Stored and Recounted are the counts; a missing cell counts 0.
	Stored, Recounted int64
}

// Recount counts the member records again and compares the stored cells
// with the result, writing nothing: where Reconcile repairs a live store,
// Recount checks one (copy-store checks a copy with it). Cells a move in
// flight touches are left out of the comparison.
func (s *Service) Recount(ctx context.Context) (*RecountReport, error) {
	counted, moving, n, err := s.countMembers(ctx)
	if err != nil {
		return nil, err
	}
	stored, err := s.cells.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	rep := &RecountReport{Members: n[0], Moving: n[1]}
	for mask := range numMasks {
		expected, busy := counted.byID(s.cells, mask), moving.byID(s.cells, mask)
		ids := make(map[string]bool, len(stored[mask])+len(expected))
		for id := range stored[mask] {
			ids[id] = true
		}
		for id := range expected {
			ids[id] = true
		}
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			if busy[id] != nil {
				rep.CellsMoving++
				continue
			}
			rep.CellsChecked++
			var want int64
			if e := expected[id]; e != nil {
				want = e.n
			}
			if got := stored[mask][id].N; got != want {
				rep.Wrong = append(rep.Wrong, CellMismatch{Subset: maskName(mask), ID: id, Stored: got, Recounted: want})
			}
		}
	}
	return rep, nil
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func (s *Service) dirtySince(ctx context.Context) (time.Time, error) {
	t, err := s.store.DirtySince(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("read reconciliation state: %w", err)
	}
	return t, nil
}

// clearDirty clears the request if nobody renewed it since it was read.
func (s *Service) clearDirty(ctx context.Context, since time.Time) error {
	if since.IsZero() {
		return nil
	}
	if err := s.store.ClearDirty(ctx, since); err != nil {
		return fmt.Errorf("clear reconciliation request: %w", err)
	}
	return nil
}
