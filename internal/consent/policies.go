package consent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/policy"
)

// PolicyVersion is one published version of the privacy policy.
type PolicyVersion struct {
	// N is the version's ordinal: 1 for the initial one, +1 per publication.
	N           int64
	Version     string
	URL         string
	PublishedAt time.Time
	// Reconsent lists the purposes this version changed materially: grants
	// recorded under earlier versions no longer count for them.
	Reconsent []string
}

// bootstrapPolicy stores the configured initial policy if none was ever
// published. Replicas racing here agree through the store.
func (s *Service) bootstrapPolicy(ctx context.Context) error {
	initial := PolicyVersion{N: 1, Version: s.opts.InitialPolicy.Version, URL: s.opts.InitialPolicy.URL, PublishedAt: s.now(), Reconsent: []string{}}
	if err := s.store.AddFirstPolicy(ctx, initial); err != nil {
		return fmt.Errorf("store initial policy: %w", err)
	}
	return nil
}

func (s *Service) loadPolicies(ctx context.Context) ([]PolicyVersion, error) {
	vs, err := s.store.PolicyVersions(ctx)
	if err != nil {
		return nil, fmt.Errorf("load policy versions: %w", err)
	}
	for i, v := range vs {
		if v.N != int64(i+1) {
			return nil, fmt.Errorf("policy versions are inconsistent: version %d is numbered %d", i+1, v.N)
		}
	}
	if len(vs) == 0 {
		return nil, errors.New("no policy version is stored")
	}
	return vs, nil
}

// Refresh reloads the published policy versions, so that a publication on
// another replica takes effect here. Writes always refresh first; reads use
// the snapshot, which App refreshes periodically.
func (s *Service) Refresh(ctx context.Context) error {
	_, err := s.refresh(ctx)
	return err
}

func (s *Service) refresh(ctx context.Context) (*Rules, error) {
	vs, err := s.loadPolicies(ctx)
	if err != nil {
		return nil, err
	}
	if cur := s.rules.Load(); cur != nil && len(cur.versions) == len(vs) {
		return cur, nil
	}
	r := NewRules(s.opts.Purposes, vs)
	s.rules.Store(r)
	return r, nil
}

// Rules returns the current snapshot of purposes and policy versions, for
// the pure functions Rules.InForce and Rules.Status.
func (s *Service) Rules() *Rules { return s.rules.Load() }

// Policy returns the policy version in force.
func (s *Service) Policy() PolicyVersion { return s.Rules().Current() }

// PublishPolicy publishes a new policy version. reconsent names purposes it
// changes materially: their earlier grants stop counting until the user
// grants them again.
func (s *Service) PublishPolicy(ctx context.Context, version, url string, reconsent []string) (PolicyVersion, error) {
	if err := policy.ValidateDocument("", policy.Document{Version: version, URL: url}); err != nil {
		return PolicyVersion{}, fieldErrorToInput(err)
	}
	var changed []string
	for _, id := range reconsent {
		p, ok := s.opts.Purposes.Get(id)
		if !ok {
			return PolicyVersion{}, &apperr.Error{Code: apperr.NotFound, Field: "reconsent", Message: fmt.Sprintf("there is no purpose %q", id)}
		}
		if p.Mechanism == policy.NoticeOnly {
			return PolicyVersion{}, apperr.Invalid("reconsent", "purpose %q is notice-only: there is no consent to renew", id)
		}
		if !slices.Contains(changed, id) {
			changed = append(changed, id)
		}
	}
	if changed == nil {
		changed = []string{}
	}
	for attempt := 0; ; attempt++ {
		vs, err := s.loadPolicies(ctx)
		if err != nil {
			return PolicyVersion{}, err
		}
		if slices.ContainsFunc(vs, func(v PolicyVersion) bool { return v.Version == version }) {
			return PolicyVersion{}, &apperr.Error{Code: apperr.Conflict, Field: "version", Message: fmt.Sprintf("policy version %q was already published", version)}
		}
		v := PolicyVersion{N: int64(len(vs)) + 1, Version: version, URL: url, PublishedAt: s.now(), Reconsent: changed}
		ok, err := s.store.AppendPolicy(ctx, v)
		if err != nil {
			return PolicyVersion{}, fmt.Errorf("publish policy: %w", err)
		}
		if ok {
			if _, err := s.refresh(ctx); err != nil {
				s.log.WarnContext(ctx, "published policy, but could not reload it", "version", version, "err", err)
			}
			s.log.InfoContext(ctx, "published policy version", "version", version, "reconsent", changed)
			for _, l := range s.policyListenerList() {
				l(ctx, v)
			}
			return v, nil
		}
		if attempt >= 10 {
			return PolicyVersion{}, apperr.New(apperr.Conflict, "another policy version was published at the same time; try again")
		}
		if err := backoff(ctx, attempt); err != nil {
			return PolicyVersion{}, err
		}
	}
}

// fieldErrorToInput turns policy validation errors into a BAD_USER_INPUT
// naming the first bad field.
func fieldErrorToInput(err error) error {
	var fe *policy.FieldError
	if errors.As(err, &fe) {
		return apperr.Invalid(fe.Field, "%s", fe.Message)
	}
	return apperr.Invalid("", "%s", err.Error())
}
