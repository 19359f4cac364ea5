package consent_test

import (
	"context"
	"testing"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// racingLog is the real log, with a consent change that lands (and is
// logged) between LedgerIntact's read of the ledger and its read of the
// log, the first time the log is read.
type racingLog struct {
	*translog.Log
	race func(ctx context.Context)
}

func (l *racingLog) ProvenLeaves(ctx context.Context, prefix string) ([]translog.Leaf, error) {
	if race := l.race; race != nil {
		l.race = nil
		race(ctx)
	}
	return l.Log.ProvenLeaves(ctx, prefix)
}

// A change that lands while the ledger is checked is not tampering: the
// log then holds an event newer than the ledger read a moment before, and
// the check must look again rather than tell the user their ledger is
// broken (it did, under a flood of grants and checks).
func TestLedgerCheckedDuringAChangeStaysIntact(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		log := &racingLog{}
		f := setup(t, be, func(o *consent.Options) {
			l, err := translog.New(translog.Options{Store: be.Translog(), Signer: o.Signer, Name: "https://consent.example/log", Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			log.Log = l
			o.Log = log
		})
		uid := f.newUser(t, false)
		must[*consent.Result](t)(f.svc.Grant(ctx, uid, policy.Newsletter))
		if err := f.svc.EnsureLogged(ctx, uid); err != nil {
			t.Fatal(err)
		}
		if !f.intact(t, uid) {
			t.Fatal("a logged ledger with no change in flight is not intact")
		}

		raced := false
		log.race = func(ctx context.Context) {
			raced = true
			must[*consent.Result](t)(f.svc.Withdraw(ctx, uid, policy.Newsletter))
			if err := f.svc.EnsureLogged(ctx, uid); err != nil {
				t.Error(err)
			}
		}
		if !f.intact(t, uid) {
			t.Error("a change logged while the ledger was checked made it look tampered with")
		}
		if !raced {
			t.Fatal("the change never ran between the two reads; the check above proved nothing")
		}
	})
}
