package outbox

import (
	"context"
	"fmt"
	"slices"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/work"
)

// Page is one page of a listing, oldest first for items, newest first for
// disclosures.
type Page[T any] struct {
	Nodes   []T
	HasNext bool
}

// CountByState counts outbox items per state (for metrics).
func (s *Service) CountByState(ctx context.Context) (map[string]float64, error) {
	counts, err := s.store.CountByState(ctx)
	if err != nil {
		return nil, fmt.Errorf("count outbox by state: %w", err)
	}
	out := map[string]float64{}
	for _, st := range States {
		out[string(st)] = float64(counts[st])
	}
	return out, nil
}

func clampFirst(first *int) int {
	n := 20
	if first != nil {
		n = *first
	}
	return min(max(n, 0), 100)
}

// Disclosures lists the user's disclosures, newest first; after is the
// id of the last one seen.
func (s *Service) Disclosures(ctx context.Context, userID string, first *int, after *string) (*Page[Disclosure], error) {
	before := ""
	if after != nil {
		before = *after
	}
	n := clampFirst(first)
	p := &Page[Disclosure]{Nodes: []Disclosure{}}
	if n == 0 {
		return p, nil
	}
	out, err := s.store.Disclosures(ctx, userID, before, n+1)
	if err != nil {
		return nil, fmt.Errorf("list disclosures: %w", err)
	}
	p.Nodes = out
	if len(out) > n {
		p.Nodes, p.HasNext = out[:n], true
	}
	return p, nil
}

// CountDisclosures counts the user's disclosures.
func (s *Service) CountDisclosures(ctx context.Context, userID string) (int, error) {
	n, err := s.store.CountDisclosures(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("count disclosures: %w", err)
	}
	return int(n), nil
}

// CountItems counts the outbox items of one state, or all of them when
// state is nil, from the per-state counts the metrics read too.
func (s *Service) CountItems(ctx context.Context, state *State) (int, error) {
	counts, err := s.store.CountByState(ctx)
	if err != nil {
		return 0, fmt.Errorf("count outbox: %w", err)
	}
	if state != nil {
		return int(counts[*state]), nil
	}
	var n int64
	for _, c := range counts {
		n += c
	}
	return int(n), nil
}

// ExportSection is the "disclosures" part of a data export, oldest first.
func (s *Service) ExportSection(ctx context.Context, userID string) (any, error) {
	out, err := s.store.Disclosures(ctx, userID, "", 0)
	if err != nil {
		return nil, fmt.Errorf("export disclosures: %w", err)
	}
	slices.Reverse(out)
	if out == nil {
		out = []Disclosure{}
	}
	return out, nil
}

// States are the valid delivery states.
var States = work.States

// List pages through items in creation order, optionally of one state.
func (s *Service) List(ctx context.Context, state *State, first *int, after *string) (*Page[Item], error) {
	var st State
	if state != nil {
		if !slices.Contains(States, *state) {
			return nil, apperr.Invalid("state", "unknown state %q", *state)
		}
		st = *state
	}
	from := ""
	if after != nil {
		from = *after
	}
	n := clampFirst(first)
	p := &Page[Item]{Nodes: []Item{}}
	if n == 0 {
		return p, nil
	}
	out, err := s.store.Items(ctx, st, from, n+1)
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	p.Nodes = out
	if len(out) > n {
		p.Nodes, p.HasNext = out[:n], true
	}
	return p, nil
}

// Get returns one item.
func (s *Service) Get(ctx context.Context, id string) (*Item, error) {
	it, err := s.store.Item(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read outbox item: %w", err)
	}
	if it == nil {
		return nil, &apperr.Error{Code: apperr.NotFound, Field: "id", Message: "no such outbox item"}
	}
	return it, nil
}

// Retry puts a DEAD or WAITING item back to PENDING with fresh attempts.
func (s *Service) Retry(ctx context.Context, id string) (*Item, error) {
	ok, err := s.store.Retry(ctx, id, s.now())
	if err != nil {
		return nil, fmt.Errorf("retry item: %w", err)
	}
	if !ok {
		it, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		return nil, apperr.New(apperr.Conflict, "only DEAD or WAITING items can be retried; this one is %s", it.State)
	}
	return s.Get(ctx, id)
}
