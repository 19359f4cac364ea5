package app_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// person is the test's own model of a user, from which it recounts.
type person struct {
	c        *apptest.Client
	id, name string
	profile  map[string]any // birthYear, country, gender, language; absent = not given
	counts   bool           // aggregate_statistics not withdrawn
	signedUp time.Time
}

func signUp(t *testing.T, s *apptest.Server, name string, profile map[string]any) *person {
	t.Helper()
	c := s.Client()
	var out struct {
		Register struct {
			Token string
			User  struct {
				ID        string
				CreatedAt time.Time
			}
		}
	}
	c.Do(t, `mutation($in: RegisterInput!) { register(input: $in) { token user { id createdAt } } }`,
		map[string]any{"in": map[string]any{"username": name, "password": "correct horse battery", "profile": profile}}).Decode(t, &out)
	c.Token = out.Register.Token
	return &person{c: c, id: out.Register.User.ID, name: name, profile: profile, counts: true, signedUp: out.Register.User.CreatedAt}
}

// values returns the person's value per dimension, as a report shows it.
func (p *person) values(now time.Time) [5]string {
	v := [5]string{demographics.Unknown, demographics.Unknown, demographics.Unknown, demographics.Unknown, p.signedUp.UTC().Format("2006-01")}
	if by, ok := p.profile["birthYear"].(int); ok {
		v[0] = demographics.AgeBandOf(fmt.Sprint(by), now)
	}
	for i, f := range []string{"country", "gender", "language"} {
		if s, ok := p.profile[f].(string); ok {
			v[i+1] = strings.ToUpper(s)
			if f == "language" {
				v[i+1] = strings.ToLower(s)
			}
		}
	}
	return v
}

// checkCellsEqualRecount compares the true counts of every one of the 32
// subsets of dimensions with a recount from the people who count.
func checkCellsEqualRecount(t *testing.T, s *apptest.Server, people []*person) {
	t.Helper()
	now := time.Now()
	for mask := range 32 {
		var dims []demographics.Dimension
		for i, d := range demographics.Dimensions {
			if mask&(1<<i) != 0 {
				dims = append(dims, d)
			}
		}
		want := map[string]int64{}
		for _, p := range people {
			if !p.counts {
				continue
			}
			v := p.values(now)
			var key []string
			for i := range 5 {
				if mask&(1<<i) != 0 {
					key = append(key, v[i])
				}
			}
			want[strings.Join(key, "|")]++
		}
		groups, err := s.App.Demographics.Groups(context.Background(), dims, now)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, g := range groups {
			got[strings.Join(g.Values, "|")] = g.Count
		}
		if fmt.Sprint(sorted(want)) != fmt.Sprint(sorted(got)) {
			t.Fatalf("group by %v:\n stored  %v\n recount %v", dims, sorted(got), sorted(want))
		}
	}
}

func sorted(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}

func randomProfile(r *rand.Rand) map[string]any {
	p := map[string]any{}
	if r.IntN(4) > 0 {
		p["birthYear"] = []int{1950, 1975, 1990, 2003}[r.IntN(4)]
	}
	if r.IntN(4) > 0 {
		p["country"] = []string{"DE", "fr", "NZ"}[r.IntN(3)]
	}
	if r.IntN(3) > 0 {
		p["gender"] = []string{"FEMALE", "MALE", "NON_BINARY"}[r.IntN(3)]
	}
	if r.IntN(3) > 0 {
		p["language"] = []string{"de", "EN"}[r.IntN(2)]
	}
	return p
}

