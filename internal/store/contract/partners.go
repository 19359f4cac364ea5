package contract

import (
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/partners"
)

func partnersTests() []contractTest {
	return []contractTest{
		{"partners/insert-get-list", testPartnersCRUD},
		{"partners/revoke", testPartnerRevoke},
		{"partners/page-and-count", testPartnersPage},
		{"partners/spend-conditions", testSpendConditions},
		{"partners/spend-never-overspends-under-50-writers", testSpendConcurrent},
		{"partners/start-period", testStartPeriod},
		{"partners/start-period-under-50-writers", testStartPeriodConcurrent},
		{"partners/refund-conditions", testRefundConditions},
		{"partners/refunds-and-charges-under-50-writers", testRefundConcurrent},
	}
}

func partner(id string, created time.Time) partners.Record {
	return partners.Record{ID: id, Name: "Partner " + id, KeyHash: "sha256:" + id, Budget: 1_000_000, PeriodDays: 30, CreatedAt: created, Period: 3, Spent: 0}
}

func (e *env) partner(id string) *partners.Record {
	e.t.Helper()
	r, err := e.b.Partners().Get(e.ctx, id)
	e.must(err, "Get(%s)", id)
	return r
}

func testPartnersCRUD(e *env) {
	s := e.b.Partners()
	if r := e.partner("p-none"); r != nil {
		e.t.Errorf("Get of an absent partner = %+v, want nil", r)
	}
	list, err := s.List(e.ctx)
	e.must(err, "List")
	if len(list) != 0 {
		e.t.Errorf("List of a new store = %v", list)
	}
	revoked := at(time.Hour)
	ps := []partners.Record{
		partner("p-c", at(2*time.Second)),
		partner("p-b", at(time.Second)),
		partner("p-a", at(2*time.Second)), // same time as p-c: id decides
		partner("p-z", at(0)),
	}
	ps[1].RevokedAt, ps[1].Spent, ps[1].Period = &revoked, 1234, 9
	for _, p := range ps {
		e.must(s.Insert(e.ctx, p), "Insert(%s)", p.ID)
	}
	for _, p := range ps {
		e.equal("Get("+p.ID+")", &p, e.partner(p.ID))
	}
	list, err = s.List(e.ctx)
	e.must(err, "List")
	e.equal("List (oldest first, then by id)", []partners.Record{ps[3], ps[1], ps[2], ps[0]}, list)
}

func testPartnerRevoke(e *env) {
	s := e.b.Partners()
	p := partner("p-1", at(0))
	e.must(s.Insert(e.ctx, p), "Insert")
	e.must(s.Insert(e.ctx, partner("p-2", at(0))), "Insert")
	first := at(time.Hour)
	e.must(s.Revoke(e.ctx, "p-1", first), "Revoke")
	p.RevokedAt = &first
	e.equal("partner after Revoke", &p, e.partner("p-1"))
	e.must(s.Revoke(e.ctx, "p-1", at(2*time.Hour)), "Revoke again")
	e.equal("partner after a second Revoke (keeps the first time)", &p, e.partner("p-1"))
	if r := e.partner("p-2"); r.RevokedAt != nil {
		e.t.Errorf("Revoke of p-1 revoked p-2")
	}
}

func testSpendConditions(e *env) {
	s := e.b.Partners()
	p := partner("p-s", at(0))
	e.must(s.Insert(e.ctx, p), "Insert")
	spend := func(period, cost, limit int64) *partners.Record {
		e.t.Helper()
		r, err := s.SpendInPeriod(e.ctx, "p-s", period, cost, limit)
		e.must(err, "SpendInPeriod(period %d, cost %d, limit %d)", period, cost, limit)
		return r
	}
	r := spend(3, 400, 1000)
	p.Spent = 400
	e.equal("SpendInPeriod result", &p, r)
	if r := spend(2, 1, 1000); r != nil {
		e.t.Errorf("SpendInPeriod in another period = %+v, want nil", r)
	}
	if r := spend(3, 601, 1000); r != nil {
		e.t.Errorf("SpendInPeriod beyond the limit = %+v, want nil", r)
	}
	r = spend(3, 600, 1000) // exactly up to the limit
	p.Spent = 1000
	e.equal("SpendInPeriod up to the limit", &p, r)
	if r := spend(3, 1, 1000); r != nil {
		e.t.Errorf("SpendInPeriod of an exhausted budget = %+v, want nil", r)
	}
	r = spend(3, 0, 1000)
	e.equal("SpendInPeriod of nothing at the limit", &p, r)
	e.equal("partner after spending", &p, e.partner("p-s"))

	if r, err := s.SpendInPeriod(e.ctx, "p-none", 3, 1, 1000); err != nil || r != nil {
		e.t.Errorf("SpendInPeriod of an absent partner = %+v, %v; want nil", r, err)
	}
	when := at(time.Hour)
	e.must(s.Revoke(e.ctx, "p-s", when), "Revoke")
	p.RevokedAt = &when
	if r := spend(3, 0, 2000); r != nil {
		e.t.Errorf("SpendInPeriod of a revoked partner = %+v, want nil", r)
	}
	e.equal("revoked partner after a refused spend", &p, e.partner("p-s"))
}

