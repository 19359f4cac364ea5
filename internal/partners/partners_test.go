package partners_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newService(t *testing.T, b store.Backend) (*partners.Service, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
	s, err := partners.New(b.Partners(), partners.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

func TestKeysAreHashedAndRevocable(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		s, _ := newService(t, b)
		p, key, err := s.Create(ctx, " Acme Research ", 2, 30)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != "Acme Research" || !partners.IsKey(key) || len(key) < 70 || !strings.Contains(key, p.ID) {
			t.Fatalf("partner %+v, key %q", p, key)
		}
		pr, err := s.Authenticate(ctx, key)
		if err != nil || pr == nil || pr.Role != auth.RolePartner || pr.PartnerID != p.ID || pr.UserID != "" {
			t.Fatalf("Authenticate = %+v, %v", pr, err)
		}
		// A key with another secret, or another id, is nobody.
		forged := key[:len(key)-4] + "AAAA"
		for _, bad := range []string{forged, "cgp_" + strings.Repeat("0", 32) + "_x", "cgp_", "cgp_short_x", key + "x"} {
			if pr, err := s.Authenticate(ctx, bad); pr != nil || err != nil {
				t.Errorf("Authenticate(%q) = %+v, %v", bad, pr, err)
			}
		}
		rp, err := s.Revoke(ctx, p.ID)
		if err != nil || rp.RevokedAt == nil {
			t.Fatalf("Revoke = %+v, %v", rp, err)
		}
		if pr, err := s.Authenticate(ctx, key); pr != nil || err != nil {
			t.Fatalf("revoked key authenticates: %+v, %v", pr, err)
		}
		if _, _, err := s.Charge(ctx, p.ID, 1); apperr.CodeOf(err) != apperr.Unauthenticated {
			t.Fatalf("charge after revocation: %v", err)
		}
		again, err := s.Revoke(ctx, p.ID)
		if err != nil || !again.RevokedAt.Equal(*rp.RevokedAt) {
			t.Fatalf("second revocation changed the time: %v, %v", again.RevokedAt, err)
		}
		if _, err := s.Revoke(ctx, "nope"); apperr.CodeOf(err) != apperr.NotFound {
			t.Fatalf("revoke unknown: %v", err)
		}
		list, err := s.List(ctx)
		if err != nil || len(list) != 1 || list[0].RevokedAt == nil {
			t.Fatalf("List = %+v, %v", list, err)
		}
	})
}

func TestCreateValidates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		s, _ := newService(t, b)
		for _, tc := range []struct {
			name   string
			budget float64
			days   int
			field  string
		}{
			{"", 1, 1, "name"}, {strings.Repeat("n", 101), 1, 1, "name"},
			{"x", 0, 1, "epsilonBudget"}, {"x", -1, 1, "epsilonBudget"}, {"x", 1001, 1, "epsilonBudget"},
			{"x", 1, 0, "budgetPeriodDays"}, {"x", 1, 367, "budgetPeriodDays"},
		} {
			_, _, err := s.Create(context.Background(), tc.name, tc.budget, tc.days)
			if e, ok := apperr.As(err); !ok || e.Code != apperr.BadUserInput || e.Field != tc.field {
				t.Errorf("Create(%q, %g, %d) = %v, want BAD_USER_INPUT on %s", tc.name, tc.budget, tc.days, err, tc.field)
			}
		}
	})
}

