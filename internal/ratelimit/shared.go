package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Shared makes limits hold across replicas without a store round trip on
// the request path. Each replica admits from its own token buckets and
// notes what it admitted; every sync it adds those counts to the store's
// per-minute counters and learns each key's total over all replicas. A key
// whose known total for the current minute has reached its per-minute limit
// is refused until the minute ends.
//
// How exact: a replica learns of the others' use at its next sync, so in
// one minute a key can get its limit plus what the other replicas admitted
// since their last sync (at most one sync interval of traffic, and at most
// one burst each). With the store down, each replica still enforces its
// own buckets.
type Shared struct {
	store Store
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	window  int64
	pending map[string]int64 // admitted here, not yet added to the store
	totals  map[string]int64 // last known totals of all replicas
	maxKeys int
}

// NewShared coordinates limiters through store; it remembers at most
// maxKeys keys per minute (beyond that, new keys are limited only locally).
func NewShared(store Store, maxKeys int, log *slog.Logger) *Shared {
	return &Shared{store: store, log: log, now: time.Now, maxKeys: maxKeys,
		pending: map[string]int64{}, totals: map[string]int64{}}
}

func minuteOf(t time.Time) int64 { return t.Unix() / 60 }

// roll starts a new window's counts when the minute changed: older counts
// no longer decide anything. The caller holds mu.
func (s *Shared) roll(now time.Time) {
	if w := minuteOf(now); w != s.window {
		s.window = w
		clear(s.pending)
		clear(s.totals)
	}
}

// admit reports whether key may take n more within limit this minute, and
// if so counts them; otherwise how long until the minute ends.
func (s *Shared) admit(key string, n, limit int64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.roll(now)
	used, known := s.totals[key]
	pending, mine := s.pending[key]
	if !known && !mine && len(s.pending)+len(s.totals) >= s.maxKeys {
		return 0 // too many keys this minute to track: the local bucket decides
	}
	if used+pending+n > limit {
		return time.Unix((s.window+1)*60, 0).Sub(now)
	}
	s.pending[key] = pending + n
	return 0
}

// Sync adds this replica's counts to the store and refreshes the totals of
// the keys it counted. Keys it did not use since the last sync keep their
// last known totals until the minute ends.
func (s *Shared) Sync(ctx context.Context) error {
	s.mu.Lock()
	s.roll(s.now())
	window := s.window
	deltas := s.pending
	s.pending = make(map[string]int64, len(deltas))
	s.mu.Unlock()
	if len(deltas) == 0 {
		return nil
	}
	totals, err := s.store.AddCounts(ctx, window, deltas)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.window == window { // not added: count them again next time
			for k, n := range deltas {
				s.pending[k] += n
			}
		}
		return err
	}
	if s.window == window {
		for k, t := range totals {
			s.totals[k] = max(s.totals[k], t)
		}
	}
	return nil
}

// Run syncs every interval until ctx ends, and once a minute deletes the
// counters of past minutes.
func (s *Shared) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	lastSweep := int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sharing rate-limit counts failed; limits are per replica until it works again", "err", err)
		}
		if w := minuteOf(s.now()); w != lastSweep {
			lastSweep = w
			if _, err := s.store.DeleteCountsBefore(ctx, w-1); err != nil && ctx.Err() == nil {
				s.log.Warn("deleting old rate-limit counters failed", "err", err)
			}
		}
	}
}
