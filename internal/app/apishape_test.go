package app_test

import (
	"testing"
)

// TestBudgetFieldsAgreeInOneResponse: partnerMe and demographics in the
// same request both show the budget after this request's charge, in
// either order.
func TestBudgetFieldsAgreeInOneResponse(t *testing.T) {
	s, admin := partnerAdmin(t)
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
}

// TestAuditLogPageInfo: the audit log pages with the common PageInfo.
func TestAuditLogPageInfo(t *testing.T) {
	_, admin := partnerAdmin(t)
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
