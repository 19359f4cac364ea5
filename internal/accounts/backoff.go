package accounts

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// Every password check — sign-in, deleteMyAccount, changePassword — shares
// one back-off per account, kept with the account (Record.PasswordFailures)
// so that it holds across requests, aliases in one request and replicas.
// The first three wrong passwords in a row cost nothing; the fourth and
// each after it close the account to password checks for a window that
// starts at a second and doubles up to maxBackoff (the same curve as the
// per-replica login limiter in internal/app, which this one outlives). A
// right password (or a reset) ends the run; a refused attempt does not
// extend the window.
const (
	freeFailures = 4
	baseBackoff  = time.Second
	maxBackoff   = 15 * time.Minute
)

// backoffAfter is how long password checks wait after n consecutive
// failures.
func backoffAfter(n int) time.Duration {
	if n < freeFailures {
		return 0
	}
	shift := n - freeFailures
	if shift > 20 {
		return maxBackoff
	}
	return min(baseBackoff<<shift, maxBackoff)
}

// guard refuses a password check while the account's back-off runs.
func (s *Service) guard(failures int, last time.Time) error {
	if failures == 0 {
		return nil
	}
	until := last.Add(backoffAfter(failures))
	if wait := until.Sub(s.opts.Now()); wait > 0 {
		return rateLimited(wait)
	}
	return nil
}

func rateLimited(wait time.Duration) error {
	return &apperr.Error{Code: apperr.RateLimited, RetryAfter: wait.Round(time.Second) + time.Second,
		Message: "too many wrong passwords; try again later"}
}

// failed counts a wrong password for an account.
func (s *Service) failed(ctx context.Context, userID string) {
	if _, err := s.store.PasswordFailed(ctx, userID, s.opts.Now().UTC().Truncate(time.Millisecond)); err != nil {
		s.log.ErrorContext(ctx, "counting a wrong password failed", "err", err)
	}
}

// succeeded ends a run of wrong passwords.
func (s *Service) succeeded(ctx context.Context, r *Record) error {
	if r.PasswordFailures == 0 {
		return nil // the common case costs no write
	}
	if err := s.store.ClearPasswordFailures(ctx, r.ID); err != nil {
		return fmt.Errorf("clear password failures: %w", err)
	}
	return nil
}

// phantoms keeps the same back-off for usernames that have no account, so
// that being throttled does not tell that a username exists. It is per
// replica and bounded: a burst of distinct unknown names evicts old ones.
type phantoms struct {
	mu sync.Mutex
	m  map[string]phantom
}

type phantom struct {
	n    int
	last time.Time
}

const phantomMax = 10000

func (p *phantoms) get(key string) (int, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.m[key]
	return e.n, e.last
}

func (p *phantoms) fail(key string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]phantom{}
	}
	if _, ok := p.m[key]; !ok && len(p.m) >= phantomMax {
		for k, e := range p.m {
			if now.Sub(e.last) > maxBackoff || len(p.m) >= phantomMax {
				delete(p.m, k)
			}
			if len(p.m) < phantomMax/2 {
				break
			}
		}
	}
	e := p.m[key]
	p.m[key] = phantom{n: e.n + 1, last: now}
}
