package demographics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
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

func (s *Service) syncAll(ctx context.Context, rep *ReconcileReport) error {
	members, err := s.loadAllMembers(ctx)
	if err != nil {
		return err
	}
	truth := map[string]Tuple{}
	err = s.opts.Source.Each(ctx, func(id string, subj *Subject) error {
		truth[id] = TupleOf(subj)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read users: %w", err)
	}
	rep.UsersCounted = len(truth)
	var stale []string
	for id, t := range truth {
		m := members[id]
		if m == nil || m.Pending != nil {
			stale = append(stale, id)
			continue
		}
		cur, err := s.openTuple(id, m.T)
		if err != nil {
			return err
		}
		if !sameTuple(cur, &t) {
			stale = append(stale, id)
		}
	}
	for id := range members {
		if _, ok := truth[id]; !ok {
			stale = append(stale, id)
		}
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
	members, err := s.loadAllMembers(ctx)
	if err != nil {
		return err
	}
	after, err := s.cells.snapshot(ctx)
	if err != nil {
		return err
	}
	var expected, busy [numMasks]map[string]int64
	var values [numMasks]map[string][]string
	for mask := range numMasks {
		expected[mask], busy[mask], values[mask] = map[string]int64{}, map[string]int64{}, map[string][]string{}
	}
	for id, m := range members {
		if m.Pending != nil {
			// A move in flight: its cells are neither here nor there yet.
			for _, sealed := range [][]byte{m.Pending.From, m.Pending.To} {
				t, err := s.openTuple(id, sealed)
				if err != nil {
					return err
				}
				if t == nil {
					continue
				}
				for mask := range numMasks {
					busy[mask][s.cells.id(mask, t.project(mask))]++
				}
			}
			continue
		}
		t, err := s.openTuple(id, m.T)
		if err != nil {
			return err
		}
		if t == nil {
			continue
		}
		for mask := range numMasks {
			v := t.project(mask)
			cid := s.cells.id(mask, v)
			expected[mask][cid]++
			if _, ok := values[mask][cid]; !ok {
				values[mask][cid] = v
			}
		}
	}
	for mask := range numMasks {
		ids := map[string]bool{}
		for id := range after[mask] {
			ids[id] = true
		}
		for id := range expected[mask] {
			ids[id] = true
		}
		for id := range ids {
			rep.CellsChecked++
			want := expected[mask][id]
			got, exists := after[mask][id]
			if exists && got.N == want || !exists && want == 0 {
				continue
			}
			old, existed := before[mask][id]
			if busy[mask][id] > 0 || exists != existed || exists && old.Ver != got.Ver {
				rep.CellsSkipped++
				continue
			}
			var ok bool
			if exists {
				ok, err = s.cells.setIfUnchanged(ctx, mask, id, got.Ver, want)
			} else {
				ok, err = s.cells.create(ctx, mask, values[mask][id], want)
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

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

type stateDoc struct {
	DirtySince time.Time `bson:"dirtySince,omitempty"`
}

func (s *Service) dirtySince(ctx context.Context) (time.Time, error) {
	var d stateDoc
	err := s.state.FindOne(ctx, bson.D{{Key: "_id", Value: stateID}}).Decode(&d)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return time.Time{}, fmt.Errorf("read reconciliation state: %w", err)
	}
	return d.DirtySince, nil
}

// clearDirty clears the request if nobody renewed it since it was read.
func (s *Service) clearDirty(ctx context.Context, since time.Time) error {
	if since.IsZero() {
		return nil
	}
	_, err := s.state.UpdateOne(ctx, bson.D{{Key: "_id", Value: stateID}, {Key: "dirtySince", Value: since}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "dirtySince", Value: ""}}}})
	if err != nil {
		return fmt.Errorf("clear reconciliation request: %w", err)
	}
	return nil
}
