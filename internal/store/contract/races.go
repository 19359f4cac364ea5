package contract

import (
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/work"
)

// raceTests run every other conditional write of the ports with 50
// concurrent callers that all satisfy its condition at the start: exactly
// one may win, and the record ends as the winner left it.
func raceTests() []contractTest {
	return []contractTest{
		{"races/insert-data-key", testRaceInsertDataKey},
		{"races/swap-data-key-secret-private-key", testRaceSwaps},
		{"races/mark-erasing", testRaceMarkErasing},
		{"races/enqueue-retry-finish", testRaceOutbox},
		{"races/cells-and-members", testRaceDemographics},
	}
}

// exactlyOne runs fn in 50 goroutines and checks that exactly one
// returned true and none failed; it returns the winner.
func (e *env) exactlyOne(what string, fn func(i int) (bool, error)) int {
	e.t.Helper()
	won := make([]bool, concurrency)
	errs := e.parallel(concurrency, func(i int) error {
		ok, err := fn(i)
		won[i] = ok
		return err
	})
	winner, n := -1, 0
	for i := range concurrency {
		if errs[i] != nil {
			e.t.Errorf("%s #%d: %v", what, i, errs[i])
		}
		if won[i] {
			n++
			if winner < 0 {
				winner = i
			}
		}
	}
	if n != 1 {
		e.t.Fatalf("%d of %d concurrent %s calls succeeded, want exactly 1", n, concurrency, what)
	}
	return winner
}

func testRaceInsertDataKey(e *env) {
	s := e.b.Accounts()
	// At most one key per user: the losers get an error, the key is the winner's.
	errs := e.parallel(concurrency, func(i int) error {
		return s.InsertDataKey(e.ctx, dataKeyN("u-k", i))
	})
	winner, n := -1, 0
	for i, err := range errs {
		if err == nil {
			n++
			winner = i
		}
	}
	if n != 1 {
		e.t.Fatalf("%d of %d concurrent InsertDataKey calls for one user succeeded, want exactly 1", n, concurrency)
	}
	e.equal("the data key after the race (the winner's)", dataKeyN("u-k", winner).Wrapped, e.dataKey("u-k"))
}

func dataKeyN(userID string, i int) (k accounts.DataKey) {
	k = dataKey(userID)
	k.Wrapped = fmt.Appendf(nil, "wrapped-%02d", i)
	return k
}

func testRaceSwaps(e *env) {
	a := e.b.Accounts()
	k := dataKey("u-swap")
	e.must(a.InsertDataKey(e.ctx, k), "InsertDataKey")
	w := e.exactlyOne("SwapDataKey from one old key", func(i int) (bool, error) {
		return a.SwapDataKey(e.ctx, "u-swap", k.Wrapped, fmt.Appendf(nil, "new-%02d", i))
	})
	e.equal("data key after the SwapDataKey race", fmt.Appendf(nil, "new-%02d", w), e.dataKey("u-swap"))

	sec := secret("s")
	ok, err := e.b.Secrets().InsertSecret(e.ctx, sec)
	e.must(err, "InsertSecret")
	e.wantBool("InsertSecret", true, ok)
	w = e.exactlyOne("SwapSecret from one old value", func(i int) (bool, error) {
		return e.b.Secrets().SwapSecret(e.ctx, "s", sec.Value, fmt.Appendf(nil, "new-%02d", i), fmt.Sprintf("mk-%02d", i))
	})
	want := sec
	want.Value, want.KeyID = fmt.Appendf(nil, "new-%02d", w), fmt.Sprintf("mk-%02d", w)
	e.equal("secret after the SwapSecret race", &want, e.secret("s"))

	key := signingKey(1)
	e.insertKey(key)
	w = e.exactlyOne("SwapPrivateKey from one old key", func(i int) (bool, error) {
		return e.b.Signing().SwapPrivateKey(e.ctx, key.Kid, key.PrivateKey, fmt.Appendf(nil, "new-%02d", i), fmt.Sprintf("mk-%02d", i))
	})
	key.PrivateKey, key.MasterKeyID = fmt.Appendf(nil, "new-%02d", w), fmt.Sprintf("mk-%02d", w)
	e.equal("signing key after the SwapPrivateKey race", []signing.KeyRecord{key}, e.keys())
}

