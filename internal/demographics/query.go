package demographics

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"
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

// Report is what a partner receives.
type Report struct {
	Cells []Cell
	// Suppressed is how many groups had a true count below K.
	Suppressed      int
	K               int
	Epsilon         float64
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

// Report answers a partner's query: it reads the cells of the requested
// subset (their number depends on the values that occur, not on how many
// users there are), charges epsilon to the partner's budget, drops groups
// below K and adds discrete Laplace noise to the rest. A refused charge
// releases nothing.
func (s *Service) Report(ctx context.Context, partnerID string, groupBy []Dimension, epsilon *float64) (*Report, error) {
	if s.opts.Budget == nil {
		return nil, errors.New("demographics: no budget configured")
	}
	e := DefaultEpsilon
	if epsilon != nil {
		e = *epsilon
	}
	eps, err := ParseEpsilon("epsilon", e)
	if err != nil {
		return nil, err
	}
	now := s.now()
	groups, err := s.Groups(ctx, groupBy, now)
	if err != nil {
		return nil, err
	}
	remaining, err := s.opts.Budget.Charge(ctx, partnerID, int64(eps))
	if err != nil {
		return nil, err
	}
	mask, _ := maskOf(groupBy)
	rep := &Report{K: s.opts.K, Epsilon: eps.Float(), BudgetRemaining: remaining, GeneratedAt: now, Cells: []Cell{}}
	nz := newNoise()
	for _, g := range groups {
		if g.Count < int64(s.opts.K) {
			rep.Suppressed++
			continue
		}
		c := cellOf(mask, g.Values)
		c.Count = max(0, g.Count+nz.laplace(eps))
		rep.Cells = append(rep.Cells, c)
	}
	return rep, nil
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