// The budget is spent exactly, a refused charge changes nothing, and the
// next period starts full.
func TestBudgetExhaustionAndReset(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		s, clk := newService(t, b)
		p, _, err := s.Create(ctx, "p", 1.0, 7)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []float64{0.7, 0.4} {
			left, _, err := s.Charge(ctx, p.ID, 300_000)
			if err != nil || !near(left, want) {
				t.Fatalf("charge %d: %g left, %v; want %g", i, left, err, want)
			}
		}
		_, _, err = s.Charge(ctx, p.ID, 500_000)
		if apperr.CodeOf(err) != apperr.BudgetExhausted {
			t.Fatalf("over budget: %v, want BUDGET_EXHAUSTED", err)
		}
		got, _ := s.Get(ctx, p.ID)
		if !near(got.BudgetRemaining, 0.4) || !got.BudgetResetsAt.Equal(p.CreatedAt.Add(7*24*time.Hour)) {
			t.Fatalf("after refusal: %g left until %v; want 0.4 (nothing charged) until a week after creation", got.BudgetRemaining, got.BudgetResetsAt)
		}
		if left, _, err := s.Charge(ctx, p.ID, 400_000); err != nil || left != 0 {
			t.Fatalf("exact rest: %g, %v", left, err)
		}
		if _, _, err := s.Charge(ctx, p.ID, 1); apperr.CodeOf(err) != apperr.BudgetExhausted {
			t.Fatalf("empty budget: %v", err)
		}
		clk.advance(7*24*time.Hour + time.Minute)
		got, _ = s.Get(ctx, p.ID)
		if got.BudgetRemaining != 1 || !got.BudgetResetsAt.Equal(p.CreatedAt.Add(14*24*time.Hour)) {
			t.Fatalf("next period: %g left until %v", got.BudgetRemaining, got.BudgetResetsAt)
		}
		if left, _, err := s.Charge(ctx, p.ID, 250_000); err != nil || !near(left, 0.75) {
			t.Fatalf("first charge of the new period: %g, %v", left, err)
		}
		if left, _, err := s.Charge(ctx, p.ID, 250_000); err != nil || !near(left, 0.5) {
			t.Fatalf("second charge of the new period: %g, %v", left, err)
		}
		if _, _, err := s.Charge(ctx, p.ID, 1_000_001); apperr.CodeOf(err) != apperr.BudgetExhausted {
			t.Fatalf("a charge above the whole budget: %v", err)
		}
	})
}

// Concurrent requests of one partner never overspend: with room for
// exactly ten charges, ten of fifty concurrent ones succeed, also across a
// period start.
func TestConcurrentChargesNeverOverspend(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		s, clk := newService(t, b)
		p, _, err := s.Create(ctx, "p", 1.0, 1)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 2 {
			var ok, exhausted atomic.Int64
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					_, _, err := s.Charge(ctx, p.ID, 100_000)
					switch {
					case err == nil:
						ok.Add(1)
					case apperr.CodeOf(err) == apperr.BudgetExhausted:
						exhausted.Add(1)
					default:
						t.Error(err)
					}
				})
			}
			wg.Wait()
			got, _ := s.Get(ctx, p.ID)
			if ok.Load() != 10 || exhausted.Load() != 40 || got.BudgetRemaining != 0 {
				t.Fatalf("round %d: %d charged, %d refused, %g left; want 10, 40, 0", round, ok.Load(), exhausted.Load(), got.BudgetRemaining)
			}
			clk.advance(24 * time.Hour) // the second round races to start a new period
		}
	})
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// A refund gives back a charge of the current period, never more than was
// spent, and nothing once the period has moved on.
func TestRefund(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		s, clk := newService(t, b)
		p, _, err := s.Create(ctx, "p", 1.0, 7)
		if err != nil {
			t.Fatal(err)
		}
		left, period, err := s.Charge(ctx, p.ID, 600_000)
		if err != nil || !near(left, 0.4) {
			t.Fatalf("charge: %g, %v", left, err)
		}
		if err := s.Refund(ctx, p.ID, period, 600_000); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(ctx, p.ID); got.BudgetRemaining != 1 {
			t.Fatalf("after the refund %g left, want 1", got.BudgetRemaining)
		}
		if _, period, err = s.Charge(ctx, p.ID, 300_000); err != nil {
			t.Fatal(err)
		}
		clk.advance(7*24*time.Hour + time.Minute)
		if _, _, err := s.Charge(ctx, p.ID, 200_000); err != nil {
			t.Fatal(err)
		}
		// The refund of last period's charge must not credit this period.
		if err := s.Refund(ctx, p.ID, period, 300_000); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(ctx, p.ID); !near(got.BudgetRemaining, 0.8) {
			t.Fatalf("a refund of an old period changed this one: %g left, want 0.8", got.BudgetRemaining)
		}
		if err := s.Refund(ctx, p.ID, period, 0); err == nil {
			t.Fatal("a refund of 0 accepted")
		}
	})
}
