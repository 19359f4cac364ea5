package sqlite

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/signing"
)

func TestPartnerBudgetsNeverOverspend(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	p := d.Partners()
	rec := partners.Record{ID: "p1", Name: "Acme", KeyHash: "kh", Budget: 1000, PeriodDays: 30, CreatedAt: t0, Period: 0}
	if err := p.Insert(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := p.Insert(ctx, rec); err == nil {
		t.Error("inserted one id twice")
	}
	var spent atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := p.SpendInPeriod(ctx, "p1", 0, 30, 1000)
			if err != nil {
				t.Error(err)
				return
			}
			if r != nil {
				spent.Add(30)
				if r.Spent > 1000 {
					t.Errorf("spent %d", r.Spent)
				}
			}
		}()
	}
	wg.Wait()
	got, _ := p.Get(ctx, "p1")
	if spent.Load() != 990 || got.Spent != 990 {
		t.Fatalf("charged %d, stored %d; want 990 (33 charges of 30)", spent.Load(), got.Spent)
	}
	if r, _ := p.SpendInPeriod(ctx, "p1", 1, 1, 1000); r != nil {
		t.Error("charged in a period that is not the partner's")
	}
	if r, _ := p.StartPeriod(ctx, "p1", 7, 1, 5); r != nil {
		t.Error("started a period from the wrong one")
	}
	r, err := p.StartPeriod(ctx, "p1", 0, 1, 5)
	if err != nil || r == nil || r.Period != 1 || r.Spent != 5 {
		t.Fatalf("start period: %+v %v", r, err)
	}
	if r, _ := p.StartPeriod(ctx, "p1", 0, 1, 5); r != nil {
		t.Error("started the same period twice")
	}
	if r, _ := p.SpendInPeriod(ctx, "p1", 1, 995, 1000); r == nil || r.Spent != 1000 {
		t.Errorf("spend to the limit: %+v", r)
	}
	if r, _ := p.SpendInPeriod(ctx, "p1", 1, 1, 1000); r != nil {
		t.Error("spent past the limit")
	}
	if err := p.Revoke(ctx, "p1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	p.Revoke(ctx, "p1", t0.Add(2*time.Hour))
	got, _ = p.Get(ctx, "p1")
	if got.RevokedAt == nil || !got.RevokedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("revoked at %v", got.RevokedAt)
	}
	if r, _ := p.StartPeriod(ctx, "p1", 1, 2, 1); r != nil {
		t.Error("a revoked partner started a period")
	}
	if r, _ := p.SpendInPeriod(ctx, "p1", 1, 0, 1000); r != nil {
		t.Error("a revoked partner was charged")
	}
	p.Insert(ctx, partners.Record{ID: "p0", Name: "B", CreatedAt: t0, PeriodDays: 1})
	p.Insert(ctx, partners.Record{ID: "p2", Name: "C", CreatedAt: t0.Add(-time.Hour), PeriodDays: 1})
	l, _ := p.List(ctx)
	if len(l) != 3 || l[0].ID != "p2" || l[1].ID != "p0" || l[2].ID != "p1" {
		t.Fatalf("list order %+v", l)
	}
	if r, err := p.Get(ctx, "none"); r != nil || err != nil {
		t.Fatal(r, err)
	}
}

