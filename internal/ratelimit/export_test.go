package ratelimit

import "time"

// SetNow replaces the clock of a Shared and of a Limiter, for tests.
func (s *Shared) SetNow(now func() time.Time) { s.now = now }

func (l *Limiter) SetNow(now func() time.Time) { l.now = now }
