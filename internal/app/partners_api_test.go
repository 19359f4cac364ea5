package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// partnerAdmin starts a server with a configured admin and returns it with
// a signed-in admin client.
type partnerView struct {
	ID               string
	Name             string
	EpsilonBudget    float64
	BudgetPeriodDays int
	BudgetRemaining  float64
	BudgetResetsAt   time.Time
	RevokedAt        *time.Time
}

const partnerFields = `id name epsilonBudget budgetPeriodDays budgetRemaining budgetResetsAt createdAt revokedAt`

// createPartner creates a partner as admin and returns it with a client
// that holds its API key.
func createPartner(t *testing.T, s *apptest.Server, admin *apptest.Client, budget float64, days int) (partnerView, *apptest.Client) {
	t.Helper()
	var out struct {
		CreatePartner struct {
			Partner partnerView
			APIKey  string
		}
	}
	admin.Do(t, `mutation($b: Float!, $d: Int!) { createPartner(name: "Acme Research", epsilonBudget: $b, budgetPeriodDays: $d) {
		apiKey partner { `+partnerFields+` } } }`, map[string]any{"b": budget, "d": days}).Decode(t, &out)
	c := s.Client()
	c.Token = out.CreatePartner.APIKey
	return out.CreatePartner.Partner, c
}

type partnerMeView struct {
	PartnerMe struct {
		Name            string
		BudgetRemaining float64
		BudgetResetsAt  time.Time
	}
}

const partnerMeQuery = `{ partnerMe { name budgetRemaining budgetResetsAt } }`

func TestCreatePartnerShowsTheKeyOnce(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	p, pc := createPartner(t, s, admin, 3, 30)
	if !strings.HasPrefix(pc.Token, "cgp_") || p.Name != "Acme Research" || p.EpsilonBudget != 3 || p.BudgetPeriodDays != 30 || p.BudgetRemaining != 3 {
		t.Fatalf("created %+v with key %q", p, pc.Token)
	}
	var me partnerMeView
	pc.Do(t, partnerMeQuery, nil).Decode(t, &me)
	if me.PartnerMe.Name != "Acme Research" || me.PartnerMe.BudgetRemaining != 3 || time.Until(me.PartnerMe.BudgetResetsAt) < 29*24*time.Hour {
		t.Fatalf("partnerMe = %+v", me.PartnerMe)
	}
	var list struct {
		Partners struct {
			Edges      []struct{ Node partnerView }
			TotalCount int
		}
	}
	admin.Do(t, `{ partners { totalCount edges { node { `+partnerFields+` } } } }`, nil).Decode(t, &list)
	if len(list.Partners.Edges) != 1 || list.Partners.Edges[0].Node.ID != p.ID || list.Partners.TotalCount != 1 {
		t.Fatalf("partners = %+v", list.Partners)
	}
	// Only a hash of the key is stored.
	// The key is cgp_<id>_<secret>; the secret is base64url and may itself
	// contain '_', so split at the first two only.
	secret := strings.SplitN(pc.Token, "_", 3)[2]
	if len(secret) < 40 {
		t.Fatalf("partner key secret %q is too short to be 256 bits", secret)
	}
	if dump := s.Dump(t); strings.Contains(dump, secret) || !strings.Contains(dump, "Acme Research") {
		t.Fatal("the store holds the partner key in clear (or no partner at all)")
	}
	// Users and anonymous callers cannot manage partners.
	user := s.Register(t, "not-an-admin")
	for c, code := range map[*apptest.Client]string{user: "FORBIDDEN", s.Client(): "UNAUTHENTICATED", pc: "FORBIDDEN"} {
		if r := c.Do(t, `mutation { createPartner(name: "x", epsilonBudget: 1, budgetPeriodDays: 1) { apiKey } }`, nil); r.Code() != code {
			t.Errorf("createPartner by a non-admin: %s, want %s", r.Raw, code)
		}
		if r := c.Do(t, `{ partners { totalCount } }`, nil); r.Code() != code {
			t.Errorf("partners by a non-admin: %s, want %s", r.Raw, code)
		}
	}
	if r := admin.Do(t, `mutation { createPartner(name: "x", epsilonBudget: 0, budgetPeriodDays: 1) { apiKey } }`, nil); r.Code() != "BAD_USER_INPUT" || r.Field() != "epsilonBudget" {
		t.Errorf("zero budget: %s", r.Raw)
	}
}