func TestAuditAppendsUnderContention(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	a := d.Audit()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Append(ctx, func(head *audit.Entry) audit.Entry {
				e := audit.Entry{Seq: 1, At: t0, Actor: fmt.Sprintf("a%d", i), Action: "x"}
				if head != nil {
					e.Seq, e.Prev = head.Seq+1, head.Hash
				}
				e.Hash = fmt.Sprintf("hash%d", e.Seq)
				return e
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var seqs []int64
	prev := ""
	err := a.Each(ctx, func(e audit.Entry) error {
		if e.Prev != prev {
			t.Errorf("entry %d: prev %q, want %q", e.Seq, e.Prev, prev)
		}
		prev = e.Hash
		seqs = append(seqs, e.Seq)
		return nil
	})
	if err != nil || len(seqs) != 50 || seqs[0] != 1 || seqs[49] != 50 {
		t.Fatalf("chain %v %v", seqs, err)
	}
	page, _ := a.Page(ctx, 0, 3)
	if len(page) != 3 || page[0].Seq != 50 || page[2].Seq != 48 {
		t.Fatalf("newest page %+v", page)
	}
	page, _ = a.Page(ctx, 3, 10)
	if len(page) != 2 || page[0].Seq != 2 {
		t.Fatalf("page before 3 %+v", page)
	}
}

func TestDemographics(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	s := d.Demographics()
	if m, err := s.Member(ctx, "u1"); m != nil || err != nil {
		t.Fatal(m, err)
	}
	p1 := demographics.Pending{Op: "op1", Since: t0, To: []byte("t1")}
	if ok, err := s.BeginMove(ctx, "u1", 0, p1); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := s.BeginMove(ctx, "u1", 0, p1); ok {
		t.Error("created a member twice")
	}
	m, _ := s.Member(ctx, "u1")
	if m.Ver != 1 || m.Tuple != nil || !reflect.DeepEqual(*m.Pending, p1) {
		t.Fatalf("member %+v", m)
	}
	if ok, _ := s.DeleteMember(ctx, "u1", 1); ok {
		t.Error("deleted a member with a pending move")
	}
	if ok, _ := s.SettleMove(ctx, "u1", "other", []byte("t1")); ok {
		t.Error("settled someone else's move")
	}
	if ok, err := s.SettleMove(ctx, "u1", "op1", []byte("t1")); !ok || err != nil {
		t.Fatal(ok, err)
	}
	m, _ = s.Member(ctx, "u1")
	if m.Ver != 2 || string(m.Tuple) != "t1" || m.Pending != nil {
		t.Fatalf("settled member %+v", m)
	}
	p2 := demographics.Pending{Op: "op2", Since: t0, From: []byte("t1")}
	if ok, _ := s.BeginMove(ctx, "u1", 1, p2); ok {
		t.Error("began a move on a stale version")
	}
	if ok, _ := s.BeginMove(ctx, "u1", 2, p2); !ok {
		t.Fatal("begin move")
	}
	if ok, _ := s.SettleMove(ctx, "u1", "op2", nil); !ok {
		t.Fatal("settle to nowhere")
	}
	if m, _ := s.Member(ctx, "u1"); m != nil {
		t.Fatalf("member not deleted: %+v", m)
	}
	if err := s.ImportMembers(ctx, []demographics.Member{{UserID: "a", Ver: 1, Tuple: []byte("x")}, {UserID: "b", Ver: 3, Pending: &p1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportMembers(ctx, []demographics.Member{{UserID: "a", Ver: 9}}); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Member(ctx, "a"); m.Ver != 1 {
		t.Error("import replaced an existing member")
	}
	if ok, _ := s.DeleteMember(ctx, "a", 1); !ok {
		t.Error("delete member")
	}
	var members []string
	s.EachMember(ctx, func(m *demographics.Member) error { members = append(members, m.UserID); return nil })
	if !reflect.DeepEqual(members, []string{"b"}) {
		t.Errorf("members %v", members)
	}

	// Cells: concurrent batches add up exactly.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.AddToCells(ctx, []demographics.CellDelta{
				{Mask: 1, ID: "c1", Values: []byte("v1"), Delta: 1},
				{Mask: 1, ID: "c2", Values: []byte("v2"), Delta: 2},
				{Mask: 3, ID: "c1", Values: []byte("w1"), Delta: -1},
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	counts, _ := s.CellCounts(ctx, 1)
	if !reflect.DeepEqual(counts, []demographics.CellCount{{ID: "c1", N: 20, Ver: 20}, {ID: "c2", N: 40, Ver: 20}}) {
		t.Fatalf("counts %+v", counts)
	}
	vals, _ := s.CellValues(ctx, 1, []string{"c1", "c2", "nope"})
	if !reflect.DeepEqual(vals, map[string][]byte{"c1": []byte("v1"), "c2": []byte("v2")}) {
		t.Fatalf("values %q", vals)
	}
	if ok, _ := s.SetCellIfUnchanged(ctx, 1, "c1", 19, 5); ok {
		t.Error("set a changed cell")
	}
	if ok, _ := s.SetCellIfUnchanged(ctx, 1, "c1", 20, 5); !ok {
		t.Error("set cell")
	}
	if ok, _ := s.CreateCell(ctx, 1, demographics.CellRecord{ID: "c1", N: 1, Ver: 1}); ok {
		t.Error("created an existing cell")
	}
	if ok, _ := s.CreateCell(ctx, 2, demographics.CellRecord{ID: "c9", N: 7, Ver: 1, Values: []byte("z")}); !ok {
		t.Error("create cell")
	}
	if err := s.ReplaceCells(ctx, 1, []demographics.CellRecord{{ID: "n1", N: 3, Ver: 1, Values: []byte("q")}}); err != nil {
		t.Fatal(err)
	}
	if counts, _ := s.CellCounts(ctx, 1); !reflect.DeepEqual(counts, []demographics.CellCount{{ID: "n1", N: 3, Ver: 1}}) {
		t.Fatalf("replaced %+v", counts)
	}
	if counts, _ := s.CellCounts(ctx, 3); len(counts) != 1 || counts[0].N != -20 {
		t.Fatalf("mask 3 %+v", counts)
	}

	if at, err := s.DirtySince(ctx); !at.IsZero() || err != nil {
		t.Fatal(at, err)
	}
	s.MarkDirty(ctx, t0)
	s.MarkDirty(ctx, t0.Add(time.Second))
	s.ClearDirty(ctx, t0)
	if at, _ := s.DirtySince(ctx); !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("dirty since %v", at)
	}
	s.ClearDirty(ctx, t0.Add(time.Second))
	if at, _ := s.DirtySince(ctx); !at.IsZero() {
		t.Fatalf("dirty since %v after clear", at)
	}
}

func TestSigningKeysAndSecrets(t *testing.T) {
	d := openTest(t)
	ctx := context.Background()
	k := d.Signing()
	exp := t0.Add(time.Hour)
	k1 := signing.KeyRecord{Kid: "k1", Generation: 1, Alg: "EdDSA", PublicKey: []byte("pub1"), PrivateKey: []byte("priv1"), MasterKeyID: "m1", CreatedAt: t0}
	k2 := signing.KeyRecord{Kid: "k2", Generation: 2, Alg: "EdDSA", PublicKey: []byte("pub2"), PrivateKey: []byte("priv2"), MasterKeyID: "m1", CreatedAt: t0, ExpiresAt: &exp}
	for _, r := range []signing.KeyRecord{k1, k2} {
		if ok, err := k.InsertKey(ctx, r); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if ok, err := k.InsertKey(ctx, signing.KeyRecord{Kid: "k2b", Generation: 2, CreatedAt: t0}); ok || err != nil {
		t.Fatalf("a taken generation: %v %v", ok, err)
	}
	if ok, _ := k.SwapPrivateKey(ctx, "k2", []byte("old"), []byte("new"), "m2"); ok {
		t.Error("swapped from a wrong old key")
	}
	if ok, _ := k.SwapPrivateKey(ctx, "k2", []byte("priv2"), []byte("priv2b"), "m2"); !ok {
		t.Error("swap")
	}
	if err := k.RetireBelow(ctx, 2, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	k.SetExpiry(ctx, "k1", exp)
	keys, _ := k.Keys(ctx)
	retired := t0.Add(time.Minute)
	k1.PrivateKey, k1.MasterKeyID, k1.RetiredAt, k1.ExpiresAt = nil, "", &retired, &exp
	k2.PrivateKey, k2.MasterKeyID = []byte("priv2b"), "m2"
	if !reflect.DeepEqual(keys, []signing.KeyRecord{k1, k2}) {
		t.Fatalf("keys\n got %+v\nwant %+v", keys, []signing.KeyRecord{k1, k2})
	}

	s := d.Secrets()
	sec := envelope.SecretRecord{Name: "pepper", Value: []byte("v1"), KeyID: "m1", CreatedAt: t0}
	if ok, err := s.InsertSecret(ctx, sec); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, _ := s.InsertSecret(ctx, envelope.SecretRecord{Name: "pepper", Value: []byte("v2"), CreatedAt: t0}); ok {
		t.Error("inserted a name twice")
	}
	if ok, _ := s.SwapSecret(ctx, "pepper", []byte("v1"), []byte("v3"), "m2"); !ok {
		t.Error("swap secret")
	}
	got, _ := s.Secret(ctx, "pepper")
	if string(got.Value) != "v3" || got.KeyID != "m2" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("secret %+v", got)
	}
	if got, err := s.Secret(ctx, "none"); got != nil || err != nil {
		t.Fatal(got, err)
	}
	if all, _ := s.Secrets(ctx); len(all) != 1 {
		t.Fatal(all)
	}
}
