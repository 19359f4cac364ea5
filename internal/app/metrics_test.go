package app_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// scrape returns the value of one sample line of /metrics, or 0.
func scrape(t *testing.T, s *apptest.Server, sample string) float64 {
	t.Helper()
	res, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", sample, err)
			}
			return v
		}
	}
	return 0
}

// roundTrips runs a query and returns the store commands it cost, read from
// the server's own round-trip histogram.
func roundTrips(t *testing.T, s *apptest.Server, c *apptest.Client, query, op string) float64 {
	t.Helper()
	key := `consentgraph_graphql_store_round_trips_sum{operation="` + op + `"}`
	before := scrape(t, s, key)
	if r := c.Do(t, query, nil); len(r.Errors) > 0 {
		t.Fatalf("%s: %s", query, r.Raw)
	}
	return scrape(t, s, key) - before
}

func TestMetricsAndRoundTrips(t *testing.T) {
	s := apptest.Start(t)
	c := s.Register(t, "measured")
	c.Do(t, `{ me { id } }`, nil) // warm the session cache and data key cache

	kind := s.App.Store.Kind()
	n := roundTrips(t, s, c, `{ me { id username } }`, "query me")
	t.Logf("me on %s: %v", kind, n)
	if n != 1 {
		t.Errorf("me { id username } took %v store round trips on %s, want 1", n, kind)
	}
	// The account and its consent state are read once for both resolvers
	// through the query's read memo: on MongoDB they are one user document;
	// the embedded store reads the account row joined with its consent rows
	// in one query.
	n = roundTrips(t, s, c, `{ me { username consents { purpose { id } granted } } }`, "query me")
	t.Logf("me+consents on %s: %v", kind, n)
	if n != 1 {
		t.Errorf("me with consents took %v store round trips on %s, want 1", n, kind)
	}
	if got := scrape(t, s, `consentgraph_graphql_requests_total{operation="query me",outcome="ok"}`); got < 3 {
		t.Errorf("requests counter for me = %v, want at least 3", got)
	}
	bad := s.Client()
	bad.Do(t, `mutation { login(username: "measured", password: "wrong password!") { token } }`, nil)
	if got := scrape(t, s, `consentgraph_graphql_requests_total{operation="mutation login",outcome="UNAUTHENTICATED"}`); got != 1 {
		t.Errorf("failed login counter = %v, want 1", got)
	}
	// Commands are named by the adapter: MongoDB's own command names, or
	// "read"/"write" for SQLite queries and transactions.
	readCommand := map[string]string{"mongodb": "find", "embedded": "read"}[kind]
	if got := scrape(t, s, `consentgraph_store_commands_total{command="`+readCommand+`"}`); got < 1 {
		t.Errorf("store %s commands = %v", readCommand, got)
	}
	if got := scrape(t, s, `consentgraph_sessions_active`); got < 1 {
		t.Errorf("active sessions = %v", got)
	}
}

// Sessions are cached for at most a second: a revocation made behind this
// replica's back (another replica, or straight in the store) holds within it.
func TestSessionCacheHonoursRevocationWithinASecond(t *testing.T) {
	s := apptest.Start(t)
	c := s.Register(t, "cached")
	var me struct{ Me *struct{ ID string } }
	c.Do(t, `{ me { id } }`, nil).Decode(t, &me)
	// Straight in the store, past this replica's accounts service and its
	// cache, as another replica's logout would.
	if err := s.Store().Accounts().DeleteUserSessions(context.Background(), me.Me.ID); err != nil {
		t.Fatal(err)
	}
	if left, err := s.Store().Accounts().UserSessions(context.Background(), me.Me.ID); err != nil || len(left) != 0 {
		t.Fatalf("sessions left after deleting them: %v, %v", left, err)
	}
	time.Sleep(accounts.SessionCacheTTL + 100*time.Millisecond)
	c.Do(t, `{ me { id } }`, nil).Decode(t, &me)
	if me.Me != nil {
		t.Fatal("a session deleted from the store was still accepted after the cache TTL")
	}
}

func TestEpsilonSpentPerPartnerMetric(t *testing.T) {
	s, admin := apptest.StartWithAdmin(t)
	p, pc := createPartner(t, s, admin, 3, 30)
	if r := pc.Do(t, `{ demographics(groupBy: [COUNTRY], epsilon: 0.5) { epsilon } }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	if got := scrape(t, s, `consentgraph_partner_epsilon_spent_total{partner="`+p.ID+`"}`); got != 0.5 {
		t.Fatalf("epsilon spent metric = %v, want 0.5", got)
	}
}

// Lists must not cost a store read per element (N+1): the round trips of the
// list-shaped queries stay the same as their lists grow. Today no list item
// has a field that reads the store on its own, so no dataloader is needed;
// this test is what tells a future field that it needs one.
func TestListsCostNoReadPerElement(t *testing.T) {
	s, admin := apptest.StartWithAdmin(t)
	u := s.Register(t, "lister")
	const userQ = `{ me { consents { purpose { id processors { name } } granted notes }
		consentHistory(first: 50) { edges { node { sequence purpose } } }
		disclosures(first: 50) { edges { node { processor } } } } }`
	const adminQ = `{ partners(first: 50) { edges { node { id name budgetRemaining } } } outbox(first: 50) { edges { node { id processor } } } }`
	flip := func(n int) {
		for i := range n {
			m := "grantConsent"
			if i%2 == 1 {
				m = "withdrawConsent"
			}
			if r := u.Do(t, `mutation { `+m+`(purpose: "surveys") { receipt } }`, nil); len(r.Errors) > 0 {
				t.Fatal(string(r.Raw))
			}
		}
	}
	flip(1)
	createPartner(t, s, admin, 1, 1)
	u.Do(t, userQ, nil) // warm caches
	userFew := roundTrips(t, s, u, userQ, "query me")
	adminFew := roundTrips(t, s, admin, adminQ, "query outbox,partners")
	flip(9)
	for range 5 {
		createPartner(t, s, admin, 1, 1)
	}
	userMany := roundTrips(t, s, u, userQ, "query me")
	adminMany := roundTrips(t, s, admin, adminQ, "query outbox,partners")
	if userMany != userFew || adminMany != adminFew {
		t.Fatalf("round trips grew with the lists: me %v → %v, admin %v → %v", userFew, userMany, adminFew, adminMany)
	}
	t.Logf("round trips: me with all lists %v, admin partners+outbox %v", userMany, adminMany)
}

func TestOutboxMetrics(t *testing.T) {
	rc := newReceiver()
	s, _ := webhookServer(t, rc, "")
	grantMany(t, s, "metered", 3)
	drain(t, s, s.App.Outbox.Dispatcher("metrics-test", fast), 10*time.Second)
	if got := scrape(t, s, `consentgraph_outbox_attempts_total{action="DELIVER",outcome="done",processor="hook"}`); got != 3 {
		t.Errorf("done deliveries to hook = %v, want 3", got)
	}
	if got := scrape(t, s, `consentgraph_outbox_items{state="DONE"}`); got != 3 {
		t.Errorf("outbox items DONE = %v, want 3", got)
	}
	if got := scrape(t, s, `consentgraph_outbox_items{state="PENDING"}`); got != 0 {
		t.Errorf("outbox items PENDING = %v, want 0", got)
	}
}
