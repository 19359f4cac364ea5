package graph

import (
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/graph/model"
)

// The cost model of the API, in one place. A request's cost is the sum of
// its fields' costs (gqlgen's complexity): a plain scalar costs 1, an object
// field without an entry 1 plus what is selected under it, and every field
// below that does real work costs what the work costs, in units where one
// indexed store read is costRead. A list costs its page size (`first`, or
// an estimate of its length) times what one item selects, so aliases and
// long pages add up before anything runs.
//
// The server refuses a request above --max-complexity before execution and
// charges the cost of every admitted request to the caller's per-minute
// budget (internal/app/cost.go). TestEveryExpensiveFieldHasACost
// (cost_test.go) walks the schema and fails for any root field, resolver
// field or field with arguments that has no entry here, so a new expensive
// field cannot slip in at the default cost.
const (
	// costRead is one indexed store read (a document, a row or a page).
	costRead = 10
	// costWrite is one atomic store write.
	costWrite = 30
	// costSign is one Ed25519 signature or signature check plus the JSON
	// around it.
	costSign = 20
	// costAudit is one audit append: a write serialized with every other
	// append of every replica.
	costAudit = 40
	// costArgon2 is one argon2id password hash: 19 MiB and tens of
	// milliseconds of a core, about a hundred store reads.
	costArgon2 = 1000
	// costLedger is reading a whole consent ledger, recomputing its hash
	// chain and checking the signature of every receipt in it.
	costLedger = 500
	// costAuditVerify is reading and rehashing the whole audit log.
	costAuditVerify = 500
	// costExport is everything held about a user (account, consents,
	// ledger, disclosures, sessions) read, serialized and signed.
	costExport = 1000
	// costRecount is recounting the demographic aggregates from all users.
	costRecount = 2000

	// defaultPage and maxPage mirror the connections' own rules (first
	// defaults to 20 and may be at most 100); a larger first is refused
	// by the resolver, so it is priced at the maximum.
	defaultPage = 20
	maxPage     = 100
	// smallList estimates short lists held in memory (purposes,
	// processors, notes) and admin listings that are not paged.
	smallList = 10
	// LargePage is the page size above which consentHistory and
	// disclosures count as expensive reads (their own per-account rate).
	LargePage = defaultPage
)

// page is the number of items a connection asked for returns at most.
func page(first *int) int {
	switch {
	case first == nil:
		return defaultPage
	case *first < 1:
		return 1
	case *first > maxPage:
		return maxPage
	}
	return *first
}

// list is the cost of n items each selecting child, plus one read.
func list(n, child int) int { return costRead + n*(child+1) }

