package demographics

import (
	"context"
	"errors"
	"fmt"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/ordered"
)

// Purpose is the consent purpose the aggregates need (OPT_OUT: a user
// counts unless they withdrew it).
const Purpose = "aggregate_statistics"

// Eligibility says whether a user lets their data into the aggregates.
type Eligibility interface {
	// Counts reads it for one user.
	Counts(ctx context.Context, userID string) (bool, error)
	// Each calls fn with it for every user, in user id order (bulk passes).
	Each(ctx context.Context, fn func(userID string, counts bool) error) error
}

// ConsentEligibility is the Eligibility of package consent: Purpose must be
// in force, by the same pure rules the processors use.
type ConsentEligibility struct {
	Consent *consent.Service
	Purpose string
}

// Counts implements Eligibility.
func (c ConsentEligibility) Counts(ctx context.Context, userID string) (bool, error) {
	return c.Consent.InForce(ctx, userID, c.Purpose)
}

// Each implements Eligibility.
func (c ConsentEligibility) Each(ctx context.Context, fn func(userID string, counts bool) error) error {
	rules := c.Consent.Rules()
	return c.Consent.EachState(ctx, func(userID string, st *consent.Stored) error {
		return fn(userID, rules.InForce(st, c.Purpose))
	})
}

// AccountsSource is the Source of a running server: the users of package
// accounts (role USER only) whose Eligibility holds.
type AccountsSource struct {
	Accounts *accounts.Service
	// Eligibility nil means every user counts.
	Eligibility Eligibility
}

// Subject implements Source.
func (a AccountsSource) Subject(ctx context.Context, userID string) (*Subject, error) {
	u, err := a.Accounts.Get(ctx, userID)
	if apperr.CodeOf(err) == apperr.NotFound || errors.Is(err, accounts.ErrShredded) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if u.Role != auth.RoleUser {
		return nil, nil
	}
	if a.Eligibility != nil {
		ok, err := a.Eligibility.Counts(ctx, userID)
		if apperr.CodeOf(err) == apperr.NotFound {
			return nil, nil
		}
		if err != nil || !ok {
			return nil, err
		}
	}
	return subjectOf(u), nil
}

// Each implements Source: one pass over the users, joined in id order with
// one pass over their eligibility.
func (a AccountsSource) Each(ctx context.Context, fn func(userID string, s *Subject) error) error {
	type eligible struct {
		id     string
		counts bool
	}
	var elig *ordered.Follower[eligible]
	if a.Eligibility != nil {
		elig = ordered.Follow(ctx, func(e eligible) string { return e.id }, func(ctx context.Context, yield func(eligible) error) error {
			return a.Eligibility.Each(ctx, func(id string, counts bool) error { return yield(eligible{id, counts}) })
		})
	}
	err := a.Accounts.EachUser(ctx, func(u *accounts.User) error {
		if u.Role != auth.RoleUser {
			return nil
		}
		if elig != nil {
			if e, ok := elig.Seek(u.ID); !ok || !e.counts {
				return nil
			}
		}
		return fn(u.ID, subjectOf(u))
	})
	if elig != nil {
		if eerr := elig.Close(); err == nil && eerr != nil {
			err = fmt.Errorf("read consent: %w", eerr)
		}
	}
	return err
}

func subjectOf(u *accounts.User) *Subject {
	return &Subject{
		BirthYear: u.Profile.BirthYear, Country: u.Profile.Country, Gender: u.Profile.Gender,
		Language: u.Profile.Language, SignedUp: u.CreatedAt,
	}
}

// RequestReconcile asks for a reconciliation soon (e.g. after a new policy
// version changed whose consent is in force).
func (s *Service) RequestReconcile(ctx context.Context) error { return s.markDirty(ctx) }