func testSpendConcurrent(e *env) {
	s := e.b.Partners()
	const budget, cost = 1000, 70 // room for 14 charges, not 15
	p := partner("p-hot", at(0))
	p.Budget = budget
	e.must(s.Insert(e.ctx, p), "Insert")
	results := make([]*partners.Record, concurrency)
	errs := e.parallel(concurrency, func(i int) error {
		r, err := s.SpendInPeriod(e.ctx, "p-hot", 3, cost, budget)
		results[i] = r
		return err
	})
	spentSeen := map[int64]int{}
	succeeded := 0
	for i := range concurrency {
		if errs[i] != nil {
			e.t.Errorf("SpendInPeriod #%d: %v", i, errs[i])
		}
		if r := results[i]; r != nil {
			succeeded++
			spentSeen[r.Spent]++
			if r.Spent > budget || r.Spent%cost != 0 {
				e.t.Errorf("SpendInPeriod #%d returned Spent %d", i, r.Spent)
			}
		}
	}
	if want := budget / cost; succeeded != want {
		e.t.Errorf("%d of %d concurrent charges of %d against a budget of %d succeeded, want exactly %d", succeeded, concurrency, cost, budget, want)
	}
	for spent, n := range spentSeen {
		if n > 1 {
			e.t.Errorf("%d charges each returned Spent %d: they were not serialized", n, spent)
		}
	}
	p.Spent = int64(budget / cost * cost)
	e.equal("partner after concurrent charges", &p, e.partner("p-hot"))
}

func testStartPeriod(e *env) {
	s := e.b.Partners()
	p := partner("p-sp", at(0))
	p.Spent = 999
	e.must(s.Insert(e.ctx, p), "Insert")
	if r, err := s.StartPeriod(e.ctx, "p-sp", 2, 4, 10); err != nil || r != nil {
		e.t.Errorf("StartPeriod from a period that is not the stored one = %+v, %v; want nil", r, err)
	}
	r, err := s.StartPeriod(e.ctx, "p-sp", 3, 4, 10)
	e.must(err, "StartPeriod")
	p.Period, p.Spent = 4, 10
	e.equal("StartPeriod result", &p, r)
	e.equal("partner after StartPeriod", &p, e.partner("p-sp"))
	if r, err := s.StartPeriod(e.ctx, "p-sp", 3, 4, 10); err != nil || r != nil {
		e.t.Errorf("StartPeriod from the previous period again = %+v, %v; want nil", r, err)
	}
	// Spending goes on in the new period only.
	if r, err := s.SpendInPeriod(e.ctx, "p-sp", 3, 1, 1000); err != nil || r != nil {
		e.t.Errorf("SpendInPeriod in the old period = %+v, %v; want nil", r, err)
	}
	r, err = s.SpendInPeriod(e.ctx, "p-sp", 4, 5, 1000)
	e.must(err, "SpendInPeriod(new period)")
	p.Spent = 15
	e.equal("SpendInPeriod in the new period", &p, r)

	when := at(time.Hour)
	e.must(s.Revoke(e.ctx, "p-sp", when), "Revoke")
	p.RevokedAt = &when
	if r, err := s.StartPeriod(e.ctx, "p-sp", 4, 5, 1); err != nil || r != nil {
		e.t.Errorf("StartPeriod of a revoked partner = %+v, %v; want nil", r, err)
	}
	e.equal("revoked partner after a refused StartPeriod", &p, e.partner("p-sp"))
	if r, err := s.StartPeriod(e.ctx, "p-none", 0, 1, 1); err != nil || r != nil {
		e.t.Errorf("StartPeriod of an absent partner = %+v, %v; want nil", r, err)
	}
}

