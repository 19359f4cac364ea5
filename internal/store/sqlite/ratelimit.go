package sqlite

import (
	"context"
	"fmt"

	"github.com/consentgraph/consentgraph/internal/ratelimit"
)

// rateStore implements ratelimit.Store: a row per minute and key, counted
// up by upserts in one transaction.
type rateStore struct{ d *DB }

var _ ratelimit.Store = rateStore{}

var (
	qAddRateCount = sqlq(`INSERT INTO rate_counts (minute, key, n) VALUES (?1, ?2, ?3)
		ON CONFLICT (minute, key) DO UPDATE SET n = n + excluded.n RETURNING n`)
	qDeleteRateCounts = sqlq(`DELETE FROM rate_counts WHERE minute < ?`)
)

func (s rateStore) AddCounts(ctx context.Context, window int64, deltas map[string]int64) (map[string]int64, error) {
	out := make(map[string]int64, len(deltas))
	err := s.d.write(ctx, func(t *tx) error {
		for key, n := range deltas {
			var total int64
			if _, err := t.queryRow(qAddRateCount, []any{window, key, n}, &total); err != nil {
				return err
			}
			out[key] = total
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count rate: %w", err)
	}
	return out, nil
}

func (s rateStore) DeleteCountsBefore(ctx context.Context, window int64) (int64, error) {
	n, err := s.d.exec(ctx, qDeleteRateCounts, window)
	if err != nil {
		return 0, fmt.Errorf("delete old rate counts: %w", err)
	}
	return n, nil
}
