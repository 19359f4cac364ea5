package ratelimit

import "context"

// Store keeps the per-minute counters every replica shares.
type Store interface {
	// AddCounts adds each delta (>= 0) to its key's counter for window (a
	// unix minute), creating counters as needed, all in one atomic step per
	// key, and returns every given key's total for window afterwards.
	AddCounts(ctx context.Context, window int64, deltas map[string]int64) (map[string]int64, error)
	// DeleteCountsBefore removes the counters of windows before window and
	// says how many went.
	DeleteCountsBefore(ctx context.Context, window int64) (int64, error)
}
