package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

// costLimited turns the limits on with the given budgets; the other limits
// are set high so that only the cost budgets can refuse.
func costLimited(maxCost, perMinute, anonPerMinute, readsPerMinute int) apptest.Option {
	return func(c *config.Config) {
		c.RateLimits = true
		c.MutationsPerMinute, c.AuthPerMinute, c.PartnerPerMinute = 1000, 1000, 1000
		c.MaxComplexity = maxCost
		c.CostPerMinute, c.AnonymousCostPerMinute, c.ExpensiveReadsPerMinute = perMinute, anonPerMinute, readsPerMinute
	}
}

func aliased(n int, format string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d: "+format, i)
	}
	return b.String()
}

func auditCount(t *testing.T, s *apptest.Server, action string) int {
	t.Helper()
	entries, err := s.App.Audit.Page(context.Background(), 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Action == action {
			n++
		}
	}
	return n
}

// A request over the per-request maximum is refused before any resolver
// runs: the aliased exports of issue 14 leave no audit entry, and the 240
// long history pages (42 MB of answer) are refused without data.
func TestCostOverTheMaximumIsRefusedBeforeExecution(t *testing.T) {
	s := apptest.Start(t) // default limits: --max-complexity 5000
	c := s.Register(t, "coster")
	r := c.Do(t, "{"+aliased(6, "exportMyData { signature }")+" }", nil)
	if r.Code() != "COMPLEXITY_LIMIT_EXCEEDED" || string(r.Data) != "null" && len(r.Data) > 0 {
		t.Fatalf("6 exports: %s", r.Raw)
	}
	if n := auditCount(t, s, "export"); n != 0 {
		t.Fatalf("a refused request ran %d exports", n)
	}
	if r := c.Do(t, "{ me {"+aliased(20, "consentHistory(first: 100) { edges { node { hash receipt } } }")+" } }", nil); r.Code() != "COMPLEXITY_LIMIT_EXCEEDED" {
		t.Fatalf("20 long history pages: %s", r.Raw)
	}
	r = c.Do(t, "{ me {"+aliased(240, "consentHistory(first: 100) { edges { node { sequence hash receipt } } }")+" } }", nil)
	if code := r.Code(); code != "COMPLEXITY_LIMIT_EXCEEDED" && code != "QUERY_TOO_LARGE" || len(r.Raw) > 1000 {
		t.Fatalf("240 long history pages: %.300s", r.Raw)
	}
	// One export is well within the maximum.
	if r := c.Do(t, `{ exportMyData { signature } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("one export: %s", r.Raw)
	}
}

func untilLimited(t *testing.T, c *apptest.Client, query string, most int) (admitted int, r *apptest.Response) {
	t.Helper()
	for i := range most {
		r = c.Do(t, query, nil)
		if r.Code() == "RATE_LIMITED" {
			return i, r
		}
		if len(r.Errors) > 0 {
			t.Fatalf("request %d: %s", i, r.Raw)
		}
	}
	t.Fatalf("%d requests of %s were all admitted", most, query)
	return most, nil
}

// Anonymous callers share a budget per IP, queries as well as mutations;
// another IP (here behind a trusted proxy) and signed-in users have their
// own.
func TestAnonymousCostBudgetPerIP(t *testing.T) {
	s := apptest.Start(t, costLimited(1200, 100_000, 2400, 100), func(c *config.Config) {
		c.TrustedProxies = []string{"127.0.0.0/8"}
	})
	user := s.Register(t, "signed-in") // before the IP's budget is spent
	from := func(ip string) *apptest.Client {
		c := s.Client()
		c.Header.Set("X-Forwarded-For", ip)
		return c
	}
	const q = `{ policy { version url } purposes { id description } }`
	n, r := untilLimited(t, from("198.51.100.7"), q, 300)
	checkRateLimited(t, "anonymous queries over the IP's budget", r)
	if !strings.Contains(r.Errors[0].Message, "network") {
		t.Errorf("message does not say whose budget: %s", r.Raw)
	}
	t.Logf("admitted %d anonymous queries before RATE_LIMITED", n)
	if n < 10 || n > 100 {
		t.Errorf("admitted %d queries of cost ~30 with a burst of 1200", n)
	}
	checkRateLimited(t, "a mutation from the same IP", from("198.51.100.7").Do(t, `mutation { logout }`, nil))
	if r := from("198.51.100.8").Do(t, q, nil); len(r.Errors) > 0 {
		t.Fatalf("another IP: %s", r.Raw)
	}
	user.Header.Set("X-Forwarded-For", "198.51.100.7")
	if r := user.Do(t, `{ me { id } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("a signed-in user on the same IP: %s", r.Raw)
	}
}

// Signed-in users have a budget per account.
func TestAccountCostBudget(t *testing.T) {
	s := apptest.Start(t, costLimited(1200, 2400, 100_000, 100))
	a, b := s.Register(t, "spender"), s.Register(t, "bystander")
	const q = `{ me { id consents { granted purpose { id } } } }`
	n, r := untilLimited(t, a, q, 300)
	checkRateLimited(t, "queries over the account's budget", r)
	if !strings.Contains(r.Errors[0].Message, "account") {
		t.Errorf("message does not say whose budget: %s", r.Raw)
	}
	t.Logf("admitted %d queries before RATE_LIMITED", n)
	checkRateLimited(t, "a mutation of the same account", a.Do(t, `mutation { updateProfile(input: {country: "DE"}) { id consents { granted purpose { id } } } }`, nil))
	if r := b.Do(t, q, nil); len(r.Errors) > 0 {
		t.Fatalf("another account: %s", r.Raw)
	}
}

// Partner keys have a budget per key.
func TestPartnerCostBudget(t *testing.T) {
	s, admin := apptest.StartWithAdmin(t, costLimited(1200, 2400, 100_000, 100))
	_, p1 := createPartner(t, s, admin, 10, 30)
	_, p2 := createPartner(t, s, admin, 10, 30)
	n, r := untilLimited(t, p1, partnerMeQuery, 300)
	checkRateLimited(t, "partner over its key's budget", r)
	if !strings.Contains(r.Errors[0].Message, "partner key") {
		t.Errorf("message does not say whose budget: %s", r.Raw)
	}
	t.Logf("admitted %d partner queries before RATE_LIMITED", n)
	if r := p2.Do(t, partnerMeQuery, nil); len(r.Errors) > 0 {
		t.Fatalf("another partner key: %s", r.Raw)
	}
}

// Exports, ledger checks and long pages have their own small rate per
// account; every aliased occurrence counts.
func TestExpensiveReadsHaveTheirOwnRate(t *testing.T) {
	s := apptest.Start(t, costLimited(5000, 100_000, 100_000, 4)) // a burst of 2
	a, b := s.Register(t, "exporter"), s.Register(t, "other")
	if r := a.Do(t, `{ x: exportMyData { signature } y: exportMyData { signature } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("two exports within the burst: %s", r.Raw)
	}
	checkRateLimited(t, "a ledger check after them", a.Do(t, `{ me { ledgerIntact } }`, nil))
	checkRateLimited(t, "a long history page", a.Do(t, `{ me { consentHistory(first: 50) { totalCount } } }`, nil))
	// A short page is not an expensive read.
	if r := a.Do(t, `{ me { consentHistory(first: 10) { totalCount } } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("a short page: %s", r.Raw)
	}
	r := b.Do(t, `{ me { ledgerIntact a: consentHistory(first: 100) { totalCount } b: disclosures(first: 100) { pageInfo { hasNextPage } } } }`, nil)
	checkRateLimited(t, "three in one request", r)
	if !strings.Contains(r.Errors[0].Message, "at most 2") {
		t.Errorf("message: %s", r.Raw)
	}
	if r := b.Do(t, `{ me { ledgerIntact } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("another account: %s", r.Raw)
	}
	if n := auditCount(t, s, "export"); n != 2 {
		t.Fatalf("%d exports ran, want 2", n)
	}
}

// oversized is an anonymous body of about limit bytes, the issue 14
// attack: `policy { version }` repeated, which validation compares pairwise
// (2 s of CPU for 64 KiB), or with aliases (a0: policy …) when aliases.
func oversized(limit int, aliases bool) []byte {
	var b strings.Builder
	b.WriteString(`{"query":"{`)
	for i := 0; b.Len() < limit-40; i++ {
		if aliases {
			fmt.Fprintf(&b, " a%d:", i)
		}
		b.WriteString(" policy { version }")
	}
	b.WriteString(` }"}`)
	return []byte(b.String())
}

// A document over the field cap is refused while parsing, before the
// validation work that made the oversized query cost seconds; fragment
// spreads count where they are used, so a fragment bomb cannot hide its
// size. docs/benchmarks.md has the times (BenchmarkOversizedQuery).
func TestOversizedDocumentIsRefusedFast(t *testing.T) {
	s := apptest.Start(t, costLimited(5000, 100_000, 100_000, 100))
	for i := range 4 {
		body := oversized(64<<10-100, i%2 == 1)
		start := time.Now()
		r := s.Client().Post(t, "application/json", body)
		took := time.Since(start)
		if r.Code() != "QUERY_TOO_LARGE" {
			t.Fatalf("%d-byte body of aliases: %.300s", len(body), r.Raw)
		}
		t.Logf("refused %d bytes in %v", len(body), took)
		// Generous for a loaded 2-core machine; validating it took 2-3 s.
		if took > 500*time.Millisecond && i >= 2 {
			t.Errorf("refusing the oversized document took %v", took)
		}
	}
	// Under the token cap but over the field cap: counted, not tokens.
	if r := s.Client().Do(t, "{"+strings.Repeat(" policy { version }", 600)+" }", nil); r.Code() != "QUERY_TOO_LARGE" || !strings.Contains(string(r.Raw), "maxFields") {
		t.Fatalf("600 fields: %.300s", r.Raw)
	}
	// A fragment bomb: 6 levels of 10 spreads is a million fields.
	var bomb strings.Builder
	bomb.WriteString("{ ...F0 } fragment F6 on Query { policy { version } }")
	for lvl := 5; lvl >= 0; lvl-- {
		fmt.Fprintf(&bomb, " fragment F%d on Query {", lvl)
		for range 10 {
			fmt.Fprintf(&bomb, " ...F%d", lvl+1)
		}
		bomb.WriteString(" }")
	}
	if r := s.Client().Do(t, bomb.String(), nil); r.Code() != "QUERY_TOO_LARGE" {
		t.Fatalf("fragment bomb: %.300s", r.Raw)
	}
	// A document of many tokens but few fields is refused by the token cap.
	if r := s.Client().Do(t, `{ demographics(groupBy: [`+strings.Repeat(`A `, 12000)+`]) { k } }`, nil); r.Code() != "QUERY_TOO_LARGE" {
		t.Fatalf("12000 tokens: %.300s", r.Raw)
	}
	// Normal queries still pass, also when cached.
	for range 2 {
		if r := s.Client().Do(t, `{ policy { version } purposes { id } }`, nil); len(r.Errors) > 0 {
			t.Fatalf("a normal query: %s", r.Raw)
		}
	}
}
