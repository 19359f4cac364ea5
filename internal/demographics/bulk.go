package demographics

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
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
	docs := make([]any, 0, importBatch)
	flush := func() error {
		if len(docs) == 0 {
			return nil
		}
		if _, err := s.members.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
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
		docs = append(docs, memberDoc{ID: e.UserID, Ver: 1, T: sealed})
		if len(docs) == importBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Rebuild recomputes every cell from the member records and replaces the
// cell collections wholesale. It is the fast path for bulk loads (on the
// embedded store, updating one document costs a scan of its collection,
// inserting many costs almost nothing) and is not safe beside live traffic:
// a Sync between the drop and the insert would be lost. Use Reconcile on a
// live store.
func (s *Service) Rebuild(ctx context.Context) error {
	s.reconcile.Lock()
	defer s.reconcile.Unlock()
	members, err := s.loadAllMembers(ctx)
	if err != nil {
		return err
	}
	var counts [numMasks]map[string]*cellDoc
	var values [numMasks]map[string][]string
	for mask := range numMasks {
		counts[mask], values[mask] = map[string]*cellDoc{}, map[string][]string{}
	}
	for id, m := range members {
		sealed := m.T
		if m.Pending != nil {
			sealed = m.Pending.To
		}
		t, err := s.openTuple(id, sealed)
		if err != nil {
			return err
		}
		if t == nil {
			continue
		}
		for mask := range numMasks {
			v := t.project(mask)
			cid := s.cells.id(mask, v)
			c := counts[mask][cid]
			if c == nil {
				c = &cellDoc{ID: cid, Ver: 1}
				counts[mask][cid] = c
				values[mask][cid] = v
			}
			c.N++
		}
	}
	// Pending moves were counted at their target: settle them to match.
	for id, m := range members {
		if m.Pending == nil {
			continue
		}
		filter := bson.D{{Key: "_id", Value: id}, {Key: "pending.op", Value: m.Pending.Op}}
		if len(m.Pending.To) == 0 {
			_, err = s.members.DeleteOne(ctx, filter)
		} else {
			_, err = s.members.UpdateOne(ctx, filter, bson.D{
				{Key: "$set", Value: bson.D{{Key: "t", Value: m.Pending.To}}},
				{Key: "$unset", Value: bson.D{{Key: "pending", Value: ""}}},
			})
		}
		if err != nil {
			return fmt.Errorf("settle member %s: %w", id, err)
		}
	}
	for mask := range numMasks {
		docs := make([]any, 0, len(counts[mask]))
		for cid, c := range counts[mask] {
			if c.V, err = s.cells.seal(cid, values[mask][cid]); err != nil {
				return err
			}
			docs = append(docs, c)
		}
		coll := s.cells.coll(mask)
		if err := coll.Drop(ctx); err != nil {
			return fmt.Errorf("rebuild %s: %w", maskName(mask), err)
		}
		for len(docs) > 0 {
			n := min(len(docs), importBatch)
			if _, err := coll.InsertMany(ctx, docs[:n]); err != nil {
				return fmt.Errorf("rebuild %s: %w", maskName(mask), err)
			}
			docs = docs[n:]
		}
	}
	return nil
}
