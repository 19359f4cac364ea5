package demographics

import (
	"context"
	"time"
)

// What the external tests (package demographics_test) need of the
// package's internals. Tests that need a store live there: storetest
// imports the adapters, which import this package.

const (
	NumMasks     = numMasks
	NumDims      = numDims
	AbandonAfter = abandonAfter
)

func MaskName(mask int) string { return maskName(mask) }

func MaskOf(groupBy []Dimension) (int, error) { return maskOf(groupBy) }

// CellID is the id of the cell of values under mask.
func CellID(s *Service, mask int, values []string) string { return s.cells.id(mask, values) }

// CellView is a cell with a positive count and its opened values.
type CellView = cellValues

// ReadCells reads the cells of a mask the way reports do.
func ReadCells(ctx context.Context, s *Service, mask int) ([]CellView, error) {
	return s.cells.read(ctx, mask)
}

// SetApplyCells replaces the cell writes of every move (nil: the store's
// AddToCells again); an error stops the move there, as a crash would.
func SetApplyCells(s *Service, f func(ctx context.Context, deltas []CellDelta) error) {
	s.applyCells = f
}

// SetBusyWait sets how long a sync waits for another move of the same user.
func SetBusyWait(s *Service, d time.Duration) { s.busyWait = d }
