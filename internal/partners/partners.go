// Package partners manages the partners who may fetch aggregated
// demographics: their API keys (stored only as a hash, revocable) and their
// differential-privacy budgets.
//
// A budget is an amount of epsilon per period of budgetPeriodDays, counted
// from the partner's creation. Every report charges its epsilon with one
// conditional single-document update that only matches while enough is
// left, so concurrent requests of one partner can never overspend, and a
// refused charge changes nothing. Amounts are kept in millionths of epsilon
// (integers), so sums are exact.
package partners

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
)

// KeyPrefix starts every partner API key (session tokens start with cgs_).
const KeyPrefix = "cgp_"

// Unit is the resolution of budgets: a millionth of epsilon.
const Unit = 1_000_000

// Limits of what an admin may configure.
const (
	MaxBudget     = 1000.0
	MaxPeriodDays = 366
	maxNameLen    = 100
)

// Partner is a partner as admins and the partner itself see it.
type Partner struct {
	ID               string
	Name             string
	EpsilonBudget    float64
	BudgetPeriodDays int
	CreatedAt        time.Time
	RevokedAt        *time.Time
	// BudgetRemaining is what is left in the current period.
	BudgetRemaining float64
	// BudgetResetsAt is when the current period ends.
	BudgetResetsAt time.Time
}

// Options configure the service.
type Options struct {
	Logger *slog.Logger
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// OnCharge, if set, learns of every successful charge (for metrics).
	OnCharge func(partnerID string, epsilon float64)
	// OnRefund, if set, learns of every refund (for metrics).
	OnRefund func(partnerID string, epsilon float64)
}

// Service manages partners.
type Service struct {
	store Store
	opts  Options
}

// New opens the service on its store.
func New(st Store, opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if st == nil {
		return nil, errors.New("partners: a store is required")
	}
	return &Service{store: st, opts: opts}, nil
}

func (s *Service) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

// IsKey reports whether a bearer token has the shape of a partner key.
func IsKey(token string) bool { return strings.HasPrefix(token, KeyPrefix) }

// hashKey is how a key is stored. Keys carry 256 random bits, so a fast
// hash suffices (as for session tokens).
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func newID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("partner id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Create adds a partner and returns it with its API key, which is shown
// this once: only its hash is stored. The key names the partner
// (cgp_<id>_<secret>) so that it is found by _id.
func (s *Service) Create(ctx context.Context, name string, epsilonBudget float64, periodDays int) (*Partner, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > maxNameLen || !utf8.ValidString(name) {
		return nil, "", apperr.Invalid("name", "name must be 1 to %d characters", maxNameLen)
	}
	if math.IsNaN(epsilonBudget) || epsilonBudget <= 0 || epsilonBudget > MaxBudget {
		return nil, "", apperr.Invalid("epsilonBudget", "epsilonBudget must be above 0 and at most %g", MaxBudget)
	}
	if periodDays < 1 || periodDays > MaxPeriodDays {
		return nil, "", apperr.Invalid("budgetPeriodDays", "budgetPeriodDays must be 1 to %d", MaxPeriodDays)
	}
	id, err := newID()
	if err != nil {
		return nil, "", err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, "", fmt.Errorf("partner key: %w", err)
	}
	key := KeyPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret)
	d := Record{
		ID: id, Name: name, KeyHash: hashKey(key), Budget: int64(math.Round(epsilonBudget * Unit)),
		PeriodDays: periodDays, CreatedAt: s.now(),
	}
	if err := s.store.Insert(ctx, d); err != nil {
		return nil, "", fmt.Errorf("insert partner: %w", err)
	}
	return s.view(&d), key, nil
}

// Authenticate resolves a partner key; unknown, malformed and revoked keys
// give (nil, nil).
func (s *Service) Authenticate(ctx context.Context, key string) (*auth.Principal, error) {
	rest, ok := strings.CutPrefix(key, KeyPrefix)
	if !ok || len(key) > 120 {
		return nil, nil
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 32 {
		return nil, nil
	}
	d, err := s.load(ctx, id)
	if err != nil || d == nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(d.KeyHash), []byte(hashKey(key))) != 1 || d.RevokedAt != nil {
		return nil, nil
	}
	return &auth.Principal{Role: auth.RolePartner, PartnerID: d.ID}, nil
}

func (s *Service) load(ctx context.Context, id string) (*Record, error) {
	d, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("find partner: %w", err)
	}
	return d, nil
}

// Get returns a partner or NOT_FOUND.
func (s *Service) Get(ctx context.Context, id string) (*Partner, error) {
	d, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, apperr.New(apperr.NotFound, "no such partner")
	}
	return s.view(d), nil
}

// List returns every partner, revoked ones included, oldest first.
func (s *Service) List(ctx context.Context) ([]*Partner, error) {
	docs, err := s.store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list partners: %w", err)
	}
	out := make([]*Partner, 0, len(docs))
	for i := range docs {
		out = append(out, s.view(&docs[i]))
	}
	return out, nil
}

// Page is one page of partners in List's order.
type Page struct {
	Nodes   []*Partner
	HasNext bool
}