// Cells equal a from-scratch recount after a random sequence of sign-ups,
// profile edits, withdrawals, grants and erasures, all through the API.
func TestCellsFollowProfileConsentAndErasureOverAPI(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	r := rand.New(rand.NewPCG(11, 12))
	var people, all []*person
	done := map[string]int{}
	for step := range 36 {
		op := r.IntN(10)
		if len(people) < 4 {
			op = 0
		}
		switch {
		case op <= 3:
			p := signUp(t, s, fmt.Sprintf("person-%d", step), randomProfile(r))
			people, all = append(people, p), append(all, p)
			done["sign-up"]++
		case op <= 5:
			p := people[r.IntN(len(people))]
			input := map[string]any{}
			for f, v := range randomProfile(r) {
				if r.IntN(2) == 0 {
					input[f] = v
				}
			}
			for _, f := range []string{"birthYear", "country", "gender", "language"} {
				if _, set := input[f]; !set && r.IntN(4) == 0 {
					input[f] = nil // explicit null clears
				}
			}
			if r := p.c.Do(t, `mutation($in: ProfileInput!) { updateProfile(input: $in) { id } }`, map[string]any{"in": input}); len(r.Errors) > 0 {
				t.Fatalf("updateProfile: %s", r.Raw)
			}
			for f, v := range input {
				if v == nil {
					delete(p.profile, f)
				} else {
					p.profile[f] = v
				}
			}
			done["edit"]++
		case op <= 7:
			p := people[r.IntN(len(people))]
			m := `mutation { withdrawConsent(purpose: "aggregate_statistics") { receipt } }`
			if !p.counts {
				m = `mutation { grantConsent(purpose: "aggregate_statistics") { receipt } }`
			}
			if r := p.c.Do(t, m, nil); len(r.Errors) > 0 {
				t.Fatalf("consent change: %s", r.Raw)
			}
			p.counts = !p.counts
			done["consent"]++
		default:
			i := r.IntN(len(people))
			p := people[i]
			if r := p.c.Do(t, `mutation { deleteMyAccount(password: "correct horse battery") }`, nil); len(r.Errors) > 0 {
				t.Fatalf("deleteMyAccount: %s", r.Raw)
			}
			p.counts = false
			people = append(people[:i], people[i+1:]...)
			done["erasure"]++
		}
	}
	if done["edit"] == 0 || done["consent"] == 0 || done["erasure"] == 0 {
		t.Fatalf("the sequence missed a kind of change: %v", done)
	}
	checkCellsEqualRecount(t, s, all)
	// Erased and withdrawn users have no record left behind.
	var n int64
	if err := s.Store().Demographics().EachMember(context.Background(), func(*demographics.Member) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	counting := 0
	for _, p := range all {
		if p.counts {
			counting++
		}
	}
	if n != int64(counting) {
		t.Fatalf("%d member records, want %d", n, counting)
	}
}

type reportView struct {
	Demographics struct {
		Cells []struct {
			AgeBand, Country, Gender, Language, SignupMonth *string
			Count                                           int
		}
		K, Threshold                    int
		Epsilon, Delta, BudgetRemaining float64
		GeneratedAt                     time.Time
	}
}

// Groups are shown only when their noisy count reaches the threshold
// (at epsilon 10, where the outcome is certain up to ~1e-6, big groups are
// shown and groups of two are not), withdrawn users are not counted, a
// missing value is its own UNKNOWN group, the report states its rule and no
// exact count, and nothing in the answer names a user.
func TestDemographicsThresholdAndWithdrawalOverAPI(t *testing.T) {
	t.Parallel()
	const k = 3
	s, admin := apptest.StartWithAdmin(t, func(c *config.Config) { c.DemographicsK = k; c.DemographicsMaxEpsilon = 10 })
	_, pc := createPartner(t, s, admin, 100, 30)
	var people []*person
	add := func(prefix string, n int, profile map[string]any) []*person {
		var added []*person
		for i := range n {
			added = append(added, signUp(t, s, fmt.Sprintf("%s-%d", prefix, i), profile))
		}
		people = append(people, added...)
		return added
	}
	// At epsilon 10 and delta 1e-9 the threshold is 6 (docs/privacy.md).
	add("de", 8, map[string]any{"country": "DE", "birthYear": 1990})
	add("fr", 2, map[string]any{"country": "FR"})
	nz := add("nz", 4, map[string]any{"country": "NZ", "gender": "FEMALE"})
	add("none", 8, map[string]any{})
	for _, p := range nz[:2] { // two withdraw: NZ falls to 2
		p.c.Do(t, `mutation { withdrawConsent(purpose: "aggregate_statistics") { receipt } }`, nil).Decode(t, &struct{}{})
		p.counts = false
	}
	checkCellsEqualRecount(t, s, people)

	var rep reportView
	raw := pc.Do(t, `{ demographics(groupBy: [COUNTRY], epsilon: 10) { cells { ageBand country gender language signupMonth count }
		k threshold epsilon delta budgetRemaining generatedAt } }`, nil)
	raw.Decode(t, &rep)
	d := rep.Demographics
	got := map[string]int{}
	for _, c := range d.Cells {
		if c.Country == nil || c.AgeBand != nil || c.Gender != nil || c.Language != nil || c.SignupMonth != nil || c.Count < d.Threshold {
			t.Fatalf("cell %+v: want only a country and a count >= the threshold %d", c, d.Threshold)
		}
		got[*c.Country] = c.Count
	}
	if _, ok := got["DE"]; !ok || len(got) != 2 {
		t.Fatalf("released %v, want DE and UNKNOWN (FR has 2, NZ 2 after two withdrawals: far below the threshold)", got)
	}
	if _, ok := got["UNKNOWN"]; !ok {
		t.Fatalf("released %v, want an UNKNOWN group", got)
	}
	if d.K != k || d.Threshold != 6 || d.Epsilon != 10 || d.Delta != 1e-9 || d.BudgetRemaining != 90 || time.Since(d.GeneratedAt) > time.Minute {
		t.Fatalf("report %+v", d)
	}
	for _, p := range people {
		if strings.Contains(string(raw.Raw), p.id) || strings.Contains(string(raw.Raw), p.name) {
			t.Fatalf("the answer names a user: %s", raw.Raw)
		}
	}
	// Grouped by everything, the age band is derived and nothing names a user.
	raw = pc.Do(t, `{ demographics(groupBy: [AGE_BAND, COUNTRY, GENDER, LANGUAGE, SIGNUP_MONTH], epsilon: 10) {
		cells { ageBand country gender language signupMonth count } threshold } }`, nil)
	raw.Decode(t, &rep)
	if len(rep.Demographics.Cells) != 2 {
		t.Fatalf("grouped by everything: %s", raw.Raw)
	}
	for _, c := range rep.Demographics.Cells {
		if *c.Country == "DE" && (*c.AgeBand != demographics.AgeBandOf("1990", time.Now()) || *c.Gender != "UNKNOWN" || *c.SignupMonth != time.Now().UTC().Format("2006-01")) {
			t.Fatalf("DE cell %+v", c)
		}
	}
	for _, p := range people {
		if strings.Contains(string(raw.Raw), p.id) || strings.Contains(string(raw.Raw), p.name) {
			t.Fatalf("the answer names a user: %s", raw.Raw)
		}
	}
	if r := pc.Do(t, `{ demographics(groupBy: [COUNTRY, COUNTRY]) { k } }`, nil); r.Code() != "BAD_USER_INPUT" {
		t.Fatalf("a dimension twice: %s", r.Raw)
	}
	if r := pc.Do(t, `{ demographics(groupBy: [COUNTRY], epsilon: 50) { k } }`, nil); r.Code() != "BAD_USER_INPUT" || r.Field() != "epsilon" {
		t.Fatalf("epsilon out of range: %s", r.Raw)
	}
	if r := pc.Do(t, `{ demographics(groupBy: [COUNTRY], epsilon: 10.5) { k } }`, nil); r.Code() != "BAD_USER_INPUT" || r.Field() != "epsilon" {
		t.Fatalf("epsilon above the cap of 10: %s", r.Raw)
	}
	for _, c := range []*apptest.Client{people[0].c, admin, s.Client()} {
		if r := c.Do(t, `{ demographics(groupBy: [COUNTRY]) { k } }`, nil); r.Code() != "FORBIDDEN" && r.Code() != "UNAUTHENTICATED" {
			t.Fatalf("demographics without a partner key: %s", r.Raw)
		}
	}
}

// The admin mutation finds a hand-corrupted cell, repairs it and reports
// the drift.
func TestReconcileDemographicsRepairsACorruptedCell(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	var people []*person
	for i := range 4 {
		people = append(people, signUp(t, s, fmt.Sprintf("r-%d", i), map[string]any{"country": "DE", "birthYear": 1980 + i%2}))
	}
	ctx := context.Background()
	// A cell of age band × country (mask 0b00011, "AC"), bumped by 5
	// behind the aggregates' back.
	const maskAC = 3
	cells, err := s.Store().Demographics().CellCounts(ctx, maskAC)
	if err != nil || len(cells) == 0 {
		t.Fatalf("cells of AC: %v, %v", cells, err)
	}
	cell := cells[0]
	storetest.Tamper(t, s.Store(), `UPDATE cells SET n = n + 5 WHERE mask = ? AND id = ?`, []any{maskAC, cell.ID},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			return modified(db.Collection("demographics_cells_AC").UpdateOne(ctx, bson.D{{Key: "_id", Value: cell.ID}},
				bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 5}}}}))
		})
	const q = `mutation { reconcileDemographics { startedAt durationMs usersCounted membersRepaired cellsChecked cellsRepaired drift cellsSkipped } }`
	if r := people[0].c.Do(t, q, nil); r.Code() != "FORBIDDEN" {
		t.Fatalf("reconcile by a user: %s", r.Raw)
	}
	var out struct {
		ReconcileDemographics struct {
			UsersCounted, MembersRepaired, CellsChecked, CellsRepaired, Drift, CellsSkipped int
		}
	}
	admin.Do(t, q, nil).Decode(t, &out)
	rep := out.ReconcileDemographics
	if rep.UsersCounted != 4 || rep.CellsRepaired != 1 || rep.Drift != 5 || rep.CellsSkipped != 0 || rep.MembersRepaired != 0 || rep.CellsChecked < 32 {
		t.Fatalf("report %+v: want 4 users, 1 cell repaired with drift 5", rep)
	}
	checkCellsEqualRecount(t, s, people)
	admin.Do(t, q, nil).Decode(t, &out)
	if out.ReconcileDemographics.Drift != 0 || out.ReconcileDemographics.CellsRepaired != 0 {
		t.Fatalf("second run still finds drift: %+v", out.ReconcileDemographics)
	}
}

