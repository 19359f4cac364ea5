package demographics_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

func addUsers(t *testing.T, s *demographics.Service, src *fakeSource, prefix string, n int, subj demographics.Subject) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		src.set(id, subj, true)
		if err := s.Sync(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
}

// Which groups are shown is decided on noisy counts against the public
// threshold: at a large epsilon (so that the outcome is certain up to
// ~1e-7) big groups are shown, small ones and withdrawn users are not, and
// the report states its rule (k, threshold, epsilon, delta) but no exact
// count of anything.
func TestReportShowsGroupsByNoisyThreshold(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)}
		src := newFakeSource()
		const k = 4
		s := newTestService(t, b, src, clk, k, func(o *demographics.Options) { o.MaxEpsilon = 10 })
		// At epsilon 10 and delta 1e-9 the threshold is 6 (docs/privacy.md).
		addUsers(t, s, src, "de", 12, demographics.Subject{Country: ptr("DE"), SignedUp: clk.Now()})
		addUsers(t, s, src, "fr", 2, demographics.Subject{Country: ptr("FR"), SignedUp: clk.Now()})
		addUsers(t, s, src, "nz", 14, demographics.Subject{Country: ptr("NZ"), SignedUp: clk.Now()})
		addUsers(t, s, src, "un", 12, demographics.Subject{SignedUp: clk.Now()})
		// Twelve of the NZ users withdraw: NZ falls to 2.
		for i := range 12 {
			id := fmt.Sprintf("nz%d", i)
			u, _ := src.get(id)
			src.set(id, u.subj, false)
			if err := s.Sync(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		eps := 10.0
		rep, err := s.Report(ctx, "p", []demographics.Dimension{demographics.Country}, &eps)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, c := range rep.Cells {
			if c.Country == nil || c.AgeBand != nil || c.Gender != nil || c.Language != nil || c.SignupMonth != nil {
				t.Fatalf("cell %+v: want only country set", c)
			}
			if c.Count < rep.Threshold {
				t.Fatalf("cell %+v below the threshold %d", c, rep.Threshold)
			}
			got[*c.Country] = true
		}
		if !got["DE"] || !got[demographics.Unknown] || got["FR"] || got["NZ"] || len(rep.Cells) != 2 {
			t.Fatalf("released %v, want DE and UNKNOWN only", got)
		}
		if rep.K != k || rep.Threshold != 6 || rep.Epsilon != 10 || rep.Delta != demographics.DefaultDelta {
			t.Fatalf("report %+v: want k %d, threshold 6, epsilon 10, delta 1e-9", rep, k)
		}
		// k is a floor of the threshold.
		if m, err := demographics.NewMechanism(10*demographics.EpsilonUnit, 1e-9, 20); err != nil || m.Threshold != 20 {
			t.Fatalf("threshold with k 20: %+v, %v", m, err)
		}
	})
}

// Age bands come from the birth year at report time: a year later the same
// stored cells fall into the next band without any write.
func TestAgeBandsAtReportTime(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)}
		src := newFakeSource()
		s := newTestService(t, b, src, clk, 2)
		addUsers(t, s, src, "a", 3, demographics.Subject{BirthYear: ptr(2001), SignedUp: clk.Now()}) // 24 in 2025
		addUsers(t, s, src, "b", 2, demographics.Subject{BirthYear: ptr(2008), SignedUp: clk.Now()}) // 17
		addUsers(t, s, src, "c", 2, demographics.Subject{BirthYear: ptr(1960), SignedUp: clk.Now()}) // 65
		bands := func() map[string]int64 {
			gs, err := s.Groups(ctx, []demographics.Dimension{demographics.AgeBand}, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]int64{}
			for _, g := range gs {
				out[g.Values[0]] = g.Count
			}
			return out
		}
		if got := bands(); got[demographics.Band18To24] != 3 || got[demographics.BandUnder18] != 2 || got[demographics.Band65Plus] != 2 || len(got) != 3 {
			t.Fatalf("2025 bands %v", got)
		}
		clk.advance(365 * 24 * time.Hour)
		if got := bands(); got[demographics.Band25To34] != 3 || got[demographics.Band18To24] != 2 || got[demographics.Band65Plus] != 2 || len(got) != 3 {
			t.Fatalf("2026 bands %v", got)
		}
	})
}