// A partner key is confined to the partner fields: it cannot read `me`,
// sign up, sign in or change any user, and the admin fields refuse it.
func TestPartnerKeyCannotActAsUser(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	_, pc := createPartner(t, s, admin, 1, 1)
	before := countUsers(t, s)
	for name, q := range map[string]string{
		"me":              `{ me { id username } }`,
		"register":        `mutation { register(input: {username: "via-partner", password: "correct horse battery"}) { token user { id } } }`,
		"login":           `mutation { login(username: "partner-admin", password: "partner admin password") { token user { id } } }`,
		"logout":          `mutation { logout }`,
		"updateProfile":   `mutation { updateProfile(input: {country: "DE"}) { id } }`,
		"setEmail":        `mutation { setEmail(email: "p@example.org") { id } }`,
		"verifyEmail":     `mutation { verifyEmail(token: "cgv_abcdefghijklmnop") }`,
		"deleteMyAccount": `mutation { deleteMyAccount(password: "whatever it is") }`,
		"eraseUser":       `mutation { eraseUser(id: "x") }`,
		"grantConsent":    `mutation { grantConsent(purpose: "newsletter") { receipt } }`,
		"exportMyData":    `{ exportMyData { signature } }`,
		"purposes":        `{ purposes { id } }`,
		"reconcile":       `mutation { reconcileDemographics { drift } }`,
	} {
		r := pc.Do(t, q, nil)
		if r.Code() != "FORBIDDEN" {
			t.Errorf("%s with a partner key: %s, want FORBIDDEN", name, r.Raw)
		}
		if strings.Contains(string(r.Data), `"id"`) || strings.Contains(string(r.Raw), `"token"`) {
			t.Errorf("%s with a partner key returned data: %s", name, r.Raw)
		}
	}
	if n := countUsers(t, s); n != before {
		t.Fatalf("a partner key created an account (%d users, had %d)", n, before)
	}
	// The same key still works for what it is for.
	var me partnerMeView
	pc.Do(t, partnerMeQuery, nil).Decode(t, &me)
	if me.PartnerMe.Name == "" {
		t.Fatal("partnerMe failed after the refusals")
	}
}

// `me` is reachable by type from fields anyone may call (the schema walk
// allows it for this reason): it must answer null to anonymous callers and
// partners.
func TestMeIsNullForAnonymousAndPartners(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	_, pc := createPartner(t, s, admin, 1, 1)
	s.Register(t, "someone-else")
	anon := s.Client().Do(t, `{ me { id username email profile { country } } }`, nil)
	var out struct{ Me *struct{ ID string } }
	anon.Decode(t, &out)
	if out.Me != nil {
		t.Fatalf("anonymous me = %s", anon.Raw)
	}
	partner := pc.Do(t, `{ me { id username email profile { country } } }`, nil)
	if partner.Code() != "FORBIDDEN" || string(partner.Data) != `{"me":null}` {
		t.Fatalf("partner me = %s, want null with FORBIDDEN", partner.Raw)
	}
}

