package app_test

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/graph"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// The authorization matrix: every query and mutation of the schema, called
// as each kind of caller, against the intended policy written out here by
// hand (not derived from the @auth directives, so a wrong directive fails).
//
// The rows are checked against the schema files themselves: an operation
// without a row fails the test, so whoever adds a query or mutation must
// say here who may call it.
//
// Each cell runs with fresh principals, so destructive operations
// (logout, deleteMyAccount, eraseUser, …) cannot disturb other cells. The
// "other" column is a second signed-in user whose call carries the
// victim's identifiers where an operation takes any; no answer to anyone
// but the victim (and the admin) may contain the victim's id or username.

type caller int

const (
	anonymous caller = iota
	user             // the victim, acting on their own data
	other            // another user, using the victim's identifiers
	partner
	admin
	callers
)

var callerNames = [callers]string{"anonymous", "user", "other user", "partner", "admin"}

// ok: no errors. Any other value is the wanted extensions.code.
const ok = "ok"

type cell struct {
	*apptest.Client
	victim victimInfo
}

type victimInfo struct {
	ID, Username, Receipt string
	Partner               string // id of a partner made for this cell
}

type matrixRow struct {
	op    string
	vars  func(c cell, who caller) map[string]any
	want  [callers]string
	leaky bool // the answer may name the victim (their own session, or the admin)
	// fresh runs each cell with new principals and a new victim, for
	// operations that end sessions or accounts; the others share them.
	fresh bool
}

func policyAll(a, u, o, p, ad string) [callers]string { return [callers]string{a, u, o, p, ad} }

var (
	adminOnly   = policyAll("UNAUTHENTICATED", "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", ok)
	usersOnly   = policyAll("UNAUTHENTICATED", ok, ok, "FORBIDDEN", ok)
	partnerOnly = policyAll("UNAUTHENTICATED", "FORBIDDEN", "FORBIDDEN", ok, "FORBIDDEN")
	notPartners = policyAll(ok, ok, ok, "FORBIDDEN", ok)
)

var cellCounter atomic.Int64

func uniq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, cellCounter.Add(1)) }

