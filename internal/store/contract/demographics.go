package contract

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/demographics"
)

func demographicsTests() []contractTest {
	return []contractTest{
		{"demographics/member-moves", testMemberMoves},
		{"demographics/delete-member", testDeleteMember},
		{"demographics/begin-move-under-50-writers", testBeginMoveConcurrent},
		{"demographics/each-member-and-import", testEachMemberAndImport},
		{"demographics/cells", testCells},
		{"demographics/replace-cells", testReplaceCells},
		{"demographics/cells-equal-a-recount-under-50-writers", testCellsRecount},
		{"demographics/dirty-flag", testDirty},
	}
}

func (e *env) member(userID string) *demographics.Member {
	e.t.Helper()
	m, err := e.b.Demographics().Member(e.ctx, userID)
	e.must(err, "Member(%s)", userID)
	return m
}

func pending(op string, from, to []byte) demographics.Pending {
	return demographics.Pending{Op: op, Since: at(time.Duration(len(op)) * time.Second), From: from, To: to}
}

func testMemberMoves(e *env) {
	s := e.b.Demographics()
	if m := e.member("u-m"); m != nil {
		e.t.Errorf("Member of a user without record = %+v, want nil", m)
	}
	// A first move creates the record (version 0 means "none yet").
	p1 := pending("op-1", nil, []byte("sealed-tuple-1"))
	ok, err := s.BeginMove(e.ctx, "u-m", 0, p1)
	e.must(err, "BeginMove(ver 0)")
	e.wantBool("BeginMove(ver 0) without a record", true, ok)
	e.equal("member after the first BeginMove", &demographics.Member{UserID: "u-m", Ver: 1, Pending: &p1}, e.member("u-m"))

	for _, ver := range []int64{0, 2, 5} {
		ok, err = s.BeginMove(e.ctx, "u-m", ver, pending("op-x", nil, nil))
		e.must(err, "BeginMove(ver %d)", ver)
		e.wantBool(fmt.Sprintf("BeginMove(ver %d) while the version is 1", ver), false, ok)
	}
	ok, err = s.SettleMove(e.ctx, "u-m", "op-other", []byte("wrong"))
	e.must(err, "SettleMove(wrong op)")
	e.wantBool("SettleMove of another op", false, ok)
	e.equal("member after refused calls", &demographics.Member{UserID: "u-m", Ver: 1, Pending: &p1}, e.member("u-m"))

	ok, err = s.SettleMove(e.ctx, "u-m", "op-1", []byte("sealed-tuple-1"))
	e.must(err, "SettleMove")
	e.wantBool("SettleMove", true, ok)
	e.equal("member after SettleMove", &demographics.Member{UserID: "u-m", Ver: 2, Tuple: []byte("sealed-tuple-1")}, e.member("u-m"))
	ok, err = s.SettleMove(e.ctx, "u-m", "op-1", []byte("again"))
	e.must(err, "SettleMove again")
	e.wantBool("SettleMove of a settled op", false, ok)

	// A move from an existing tuple keeps the tuple until settled.
	p2 := pending("op-2", []byte("sealed-tuple-1"), []byte("sealed-tuple-2"))
	ok, err = s.BeginMove(e.ctx, "u-m", 2, p2)
	e.must(err, "BeginMove(ver 2)")
	e.wantBool("BeginMove(ver 2)", true, ok)
	e.equal("member during the second move", &demographics.Member{UserID: "u-m", Ver: 3, Tuple: []byte("sealed-tuple-1"), Pending: &p2}, e.member("u-m"))
	// A recovery may take over a pending move with a new one at the same version.
	p3 := pending("op-3", []byte("sealed-tuple-1"), nil)
	ok, err = s.BeginMove(e.ctx, "u-m", 3, p3)
	e.must(err, "BeginMove(ver 3) over a pending move")
	e.wantBool("BeginMove(ver 3) over a pending move", true, ok)
	ok, err = s.SettleMove(e.ctx, "u-m", "op-2", []byte("sealed-tuple-2"))
	e.must(err, "SettleMove(taken-over op)")
	e.wantBool("SettleMove of an op that was taken over", false, ok)
	e.equal("member after a takeover", &demographics.Member{UserID: "u-m", Ver: 4, Tuple: []byte("sealed-tuple-1"), Pending: &p3}, e.member("u-m"))

	// Settling to nil deletes the record.
	ok, err = s.SettleMove(e.ctx, "u-m", "op-3", nil)
	e.must(err, "SettleMove(to nil)")
	e.wantBool("SettleMove(to nil)", true, ok)
	if m := e.member("u-m"); m != nil {
		e.t.Errorf("member after SettleMove to nil = %+v, want nil (deleted)", m)
	}
	// And version 0 creates it again.
	p4 := pending("op-4", nil, []byte("t4"))
	ok, err = s.BeginMove(e.ctx, "u-m", 0, p4)
	e.must(err, "BeginMove(ver 0) after deletion")
	e.wantBool("BeginMove(ver 0) after the record was deleted", true, ok)
	e.equal("member recreated", &demographics.Member{UserID: "u-m", Ver: 1, Pending: &p4}, e.member("u-m"))

	ok, err = s.SettleMove(e.ctx, "u-nobody", "op-1", []byte("x"))
	e.must(err, "SettleMove(absent)")
	e.wantBool("SettleMove of a user without record", false, ok)
	if m := e.member("u-nobody"); m != nil {
		e.t.Errorf("SettleMove created a record: %+v", m)
	}
}

