package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/work"
)

// bigTables grow with the number of users; a statement that scans one of
// them has no place on a request path.
var bigTables = []string{"users", "sessions", "data_keys", "consent_state", "consent_events", "consent_archive",
	"outbox_items", "disclosures", "proc_state", "members", "cells", "audit_log", "plugin_state", "processor_links",
	"log_leaves", "log_nodes"}

// wholeTableReads may scan: they read everything by definition, over a
// small table or a partial index holding only the rows they want.
var wholeTableReads = map[*query]string{
	qErasing:       "USING COVERING INDEX users_erasing",
	qCellCounts:    "", // a whole mask, by the primary key prefix (checked below)
	qClearCells:    "",
	qSweepSessions: "",
	// The log appender's queues: partial indexes holding only what is
	// not logged yet.
	qUnloggedEvents: "USING INDEX consent_events_unlogged",
	qAuditUnlogged:  "USING INDEX audit_log_unlogged",
}

func queryPlan(t *testing.T, db *sql.DB, text string) []string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+text, make([]any, paramCount(text))...)
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", text, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		out = append(out, detail)
	}
	return out
}

// TestRequestPathsUseIndexes checks the plan of every registered statement,
// on an empty database (no statistics) and on one with data after ANALYZE
// (what PRAGMA optimize leaves behind).
func TestRequestPathsUseIndexes(t *testing.T) {
	d := openTest(t)
	t.Run("empty", func(t *testing.T) { checkPlans(t, d) })
	fillForPlans(t, d)
	if _, err := d.w.Exec("ANALYZE"); err != nil {
		t.Fatal(err)
	}
	// Readers load the statistics when they next parse the schema.
	d.r.SetMaxIdleConns(0)
	d.r.SetMaxIdleConns(4)
	t.Run("analyzed", func(t *testing.T) { checkPlans(t, d) })
}

func checkPlans(t *testing.T, d *DB) {
	scan := regexp.MustCompile(`^SCAN (\w+)(.*)$`)
	for _, q := range registry {
		plan := queryPlan(t, d.w, q.text)
		for _, line := range plan {
			m := scan.FindStringSubmatch(line)
			if m == nil || !isBig(m[1]) {
				continue
			}
			if want, ok := wholeTableReads[q]; ok && strings.Contains(line, want) {
				continue
			}
			t.Errorf("full scan of %s:\n  %s\n  plan: %s", m[1], oneLine(q.text), strings.Join(plan, " | "))
		}
		if testing.Verbose() {
			t.Logf("%s\n    -> %s", oneLine(q.text), strings.Join(plan, " | "))
		}
	}
	// Lookups that must use a particular index.
	mustUse := map[*query]string{
		qUserByUsername:      "users_username_key",
		qVerifyToken:         "users_verify_token",
		qUserByVerifiedEmail: "users_verified_email",
		qUnverifiedHolders:   "users_email_index",
		qResetPassword:       "users_reset_token",
		qUserSessions:        "sessions_user",
		qDeleteSessions:      "sessions_user",
		qCountSessions:       "sessions_expiry",
		qSweepSessions:       "sessions_expiry",
		qGranted:             "consent_state_grants",
		qDue:                 "outbox_due",
		qPairLeased:          "outbox_leased",
		qWakeWaiting:         "outbox_waiting",
		qItemsOfState:        "outbox_state_id",
		qDisclosures:         "disclosures_user",
		qDisclosuresBefore:   "disclosures_user",
		qPartners:            "partners_created",
		qPartnersFirst:       "partners_created",
		qCountDisclosures:    "disclosures_user",
	}
	for q, index := range mustUse {
		plan := strings.Join(queryPlan(t, d.w, q.text), " | ")
		if !strings.Contains(plan, index) {
			t.Errorf("%s does not use %s: %s", oneLine(q.text), index, plan)
		}
	}
}

// paramCount counts a statement's parameters (plain ? or numbered ?N).
func paramCount(text string) int {
	n, plain := 0, 0
	for _, m := range regexp.MustCompile(`\?(\d*)`).FindAllStringSubmatch(text, -1) {
		if m[1] == "" {
			plain++
			continue
		}
		var k int
		fmt.Sscan(m[1], &k)
		n = max(n, k)
	}
	return max(n, plain)
}

func isBig(table string) bool {
	for _, b := range bigTables {
		if b == table {
			return true
		}
	}
	return false
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// fillForPlans writes enough rows of every kind for ANALYZE to have
// something to say.
func fillForPlans(t *testing.T, d *DB) {
	ctx := context.Background()
	for i := 0; i < 500; i++ {
		a := newAccount(fmt.Sprintf("u%04d", i), fmt.Sprintf("user%04d", i))
		a.Account.EmailIndex = fmt.Sprintf("mail%04d", i)
		ev := consent.Event{Seq: 1, Purpose: "marketing", Action: consent.Grant, PolicyN: 1, At: t0, Hash: "h1"}
		a.Consent = consent.Initial{State: consent.Stored{Head: 1, HeadHash: "h1", State: map[string]consent.Entry{"marketing": entryOf(&ev)}}, Events: []consent.Event{ev}}
		for j := 0; j < 3; j++ {
			a.Work = append(a.Work, newItem(fmt.Sprintf("i%04d-%d", i, j), a.Account.ID, fmt.Sprintf("p%d", j), t0.Add(time.Duration(i)*time.Second)))
		}
		if err := d.Accounts().CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	items, err := d.Outbox().Claim(ctx, "o", []string{"p0", "p1", "p2"}, t0.Add(time.Hour), t0.Add(2*time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items[:50] {
		if _, err := d.Outbox().Finish(ctx, outbox.Finish{Item: it, State: work.Done, At: t0,
			Disclosure: &outbox.Disclosure{ID: it.ID, UserID: it.UserID, Processor: it.Processor, At: t0}}); err != nil {
			t.Fatal(err)
		}
	}
}