func TestRevokedKeyIsRefused(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	p, pc := createPartner(t, s, admin, 1, 1)
	if r := pc.Do(t, `{ demographics(groupBy: [COUNTRY]) { k } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("before revocation: %s", r.Raw)
	}
	var rev struct{ RevokePartner partnerView }
	admin.Do(t, `mutation($id: ID!) { revokePartner(id: $id) { `+partnerFields+` } }`, map[string]any{"id": p.ID}).Decode(t, &rev)
	if rev.RevokePartner.RevokedAt == nil {
		t.Fatalf("revokePartner = %+v", rev.RevokePartner)
	}
	for _, q := range []string{`{ demographics(groupBy: [COUNTRY]) { k } }`, partnerMeQuery} {
		if r := pc.Do(t, q, nil); r.Code() != "UNAUTHENTICATED" || string(r.Data) != "null" {
			t.Errorf("revoked key: %s, want UNAUTHENTICATED and no data", r.Raw)
		}
	}
	if r := admin.Do(t, `mutation { revokePartner(id: "no-such-partner") { id } }`, nil); r.Code() != "NOT_FOUND" {
		t.Errorf("revoking an unknown partner: %s", r.Raw)
	}
}

func TestBudgetExhaustionAndResetOverAPI(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	p, pc := createPartner(t, s, admin, 1, 1)
	type report struct {
		Demographics struct {
			Epsilon, BudgetRemaining float64
		}
	}
	query := func(eps float64) *apptest.Response {
		return pc.Do(t, `query($e: Float) { demographics(groupBy: [], epsilon: $e) { epsilon budgetRemaining } }`, map[string]any{"e": eps})
	}
	for _, want := range []float64{0.6, 0.2} {
		var out report
		query(0.4).Decode(t, &out)
		if d := out.Demographics; d.Epsilon != 0.4 || !close(d.BudgetRemaining, want) {
			t.Fatalf("report %+v, want epsilon 0.4 and %g left", d, want)
		}
	}
	if r := query(0.4); r.Code() != "BUDGET_EXHAUSTED" || string(r.Data) != "null" {
		t.Fatalf("beyond the budget: %s", r.Raw)
	}
	var me partnerMeView
	pc.Do(t, partnerMeQuery, nil).Decode(t, &me)
	if !close(me.PartnerMe.BudgetRemaining, 0.2) {
		t.Fatalf("a refused query charged the budget: %g left, want 0.2", me.PartnerMe.BudgetRemaining)
	}
	var out report
	query(0.2).Decode(t, &out)
	if out.Demographics.BudgetRemaining != 0 {
		t.Fatalf("the rest of the budget: %+v", out.Demographics)
	}
	// A day passes: move the period start back rather than wait.
	ctx := context.Background()
	movedBack := time.Now().Add(-25 * time.Hour).UTC().Truncate(time.Millisecond)
	storetest.Tamper(t, s.Store(), `UPDATE partners SET created_at = ? WHERE id = ?`, []any{movedBack.UnixMilli(), p.ID},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			return modified(db.Collection("partners").UpdateOne(ctx, bson.D{{Key: "_id", Value: p.ID}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "createdAt", Value: movedBack}}}}))
		})
	if r, err := s.Store().Partners().Get(ctx, p.ID); err != nil || r == nil || !r.CreatedAt.Equal(movedBack) {
		t.Fatalf("partner after moving its period back: %+v, %v", r, err)
	}
	pc.Do(t, partnerMeQuery, nil).Decode(t, &me)
	if me.PartnerMe.BudgetRemaining != 1 || time.Until(me.PartnerMe.BudgetResetsAt) > 24*time.Hour {
		t.Fatalf("next period: %+v", me.PartnerMe)
	}
	query(1).Decode(t, &out)
	if out.Demographics.BudgetRemaining != 0 {
		t.Fatalf("full budget of the new period: %+v", out.Demographics)
	}
}

func close(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// The epsilon of a request is charged once, for all its demographics fields
// together, and only if every one of them is answered: two aliases whose sum
// exceeds the budget are both refused, one invalid field makes the whole
// request cost nothing, and fields within budget (also through fragments
// and variables) are charged their sum once.
func TestDemographicsChargedAllOrNothingPerRequest(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	_, pc := createPartner(t, s, admin, 1, 30)
	left := func() float64 {
		t.Helper()
		var me partnerMeView
		pc.Do(t, partnerMeQuery, nil).Decode(t, &me)
		return me.PartnerMe.BudgetRemaining
	}
	over := pc.Do(t, `{ a: demographics(groupBy: [COUNTRY], epsilon: 0.6) { epsilon }
		b: demographics(groupBy: [GENDER], epsilon: 0.6) { epsilon } }`, nil)
	if string(over.Data) != "null" || len(over.Errors) != 2 {
		t.Fatalf("two aliases over budget: %s", over.Raw)
	}
	for _, e := range over.Errors {
		if e.Extensions["code"] != "BUDGET_EXHAUSTED" {
			t.Fatalf("two aliases over budget: %s", over.Raw)
		}
	}
	if got := left(); got != 1 {
		t.Fatalf("a refused request charged the budget: %g left, want 1", got)
	}
	invalid := pc.Do(t, `{ a: demographics(groupBy: [COUNTRY], epsilon: 0.3) { epsilon }
		b: demographics(groupBy: [GENDER], epsilon: 5) { epsilon } }`, nil)
	if string(invalid.Data) != "null" || invalid.Code() == "" {
		t.Fatalf("one field with epsilon above the cap: %s", invalid.Raw)
	}
	if got := left(); got != 1 {
		t.Fatalf("a request with an invalid field charged the budget: %g left, want 1", got)
	}
	dup := pc.Do(t, `{ a: demographics(groupBy: [COUNTRY], epsilon: 0.3) { epsilon }
		b: demographics(groupBy: [COUNTRY, COUNTRY], epsilon: 0.3) { epsilon } }`, nil)
	if string(dup.Data) != "null" || left() != 1 {
		t.Fatalf("one field with a bad groupBy: %s, %g left", dup.Raw, left())
	}
	var ok struct {
		A, B, C struct{ Epsilon, BudgetRemaining float64 }
	}
	pc.Do(t, `query($e: Float) { a: demographics(groupBy: [COUNTRY], epsilon: 0.25) { epsilon budgetRemaining }
		...more }
		fragment more on Query { b: demographics(groupBy: [], epsilon: $e) { epsilon budgetRemaining }
		c: demographics(groupBy: [GENDER]) @skip(if: true) { epsilon } }`, map[string]any{"e": 0.5}).Decode(t, &ok)
	if ok.A.Epsilon != 0.25 || ok.B.Epsilon != 0.5 || !close(ok.A.BudgetRemaining, 0.25) || !close(ok.B.BudgetRemaining, 0.25) {
		t.Fatalf("two fields within budget: %+v; want each to see 0.25 left after one charge of 0.75", ok)
	}
	if got := left(); !close(got, 0.25) {
		t.Fatalf("after a charge of 0.25 + 0.5: %g left, want 0.25", got)
	}
	// The bad groupBy was caught only by its resolver, after the charge of
	// 0.6: that charge was refunded.
	id := partnerID(t, admin)
	spent := scrape(t, s, `consentgraph_partner_epsilon_spent_total{partner="`+id+`"}`)
	refunded := scrape(t, s, `consentgraph_partner_epsilon_refunded_total{partner="`+id+`"}`)
	if !close(spent, 1.35) || !close(refunded, 0.6) {
		t.Fatalf("epsilon metrics: spent %v, refunded %v; want 1.35 and 0.6", spent, refunded)
	}
}

// partnerID returns the id of the only partner.
func partnerID(t *testing.T, admin *apptest.Client) string {
	t.Helper()
	var out struct {
		Partners struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	admin.Do(t, `{ partners { edges { node { id } } } }`, nil).Decode(t, &out)
	if len(out.Partners.Edges) != 1 {
		t.Fatalf("partners: %+v", out.Partners)
	}
	return out.Partners.Edges[0].Node.ID
}