// Repeating the same query at the smallest epsilon does not pin down an
// exact count: the budget stops the partner after exactly floor(B/0.01)
// answers, the answers vary, and even averaged over all of them the count
// is uncertain by tens of people. (10 000 synthetic users are loaded with
// the bulk import, because the threshold at epsilon 0.01 is about 4 150: a
// smaller group would simply never be shown.)
func TestRepeatedSmallEpsilonQueriesDoNotRevealTheCount(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	const budget, eps, n = 0.5, 0.01, 10_000
	_, pc := createPartner(t, s, admin, budget, 30)
	ctx := context.Background()
	entries := make([]demographics.Entry, n)
	for i := range entries {
		entries[i] = demographics.Entry{UserID: fmt.Sprintf("synthetic-%05d", i),
			Subject: &demographics.Subject{Country: ptr("DE"), SignedUp: time.Now()}}
	}
	if err := s.App.Demographics.Import(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := s.App.Demographics.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	var answers []float64
	for {
		var out struct {
			Demographics struct {
				Cells     []struct{ Count int }
				Threshold int
			}
		}
		r := pc.Do(t, `{ demographics(groupBy: [COUNTRY], epsilon: 0.01) { cells { count } threshold } }`, nil)
		if r.Code() == "BUDGET_EXHAUSTED" {
			break
		}
		r.Decode(t, &out)
		if len(out.Demographics.Cells) != 1 || out.Demographics.Threshold > n/2 {
			t.Fatalf("answer %d: %s", len(answers)+1, r.Raw)
		}
		answers = append(answers, float64(out.Demographics.Cells[0].Count))
		if len(answers) > 1000 {
			t.Fatal("the budget never stopped the queries")
		}
	}
	if want := int(math.Floor(budget/eps + 1e-9)); len(answers) != want {
		t.Fatalf("%d answers before BUDGET_EXHAUSTED, want floor(%g/%g) = %d", len(answers), budget, eps, want)
	}
	var sum, sumSq float64
	distinct := map[float64]bool{}
	for _, a := range answers {
		sum, sumSq = sum+a, sumSq+a*a
		distinct[a] = true
	}
	q := float64(len(answers))
	mean := sum / q
	sd := math.Sqrt((sumSq - q*mean*mean) / (q - 1))
	// The mechanism's standard deviation at epsilon 0.01 is about 283;
	// the standard error of the mean of all the answers the budget buys is
	// that over sqrt(50), about 40 people.
	se := math.Sqrt(demographics.NoiseVariance(eps) / q)
	if len(distinct) < len(answers)/2 || sd < 100 {
		t.Fatalf("answers barely vary: %d distinct of %d, standard deviation %.1f (the mechanism's is %.0f)",
			len(distinct), len(answers), sd, math.Sqrt(demographics.NoiseVariance(eps)))
	}
	if se < 1 {
		t.Fatalf("standard error of the mean %.2f: the budget buys enough answers to pin the count to one person", se)
	}
	t.Logf("%d answers: mean %.1f (true %d), sd %.1f; a 95%% interval for the count from all of them spans ±%.0f people",
		len(answers), mean, n, sd, 1.96*se)
}