func testStartPeriodConcurrent(e *env) {
	s := e.b.Partners()
	p := partner("p-race", at(0))
	p.Spent = 500
	e.must(s.Insert(e.ctx, p), "Insert")
	results := make([]*partners.Record, concurrency)
	errs := e.parallel(concurrency, func(i int) error {
		r, err := s.StartPeriod(e.ctx, "p-race", 3, 4, int64(i+1))
		results[i] = r
		return err
	})
	winner := -1
	for i := range concurrency {
		if errs[i] != nil {
			e.t.Errorf("StartPeriod #%d: %v", i, errs[i])
		}
		if results[i] != nil {
			if winner >= 0 {
				e.t.Errorf("StartPeriod #%d and #%d both started period 4", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		e.t.Fatalf("none of %d concurrent StartPeriod calls succeeded", concurrency)
	}
	p.Period, p.Spent = 4, int64(winner+1)
	e.equal(fmt.Sprintf("partner after the StartPeriod race (winner #%d)", winner), &p, e.partner("p-race"))
}

func testRefundConditions(e *env) {
	s := e.b.Partners()
	p := partner("p-r", at(0))
	p.Spent = 700
	e.must(s.Insert(e.ctx, p), "Insert")
	refund := func(id string, period, cost int64) bool {
		e.t.Helper()
		ok, err := s.Refund(e.ctx, id, period, cost)
		e.must(err, "Refund(%s, period %d, cost %d)", id, period, cost)
		return ok
	}
	if refund("p-r", 2, 100) {
		e.t.Errorf("Refund in another period matched")
	}
	e.equal("partner after a refund of another period", &p, e.partner("p-r"))
	if !refund("p-r", 3, 300) {
		e.t.Errorf("Refund in the period did not match")
	}
	p.Spent = 400
	e.equal("partner after a refund", &p, e.partner("p-r"))
	if !refund("p-r", 3, 500) {
		e.t.Errorf("Refund of more than was spent did not match")
	}
	p.Spent = 0
	e.equal("partner after a refund of more than was spent (floored at 0)", &p, e.partner("p-r"))
	when := at(time.Hour)
	e.must(s.Revoke(e.ctx, "p-r", when), "Revoke")
	p.RevokedAt = &when
	r, err := s.SpendInPeriod(e.ctx, "p-r", 3, 0, 1000)
	if err != nil || r != nil {
		e.t.Errorf("SpendInPeriod of a revoked partner = %+v, %v", r, err)
	}
	e.must(e.b.Partners().Insert(e.ctx, partner("p-r2", at(0))), "Insert")
	if _, err := s.SpendInPeriod(e.ctx, "p-r2", 3, 200, 1000); err != nil {
		e.t.Fatalf("SpendInPeriod: %v", err)
	}
	e.must(s.Revoke(e.ctx, "p-r2", when), "Revoke")
	if !refund("p-r2", 3, 200) {
		e.t.Errorf("Refund of a revoked partner did not match")
	}
	if r := e.partner("p-r2"); r.Spent != 0 {
		e.t.Errorf("revoked partner after its refund: Spent %d, want 0", r.Spent)
	}
	if refund("p-none", 3, 1) {
		e.t.Errorf("Refund of an absent partner matched")
	}
}

// Refunds and charges interleaved from many writers lose nothing: every
// charge that succeeded and every refund is in the final Spent.
func testRefundConcurrent(e *env) {
	s := e.b.Partners()
	const budget, cost = 100_000, 70
	p := partner("p-rr", at(0))
	p.Budget, p.Spent = budget, 25*cost // what the refunds give back
	e.must(s.Insert(e.ctx, p), "Insert")
	charged := make([]bool, concurrency)
	errs := e.parallel(concurrency, func(i int) error {
		if i%2 == 0 {
			_, err := s.Refund(e.ctx, "p-rr", 3, cost)
			return err
		}
		r, err := s.SpendInPeriod(e.ctx, "p-rr", 3, cost, budget)
		charged[i] = r != nil
		return err
	})
	n := 0
	for i := range concurrency {
		if errs[i] != nil {
			e.t.Errorf("writer #%d: %v", i, errs[i])
		}
		if charged[i] {
			n++
		}
	}
	if n != concurrency/2 {
		e.t.Errorf("%d of %d charges succeeded under a large budget", n, concurrency/2)
	}
	p.Spent = 25*cost + int64(n)*cost - int64(concurrency/2)*cost
	e.equal("partner after concurrent refunds and charges", &p, e.partner("p-rr"))
}

// testPartnersPage: pages follow List's order (oldest first, then by id,
// across equal creation times), and Count counts revoked partners too.
func testPartnersPage(e *env) {
	s := e.b.Partners()
	n, err := s.Count(e.ctx)
	e.must(err, "Count")
	e.equal("Count of a new store", int64(0), n)
	page := func(after string, limit int) []string {
		rs, err := s.Page(e.ctx, after, limit)
		e.must(err, "Page(%q, %d)", after, limit)
		ids := []string{}
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		return ids
	}
	e.equal("Page of a new store", []string{}, page("", 10))
	revoked := at(time.Hour)
	ps := []partners.Record{
		partner("p-c", at(2*time.Second)),
		partner("p-b", at(time.Second)),
		partner("p-a", at(2*time.Second)), // same time as p-c: id decides
		partner("p-z", at(0)),
	}
	ps[1].RevokedAt = &revoked
	for _, p := range ps {
		e.must(s.Insert(e.ctx, p), "Insert(%s)", p.ID)
	}
	n, err = s.Count(e.ctx)
	e.must(err, "Count")
	e.equal("Count", int64(4), n)
	e.equal("Page(\"\", 10)", []string{"p-z", "p-b", "p-a", "p-c"}, page("", 10))
	e.equal("Page(\"\", 2)", []string{"p-z", "p-b"}, page("", 2))
	e.equal("Page(p-b, 1)", []string{"p-a"}, page("p-b", 1))
	e.equal("Page(p-a, 2)", []string{"p-c"}, page("p-a", 2))
	e.equal("Page(p-c, 2)", []string{}, page("p-c", 2))
	e.equal("Page(unknown, 2)", []string{}, page("p-unknown", 2))
	full, err := s.Page(e.ctx, "", 10)
	e.must(err, "Page")
	e.equal("Page's records", []partners.Record{ps[3], ps[1], ps[2], ps[0]}, full)
}