var matrix = map[string]matrixRow{
	// Query
	"Query.me":       {op: `{ me { id username } }`, want: policyAll(ok, ok, ok, "FORBIDDEN", ok)},
	"Query.purposes": {op: `{ purposes { id } }`, want: notPartners},
	"Query.policy":   {op: `{ policy { version } }`, want: notPartners},
	"Query.operator": {op: `{ operator { name controller { name } } }`, want: notPartners},
	"Query.verifyReceipt": {op: `query($r: String!) { verifyReceipt(receipt: $r) { valid purpose } }`,
		vars: func(c cell, _ caller) map[string]any { return map[string]any{"r": c.victim.Receipt} }, want: notPartners},
	"Query.auditLog":     {op: `{ auditLog(first: 5) { __typename } }`, want: adminOnly, leaky: true},
	"Query.demographics": {op: `{ demographics(groupBy: [], epsilon: 0.1) { __typename } }`, want: partnerOnly},
	"Query.partnerMe":    {op: `{ partnerMe { __typename } }`, want: partnerOnly},
	"Query.partners":     {op: `{ partners { edges { node { id } } } }`, want: adminOnly},
	"Query.exportMyData": {op: `{ exportMyData { document } }`, want: usersOnly},

	// Mutation
	"Mutation.register": {op: `mutation($u: String!) { register(input: {username: $u, password: "correct horse battery"}) { user { id } } }`,
		vars: func(cell, caller) map[string]any { return map[string]any{"u": uniq("newcomer")} }, want: notPartners},
	"Mutation.login": {op: `mutation($u: String!) { login(username: $u, password: "correct horse battery") { user { id username } } }`,
		// Whoever knows the victim's password is the victim.
		vars: func(c cell, _ caller) map[string]any { return map[string]any{"u": c.victim.Username} }, want: notPartners, leaky: true},
	"Mutation.logout":          {op: `mutation { logout }`, want: notPartners, fresh: true},
	"Mutation.grantConsent":    {op: `mutation { grantConsent(purpose: "newsletter") { changed } }`, want: usersOnly},
	"Mutation.withdrawConsent": {op: `mutation { withdrawConsent(purpose: "newsletter") { changed } }`, want: usersOnly},
	"Mutation.publishPolicy": {op: `mutation($v: String!) { publishPolicy(version: $v, url: "https://example.org/privacy") { version } }`,
		vars: func(cell, caller) map[string]any { return map[string]any{"v": uniq("v")} }, want: adminOnly},
	"Mutation.rotateSigningKey": {op: `mutation { rotateSigningKey }`, want: adminOnly},
	"Mutation.createPartner": {op: `mutation($n: String!) { createPartner(name: $n, epsilonBudget: 1, budgetPeriodDays: 30) { apiKey } }`,
		vars: func(cell, caller) map[string]any { return map[string]any{"n": uniq("Partner")} }, want: adminOnly},
	"Mutation.revokePartner": {op: `mutation($id: ID!) { revokePartner(id: $id) { id } }`,
		vars: func(c cell, _ caller) map[string]any { return map[string]any{"id": c.victim.Partner} }, want: adminOnly, fresh: true},
	"Mutation.reconcileDemographics": {op: `mutation { reconcileDemographics { usersCounted } }`, want: adminOnly},
	"Mutation.updateProfile":         {op: `mutation { updateProfile(input: {language: "de"}) { id } }`, want: usersOnly},
	"Mutation.setEmail":              {op: `mutation { setEmail(email: null) { id } }`, want: usersOnly},
	// The token is the only capability; a wrong one teaches nothing.
	"Mutation.verifyEmail": {op: `mutation { verifyEmail(token: "not-a-real-token") }`,
		want: policyAll("BAD_USER_INPUT", "BAD_USER_INPUT", "BAD_USER_INPUT", "FORBIDDEN", "BAD_USER_INPUT")},
	"Mutation.deleteMyAccount": {op: `mutation($p: String!) { deleteMyAccount(password: $p) }`,
		// Everyone gives their own password; the admin a wrong one, so the
		// admin account survives (and is refused like anyone else).
		vars: func(_ cell, who caller) map[string]any {
			if who == admin {
				return map[string]any{"p": "not the admin password"}
			}
			return map[string]any{"p": "correct horse battery"}
		}, want: policyAll("UNAUTHENTICATED", ok, ok, "FORBIDDEN", "BAD_USER_INPUT"), fresh: true},
	// A wrong current password: everyone signed in is checked, nobody changed.
	"Mutation.changePassword": {op: `mutation { changePassword(currentPassword: "not the password", newPassword: "a brand new secret") }`,
		want: policyAll("UNAUTHENTICATED", "BAD_USER_INPUT", "BAD_USER_INPUT", "FORBIDDEN", "BAD_USER_INPUT")},
	// Anyone may ask; the answer is always true and tells nothing.
	"Mutation.requestPasswordReset": {op: `mutation { requestPasswordReset(email: "nobody@example.org") }`,
		want: policyAll(ok, ok, ok, "FORBIDDEN", ok)},
	// The token is the only capability, as for verifyEmail.
	"Mutation.resetPassword": {op: `mutation { resetPassword(token: "cgr_not-a-real-token-000", newPassword: "a brand new secret") }`,
		want: policyAll("BAD_USER_INPUT", "BAD_USER_INPUT", "BAD_USER_INPUT", "FORBIDDEN", "BAD_USER_INPUT")},
	"Mutation.dismissNotices": {op: `mutation { dismissNotices }`, want: usersOnly},
	"Mutation.eraseUser": {op: `mutation($id: ID!) { eraseUser(id: $id) }`,
		vars: func(c cell, _ caller) map[string]any { return map[string]any{"id": c.victim.ID} }, want: adminOnly, fresh: true},

	// Processors and the outbox (issue 4). An admin passes authorization
	// and is then told the processor or item does not exist.
	"Query.processors": {op: `{ processors { name } }`, want: notPartners},
	"Query.outbox":     {op: `{ outbox(first: 5) { __typename } }`, want: adminOnly, leaky: true},
	"Mutation.setProcessorEnabled": {op: `mutation { setProcessorEnabled(name: "no-such-processor", enabled: true) { name } }`,
		want: policyAll("UNAUTHENTICATED", "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND")},
	"Mutation.retryDelivery": {op: `mutation { retryDelivery(id: "000000000000000000000000") { __typename } }`,
		want: policyAll("UNAUTHENTICATED", "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND")},
	// Acts on the caller's own links only (there is no argument naming a
	// user); the matrix config has no processor, so every signed-in user
	// is told it does not exist.
	"Mutation.requestProcessorAction": {op: `mutation { requestProcessorAction(processor: "no-such-processor", action: "resendConfirmation") }`,
		want: policyAll("UNAUTHENTICATED", "BAD_USER_INPUT", "BAD_USER_INPUT", "FORBIDDEN", "BAD_USER_INPUT")},
}

// schemaOperations lists "Query.x" and "Mutation.y" for every root field
// in the schema files.
func schemaOperations(t *testing.T) []string {
	t.Helper()
	sources := graph.SchemaSources()
	s, gerr := gqlparser.LoadSchema(sources...)
	if gerr != nil {
		t.Fatalf("parse schema: %v", gerr)
	}
	var ops []string
	for _, typ := range []*ast.Definition{s.Query, s.Mutation} {
		for _, f := range typ.Fields {
			if !strings.HasPrefix(f.Name, "__") {
				ops = append(ops, typ.Name+"."+f.Name)
			}
		}
	}
	sort.Strings(ops)
	if len(ops) < 10 {
		t.Fatalf("only %d operations found in the schema files; the walk would prove nothing", len(ops))
	}
	return ops
}

