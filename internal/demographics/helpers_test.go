package demographics

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// fakeSource is the truth in memory: users, their values, whether they count.
type fakeSource struct {
	mu    sync.Mutex
	users map[string]fakeUser
}

type fakeUser struct {
	subj   Subject
	counts bool
}

func newFakeSource() *fakeSource { return &fakeSource{users: map[string]fakeUser{}} }

func (f *fakeSource) set(id string, subj Subject, counts bool) {
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

func (f *fakeSource) Subject(_ context.Context, id string) (*Subject, error) {
	u, ok := f.get(id)
	if !ok || !u.counts {
		return nil, nil
	}
	s := u.subj
	return &s, nil
}

func (f *fakeSource) Each(ctx context.Context, fn func(string, *Subject) error) error {
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
func (f *fakeSource) recount() [numMasks]map[string]int64 {
	var out [numMasks]map[string]int64
	for mask := range numMasks {
		out[mask] = map[string]int64{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if !u.counts {
			continue
		}
		t := TupleOf(&u.subj)
		for mask := range numMasks {
			var vals []string
			for i := range numDims {
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
func stored(t *testing.T, s *Service) [numMasks]map[string]int64 {
	t.Helper()
	ctx := context.Background()
	counters, err := s.cells.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [numMasks]map[string]int64
	for mask := range numMasks {
		for _, c := range counters[mask] {
			if c.N < 0 {
				t.Errorf("mask %s: negative count %d", maskName(mask), c.N)
			}
		}
		out[mask] = map[string]int64{}
		cells, err := s.cells.read(ctx, mask)
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
func diff(want, got [numMasks]map[string]int64) string {
	var b strings.Builder
	for mask := range numMasks {
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
				fmt.Fprintf(&b, "%s[%s]: stored %d, recount %d\n", maskName(mask), k, got[mask][k], want[mask][k])
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
	mu      sync.Mutex
	left    int64
	charged []int64
}

func (b *fakeBudget) Charge(_ context.Context, _ string, cost int64) (float64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cost > b.left {
		return 0, apperr.New(apperr.BudgetExhausted, "exhausted")
	}
	b.left -= cost
	b.charged = append(b.charged, cost)
	return float64(b.left) / EpsilonUnit, nil
}

func newTestService(t testing.TB, src Source, clk *clock, k int) *Service {
	t.Helper()
	db := storetest.NewDB(t)
	key := make([]byte, envelope.KeySize)
	_, _ = rand.Read(key)
	kr, err := envelope.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := New(ctx, Options{
		DB: db, Keyring: kr, Secrets: envelope.OpenSecrets(ctx, db, kr), Source: src,
		Budget: &fakeBudget{left: 1 << 50}, K: k, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.busyWait = 100 * time.Millisecond
	return s
}

func ptr[T any](v T) *T { return &v }
