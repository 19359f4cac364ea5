package demographics_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// Recount finds a corrupted and a missing cell, names them with both
// counts, and repairs nothing; cells a move in flight touches are left out.
func TestRecountChecksWithoutWriting(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)}
		src := newFakeSource()
		s := newTestService(t, b, src, clk, demographics.DefaultK)
		for i := range 5 {
			src.set(fmt.Sprint(i), demographics.Subject{BirthYear: ptr(1990), Country: ptr("DE"), SignedUp: clk.Now()}, true)
			if err := s.Sync(ctx, fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		rep, err := s.Recount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Members != 5 || rep.Moving != 0 || rep.CellsChecked != demographics.NumMasks || len(rep.Wrong) != 0 || rep.CellsMoving != 0 {
			t.Fatalf("recount of intact cells: %+v", rep)
		}

		id, total := corruptCells(t, b, s)
		for range 2 { // the second run sees the same: the first wrote nothing
			rep, err = s.Recount(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := map[demographics.CellMismatch]bool{
				{Subset: "AC", ID: id, Stored: 12, Recounted: 5}:      true,
				{Subset: "total", ID: total, Stored: 0, Recounted: 5}: true,
			}
			if len(rep.Wrong) != 2 || !want[rep.Wrong[0]] || !want[rep.Wrong[1]] {
				t.Fatalf("recount of corrupted cells: %+v", rep.Wrong)
			}
		}
		if d := diff(src.recount(), stored(t, b, s)); d == "" {
			t.Fatal("the corruption is gone: Recount repaired it")
		}

		// A move stopped half-way: its cells are neither right nor wrong yet.
		if _, err := s.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		src.set("0", demographics.Subject{BirthYear: ptr(1970), Country: ptr("FR"), SignedUp: clk.Now()}, true)
		demographics.SetApplyCells(s, func(ctx context.Context, deltas []demographics.CellDelta) error {
			if err := b.Demographics().AddToCells(ctx, deltas[:3]); err != nil {
				return err
			}
			return errCrash
		})
		if err := s.Sync(ctx, "0"); !errors.Is(err, errCrash) {
			t.Fatalf("Sync = %v, want the simulated crash", err)
		}
		demographics.SetApplyCells(s, nil)
		rep, err = s.Recount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Moving != 1 || rep.CellsMoving == 0 || len(rep.Wrong) != 0 {
			t.Fatalf("recount beside a move in flight: %+v", rep)
		}
	})
}
