package demographics

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// Batch is the reports of one request. Their epsilons are charged together,
// once, before any of them is computed (Reserve), and the charge is given
// back (Settle) unless the request's answer reaches the partner. So a
// request is charged all or nothing: two reports whose sum exceeds the
// budget are both refused, and a request whose answer is nulled by any
// error costs nothing.
//
// Charging before computing, rather than after, means no report is ever
// computed (let alone released) without its epsilon being paid; refunding
// is safe because a refund happens only when nothing was released.
type Batch struct {
	svc       *Service
	partnerID string

	mu sync.Mutex
	// pending are the reserved epsilons no report has claimed yet.
	pending []Epsilon
	total   Epsilon
	// refusal, when set, is why no report of the batch may release
	// anything; nothing was charged.
	refusal   error
	period    int64
	remaining float64
	charged   bool
	answered  int
	settled   bool
}

type batchKey struct{}

// WithBatch returns a context whose reports belong to b.
func WithBatch(ctx context.Context, b *Batch) context.Context {
	return context.WithValue(ctx, batchKey{}, b)
}

func batchFrom(ctx context.Context) *Batch {
	b, _ := ctx.Value(batchKey{}).(*Batch)
	return b
}

// errSibling refuses the valid reports of a request in which another
// report is invalid: the whole request is answered or none of it.
var errSibling = apperr.New(apperr.BadUserInput, "another demographics field of this request is invalid; nothing was charged")

// Reserve charges the partner, once, the sum of the epsilons of all the
// reports a request will make (nil means the default). If any epsilon is
// invalid, or the budget does not cover the sum, nothing is charged and
// every report of the batch fails. The returned batch is never nil; put it
// in the context of the reports with WithBatch and call Settle when the
// answer is known.
func (s *Service) Reserve(ctx context.Context, partnerID string, epsilons []*float64) *Batch {
	b := &Batch{svc: s, partnerID: partnerID}
	for _, e := range epsilons {
		eps, err := s.parseEpsilon(e)
		if err != nil {
			// That report fails with its own error; the others with errSibling.
			b.refusal = errSibling
			return b
		}
		b.pending = append(b.pending, eps)
		b.total += eps
	}
	if len(b.pending) == 0 {
		return b
	}
	if s.opts.Budget == nil {
		b.refusal = errors.New("demographics: no budget configured")
		return b
	}
	remaining, period, err := s.opts.Budget.Charge(ctx, partnerID, int64(b.total))
	if err != nil {
		b.refusal = err
		return b
	}
	b.charged, b.period, b.remaining = true, period, remaining
	return b
}

// claim takes the reservation of one report at eps. It fails when the batch
// was refused or holds no such reservation, so that nothing is ever
// computed that was not paid for.
func (b *Batch) claim(partnerID string, eps Epsilon) (remaining float64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refusal != nil {
		return 0, b.refusal
	}
	if b.settled || partnerID != b.partnerID {
		return 0, errors.New("demographics: report outside its batch")
	}
	for i, p := range b.pending {
		if p == eps {
			b.pending = append(b.pending[:i], b.pending[i+1:]...)
			return b.remaining, nil
		}
	}
	return 0, fmt.Errorf("demographics: report at epsilon %g was not reserved", eps.Float())
}

func (b *Batch) done() {
	b.mu.Lock()
	b.answered++
	b.mu.Unlock()
}

// Settle ends the batch. delivered says whether the request's answer,
// with its reports, reaches the partner; if it does not, or if no report
// was answered, the charge is refunded in full. Settle is idempotent.
func (b *Batch) Settle(ctx context.Context, delivered bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.settled {
		return nil
	}
	b.settled = true
	if !b.charged || delivered && b.answered > 0 {
		return nil
	}
	// The refund must happen even when the request was cancelled: that is
	// precisely when nothing was delivered.
	ctx = context.WithoutCancel(ctx)
	if err := b.svc.opts.Budget.Refund(ctx, b.partnerID, b.period, int64(b.total)); err != nil {
		return fmt.Errorf("refund %g epsilon to partner %s: %w", b.total.Float(), b.partnerID, err)
	}
	return nil
}

// Charged is the epsilon the batch holds charged (0 if refused).
func (b *Batch) Charged() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.charged {
		return 0
	}
	return b.total.Float()
}

// RemainingAfterCharge is the partner's budget left after this request's
// charge, when the request holds a charged batch of partnerID's. Other
// fields of the request that show the budget (partnerMe) read it here, so
// the whole answer agrees with the demographics reports, which were charged
// up front before any resolver ran — whatever the store or a read cached
// before the charge would say.
func RemainingAfterCharge(ctx context.Context, partnerID string) (float64, bool) {
	b := batchFrom(ctx)
	if b == nil {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.charged || b.partnerID != partnerID {
		return 0, false
	}
	return b.remaining, true
}