// Page lists up to first partners (1 to 100, 20 when nil) after the one
// whose id is after, oldest first.
func (s *Service) Page(ctx context.Context, first *int, after *string) (*Page, error) {
	n := 20
	if first != nil {
		n = *first
	}
	if n < 1 || n > 100 {
		return nil, apperr.Invalid("first", "first must be between 1 and 100")
	}
	from := ""
	if after != nil {
		if *after == "" {
			return nil, apperr.Invalid("after", "not a cursor from this connection")
		}
		from = *after
	}
	docs, err := s.store.Page(ctx, from, n+1)
	if err != nil {
		return nil, fmt.Errorf("page partners: %w", err)
	}
	p := &Page{Nodes: make([]*Partner, 0, min(len(docs), n))}
	if len(docs) > n {
		docs, p.HasNext = docs[:n], true
	}
	for i := range docs {
		p.Nodes = append(p.Nodes, s.view(&docs[i]))
	}
	return p, nil
}

// Count counts the partners, revoked ones included.
func (s *Service) Count(ctx context.Context) (int, error) {
	n, err := s.store.Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("count partners: %w", err)
	}
	return int(n), nil
}

// Revoke disables a partner's key for good; revoking twice keeps the first
// time.
func (s *Service) Revoke(ctx context.Context, id string) (*Partner, error) {
	if err := s.store.Revoke(ctx, id, s.now()); err != nil {
		return nil, fmt.Errorf("revoke partner: %w", err)
	}
	return s.Get(ctx, id)
}

// period returns the index of the budget period containing t.
func period(d *Record, t time.Time) int64 {
	p := int64(t.Sub(d.CreatedAt) / (time.Duration(d.PeriodDays) * 24 * time.Hour))
	return max(p, 0)
}

func resetsAt(d *Record, period int64) time.Time {
	return d.CreatedAt.Add(time.Duration(period+1) * time.Duration(d.PeriodDays) * 24 * time.Hour)
}

func (s *Service) view(d *Record) *Partner {
	cur := period(d, s.now())
	left := d.Budget
	if d.Period == cur {
		left -= d.Spent
	}
	return &Partner{
		ID: d.ID, Name: d.Name, EpsilonBudget: float64(d.Budget) / Unit, BudgetPeriodDays: d.PeriodDays,
		CreatedAt: d.CreatedAt, RevokedAt: d.RevokedAt, BudgetRemaining: float64(max(left, 0)) / Unit,
		BudgetResetsAt: resetsAt(d, cur),
	}
}

// Charge spends cost millionths of epsilon from the partner's budget for
// the current period, atomically: the update matches only while the budget
// covers the cost. When it does not, nothing is charged and the error is
// BUDGET_EXHAUSTED. It returns what is left, in epsilon, and the period
// charged (for Refund).
func (s *Service) Charge(ctx context.Context, partnerID string, cost int64) (remaining float64, chargedPeriod int64, err error) {
	if cost <= 0 {
		return 0, 0, fmt.Errorf("charge of %d: must be positive", cost)
	}
	for attempt := 0; attempt < 100; attempt++ {
		d, err := s.load(ctx, partnerID)
		if err != nil {
			return 0, 0, err
		}
		if d == nil || d.RevokedAt != nil {
			return 0, 0, apperr.New(apperr.Unauthenticated, "this partner key is not valid")
		}
		cur := period(d, s.now())
		if cost > d.Budget || d.Period == cur && d.Spent > d.Budget-cost {
			return 0, 0, s.exhausted(d, cur)
		}
		var after *Record
		if d.Period == cur {
			// Same period: spend if enough is left.
			after, err = s.store.SpendInPeriod(ctx, d.ID, cur, cost, d.Budget)
		} else {
			// A new period began: start it with this charge, unless another
			// request did so first (then the first branch applies next time).
			after, err = s.store.StartPeriod(ctx, d.ID, d.Period, cur, cost)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("charge budget: %w", err)
		}
		if after != nil {
			if s.opts.OnCharge != nil {
				s.opts.OnCharge(partnerID, float64(cost)/Unit)
			}
			return float64(after.Budget-after.Spent) / Unit, cur, nil
		}
		// The document changed under us (a concurrent charge or period
		// start): look again.
	}
	return 0, 0, apperr.New(apperr.RateLimited, "too many concurrent requests; try again")
}

// Refund gives back cost millionths of epsilon charged in period, when a
// request that paid for its reports released nothing. It is conditional on
// the period: once a new period has started the old charge has lapsed
// anyway, and giving it back would credit the new one. Spent never goes
// below zero.
func (s *Service) Refund(ctx context.Context, partnerID string, period, cost int64) error {
	if cost <= 0 {
		return fmt.Errorf("refund of %d: must be positive", cost)
	}
	if _, err := s.store.Refund(ctx, partnerID, period, cost); err != nil {
		return fmt.Errorf("refund budget: %w", err)
	}
	if s.opts.OnRefund != nil {
		s.opts.OnRefund(partnerID, float64(cost)/Unit)
	}
	return nil
}

func (s *Service) exhausted(d *Record, cur int64) error {
	left := d.Budget
	if d.Period == cur {
		left -= d.Spent
	}
	return apperr.New(apperr.BudgetExhausted, "this query needs more epsilon than the %g left until %s",
		float64(max(left, 0))/Unit, resetsAt(d, cur).Format(time.RFC3339))
}