func TestAuthorizationMatrixCoversTheSchema(t *testing.T) {
	t.Parallel()
	ops := schemaOperations(t)
	seen := map[string]bool{}
	for _, op := range ops {
		seen[op] = true
		if _, ok := matrix[op]; !ok {
			t.Errorf("%s has no row in the authorization matrix: add one to `matrix` in internal/app/authz_matrix_test.go "+
				"saying what anonymous, user, other user, partner and admin get", op)
		}
	}
	for op := range matrix {
		if !seen[op] {
			t.Errorf("the authorization matrix has a row for %s, which is not in the schema: remove or rename it", op)
		}
	}
}

func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	s, adminClient := apptest.StartWithAdmin(t)
	ops := schemaOperations(t)
	register := func(prefix string) (*apptest.Client, string, string) {
		name := uniq(prefix)
		c := s.Register(t, name)
		var me struct{ Me struct{ ID string } }
		c.Do(t, `{ me { id } }`, nil).Decode(t, &me)
		return c, me.Me.ID, name
	}
	type fixture struct {
		victim  victimInfo
		clients [callers]*apptest.Client
	}
	newFixture := func() fixture {
		victimClient, victimID, victimName := register("victim")
		var granted struct{ GrantConsent struct{ Receipt string } }
		victimClient.Do(t, `mutation { grantConsent(purpose: "newsletter") { receipt } }`, nil).Decode(t, &granted)
		pv, partnerClient := createPartner(t, s, adminClient, 3, 30)
		otherClient, _, _ := register("other")
		adm := s.Client()
		var out struct{ Login struct{ Token string } }
		adm.Do(t, `mutation { login(username: "partner-admin", password: "partner admin password") { token } }`, nil).Decode(t, &out)
		adm.Token = out.Login.Token
		return fixture{
			victim:  victimInfo{ID: victimID, Username: victimName, Receipt: granted.GrantConsent.Receipt, Partner: pv.ID},
			clients: [callers]*apptest.Client{s.Client(), victimClient, otherClient, partnerClient, adm},
		}
	}
	shared := newFixture()
	for _, op := range ops {
		row, found := matrix[op]
		if !found {
			continue // TestAuthorizationMatrixCoversTheSchema reports it
		}
		for who := range callers {
			f := shared
			if row.fresh {
				f = newFixture()
			}
			c := cell{Client: f.clients[who], victim: f.victim}
			if who == anonymous {
				c.Client = s.Client() // register and login sign the cookie jar in
			}
			victimID, victimName := f.victim.ID, f.victim.Username
			var vars map[string]any
			if row.vars != nil {
				vars = row.vars(c, who)
			}
			r := c.Do(t, row.op, vars)
			got := ok
			if len(r.Errors) > 0 {
				got = r.Code()
			}
			if got != row.want[who] {
				t.Errorf("%s as %s: got %s, want %s (%s)", op, callerNames[who], got, row.want[who], r.Raw)
				continue
			}
			if who != user && who != admin && !row.leaky && (strings.Contains(string(r.Raw), victimID) || strings.Contains(string(r.Raw), `"`+victimName+`"`)) {
				t.Errorf("IDOR: %s as %s answered with the victim's id or username: %s", op, callerNames[who], r.Raw)
			}
		}
	}
}

// TestNoIDORAcrossUsers checks the data itself: after a second user tried
// the victim's identifiers, the victim's account and consent are unchanged.
func TestNoIDORAcrossUsers(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	victim := s.Register(t, "idor-victim")
	victim.Do(t, `mutation { grantConsent(purpose: "newsletter") { changed } }`, nil)
	var me struct{ Me struct{ ID string } }
	victim.Do(t, `{ me { id } }`, nil).Decode(t, &me)
	attacker := s.Register(t, "idor-attacker")
	for _, q := range []string{
		`mutation($id: ID!) { eraseUser(id: $id) }`,
		`mutation { withdrawConsent(purpose: "newsletter") { changed } }`,
		`mutation { deleteMyAccount(password: "wrong password") }`,
	} {
		attacker.Do(t, q, map[string]any{"id": me.Me.ID})
	}
	var after struct {
		Me struct {
			ID       string
			Username string
		}
		Export struct{ Document string } `json:"exportMyData"`
	}
	victim.Do(t, `{ me { id username } exportMyData { document } }`, nil).Decode(t, &after)
	if after.Me.ID != me.Me.ID || after.Me.Username != "idor-victim" {
		t.Fatalf("victim changed: %+v", after.Me)
	}
	if !strings.Contains(after.Export.Document, "newsletter") {
		t.Fatalf("victim's consent to newsletter disappeared: %s", after.Export.Document)
	}
	var mine struct{ ExportMyData struct{ Document string } }
	attacker.Do(t, `{ exportMyData { document } }`, nil).Decode(t, &mine)
	if strings.Contains(mine.ExportMyData.Document, me.Me.ID) || strings.Contains(mine.ExportMyData.Document, "idor-victim") {
		t.Fatal("the attacker's export holds the victim's data")
	}
}
