package consent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/policy"
)

// PoliciesCollection holds the published policy versions: one document,
// so publishing is a single-document compare-and-swap on its count.
const PoliciesCollection = "consent_policy"

const policyDocID = "policy"

// PolicyVersion is one published version of the privacy policy.
type PolicyVersion struct {
	// N is the version's ordinal: 1 for the initial one, +1 per publication.
	N           int64     `bson:"n"`
	Version     string    `bson:"version"`
	URL         string    `bson:"url"`
	PublishedAt time.Time `bson:"publishedAt"`
	// Reconsent lists the purposes this version changed materially: grants
	// recorded under earlier versions no longer count for them.
	Reconsent []string `bson:"reconsent"`
}

type policyDoc struct {
	ID       string          `bson:"_id"`
	N        int64           `bson:"n"`
	Versions []PolicyVersion `bson:"versions"`
}

// bootstrapPolicy stores the configured initial policy if none was ever
// published. Replicas racing here agree through the document _id.
func (s *Service) bootstrapPolicy(ctx context.Context) error {
	now := s.now()
	initial := PolicyVersion{N: 1, Version: s.opts.InitialPolicy.Version, URL: s.opts.InitialPolicy.URL, PublishedAt: now, Reconsent: []string{}}
	_, err := s.policies.InsertOne(ctx, policyDoc{ID: policyDocID, N: 1, Versions: []PolicyVersion{initial}})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("store initial policy: %w", err)
	}
	return nil
}

func (s *Service) loadPolicyDoc(ctx context.Context) (*policyDoc, error) {
	var d policyDoc
	if err := s.policies.FindOne(ctx, bson.D{{Key: "_id", Value: policyDocID}}).Decode(&d); err != nil {
		return nil, fmt.Errorf("load policy versions: %w", err)
	}
	if len(d.Versions) == 0 || int64(len(d.Versions)) != d.N {
		return nil, fmt.Errorf("policy versions document is inconsistent: n=%d with %d versions", d.N, len(d.Versions))
	}
	return &d, nil
}

// Refresh reloads the published policy versions, so that a publication on
// another replica takes effect here. Writes always refresh first; reads use
// the snapshot, which App refreshes periodically.
func (s *Service) Refresh(ctx context.Context) error {
	_, err := s.refresh(ctx)
	return err
}

func (s *Service) refresh(ctx context.Context) (*Rules, error) {
	d, err := s.loadPolicyDoc(ctx)
	if err != nil {
		return nil, err
	}
	if cur := s.rules.Load(); cur != nil && int64(len(cur.versions)) == d.N {
		return cur, nil
	}
	r := NewRules(s.opts.Purposes, d.Versions)
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
		d, err := s.loadPolicyDoc(ctx)
		if err != nil {
			return PolicyVersion{}, err
		}
		if slices.ContainsFunc(d.Versions, func(v PolicyVersion) bool { return v.Version == version }) {
			return PolicyVersion{}, &apperr.Error{Code: apperr.Conflict, Field: "version", Message: fmt.Sprintf("policy version %q was already published", version)}
		}
		v := PolicyVersion{N: d.N + 1, Version: version, URL: url, PublishedAt: s.now(), Reconsent: changed}
		res, err := s.policies.UpdateOne(ctx,
			bson.D{{Key: "_id", Value: policyDocID}, {Key: "n", Value: d.N}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: v.N}}}, {Key: "$push", Value: bson.D{{Key: "versions", Value: v}}}})
		if err != nil {
			return PolicyVersion{}, fmt.Errorf("publish policy: %w", err)
		}
		if res.MatchedCount == 1 {
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