func testDeleteMember(e *env) {
	s := e.b.Demographics()
	ok, err := s.DeleteMember(e.ctx, "u-absent", 1)
	e.must(err, "DeleteMember(absent)")
	e.wantBool("DeleteMember of a user without record", false, ok)

	p := pending("op-1", nil, []byte("t"))
	ok, err = s.BeginMove(e.ctx, "u-d", 0, p)
	e.must(err, "BeginMove")
	e.wantBool("BeginMove", true, ok)
	ok, err = s.DeleteMember(e.ctx, "u-d", 1)
	e.must(err, "DeleteMember(pending)")
	e.wantBool("DeleteMember of a record with a pending move", false, ok)
	e.equal("member after a refused delete", &demographics.Member{UserID: "u-d", Ver: 1, Pending: &p}, e.member("u-d"))

	ok, err = s.SettleMove(e.ctx, "u-d", "op-1", []byte("t"))
	e.must(err, "SettleMove")
	e.wantBool("SettleMove", true, ok)
	ok, err = s.DeleteMember(e.ctx, "u-d", 1)
	e.must(err, "DeleteMember(stale version)")
	e.wantBool("DeleteMember with a stale version", false, ok)
	if m := e.member("u-d"); m == nil {
		e.t.Fatalf("DeleteMember with a stale version deleted the record")
	}
	ok, err = s.DeleteMember(e.ctx, "u-d", 2)
	e.must(err, "DeleteMember")
	e.wantBool("DeleteMember", true, ok)
	if m := e.member("u-d"); m != nil {
		e.t.Errorf("member after DeleteMember = %+v, want nil", m)
	}
}

