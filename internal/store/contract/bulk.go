package contract

import (
	"fmt"
	"math/rand/v2"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
)

func bulkTests() []contractTest {
	return []contractTest{
		{"bulk/each-across-many-records", testEachAcrossPages},
	}
}

// bulkSize is past the page sizes adapters commonly walk their tables in
// (1000), so a lost or repeated record at a page boundary shows, yet small
// enough for FerretDB.
const bulkSize = 1100

// testEachAcrossPages imports many accounts, data keys and member records
// in random order and walks them with every Each* call: each record once,
// in user id order where the port promises it.
func testEachAcrossPages(e *env) {
	ids := make([]string, bulkSize)
	for i := range ids {
		ids[i] = fmt.Sprintf("u-%05d", i*7%bulkSize) // every id once, inserted out of order
	}
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	var (
		accts   []accounts.NewAccount
		keys    []accounts.DataKey
		members []demographics.Member
		erasing = ids[17]
	)
	for _, id := range ids {
		na := newAccount(id, "bulk-"+id)
		na.Account.UsernameKey = "bulk-" + id
		accts = append(accts, na)
		keys = append(keys, dataKey(id))
		members = append(members, demographics.Member{UserID: id, Ver: 1, Tuple: []byte("t-" + id)})
	}
	// Import in a few batches, as seeding does.
	for i := 0; i < len(ids); i += 400 {
		j := min(i+400, len(ids))
		e.must(e.b.Accounts().ImportAccounts(e.ctx, accts[i:j]), "ImportAccounts(%d..%d)", i, j)
		e.must(e.b.Accounts().ImportDataKeys(e.ctx, keys[i:j]), "ImportDataKeys(%d..%d)", i, j)
		e.must(e.b.Demographics().ImportMembers(e.ctx, members[i:j]), "ImportMembers(%d..%d)", i, j)
	}
	ok, err := e.b.Accounts().MarkErasing(e.ctx, erasing, at(0))
	e.must(err, "MarkErasing")
	e.wantBool("MarkErasing", true, ok)
	want := sorted(ids)
	var live []string
	for _, id := range want {
		if id != erasing {
			live = append(live, id)
		}
	}

	var seen []string
	e.must(e.b.Accounts().EachAccount(e.ctx, func(r *accounts.Record) error { seen = append(seen, r.ID); return nil }), "EachAccount")
	e.checkWalk("EachAccount", live, seen, true)
	seen = nil
	e.must(e.b.Consent().EachState(e.ctx, func(id string, _ *consent.Stored) error { seen = append(seen, id); return nil }), "EachState")
	e.checkWalk("EachState", live, seen, true)
	seen = nil
	e.must(e.b.Accounts().EachDataKey(e.ctx, func(k accounts.DataKey) error { seen = append(seen, k.UserID); return nil }), "EachDataKey")
	e.checkWalk("EachDataKey", want, seen, true)
	seen = nil
	e.must(e.b.Demographics().EachMember(e.ctx, func(m *demographics.Member) error { seen = append(seen, m.UserID); return nil }), "EachMember")
	e.checkWalk("EachMember", want, sorted(seen), false)
}

// checkWalk compares the ids a walk saw with want, reporting the first
// differences rather than two lists of a thousand ids.
func (e *env) checkWalk(what string, want, got []string, ordered bool) {
	e.t.Helper()
	if len(got) != len(want) {
		e.t.Errorf("%s visited %d records, want %d", what, len(got), len(want))
	}
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	bad := 0
	for _, id := range want {
		if seen[id] != 1 && bad < 5 {
			e.t.Errorf("%s visited %s %d times, want once", what, id, seen[id])
			bad++
		}
		delete(seen, id)
	}
	for id := range seen {
		if bad < 10 {
			e.t.Errorf("%s visited %s, which it should not", what, id)
			bad++
		}
	}
	if ordered {
		for i := 1; i < len(got); i++ {
			if got[i-1] >= got[i] {
				e.t.Errorf("%s is not in user id order: %s before %s", what, got[i-1], got[i])
				break
			}
		}
	}
}
