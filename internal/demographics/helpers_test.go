package demographics_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// fakeSource is the truth in memory: users, their values, whether they count.
type fakeSource struct {
	mu    sync.Mutex
	users map[string]fakeUser
}

type fakeUser struct {
	subj   demographics.Subject
	counts bool
}

func newFakeSource() *fakeSource { return &fakeSource{users: map[string]fakeUser{}} }

func (f *fakeSource) set(id string, subj demographics.Subject, counts bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[id] = fakeUser{subj: subj, counts: counts}
}

func (f *fakeSource) get(id string) (fakeUser, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	return u, ok
}

func (f *fakeSource) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.users, id)
}

func (f *fakeSource) Subject(_ context.Context, id string) (*demographics.Subject, error) {
	u, ok := f.get(id)
	if !ok || !u.counts {
		return nil, nil
	}
	s := u.subj
	return &s, nil
}

func (f *fakeSource) Each(ctx context.Context, fn func(string, *demographics.Subject) error) error {
	f.mu.Lock()
	snapshot := maps.Clone(f.users)
	f.mu.Unlock()
	for id, u := range snapshot {
		if !u.counts {
			continue
		}
		s := u.subj
		if err := fn(id, &s); err != nil {
			return err
		}
	}
	return nil
}

// recount is the from-scratch count per mask, keyed by the joined values,
// computed from the fake truth without any of the service's code but TupleOf.
func (f *fakeSource) recount() [demographics.NumMasks]map[string]int64 {
	var out [demographics.NumMasks]map[string]int64
	for mask := range demographics.NumMasks {
		out[mask] = map[string]int64{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if !u.counts {
			continue
		}
		t := demographics.TupleOf(&u.subj)
		for mask := range demographics.NumMasks {
			var vals []string
			for i := range demographics.NumDims {
				if mask&(1<<i) != 0 {
					vals = append(vals, t[i])
				}
			}
			out[mask][strings.Join(vals, "|")]++
		}
	}
	return out
}

// stored reads every cell of every mask, keyed like recount, leaving out
// cells at zero and failing on negative ones.
func stored(t *testing.T, b store.Backend, s *demographics.Service) [demographics.NumMasks]map[string]int64 {
	t.Helper()
	ctx := context.Background()
	var out [demographics.NumMasks]map[string]int64
	for mask := range demographics.NumMasks {
		counts, err := b.Demographics().CellCounts(ctx, mask)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range counts {
			if c.N < 0 {
				t.Errorf("mask %s: negative count %d", demographics.MaskName(mask), c.N)
			}
		}
		out[mask] = map[string]int64{}
		cells, err := demographics.ReadCells(ctx, s, mask)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cells {
			out[mask][strings.Join(c.Values, "|")] = c.N
		}
	}
	return out
}

// diff describes how stored cells differ from the recount ("" if equal).
func diff(want, got [demographics.NumMasks]map[string]int64) string {
	var b strings.Builder
	for mask := range demographics.NumMasks {
		keys := map[string]bool{}
		for k := range want[mask] {
			keys[k] = true
		}
		for k := range got[mask] {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			if want[mask][k] != got[mask][k] {
				fmt.Fprintf(&b, "%s[%s]: stored %d, recount %d\n", demographics.MaskName(mask), k, got[mask][k], want[mask][k])
			}
		}
	}
	return b.String()
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeBudget records charges and refuses beyond its limit.
type fakeBudget struct {
	mu       sync.Mutex
	left     int64
	charged  []int64
	refunded []int64
}

func (b *fakeBudget) Charge(_ context.Context, _ string, cost int64) (float64, int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cost > b.left {
		return 0, 0, apperr.New(apperr.BudgetExhausted, "exhausted")
	}
	b.left -= cost
	b.charged = append(b.charged, cost)
	return float64(b.left) / demographics.EpsilonUnit, 0, nil
}

func (b *fakeBudget) Refund(_ context.Context, _ string, _, cost int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left += cost
	b.refunded = append(b.refunded, cost)
	return nil
}

func newTestService(t testing.TB, b store.Backend, src demographics.Source, clk *clock, k int, adjust ...func(*demographics.Options)) *demographics.Service {
	t.Helper()
	key := make([]byte, envelope.KeySize)
	_, _ = rand.Read(key)
	kr, err := envelope.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	o := demographics.Options{
		Store: b.Demographics(), Keyring: kr, Secrets: envelope.OpenSecrets(b.Secrets(), kr), Source: src,
		Budget: &fakeBudget{left: 1 << 50}, K: k, Now: clk.Now, Logger: slog.New(slog.DiscardHandler),
	}
	for _, a := range adjust {
		a(&o)
	}
	s, err := demographics.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	demographics.SetBusyWait(s, 100*time.Millisecond)
	return s
}

// members counts the member records.
func members(t *testing.T, b store.Backend) int64 {
	t.Helper()
	var n int64
	if err := b.Demographics().EachMember(context.Background(), func(*demographics.Member) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func ptr[T any](v T) *T { return &v }

// corruptCells changes the stored aggregates behind the service's back, in
// both adapters' layouts: the (1990, DE) cell of AGE_BAND×COUNTRY gains 7
// and the total cell goes. On MongoDB each mask's cells are a collection
// named after the dimensions' initials (internal/store/mongostore/demographics.go).
// It returns the two cells' ids.
func corruptCells(t *testing.T, b store.Backend, s *demographics.Service) (id, total string) {
	t.Helper()
	mask, _ := demographics.MaskOf([]demographics.Dimension{demographics.AgeBand, demographics.Country})
	id = demographics.CellID(s, mask, []string{"1990", "DE"})
	storetest.Tamper(t, b, `UPDATE cells SET n = n + 7 WHERE mask = ? AND id = ?`, []any{mask, id},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			r, err := db.Collection("demographics_cells_AC").UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 7}}}})
			if err != nil {
				return 0, err
			}
			return r.ModifiedCount, nil
		})
	total = demographics.CellID(s, 0, nil)
	storetest.Tamper(t, b, `DELETE FROM cells WHERE mask = 0 AND id = ?`, []any{total},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			r, err := db.Collection("demographics_cells_total").DeleteOne(ctx, bson.D{{Key: "_id", Value: total}})
			if err != nil {
				return 0, err
			}
			return r.DeletedCount, nil
		})
	return id, total
}
