// Package contract is the one storage test suite. It checks every operation
// of every storage port (accounts, consent, outbox, demographics, partners,
// audit, signing keys, secrets, processor state) and the invariants the
// domains rely on — uniqueness under concurrent writers, conditional
// updates, work items written atomically with the consent change, leases,
// budgets that never overspend, cells equal to a recount, erasure — against
// any store adapter. Each adapter calls Run from its own tests with a
// function that opens a fresh, empty store.
//
// The suite talks to the adapter only through the ports: the port doc
// comments are the contract it tests, so a failure here is a difference
// between an adapter and those comments.
//
// An adapter runs it from its own tests:
//
//	func TestContract(t *testing.T) {
//		contract.Run(t, func(t *testing.T) contract.Backend {
//			db, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "db")})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { _ = db.Close(context.Background()) })
//			return db
//		})
//	}
//
// Subtests are named "<port>/<case>" (go test -run 'TestContract/outbox/'
// runs one port's). Data sizes stay small, because the MongoDB adapter is
// also run against FerretDB, which scans and serializes everything; the
// concurrency cases still use 50 goroutines, each doing little.
package contract

import (
	"context"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/ratelimit"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// Backend is what the suite needs from a store adapter: the ports, and the
// lifecycle methods every adapter's *DB has.
type Backend interface {
	Accounts() accounts.Store
	Consent() consent.Store
	Outbox() outbox.Store
	Demographics() demographics.Store
	Partners() partners.Store
	RateLimits() ratelimit.Store
	Audit() audit.Store
	Signing() signing.Store
	Secrets() envelope.SecretStore
	Translog() translog.Store
	Ping(ctx context.Context) error
	Close(ctx context.Context) error
	Kind() string
}

// subtestTimeout bounds each subtest, so that a deadlock in an adapter (a
// lost wake-up, a transaction waiting on itself) fails the subtest instead
// of hanging the run. It is generous because the MongoDB adapter is also
// run against FerretDB, which serializes everything on one connection.
const subtestTimeout = 90 * time.Second

// env is what one subtest works with: its own fresh store and a context
// that ends with the subtest (or at its deadline).
type env struct {
	t   *testing.T
	ctx context.Context
	b   Backend
}

type contractTest struct {
	name string
	run  func(e *env)
}

// Run runs every contract test as a subtest named "<port>/<case>". open is
// called once per subtest and must return a fresh, empty store; closing it
// is left to open's caller (typically a t.Cleanup registered in open).
func Run(t *testing.T, open func(t *testing.T) Backend) {
	t.Helper()
	for _, tc := range allTests() {
		t.Run(tc.name, func(t *testing.T) {
			b := open(t)
			if b == nil {
				t.Fatal("open returned a nil Backend")
			}
			ctx, cancel := context.WithTimeout(t.Context(), subtestTimeout)
			t.Cleanup(cancel)
			tc.run(&env{t: t, ctx: ctx, b: b})
		})
	}
}

// allTests lists the subtests, grouped by port.
func allTests() []contractTest {
	var all []contractTest
	for _, group := range [][]contractTest{
		backendTests(),
		accountsTests(),
		dataKeyTests(),
		sessionTests(),
		consentTests(),
		outboxTests(),
		pluginStateTests(),
		linkTests(),
		demographicsTests(),
		partnersTests(),
		rateLimitTests(),
		auditTests(),
		translogTests(),
		signingTests(),
		secretsTests(),
		erasureTests(),
		storectxTests(),
		bulkTests(),
		raceTests(),
	} {
		all = append(all, group...)
	}
	return all
}

// Names lists the subtest names Run runs, in order (for documentation and
// for adapters that want to skip a known-failing case by name).
func Names() []string {
	var out []string
	for _, tc := range allTests() {
		out = append(out, tc.name)
	}
	return out
}