// Costs returns the cost model as gqlgen's complexity functions.
func Costs() ComplexityRoot {
	var c ComplexityRoot

	// Root queries.
	c.Query.Me = func(child int) int { return costRead + child }
	c.Query.Policy = func(child int) int { return 1 + child }                   // in memory
	c.Query.Purposes = func(child int) int { return 1 + smallList*(child+1) }   // in memory
	c.Query.Processors = func(child int) int { return 1 + smallList*(child+1) } // in memory
	c.Query.Operator = func(child int) int { return 1 + child }                 // in memory, from the config
	c.Query.VerifyReceipt = func(child int, _ string) int { return costSign + child }
	c.Query.ExportMyData = func(child int) int { return costAudit + costExport + costSign + child }
	c.Query.AuditLog = func(child int, first *int, _ *string) int {
		return costAuditVerify + list(page(first), child)
	}
	c.Query.Outbox = func(child int, _ *model.DeliveryState, first *int, _ *string) int {
		return list(page(first), child)
	}
	c.Query.Partners = func(child int, first *int, _ *string) int { return list(page(first), child) }
	c.Query.PartnerMe = func(child int) int { return costRead + child }
	c.Query.Demographics = func(child int, groupBy []model.Dimension, _ *float64) int {
		// The cells of the chosen dimensions are read and each gets noise.
		n := demographicCells(groupBy)
		return costRead*(1+len(groupBy)) + costWrite + n*(child+1)
	}

	// A connection's totalCount is one count query (by an index), run
	// only when selected.
	c.AuditLogConnection.TotalCount = func(int) int { return costRead }
	c.OutboxConnection.TotalCount = func(int) int { return costRead }
	c.DisclosureConnection.TotalCount = func(int) int { return costRead }
	c.PartnerConnection.TotalCount = func(int) int { return costRead }

	// Fields of User and Purpose with resolvers of their own.
	c.User.Consents = func(child int) int { return costRead + smallList*(child+1) }
	c.User.ConsentHistory = func(child int, first *int, _ *string) int { return list(page(first), child) }
	c.User.Disclosures = func(child int, first *int, _ *string) int { return list(page(first), child) }
	c.User.LedgerIntact = func(int) int { return costLedger }
	// An inclusion proof reads the leaf and O(log n) node hashes; the
	// checkpoint it is against is signed once per request and shared.
	c.ConsentEvent.LogProof = func(child int) int { return 2*costRead + child }
	c.Purpose.Processors = func(child int) int { return 1 + smallList*(child+1) } // in memory
	// One key read per configured processor (a handful).
	c.User.ProcessorLinks = func(child int) int { return costRead + smallList*(child+1) }

	// Mutations.
	c.Mutation.Register = func(child int, _ model.RegisterInput) int { return costArgon2 + 3*costWrite + child }
	c.Mutation.Login = func(child int, _, _ string) int { return costArgon2 + costWrite + child }
	c.Mutation.Logout = func(int) int { return costWrite }
	c.Mutation.GrantConsent = func(child int, _ string) int { return costRead + costWrite + costSign + child }
	c.Mutation.WithdrawConsent = func(child int, _ string) int { return costRead + costWrite + costSign + child }
	c.Mutation.UpdateProfile = func(child int, _ model.ProfileInput) int { return costRead + costWrite + child }
	c.Mutation.SetEmail = func(child int, _ *string) int { return costRead + costWrite + child } // and a mail
	c.Mutation.VerifyEmail = func(int, string) int { return costRead + costWrite }
	c.Mutation.DeleteMyAccount = func(int, string) int { return costArgon2 + 5*costWrite + costAudit }
	// Checks the current password and hashes the new one; ends the other
	// sessions.
	c.Mutation.ChangePassword = func(int, string, string) int { return 2*costArgon2 + costRead + 3*costWrite }
	// Answered at once; the lookup and the mail follow, so price them here.
	c.Mutation.RequestPasswordReset = func(int, string) int { return 2*costRead + costWrite }
	c.Mutation.ResetPassword = func(int, string, string) int { return costArgon2 + costRead + 3*costWrite }
	c.Mutation.DismissNotices = func(int) int { return costWrite }
	c.Mutation.EraseUser = func(int, string) int { return 5*costWrite + costAudit }
	c.Mutation.PublishPolicy = func(child int, _, _ string, _ []string) int { return costAudit + costWrite + child }
	c.Mutation.RotateSigningKey = func(int) int { return costAudit + costWrite + costSign }
	c.Mutation.CreatePartner = func(child int, _ string, _ float64, _ int) int { return costWrite + child }
	c.Mutation.RevokePartner = func(child int, _ string) int { return costWrite + child }
	c.Mutation.ReconcileDemographics = func(child int) int { return costRecount + child }
	c.Mutation.SetProcessorEnabled = func(child int, _ string, _ bool) int { return costAudit + costWrite + child }
	c.Mutation.RetryDelivery = func(child int, _ string) int { return costAudit + costWrite + child }
	// Queues one work item; the processor is called later, by the dispatcher.
	c.Mutation.RequestProcessorAction = func(int, string, string) int { return costWrite }
	return c
}

// demographicCells estimates how many cells a report grouped by dims holds
// (typical counts of distinct values, at most 150: the cells are
// pre-aggregated and read in one query, so only the answer grows), which is what the
// partner's selection is multiplied by.
func demographicCells(dims []model.Dimension) int {
	n := 1
	for _, d := range dims {
		switch d {
		case model.DimensionAgeBand:
			n *= 8
		case model.DimensionGender:
			n *= 5
		case model.DimensionSignupMonth:
			n *= 24
		default: // COUNTRY, LANGUAGE
			n *= 50
		}
		if n >= 150 {
			return 150
		}
	}
	return n
}

// expensiveReads are the reads that cost far more than a page of the Privacy
// Center normally needs; each occurrence in a request (aliases and fragments
// included) also counts against the caller's small per-account rate of them.
var expensiveReads = map[string]func(args map[string]any) bool{
	"Query.exportMyData":  func(map[string]any) bool { return true },
	"Query.auditLog":      func(map[string]any) bool { return true }, // rehashes the whole log
	"User.ledgerIntact":   func(map[string]any) bool { return true },
	"User.consentHistory": largePage,
	"User.disclosures":    largePage,
}

func largePage(args map[string]any) bool {
	first := defaultPage
	switch v := args["first"].(type) {
	case int:
		first = v
	case int64:
		first = int(v)
	case float64:
		first = int(v)
	}
	return first > LargePage
}

// ExpensiveReads counts the expensive reads in a validated operation,
// following fragments. The field cap (FieldCap) has bounded the document's
// expanded size, so the walk is bounded too.
func ExpensiveReads(op *ast.OperationDefinition, vars map[string]any) int {
	if op == nil {
		return 0
	}
	return expensiveIn(op.SelectionSet, vars, 0)
}

func expensiveIn(set ast.SelectionSet, vars map[string]any, depth int) int {
	if depth > 64 {
		return 0
	}
	n := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.ObjectDefinition != nil {
				if is, ok := expensiveReads[s.ObjectDefinition.Name+"."+s.Name]; ok && is(s.ArgumentMap(vars)) {
					n++
				}
			}
			n += expensiveIn(s.SelectionSet, vars, depth+1)
		case *ast.InlineFragment:
			n += expensiveIn(s.SelectionSet, vars, depth+1)
		case *ast.FragmentSpread:
			if s.Definition != nil {
				n += expensiveIn(s.Definition.SelectionSet, vars, depth+1)
			}
		}
	}
	return n
}
