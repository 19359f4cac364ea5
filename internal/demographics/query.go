package demographics

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// Cell is one released group: the values of the requested dimensions (nil
// for the others) and a noisy count.
type Cell struct {
	AgeBand     *string
	Country     *string
	Gender      *string
	Language    *string
	SignupMonth *string
	Count       int64
}

// Report is what a partner receives. Everything in it is either public
// (the rule: k, epsilon, delta, threshold), about the partner alone (its
// budget) or the output of the mechanism: there is no exact count of
// anything, not even of the groups left out.
type Report struct {
	Cells           []Cell
	K               int
	Threshold       int64
	Epsilon         float64
	Delta           float64
	BudgetRemaining float64
	GeneratedAt     time.Time
}

// Group is one group with its true count: internal, never released.
type Group struct {
	// Values holds one value per requested dimension, in the order of
	// Dimensions (not of the request); the age dimension holds the band.
	Values []string
	Count  int64
}

// Report answers a partner's query. Its epsilon is paid before anything is
// read: from the request's Batch when the context carries one (the API's
// case, all or nothing per request), else by a batch of this report alone.
// It then reads the cells of the requested subset (their number depends on
// the values that occur, not on how many users there are) and releases them
// through the Mechanism: partition selection on noisy counts and discrete
// Laplace noise.
func (s *Service) Report(ctx context.Context, partnerID string, groupBy []Dimension, epsilon *float64) (rep *Report, err error) {
	eps, err := s.parseEpsilon(epsilon)
	if err != nil {
		return nil, err
	}
	mask, err := maskOf(groupBy)
	if err != nil {
		return nil, err
	}
	b := batchFrom(ctx)
	if b == nil {
		b = s.Reserve(ctx, partnerID, []*float64{epsilon})
		defer func() {
			if serr := b.Settle(ctx, err == nil); serr != nil && err == nil {
				err = serr
			}
		}()
	}
	remaining, err := b.claim(partnerID, eps)
	if err != nil {
		return nil, err
	}
	mech, err := NewMechanism(eps, s.opts.Delta, s.opts.K)
	if err != nil {
		return nil, err
	}
	now := s.now()
	groups, err := s.Groups(ctx, groupBy, now)
	if err != nil {
		return nil, err
	}
	counts := make([]int64, len(groups))
	for i, g := range groups {
		counts[i] = g.Count
	}
	rep = &Report{K: s.opts.K, Threshold: mech.Threshold, Epsilon: eps.Float(), Delta: mech.Delta,
		BudgetRemaining: remaining, GeneratedAt: now, Cells: []Cell{}}
	for _, r := range mech.Release(counts) {
		c := cellOf(mask, groups[r.Index].Values)
		c.Count = r.Count
		rep.Cells = append(rep.Cells, c)
	}
	b.done()
	return rep, nil
}

// parseEpsilon validates a requested epsilon (nil: the default, or the cap
// if that is lower) against the bounds and the configured cap of one report.
func (s *Service) parseEpsilon(epsilon *float64) (Epsilon, error) {
	e := min(DefaultEpsilon, s.maxEps.Float())
	if epsilon != nil {
		e = *epsilon
	}
	eps, err := ParseEpsilon("epsilon", e)
	if err != nil {
		return 0, apperr.Invalid("epsilon", "epsilon must be between %g and %g (the cap of one report)", MinEpsilon, s.opts.MaxEpsilon)
	}
	if err := checkCap("epsilon", eps, s.maxEps); err != nil {
		return 0, err
	}
	return eps, nil
}

// Threshold is the threshold a report at epsilon uses (public: it depends
// on the configuration only).
func (s *Service) Threshold(epsilon float64) (int64, error) {
	eps, err := s.parseEpsilon(&epsilon)
	if err != nil {
		return 0, err
	}
	m, err := NewMechanism(eps, s.opts.Delta, s.opts.K)
	if err != nil {
		return 0, err
	}
	return m.Threshold, nil
}

// Groups returns the true counts of the groups of groupBy at time now (age
// bands are derived then), sorted by their values; groups of nobody are
// left out. It is for reports and for checks, never for partners directly.
func (s *Service) Groups(ctx context.Context, groupBy []Dimension, now time.Time) ([]Group, error) {
	mask, err := maskOf(groupBy)
	if err != nil {
		return nil, err
	}
	cells, err := s.cells.read(ctx, mask)
	if err != nil {
		return nil, err
	}
	ageFirst := mask&1 != 0
	sums := map[string]*Group{}
	for _, c := range cells {
		v := c.Values
		if ageFirst {
			v = append([]string{AgeBandOf(v[0], now)}, v[1:]...)
		}
		key := strings.Join(v, tupleSep)
		g := sums[key]
		if g == nil {
			g = &Group{Values: v}
			sums[key] = g
		}
		g.Count += c.N
	}
	out := make([]Group, 0, len(sums))
	for _, g := range sums {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.Join(out[i].Values, tupleSep) < strings.Join(out[j].Values, tupleSep)
	})
	return out, nil
}

func cellOf(mask int, values []string) Cell {
	var c Cell
	fields := [numDims]**string{&c.AgeBand, &c.Country, &c.Gender, &c.Language, &c.SignupMonth}
	j := 0
	for i := range numDims {
		if mask&(1<<i) != 0 {
			v := values[j]
			*fields[i] = &v
			j++
		}
	}
	return c
}
