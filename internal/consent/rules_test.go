package consent_test

import (
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/policy"
)

func v(n int64, reconsent ...string) consent.PolicyVersion {
	return consent.PolicyVersion{N: n, Version: string(rune('0' + n)), URL: "/privacy", PublishedAt: time.Unix(n, 0), Reconsent: reconsent}
}

func TestDefaultsPerMechanism(t *testing.T) {
	r := consent.NewRules(policy.MustDefaultCatalog(), []consent.PolicyVersion{v(1)})
	want := map[string]bool{
		policy.Newsletter:          false, // OPT_IN
		policy.Surveys:             false, // OPT_IN
		policy.AggregateStatistics: true,  // OPT_OUT
		policy.Essential:           true,  // NOTICE_ONLY
	}
	// A user who never changed anything: zero Stored, and a nil one.
	for _, st := range []*consent.Stored{{}, nil} {
		statuses := r.Statuses(st)
		if len(statuses) != len(want) {
			t.Fatalf("%d statuses, want %d", len(statuses), len(want))
		}
		for _, s := range statuses {
			if s.Granted != want[s.Purpose.ID] || s.Explicit || s.NeedsRenewal || s.Last != nil {
				t.Errorf("%s (%s): %+v, want granted=%v by default", s.Purpose.ID, s.Purpose.Mechanism, s, want[s.Purpose.ID])
			}
			if r.InForce(st, s.Purpose.ID) != want[s.Purpose.ID] {
				t.Errorf("InForce(%s) disagrees with Status", s.Purpose.ID)
			}
		}
	}
	if r.InForce(&consent.Stored{}, "no_such_purpose") {
		t.Error("an unknown purpose is in force")
	}
}

func TestStatusFollowsRecordedChoice(t *testing.T) {
	r := consent.NewRules(policy.MustDefaultCatalog(), []consent.PolicyVersion{v(1)})
	st := &consent.Stored{Head: 3, State: map[string]consent.Entry{
		policy.Newsletter:          {Granted: true, Seq: 1, PolicyN: 1, Method: consent.Explicit},
		policy.AggregateStatistics: {Granted: false, Seq: 2, PolicyN: 1, Method: consent.GPC},
		policy.Essential:           {Granted: false, Seq: 3, PolicyN: 1}, // e.g. mechanism changed in configuration
	}}
	cases := map[string]struct{ granted, explicit bool }{
		policy.Newsletter:          {true, true},
		policy.Surveys:             {false, false},
		policy.AggregateStatistics: {false, true},
		policy.Essential:           {true, false},
	}
	for id, want := range cases {
		s, ok := r.Status(st, id)
		if !ok || s.Granted != want.granted || s.Explicit != want.explicit {
			t.Errorf("%s: %+v, want granted=%v explicit=%v", id, s, want.granted, want.explicit)
		}
	}
}

func TestReconsentRules(t *testing.T) {
	cat := policy.MustDefaultCatalog()
	st := &consent.Stored{Head: 3, State: map[string]consent.Entry{
		policy.Newsletter:          {Granted: true, Seq: 1, PolicyN: 1},
		policy.Surveys:             {Granted: false, Seq: 2, PolicyN: 1},
		policy.AggregateStatistics: {Granted: true, Seq: 3, PolicyN: 1},
	}}
	r := consent.NewRules(cat, []consent.PolicyVersion{v(1), v(2, policy.Newsletter, policy.Surveys, policy.AggregateStatistics)})

	nl, _ := r.Status(st, policy.Newsletter)
	if nl.Granted || !nl.NeedsRenewal || nl.Explicit || nl.Last == nil {
		t.Errorf("newsletter granted under v1, changed in v2: %+v, want off and needing renewal", nl)
	}
	sv, _ := r.Status(st, policy.Surveys)
	if sv.Granted || sv.NeedsRenewal || !sv.Explicit {
		t.Errorf("a withdrawal keeps counting: %+v", sv)
	}
	ag, _ := r.Status(st, policy.AggregateStatistics)
	if !ag.Granted || ag.NeedsRenewal {
		t.Errorf("an OPT_OUT grant that stopped counting falls back to the default (on): %+v", ag)
	}

	// Granted again under v2: counts.
	st.State[policy.Newsletter] = consent.Entry{Granted: true, Seq: 4, PolicyN: 2}
	if nl, _ := r.Status(st, policy.Newsletter); !nl.Granted || nl.NeedsRenewal || !nl.Explicit {
		t.Errorf("renewed grant: %+v", nl)
	}
	// A later policy without reconsent does not invalidate anything.
	r3 := consent.NewRules(cat, []consent.PolicyVersion{v(1), v(2, policy.Newsletter), v(3)})
	if !r3.InForce(st, policy.Newsletter) {
		t.Error("v3 changed nothing material, yet the v2 grant stopped counting")
	}
	if r3.Current().N != 3 {
		t.Errorf("current policy %+v", r3.Current())
	}
}
