package partners

import (
	"context"
	"time"
)

// Store is the storage partners need. Every charge is one conditional
// update of one partner's record, so concurrent charges never overspend.
type Store interface {
	Insert(ctx context.Context, r Record) error
	// Get returns a partner, or nil.
	Get(ctx context.Context, id string) (*Record, error)
	// List returns every partner, oldest first (then by id).
	List(ctx context.Context) ([]Record, error)
	// Page returns up to limit partners in List's order, after the partner
	// with id after ("" from the first; an unknown id gives nothing).
	Page(ctx context.Context, after string, limit int) ([]Record, error)
	// Count counts the partners, revoked ones included.
	Count(ctx context.Context) (int64, error)
	// Revoke sets RevokedAt unless it is set already.
	Revoke(ctx context.Context, id string, at time.Time) error
	// SpendInPeriod adds cost to Spent, only while the partner is not
	// revoked, its Period is period and Spent is at most limit-cost; it
	// returns the record afterwards, or nil when the condition failed.
	SpendInPeriod(ctx context.Context, id string, period, cost, limit int64) (*Record, error)
	// StartPeriod sets Period to period and Spent to cost, only while the
	// partner is not revoked and its Period is still from; the record
	// afterwards, or nil.
	StartPeriod(ctx context.Context, id string, from, period, cost int64) (*Record, error)
	// Refund subtracts cost from Spent, only while the partner's Period is
	// period, and never below 0 (Spent becomes max(Spent-cost, 0)); it
	// reports whether the record matched. Revocation does not matter.
	Refund(ctx context.Context, id string, period, cost int64) (bool, error)
}

// Record is a partner as stored.
type Record struct {
	ID      string
	Name    string
	KeyHash string
	// Budget is epsilon per period in millionths (Unit).
	Budget     int64
	PeriodDays int
	CreatedAt  time.Time
	RevokedAt  *time.Time
	// Period is the index of the period Spent belongs to.
	Period int64
	Spent  int64
}
