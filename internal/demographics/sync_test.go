package demographics_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

var (
	countries = []string{"DE", "FR", "NZ"}
	genders   = []string{"FEMALE", "MALE", "NON_BINARY"}
	languages = []string{"de", "en"}
)

// randomSubject gives each dimension a small range, with gaps, so that
// cells are shared and some values are UNKNOWN.
func randomSubject(r *rand.Rand, signedUp time.Time) demographics.Subject {
	s := demographics.Subject{SignedUp: signedUp}
	if r.IntN(4) > 0 {
		s.BirthYear = ptr(1950 + r.IntN(4)*15)
	}
	if r.IntN(4) > 0 {
		s.Country = ptr(countries[r.IntN(len(countries))])
	}
	if r.IntN(3) > 0 {
		s.Gender = ptr(genders[r.IntN(len(genders))])
	}
	if r.IntN(3) > 0 {
		s.Language = ptr(languages[r.IntN(len(languages))])
	}
	return s
}

// A random sequence of sign-ups, profile edits, withdrawals, re-grants and
// erasures, each followed by Sync (Leave for erasures, as the accounts hook
// does), leaves cells equal to a from-scratch recount.
func TestCellsEqualRecountAfterRandomChanges(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)}
		src := newFakeSource()
		s := newTestService(t, b, src, clk, demographics.DefaultK)
		r := rand.New(rand.NewPCG(1, 2))
		var ids []string
		counts := map[string]int{}
		for step := range 70 {
			var touched []string
			op := r.IntN(10)
			if len(ids) < 5 {
				op = 0
			}
			switch {
			case op <= 3: // sign-up
				id := fmt.Sprintf("u%03d", step)
				ids = append(ids, id)
				src.set(id, randomSubject(r, clk.Now().AddDate(0, -r.IntN(3), 0)), true)
				touched = append(touched, id)
				counts["signup"]++
			case op <= 6: // profile edit (one or all fields)
				id := ids[r.IntN(len(ids))]
				u, _ := src.get(id)
				next := randomSubject(r, u.subj.SignedUp)
				if r.IntN(2) == 0 { // only the country changes
					country := next.Country
					next = u.subj
					next.Country = country
				}
				src.set(id, next, u.counts)
				touched = append(touched, id)
				counts["edit"]++
			case op <= 8: // withdraw or grant again
				id := ids[r.IntN(len(ids))]
				u, _ := src.get(id)
				src.set(id, u.subj, !u.counts)
				touched = append(touched, id)
				counts["consent"]++
			default: // erasure
				i := r.IntN(len(ids))
				id := ids[i]
				if err := s.Leave(ctx, id); err != nil {
					t.Fatal(err)
				}
				src.remove(id)
				ids = append(ids[:i], ids[i+1:]...)
				touched = append(touched, id) // the Erased hook syncs once more
				counts["erase"]++
			}
			for _, id := range touched {
				if err := s.Sync(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Syncing users whose state did not change changes nothing.
		for _, id := range ids {
			if err := s.Sync(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if d := diff(src.recount(), stored(t, b, s)); d != "" {
			t.Fatalf("cells differ from the recount after %v:\n%s", counts, d)
		}
		if counts["erase"] == 0 || counts["consent"] == 0 || counts["edit"] == 0 {
			t.Fatalf("the sequence did not exercise every kind of change: %v", counts)
		}
		// Nothing is left in flight, and erased or withdrawn users have no record.
		n := members(t, b)
		if want := src.recount()[0][""]; want == 0 || n != want {
			t.Fatalf("%d member records, want %d (the counting users)", n, want)
		}
	})
}

var errCrash = errors.New("simulated crash")

// A move interrupted after any number of cell writes is recovered once it
// is abandoned: the record is reset and the requested reconciliation makes
// the cells right again. The user's next change works normally meanwhile.
func TestInterruptedMovesAreRepaired(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)}
		src := newFakeSource()
		s := newTestService(t, b, src, clk, demographics.DefaultK)
		r := rand.New(rand.NewPCG(3, 4))
		for i := range 6 {
			src.set(fmt.Sprintf("u%d", i), randomSubject(r, clk.Now()), true)
			if err := s.Sync(ctx, fmt.Sprintf("u%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		for _, stopAt := range []int{0, 1, 7, 31, 40} {
			id := fmt.Sprintf("u%d", stopAt%6)
			u, _ := src.get(id)
			next := randomSubject(r, u.subj.SignedUp)
			next.Country = ptr("XX") // always a change in many subsets
			src.set(id, next, true)
			// The crash comes before cell write number stopAt: the writes
			// before it are made one cell at a time, as a store without
			// transactions may (AddToCells is atomic per cell only).
			demographics.SetApplyCells(s, func(ctx context.Context, deltas []demographics.CellDelta) error {
				for n, d := range deltas {
					if n == stopAt {
						return errCrash
					}
					if err := b.Demographics().AddToCells(ctx, []demographics.CellDelta{d}); err != nil {
						return err
					}
				}
				return nil
			})
			if err := s.Sync(ctx, id); !errors.Is(err, errCrash) {
				t.Fatalf("stop at write %d: Sync = %v, want the simulated crash", stopAt, err)
			}
			demographics.SetApplyCells(s, nil)
			if stopAt > 0 && diff(src.recount(), stored(t, b, s)) == "" {
				t.Fatalf("stop at write %d left the cells right; the test proves nothing", stopAt)
			}
			// Until the move is abandoned, reconciliation must leave its cells alone.
			rep, err := s.Reconcile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.CellsRepaired != 0 || rep.CellsSkipped == 0 {
				t.Fatalf("reconciliation during a pending move: %+v", rep)
			}
			clk.advance(demographics.AbandonAfter + time.Second)
			// The user's next sync recovers the abandoned move and requests a repair.
			if err := s.Sync(ctx, id); err != nil {
				t.Fatal(err)
			}
			since, err := b.Demographics().DirtySince(ctx)
			if err != nil || since.IsZero() {
				t.Fatalf("no reconciliation requested after a recovery (%v)", err)
			}
			rep, err = s.ReconcileIfDirty(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if d := diff(src.recount(), stored(t, b, s)); d != "" {
				t.Fatalf("stop at write %d: after recovery and reconciliation (%+v):\n%s", stopAt, rep, d)
			}
			if stopAt > 0 && rep.Drift == 0 {
				t.Fatalf("stop at write %d: reconciliation reports no drift: %+v", stopAt, rep)
			}
			if since, _ := b.Demographics().DirtySince(ctx); !since.IsZero() {
				t.Fatal("the request is still pending after a clean reconciliation")
			}
		}
	})
}

// A change whose Sync never ran (a crash right after the profile write) is
// found by the reconciliation's pass over the users.
func TestReconcileCatchesMissedSyncs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)}
		src := newFakeSource()
		s := newTestService(t, b, src, clk, demographics.DefaultK)
		src.set("a", demographics.Subject{Country: ptr("DE"), SignedUp: clk.Now()}, true)
		src.set("b", demographics.Subject{Country: ptr("FR"), SignedUp: clk.Now()}, true)
		for _, id := range []string{"a", "b"} {
			if err := s.Sync(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		src.set("a", demographics.Subject{Country: ptr("NZ"), SignedUp: clk.Now()}, true)  // edited, never synced
		src.set("b", demographics.Subject{Country: ptr("FR"), SignedUp: clk.Now()}, false) // withdrew, never synced
		src.set("c", demographics.Subject{SignedUp: clk.Now()}, true)                      // signed up, never synced
		rep, err := s.Reconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.MembersRepaired != 3 || rep.UsersCounted != 2 {
			t.Fatalf("report %+v, want 3 members repaired and 2 users counted", rep)
		}
		if d := diff(src.recount(), stored(t, b, s)); d != "" {
			t.Fatalf("after reconciliation:\n%s", d)
		}
	})
}

