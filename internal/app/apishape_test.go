package app_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// TestBudgetFieldsAgreeInOneResponse: partnerMe and demographics in the
// same request both show the budget after this request's charge, in
// either order.
func TestBudgetFieldsAgreeInOneResponse(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	_, pc := createPartner(t, s, admin, 10, 30)
	for _, q := range []string{
		`{ partnerMe { budgetRemaining } demographics(groupBy: [COUNTRY], epsilon: 1) { budgetRemaining } }`,
		`{ demographics(groupBy: [COUNTRY], epsilon: 1) { budgetRemaining } partnerMe { budgetRemaining } }`,
	} {
		var out struct {
			PartnerMe    struct{ BudgetRemaining float64 }
			Demographics struct{ BudgetRemaining float64 }
		}
		pc.Do(t, q, nil).Decode(t, &out)
		if out.PartnerMe.BudgetRemaining != out.Demographics.BudgetRemaining {
			t.Errorf("%s: partnerMe says %g, demographics %g", q, out.PartnerMe.BudgetRemaining, out.Demographics.BudgetRemaining)
		}
	}
	var after partnerMeView
	pc.Do(t, partnerMeQuery, nil).Decode(t, &after)
	if after.PartnerMe.BudgetRemaining != 8 {
		t.Errorf("after two charges of 1 from 10, partnerMe alone says %g; want 8", after.PartnerMe.BudgetRemaining)
	}

	// Concurrent requests of one partner (the console sends several at
	// once): each answer shows its own post-charge figure twice, never
	// another request's charge in one of them. Reading the store in
	// partnerMe, a charge landing between this request's charge and that
	// read made the two fields differ.
	_, busy := createPartner(t, s, admin, 100, 30)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[float64]bool{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				var out struct {
					PartnerMe    struct{ BudgetRemaining float64 }
					Demographics struct{ BudgetRemaining float64 }
				}
				busy.Do(t, `{ demographics(groupBy: [COUNTRY], epsilon: 1) { budgetRemaining } partnerMe { budgetRemaining } }`, nil).Decode(t, &out)
				if out.PartnerMe.BudgetRemaining != out.Demographics.BudgetRemaining {
					t.Errorf("concurrent: partnerMe says %g, demographics %g", out.PartnerMe.BudgetRemaining, out.Demographics.BudgetRemaining)
				}
				mu.Lock()
				if seen[out.Demographics.BudgetRemaining] {
					t.Errorf("two requests both left %g", out.Demographics.BudgetRemaining)
				}
				seen[out.Demographics.BudgetRemaining] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestAuditLogPageInfo: the audit log pages with the common PageInfo.
func TestAuditLogPageInfo(t *testing.T) {
	t.Parallel()
	_, admin := apptest.StartWithAdmin(t)
	for range 2 { // two audited actions: two entries, two pages
		if r := admin.Do(t, `mutation { rotateSigningKey }`, nil); r.Code() != "" {
			t.Fatalf("rotateSigningKey: %s", r.Code())
		}
	}
	var out struct {
		AuditLog struct {
			Edges    []struct{ Cursor string }
			PageInfo struct {
				HasNextPage, HasPreviousPage bool
				StartCursor, EndCursor       *string
			}
		}
	}
	admin.Do(t, `{ auditLog(first: 1) { edges { cursor } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`, nil).Decode(t, &out)
	pi := out.AuditLog.PageInfo
	if len(out.AuditLog.Edges) != 1 || pi.HasPreviousPage || pi.StartCursor == nil || pi.EndCursor == nil ||
		*pi.StartCursor != out.AuditLog.Edges[0].Cursor || *pi.EndCursor != out.AuditLog.Edges[0].Cursor {
		t.Fatalf("first page: %+v", out.AuditLog)
	}
	if !pi.HasNextPage {
		t.Fatalf("a log of two entries has no second page: %+v", pi)
	}
	admin.Do(t, `query($a: String) { auditLog(first: 1, after: $a) { edges { cursor } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`,
		map[string]any{"a": *pi.EndCursor}).Decode(t, &out)
	if !out.AuditLog.PageInfo.HasPreviousPage {
		t.Errorf("second page has no previous page: %+v", out.AuditLog.PageInfo)
	}
}

// TestPartnersArePaged: partners is a connection, oldest first, with the
// common PageInfo and totalCount, and refuses pages out of range.
func TestPartnersArePaged(t *testing.T) {
	t.Parallel()
	s, admin := apptest.StartWithAdmin(t)
	for range 3 {
		createPartner(t, s, admin, 1, 30)
	}
	// List's order: oldest first, then by id (partners created within the
	// same millisecond).
	all, err := s.App.Partners.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range all {
		ids = append(ids, p.ID)
	}
	type conn struct {
		Partners struct {
			Edges []struct {
				Cursor string
				Node   struct{ ID string }
			}
			PageInfo struct {
				HasNextPage, HasPreviousPage bool
				StartCursor, EndCursor       *string
			}
			TotalCount int
		}
	}
	const q = `query($f: Int, $a: String) { partners(first: $f, after: $a) { totalCount
		edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`
	var got []string
	var after any
	for page := 0; ; page++ {
		var out conn
		admin.Do(t, q, map[string]any{"f": 2, "a": after}).Decode(t, &out)
		p := out.Partners
		if p.TotalCount != 3 || p.PageInfo.HasPreviousPage != (page > 0) || len(p.Edges) == 0 ||
			*p.PageInfo.StartCursor != p.Edges[0].Cursor || *p.PageInfo.EndCursor != p.Edges[len(p.Edges)-1].Cursor {
			t.Fatalf("page %d: %+v", page, p)
		}
		for _, e := range p.Edges {
			got = append(got, e.Node.ID)
		}
		if !p.PageInfo.HasNextPage {
			break
		}
		after = *p.PageInfo.EndCursor
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("paged partners %v; want %v (oldest first)", got, ids)
	}
	for _, vars := range []map[string]any{{"f": 0}, {"f": 101}, {"a": ""}} {
		if r := admin.Do(t, q, vars); r.Code() != "BAD_USER_INPUT" {
			t.Errorf("partners(%v): %s; want BAD_USER_INPUT", vars, r.Raw)
		}
	}
}

// TestTotalCountOnEveryConnection: each connection's totalCount is the
// number of nodes paging through it yields.
func TestTotalCountOnEveryConnection(t *testing.T) {
	t.Parallel()
	// Processors of its own: example instances are shared by name
	// across the tests of this package.
	s := startWithProcessors(t, `
processors:
  - name: count-a
    type: example
    purpose: surveys
    fields: [user.demographic.country]
  - name: count-b
    type: example
    purpose: surveys
    fields: [user.demographic.age_band]
`)
	c, _ := userWithData(t, s, "counted_ann", true)
	changeConsent(t, c, true, "surveys")
	drain(t, s, s.App.Outbox.Dispatcher("t", fast), 10*time.Second)
	admin := adminClient(t, s)
	if r := admin.Do(t, `mutation { rotateSigningKey }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	cases := []struct {
		name   string
		client *apptest.Client
		query  string // one page of one item: $a is the cursor
		path   []string
	}{
		{"auditLog", admin, `query($a: String) { auditLog(first: 1, after: $a) { totalCount edges { cursor } pageInfo { hasNextPage endCursor } } }`, []string{"auditLog"}},
		{"outbox", admin, `query($a: String) { outbox(first: 1, after: $a) { totalCount edges { cursor } pageInfo { hasNextPage endCursor } } }`, []string{"outbox"}},
		{"disclosures", c, `query($a: String) { me { disclosures(first: 1, after: $a) { totalCount edges { cursor } pageInfo { hasNextPage endCursor } } } }`, []string{"me", "disclosures"}},
		{"consentHistory", c, `query($a: String) { me { consentHistory(first: 1, after: $a) { totalCount edges { cursor } pageInfo { hasNextPage endCursor } } } }`, []string{"me", "consentHistory"}},
	}
	for _, tc := range cases {
		seen, total := 0, -1
		var after any
		for {
			var out map[string]any
			tc.client.Do(t, tc.query, map[string]any{"a": after}).Decode(t, &out)
			conn := out
			for _, k := range tc.path {
				conn, _ = conn[k].(map[string]any)
			}
			if conn == nil {
				t.Fatalf("%s: no connection in %v", tc.name, out)
			}
			n := int(conn["totalCount"].(float64))
			if total >= 0 && n != total {
				t.Errorf("%s: totalCount changed between pages: %d then %d", tc.name, total, n)
			}
			total = n
			seen += len(conn["edges"].([]any))
			pi := conn["pageInfo"].(map[string]any)
			if pi["hasNextPage"] != true {
				break
			}
			after = pi["endCursor"]
		}
		if seen == 0 || seen != total {
			t.Errorf("%s: totalCount %d, paging yielded %d", tc.name, total, seen)
		}
	}
}