func testBeginMoveConcurrent(e *env) {
	s := e.b.Demographics()
	race := func(ver int64) int {
		e.t.Helper()
		won := make([]bool, concurrency)
		errs := e.parallel(concurrency, func(i int) error {
			ok, err := s.BeginMove(e.ctx, "u-race", ver, pending(fmt.Sprintf("op-v%d-%02d", ver, i), nil, []byte("t")))
			won[i] = ok
			return err
		})
		winner := -1
		for i := range concurrency {
			if errs[i] != nil {
				e.t.Errorf("BeginMove #%d (ver %d): %v", i, ver, errs[i])
			}
			if won[i] {
				if winner >= 0 {
					e.t.Errorf("BeginMove(ver %d) #%d and #%d both succeeded", ver, winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			e.t.Fatalf("none of %d concurrent BeginMove(ver %d) calls succeeded", concurrency, ver)
		}
		m := e.member("u-race")
		if m == nil || m.Ver != ver+1 || m.Pending == nil || m.Pending.Op != fmt.Sprintf("op-v%d-%02d", ver, winner) {
			e.t.Errorf("member after the BeginMove(ver %d) race = %+v, want version %d and the winner's op", ver, m, ver+1)
		}
		return winner
	}
	race(0) // creation
	race(1) // takeover of a pending move
}

func testEachMemberAndImport(e *env) {
	s := e.b.Demographics()
	p := pending("op-imp", []byte("a"), []byte("b"))
	imported := []demographics.Member{
		{UserID: "u-i3", Ver: 1, Tuple: []byte("tuple-3")},
		{UserID: "u-i1", Ver: 1, Tuple: []byte("tuple-1")},
		{UserID: "u-i2", Ver: 7, Tuple: []byte("tuple-2"), Pending: &p},
	}
	e.must(s.ImportMembers(e.ctx, imported), "ImportMembers")
	ok, err := s.BeginMove(e.ctx, "u-live", 0, pending("op-live", nil, []byte("t")))
	e.must(err, "BeginMove")
	e.wantBool("BeginMove", true, ok)
	for _, m := range imported {
		e.equal("imported member "+m.UserID, &m, e.member(m.UserID))
	}
	var got []demographics.Member
	e.must(s.EachMember(e.ctx, func(m *demographics.Member) error { got = append(got, *m); return nil }), "EachMember")
	slices.SortFunc(got, func(a, b demographics.Member) int { return strings.Compare(a.UserID, b.UserID) })
	want := append(slices.Clone(imported), *e.member("u-live"))
	slices.SortFunc(want, func(a, b demographics.Member) int { return strings.Compare(a.UserID, b.UserID) })
	e.equal("EachMember", want, got)

	stop := errors.New("stop")
	n := 0
	if err := s.EachMember(e.ctx, func(*demographics.Member) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		e.t.Errorf("EachMember with fn failing: %v after %d calls; want fn's error after 1 call", err, n)
	}
}

func (e *env) cellCounts(mask int) []demographics.CellCount {
	e.t.Helper()
	cs, err := e.b.Demographics().CellCounts(e.ctx, mask)
	e.must(err, "CellCounts(%d)", mask)
	slices.SortFunc(cs, func(a, b demographics.CellCount) int { return strings.Compare(a.ID, b.ID) })
	return cs
}

func testCells(e *env) {
	s := e.b.Demographics()
	if cs := e.cellCounts(5); len(cs) != 0 {
		e.t.Errorf("CellCounts of a new store = %v, want none", cs)
	}
	a := demographics.CellRecord{ID: "cell-a", N: 7, Ver: 3, Values: []byte("sealed:JP|30-39")}
	b := demographics.CellRecord{ID: "cell-b", N: 0, Ver: 0, Values: []byte("sealed:FR|18-24")}
	for _, c := range []demographics.CellRecord{a, b} {
		ok, err := s.CreateCell(e.ctx, 5, c)
		e.must(err, "CreateCell(%s)", c.ID)
		e.wantBool("CreateCell("+c.ID+")", true, ok)
	}
	ok, err := s.CreateCell(e.ctx, 5, demographics.CellRecord{ID: "cell-a", N: 100, Ver: 100, Values: []byte("other")})
	e.must(err, "CreateCell(existing)")
	e.wantBool("CreateCell of an existing cell", false, ok)
	// The same id under another mask is another cell.
	other := demographics.CellRecord{ID: "cell-a", N: 1, Ver: 1, Values: []byte("sealed:mask6")}
	ok, err = s.CreateCell(e.ctx, 6, other)
	e.must(err, "CreateCell(mask 6)")
	e.wantBool("CreateCell of the same id under another mask", true, ok)

	e.equal("CellCounts(5)", []demographics.CellCount{{ID: "cell-a", N: 7, Ver: 3}, {ID: "cell-b", N: 0, Ver: 0}}, e.cellCounts(5))
	e.equal("CellCounts(6)", []demographics.CellCount{{ID: "cell-a", N: 1, Ver: 1}}, e.cellCounts(6))
	vals, err := s.CellValues(e.ctx, 5, []string{"cell-a", "cell-b", "cell-missing"})
	e.must(err, "CellValues")
	e.equal("CellValues(5)", map[string][]byte{"cell-a": a.Values, "cell-b": b.Values}, vals)
	vals, err = s.CellValues(e.ctx, 6, []string{"cell-a", "cell-b"})
	e.must(err, "CellValues(6)")
	e.equal("CellValues(6)", map[string][]byte{"cell-a": other.Values}, vals)
	vals, err = s.CellValues(e.ctx, 5, nil)
	e.must(err, "CellValues(no ids)")
	if len(vals) != 0 {
		e.t.Errorf("CellValues with no ids = %v, want none", vals)
	}

	ok, err = s.SetCellIfUnchanged(e.ctx, 5, "cell-a", 2, 42)
	e.must(err, "SetCellIfUnchanged(stale)")
	e.wantBool("SetCellIfUnchanged with a stale version", false, ok)
	ok, err = s.SetCellIfUnchanged(e.ctx, 5, "cell-a", 3, 42)
	e.must(err, "SetCellIfUnchanged")
	e.wantBool("SetCellIfUnchanged", true, ok)
	ok, err = s.SetCellIfUnchanged(e.ctx, 5, "cell-missing", 0, 1)
	e.must(err, "SetCellIfUnchanged(missing)")
	e.wantBool("SetCellIfUnchanged of a missing cell", false, ok)
	e.equal("CellCounts(5) after SetCellIfUnchanged", []demographics.CellCount{{ID: "cell-a", N: 42, Ver: 4}, {ID: "cell-b", N: 0, Ver: 0}}, e.cellCounts(5))
	e.equal("CellCounts(6) after a change under mask 5", []demographics.CellCount{{ID: "cell-a", N: 1, Ver: 1}}, e.cellCounts(6))

	// AddToCells: existing cells keep their values, missing ones are created with theirs.
	e.must(s.AddToCells(e.ctx, []demographics.CellDelta{
		{Mask: 5, ID: "cell-a", Values: []byte("ignored"), Delta: -2},
		{Mask: 5, ID: "cell-c", Values: []byte("sealed:DE|65+"), Delta: 1},
		{Mask: 6, ID: "cell-a", Values: []byte("ignored"), Delta: 3},
	}), "AddToCells")
	e.equal("CellCounts(5) after AddToCells", []demographics.CellCount{{ID: "cell-a", N: 40, Ver: 5}, {ID: "cell-b", N: 0, Ver: 0}, {ID: "cell-c", N: 1, Ver: 1}}, e.cellCounts(5))
	e.equal("CellCounts(6) after AddToCells", []demographics.CellCount{{ID: "cell-a", N: 4, Ver: 2}}, e.cellCounts(6))
	vals, err = s.CellValues(e.ctx, 5, []string{"cell-a", "cell-c"})
	e.must(err, "CellValues")
	e.equal("CellValues(5) after AddToCells", map[string][]byte{"cell-a": a.Values, "cell-c": []byte("sealed:DE|65+")}, vals)
	e.must(s.AddToCells(e.ctx, nil), "AddToCells(nothing)")
}

func testReplaceCells(e *env) {
	s := e.b.Demographics()
	e.must(s.AddToCells(e.ctx, []demographics.CellDelta{
		{Mask: 3, ID: "old-1", Values: []byte("v1"), Delta: 1},
		{Mask: 3, ID: "keep", Values: []byte("v-old"), Delta: 5},
		{Mask: 4, ID: "other-mask", Values: []byte("v4"), Delta: 2},
	}), "AddToCells")
	cells := []demographics.CellRecord{
		{ID: "keep", N: 9, Ver: 1, Values: []byte("v-new")},
		{ID: "new-1", N: 3, Ver: 1, Values: []byte("v-n1")},
	}
	e.must(s.ReplaceCells(e.ctx, 3, cells), "ReplaceCells")
	e.equal("CellCounts(3) after ReplaceCells", []demographics.CellCount{{ID: "keep", N: 9, Ver: 1}, {ID: "new-1", N: 3, Ver: 1}}, e.cellCounts(3))
	vals, err := s.CellValues(e.ctx, 3, []string{"keep", "new-1", "old-1"})
	e.must(err, "CellValues")
	e.equal("CellValues(3) after ReplaceCells", map[string][]byte{"keep": []byte("v-new"), "new-1": []byte("v-n1")}, vals)
	e.equal("CellCounts(4) (another mask) after ReplaceCells", []demographics.CellCount{{ID: "other-mask", N: 2, Ver: 1}}, e.cellCounts(4))
	e.must(s.ReplaceCells(e.ctx, 3, nil), "ReplaceCells(empty)")
	if cs := e.cellCounts(3); len(cs) != 0 {
		e.t.Errorf("CellCounts(3) after ReplaceCells with none = %v, want none", cs)
	}
	e.equal("CellCounts(4) after emptying mask 3", []demographics.CellCount{{ID: "other-mask", N: 2, Ver: 1}}, e.cellCounts(4))
}

func testCellsRecount(e *env) {
	s := e.b.Demographics()
	type key struct {
		mask int
		id   string
	}
	cells := []key{{7, "c-a"}, {7, "c-b"}, {7, "c-c"}, {7, "c-d"}, {9, "c-a"}}
	values := func(k key) []byte { return fmt.Appendf(nil, "sealed:%d:%s", k.mask, k.id) }
	// Plan every goroutine's batches up front, so the expected counts are
	// known: each batch touches distinct cells with ±1 deltas.
	const callsEach = 3
	rng := rand.New(rand.NewPCG(12, 34))
	plan := make([][][]demographics.CellDelta, concurrency)
	wantN, wantVer := map[key]int64{}, map[key]int64{}
	for g := range concurrency {
		for range callsEach {
			perm := rng.Perm(len(cells))[:1+rng.IntN(3)]
			var batch []demographics.CellDelta
			for _, i := range perm {
				d := int64(1)
				if rng.IntN(3) == 0 {
					d = -1
				}
				k := cells[i]
				batch = append(batch, demographics.CellDelta{Mask: k.mask, ID: k.id, Values: values(k), Delta: d})
				wantN[k] += d
				wantVer[k]++
			}
			plan[g] = append(plan[g], batch)
		}
	}
	errs := e.parallel(concurrency, func(g int) error {
		for _, batch := range plan[g] {
			if err := s.AddToCells(e.ctx, batch); err != nil {
				return err
			}
		}
		return nil
	})
	for g, err := range errs {
		if err != nil {
			e.t.Errorf("writer %d: AddToCells: %v", g, err)
		}
	}
	for _, mask := range []int{7, 9} {
		var want []demographics.CellCount
		var ids []string
		for _, k := range cells {
			if k.mask == mask && wantVer[k] > 0 {
				want = append(want, demographics.CellCount{ID: k.id, N: wantN[k], Ver: wantVer[k]})
				ids = append(ids, k.id)
			}
		}
		e.equal(fmt.Sprintf("CellCounts(%d) against the recount of the deltas (N = sum, Ver = number of deltas)", mask), want, e.cellCounts(mask))
		vals, err := s.CellValues(e.ctx, mask, ids)
		e.must(err, "CellValues(%d)", mask)
		wantVals := map[string][]byte{}
		for _, id := range ids {
			wantVals[id] = values(key{mask, id})
		}
		e.equal(fmt.Sprintf("CellValues(%d) of cells created concurrently", mask), wantVals, vals)
	}
}

func testDirty(e *env) {
	s := e.b.Demographics()
	since := func() time.Time {
		e.t.Helper()
		t, err := s.DirtySince(e.ctx)
		e.must(err, "DirtySince")
		return t
	}
	e.equal("DirtySince of a new store", time.Time{}, since())
	t1, t2 := at(time.Minute), at(2*time.Minute)
	e.must(s.ClearDirty(e.ctx, t1), "ClearDirty with nothing requested")
	e.equal("DirtySince after ClearDirty with nothing requested", time.Time{}, since())
	e.must(s.MarkDirty(e.ctx, t1), "MarkDirty")
	e.equal("DirtySince after MarkDirty", t1, since())
	e.must(s.ClearDirty(e.ctx, t1.Add(-ms)), "ClearDirty(earlier time)")
	e.equal("DirtySince after ClearDirty of an earlier request", t1, since())
	e.must(s.ClearDirty(e.ctx, t1.Add(ms)), "ClearDirty(later time)")
	e.equal("DirtySince after ClearDirty of a later request than the one made", t1, since())
	e.must(s.ClearDirty(e.ctx, t1), "ClearDirty")
	e.equal("DirtySince after ClearDirty", time.Time{}, since())

	// A reconciliation requested while one ran survives that one's ClearDirty.
	e.must(s.MarkDirty(e.ctx, t1), "MarkDirty(t1)")
	e.must(s.MarkDirty(e.ctx, t2), "MarkDirty(t2)")
	e.equal("DirtySince after a second MarkDirty", t2, since())
	e.must(s.ClearDirty(e.ctx, t1), "ClearDirty(t1)")
	e.equal("DirtySince after ClearDirty of the older request", t2, since())
	e.must(s.ClearDirty(e.ctx, t2), "ClearDirty(t2)")
	e.equal("DirtySince after ClearDirty of the newer request", time.Time{}, since())
}