// reconcileDemographics' engine: a hand-corrupted cell is found, reported
// and repaired; a hand-deleted one is recreated.
func TestReconcileRepairsCorruptedCells(t *testing.T) {
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
		corruptCells(t, b, s)
		if d := diff(src.recount(), stored(t, b, s)); d == "" {
			t.Fatal("corruption did not show; the test proves nothing")
		}
		rep, err := s.Reconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.CellsRepaired != 2 || rep.Drift != 7+5 || rep.CellsSkipped != 0 || rep.MembersRepaired != 0 {
			t.Fatalf("report %+v, want 2 cells repaired with drift 12", rep)
		}
		if d := diff(src.recount(), stored(t, b, s)); d != "" {
			t.Fatalf("after reconciliation:\n%s", d)
		}
		rep, err = s.Reconcile(ctx)
		if err != nil || rep.CellsRepaired != 0 || rep.Drift != 0 {
			t.Fatalf("second run: %+v, %v; want nothing to repair", rep, err)
		}
	})
}

// Reconciliations running beside a stream of changes never overwrite a
// change: once the changes stop, the cells equal the recount without any
// further repair.
func TestReconcileBesideConcurrentChanges(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)}
		src := newFakeSource()
		s := newTestService(t, b, src, clk, demographics.DefaultK)
		r := rand.New(rand.NewPCG(5, 6))
		for i := range 8 {
			src.set(fmt.Sprint(i), randomSubject(r, clk.Now()), true)
			if err := s.Sync(ctx, fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		// Reconciliations run until at least minRuns of them and minSyncs
		// changes ran side by side: how many changes fit beside one
		// reconciliation depends on the store (on SQLite a reconciliation
		// of eight users is quicker than one change).
		const minRuns, minSyncs = 4, 8
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var syncs atomic.Int64
		wg.Go(func() {
			wr := rand.New(rand.NewPCG(7, 8))
			for ; ; syncs.Add(1) {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprint(wr.IntN(8))
				src.set(id, randomSubject(wr, clk.Now()), wr.IntN(5) > 0)
				if err := s.Sync(ctx, id); err != nil {
					t.Error(err)
					return
				}
			}
		})
		runs := 0
		for deadline := time.Now().Add(30 * time.Second); (runs < minRuns || syncs.Load() < minSyncs) && time.Now().Before(deadline); runs++ {
			if _, err := s.Reconcile(ctx); err != nil {
				t.Error(err)
			}
		}
		close(stop)
		wg.Wait()
		if syncs.Load() < minSyncs || runs < minRuns {
			t.Fatalf("only %d changes ran beside %d reconciliations; the test proves little", syncs.Load(), runs)
		}
		t.Logf("%d changes ran beside %d reconciliations", syncs.Load(), runs)
		if d := diff(src.recount(), stored(t, b, s)); d != "" {
			t.Fatalf("after %d changes beside %d reconciliations:\n%s", syncs.Load(), runs, d)
		}
	})
}