// Released counts are the true count plus zero-mean noise of the right
// variance; each report charges its epsilon once, and a refused charge
// releases nothing.
func TestReportNoiseAndCharges(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)}
		src := newFakeSource()
		budget := &fakeBudget{left: 400 * 4 * demographics.EpsilonUnit}
		s := newTestService(t, b, src, clk, 2, func(o *demographics.Options) { o.Budget = budget; o.MaxEpsilon = 10 })
		const trueCount = 30
		addUsers(t, s, src, "u", trueCount, demographics.Subject{Gender: ptr("FEMALE"), SignedUp: clk.Now()})
		// At epsilon 4 the threshold is 12, far below 30: the group is
		// always shown and its counts are the plain noisy counts.
		eps := 4.0
		var sum, sumSq float64
		const n = 400
		for range n {
			rep, err := s.Report(ctx, "p", []demographics.Dimension{demographics.Gender}, &eps)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Cells) != 1 || *rep.Cells[0].Gender != "FEMALE" {
				t.Fatalf("cells %+v", rep.Cells)
			}
			c := float64(rep.Cells[0].Count)
			sum += c
			sumSq += c * c
		}
		mean, variance := sum/n, sumSq/n-(sum/n)*(sum/n)
		want := demographics.NoiseVariance(eps)
		if math.Abs(mean-trueCount) > 5*math.Sqrt(want/n) {
			t.Errorf("mean released count %.2f, want %d", mean, trueCount)
		}
		if math.Abs(variance-want) > 0.5*want { // about 4.5 standard errors
			t.Errorf("variance %.2f, want about %.2f", variance, want)
		}
		if len(budget.charged) != n || budget.charged[0] != 4*demographics.EpsilonUnit || budget.left != 0 || len(budget.refunded) != 0 {
			t.Fatalf("%d charges (first %v), %d refunds, %d left; want %d charges of 4 and nothing left", len(budget.charged), budget.charged[:1], len(budget.refunded), budget.left, n)
		}
		_, err := s.Report(ctx, "p", []demographics.Dimension{demographics.Gender}, &eps)
		if apperr.CodeOf(err) != apperr.BudgetExhausted || len(budget.charged) != n {
			t.Fatalf("beyond the budget: %v after %d charges", err, len(budget.charged))
		}
		if _, err := s.Report(ctx, "p", []demographics.Dimension{demographics.Gender, demographics.Gender}, &eps); apperr.CodeOf(err) != apperr.BadUserInput {
			t.Fatalf("duplicate dimension: %v", err)
		}
	})
}

// An epsilon above the configured cap of one report is refused on the
// field epsilon and charges nothing; the cap itself is allowed.
func TestEpsilonAboveTheCapIsRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)}
		budget := &fakeBudget{left: demographics.EpsilonUnit}
		s := newTestService(t, b, newFakeSource(), clk, 2, func(o *demographics.Options) { o.Budget = budget; o.MaxEpsilon = 0.5 })
		over, atCap := 0.500001, 0.5
		_, err := s.Report(ctx, "p", nil, &over)
		if e, ok := apperr.As(err); !ok || e.Code != apperr.BadUserInput || e.Field != "epsilon" || len(budget.charged) != 0 {
			t.Fatalf("epsilon above the cap: %v, %d charges", err, len(budget.charged))
		}
		if _, err := s.Report(ctx, "p", nil, &atCap); err != nil || len(budget.charged) != 1 {
			t.Fatalf("epsilon at the cap: %v", err)
		}
		// Without an epsilon the default 1 is lowered to the cap.
		if rep, err := s.Report(ctx, "p", nil, nil); err != nil || rep.Epsilon != 0.5 || budget.left != 0 {
			t.Fatalf("the default epsilon under a cap of 0.5: %+v, %v", rep, err)
		}
	})
}

func TestKNeverBelowTwo(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		key := make([]byte, envelope.KeySize)
		kr, err := envelope.NewKeyring(key)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		opts := demographics.Options{Store: b.Demographics(), Keyring: kr, Secrets: envelope.OpenSecrets(b.Secrets(), kr), Source: newFakeSource(), K: 1}
		if _, err := demographics.New(ctx, opts); err == nil {
			t.Fatal("k = 1 accepted: a group of one person is that person")
		}
		opts.K = 0
		s, err := demographics.New(ctx, opts)
		if err != nil || s.K() != demographics.DefaultK {
			t.Fatalf("default k: %v, %v", s, err)
		}
	})
}
