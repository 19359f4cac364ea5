package app

import (
	"context"
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/partners"
)

// initPartners opens partners and demographics and subscribes the
// aggregates to every change that can move a user between cells.
func (a *App) initPartners(ctx context.Context) error {
	var err error
	if a.Partners, err = partners.New(a.Store.Partners(), partners.Options{
		Logger: a.log, OnCharge: a.Metrics.EpsilonSpent, OnRefund: a.Metrics.EpsilonRefunded,
	}); err != nil {
		return fmt.Errorf("partners: %w", err)
	}
	a.Demographics, err = demographics.New(ctx, demographics.Options{
		Store: a.Store.Demographics(), Keyring: a.Keyring, Secrets: a.Secrets,
		Source: demographics.AccountsSource{
			Accounts:    a.Accounts,
			Eligibility: demographics.ConsentEligibility{Consent: a.Consent, Purpose: demographics.Purpose},
		},
		Budget: a.Partners, K: a.cfg.DemographicsK, Delta: a.cfg.DemographicsDelta,
		MaxEpsilon: a.cfg.DemographicsMaxEpsilon, Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("demographics: %w", err)
	}
	a.Accounts.Subscribe(func(ctx context.Context, c accounts.Change) error {
		switch c.Kind {
		case accounts.Registered, accounts.ProfileChanged, accounts.Erased:
			return a.Demographics.Sync(ctx, c.UserID)
		case accounts.Erasing:
			// An error here stops the erasure; it is resumed later.
			return a.Demographics.Leave(ctx, c.UserID)
		}
		return nil
	})
	a.Consent.OnChange(func(ctx context.Context, userID, purpose string, _ bool) {
		if purpose != demographics.Purpose {
			return
		}
		if err := a.Demographics.Sync(ctx, userID); err != nil {
			a.log.WarnContext(ctx, "demographics not updated after a consent change; reconciliation will", "err", err)
		}
	})
	a.Consent.OnPolicyPublished(func(ctx context.Context, _ consent.PolicyVersion) {
		// Renewed consent may change who counts, for everyone at once.
		if err := a.Demographics.RequestReconcile(ctx); err != nil {
			a.log.WarnContext(ctx, "could not request a demographics reconciliation", "err", err)
		}
	})
	return nil
}

// startDemographicsJobs runs the periodic reconciliation, and a frequent
// check for requested ones (after a recovered half-done update).
func (a *App) startDemographicsJobs(ctx context.Context) {
	every := a.cfg.DemographicsReconcileInterval
	if every <= 0 {
		every = time.Hour
	}
	a.every(ctx, every, "reconcile demographics", func(ctx context.Context) error {
		_, err := a.Demographics.Reconcile(ctx)
		return err
	})
	a.every(ctx, time.Minute, "requested demographics reconciliation", func(ctx context.Context) error {
		_, err := a.Demographics.ReconcileIfDirty(ctx)
		return err
	})
}