func testRaceMarkErasing(e *env) {
	want := e.createAccount("u-e")
	w := e.exactlyOne("MarkErasing", func(i int) (bool, error) {
		return e.b.Accounts().MarkErasing(e.ctx, "u-e", at(time.Duration(i+1)*time.Second))
	})
	when := at(time.Duration(w+1) * time.Second)
	want.ErasingSince = &when
	e.equal("account after the MarkErasing race (the winner's time)", &want, e.account("u-e"))
}

func testRaceOutbox(e *env) {
	o := e.b.Outbox()
	w := e.exactlyOne("Enqueue of one id", func(i int) (bool, error) {
		it := newItem("w-1", fmt.Sprintf("u-%02d", i), "webhook", at(0))
		return o.Enqueue(e.ctx, it)
	})
	e.equal("item after the Enqueue race (the winner's)", newItem("w-1", fmt.Sprintf("u-%02d", w), "webhook", at(0)), e.item("w-1"))

	dead := newItem("w-dead", "u-d", "webhook", at(0))
	dead.State, dead.Attempts = work.Dead, 7
	e.enqueue(dead)
	e.exactlyOne("Retry of a DEAD item", func(i int) (bool, error) {
		return o.Retry(e.ctx, "w-dead", at(time.Hour))
	})
	if it := e.item("w-dead"); it.State != work.Pending || it.Attempts != 0 {
		e.t.Errorf("item after the Retry race: state %s, attempts %d", it.State, it.Attempts)
	}

	// The same outcome delivered 50 times at once (a retried RPC, a
	// duplicated message): it is recorded once, since Finish clears the
	// lease it is guarded on.
	e.enqueue(newItem("w-f", "u-f", "mailchimp", at(0)))
	c := e.claimOne("o", []string{"mailchimp"}, at(time.Minute), at(2*time.Minute))
	retryAt := at(10 * time.Minute)
	e.exactlyOne("Finish of one lease", func(i int) (bool, error) {
		return o.Finish(e.ctx, outbox.Finish{Item: c, State: work.Pending, NextAt: retryAt, LastError: "503", At: at(time.Minute)})
	})
	if it := e.item("w-f"); it.State != work.Pending || !it.LeaseUntil.IsZero() || !it.NextAt.Equal(retryAt) || it.Attempts != 1 {
		e.t.Errorf("item after the Finish race: state %s, lease %s, next %s, attempts %d", it.State, fmtTime(it.LeaseUntil), fmtTime(it.NextAt), it.Attempts)
	}
}

func testRaceDemographics(e *env) {
	s := e.b.Demographics()
	w := e.exactlyOne("CreateCell of one id", func(i int) (bool, error) {
		return s.CreateCell(e.ctx, 2, demographics.CellRecord{ID: "c", N: int64(i), Ver: 1, Values: fmt.Appendf(nil, "v-%02d", i)})
	})
	e.equal("cell after the CreateCell race", []demographics.CellCount{{ID: "c", N: int64(w), Ver: 1}}, e.cellCounts(2))
	w = e.exactlyOne("SetCellIfUnchanged at one version", func(i int) (bool, error) {
		return s.SetCellIfUnchanged(e.ctx, 2, "c", 1, int64(100+i))
	})
	e.equal("cell after the SetCellIfUnchanged race", []demographics.CellCount{{ID: "c", N: int64(100 + w), Ver: 2}}, e.cellCounts(2))

	p := pending("op", nil, []byte("t"))
	ok, err := s.BeginMove(e.ctx, "u-m", 0, p)
	e.must(err, "BeginMove")
	e.wantBool("BeginMove", true, ok)
	w = e.exactlyOne("SettleMove of one op", func(i int) (bool, error) {
		return s.SettleMove(e.ctx, "u-m", "op", fmt.Appendf(nil, "tuple-%02d", i))
	})
	e.equal("member after the SettleMove race", &demographics.Member{UserID: "u-m", Ver: 2, Tuple: fmt.Appendf(nil, "tuple-%02d", w)}, e.member("u-m"))
	e.exactlyOne("DeleteMember at one version", func(i int) (bool, error) {
		return s.DeleteMember(e.ctx, "u-m", 2)
	})
	if m := e.member("u-m"); m != nil {
		e.t.Errorf("member after the DeleteMember race = %+v", m)
	}
}
