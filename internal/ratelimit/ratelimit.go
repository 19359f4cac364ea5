// Package ratelimit holds abuse limits: token buckets per key and an
// exponential back-off for failed logins. Buckets live in memory, bounded
// by a fixed number of keys per limiter; with Shared, a limiter's
// per-minute limit also holds across replicas (see Shared).
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Limiter is a set of token buckets, one per key (an IP, an account, a
// partner). A bucket holds up to Burst tokens and refills at PerMinute.
type Limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	maxKeys int
	buckets map[string]*bucket
	now     func() time.Time

	shared    *Shared
	name      string
	perMinute int64
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewLimiter returns a limiter of perMinute tokens per minute with the given
// burst, remembering at most maxKeys keys.
func NewLimiter(perMinute, burst, maxKeys int) *Limiter {
	if burst < 1 {
		burst = 1
	}
	if maxKeys < 16 {
		maxKeys = 16
	}
	return &Limiter{rate: float64(perMinute) / 60, burst: float64(burst), maxKeys: maxKeys,
		buckets: make(map[string]*bucket), now: time.Now}
}

// ShareAs makes the limiter's per-minute limit hold across every replica
// sharing s; name tells its counters apart from other limiters'.
func (l *Limiter) ShareAs(s *Shared, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.shared, l.name = s, name
	l.perMinute = int64(l.rate*60 + 0.5)
}

// Burst is the most tokens one call can take.
func (l *Limiter) Burst() int { return int(l.burst) }

// Take takes n tokens from key's bucket. It answers 0 when they were taken,
// or else how long until n tokens will be there (nothing is taken then).
// n larger than the burst can never succeed; the answer is then the time to
// refill a full bucket.
func (l *Limiter) Take(key string, n int) time.Duration {
	if l == nil || n <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		l.makeRoom(now)
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	need := float64(n)
	if need > l.burst {
		need = l.burst + 1 // never enough
	}
	if b.tokens >= need {
		if l.shared != nil {
			if wait := l.shared.admit(l.name+":"+key, int64(n), l.perMinute); wait > 0 {
				return max(wait, time.Second)
			}
		}
		b.tokens -= need
		return 0
	}
	if l.rate <= 0 {
		return time.Hour
	}
	missing := math.Min(need, l.burst) - b.tokens
	wait := time.Duration(missing / l.rate * float64(time.Second))
	if wait < time.Second {
		wait = time.Second
	}
	return wait
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
}

// makeRoom keeps the map under maxKeys: full buckets are the same as absent
// ones and go first; if that is not enough, arbitrary keys are forgotten
// (they start again with a full bucket, which errs towards letting in).
func (l *Limiter) makeRoom(now time.Time) {
	if len(l.buckets) < l.maxKeys {
		return
	}
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.maxKeys*3/4 {
			break
		}
		delete(l.buckets, k)
	}
}

// Len is how many keys the limiter remembers.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// Backoff slows down failed attempts per key exponentially: after Free
// failures each further one makes the key wait Base, 2×Base, 4×Base … up to
// Max before the next attempt. Attempts refused while waiting do not count,
// so an attacker cannot push the wait past Max: a victim whose account is
// being guessed at is delayed at most Max. A key is forgotten Forget after
// its last failure.
type Backoff struct {
	Free   int
	Base   time.Duration
	Max    time.Duration
	Forget time.Duration

	mu      sync.Mutex
	maxKeys int
	m       map[string]*strikes
	now     func() time.Time
}

type strikes struct {
	fails int
	until time.Time
	last  time.Time
}

// NewBackoff returns a back-off remembering at most maxKeys keys.
func NewBackoff(free int, base, maxWait, forget time.Duration, maxKeys int) *Backoff {
	if maxKeys < 16 {
		maxKeys = 16
	}
	return &Backoff{Free: free, Base: base, Max: maxWait, Forget: forget, maxKeys: maxKeys,
		m: make(map[string]*strikes), now: time.Now}
}

// Wait is how long key must wait before its next attempt (0: go ahead).
func (b *Backoff) Wait(key string) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.m[key]
	if s == nil {
		return 0
	}
	now := b.now()
	if now.Sub(s.last) > b.Forget {
		delete(b.m, key)
		return 0
	}
	if d := s.until.Sub(now); d > 0 {
		return d
	}
	return 0
}

// Fail records a failed attempt and returns the wait it causes.
func (b *Backoff) Fail(key string) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	s := b.m[key]
	if s == nil || now.Sub(s.last) > b.Forget {
		b.makeRoom(now)
		s = &strikes{}
		b.m[key] = s
	}
	s.fails++
	s.last = now
	over := s.fails - b.Free
	if over <= 0 {
		return 0
	}
	d := b.Max
	if over < 40 {
		if e := b.Base << (over - 1); e > 0 && e < b.Max {
			d = e
		}
	}
	s.until = now.Add(d)
	return d
}

// Reset forgets key's failures (after a success).
func (b *Backoff) Reset(key string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
}

func (b *Backoff) makeRoom(now time.Time) {
	if len(b.m) < b.maxKeys {
		return
	}
	for k, s := range b.m {
		if now.Sub(s.last) > b.Forget || (s.fails <= b.Free && !now.Before(s.until)) {
			delete(b.m, k)
		}
	}
	for k := range b.m {
		if len(b.m) < b.maxKeys*3/4 {
			break
		}
		delete(b.m, k)
	}
}

// Len is how many keys the back-off remembers.
func (b *Backoff) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
