package demographics

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
)

// Purpose is the consent purpose the aggregates need (OPT_OUT: a user
// counts unless they withdrew it).
const Purpose = "aggregate_statistics"

// Eligibility says whether a user lets their data into the aggregates.
type Eligibility interface {
	// Counts reads it for one user.
	Counts(ctx context.Context, userID string) (bool, error)
	// CountsStored tells it from a stored user document (bulk passes).
	CountsStored(doc bson.Raw) (bool, error)
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

// CountsStored implements Eligibility.
func (c ConsentEligibility) CountsStored(doc bson.Raw) (bool, error) {
	var st consent.Stored
	if v, err := doc.LookupErr(consent.Field); err == nil {
		if err := v.Unmarshal(&st); err != nil {
			return false, fmt.Errorf("decode consent: %w", err)
		}
	}
	return c.Consent.Rules().InForce(&st, c.Purpose), nil
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

// Each implements Source.
func (a AccountsSource) Each(ctx context.Context, fn func(userID string, s *Subject) error) error {
	return a.Accounts.EachUser(ctx, func(u *accounts.User, doc bson.Raw) error {
		if u.Role != auth.RoleUser {
			return nil
		}
		if a.Eligibility != nil {
			ok, err := a.Eligibility.CountsStored(doc)
			if err != nil {
				return fmt.Errorf("user %s: %w", u.ID, err)
			}
			if !ok {
				return nil
			}
		}
		return fn(u.ID, subjectOf(u))
	})
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
