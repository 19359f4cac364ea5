package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time            { return c.t }
func (c *clock) add(d time.Duration)       { c.t = c.t.Add(d) }
func newClock() *clock                     { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func limiter(c *clock, pm, b int) *Limiter { l := NewLimiter(pm, b, 100); l.now = c.now; return l }

func TestLimiterBurstThenRefill(t *testing.T) {
	c := newClock()
	l := limiter(c, 60, 3) // one token a second
	for i := range 3 {
		if d := l.Take("ip", 1); d != 0 {
			t.Fatalf("take %d refused (%v) within the burst", i, d)
		}
	}
	d := l.Take("ip", 1)
	if d < time.Second || d > 2*time.Second {
		t.Fatalf("fourth take: wait %v, want about 1s", d)
	}
	if l.Take("other", 1) != 0 {
		t.Fatal("another key shares the bucket")
	}
	c.add(time.Second)
	if d := l.Take("ip", 1); d != 0 {
		t.Fatalf("after a second the bucket has a token again, got wait %v", d)
	}
}

func TestLimiterCountsEachToken(t *testing.T) {
	c := newClock()
	l := limiter(c, 60, 5)
	if l.Take("k", 3) != 0 {
		t.Fatal("3 of 5 refused")
	}
	if l.Take("k", 3) == 0 {
		t.Fatal("3 more taken from a bucket of 2")
	}
	if l.Take("k", 6) == 0 {
		t.Fatal("more than the burst in one take must never pass")
	}
	if l.Take("k", 2) != 0 {
		t.Fatal("a refused take must not use tokens")
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	c := newClock()
	l := limiter(c, 60, 5)
	for i := range 10_000 {
		l.Take(fmt.Sprint("ip-", i), 1)
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("limiter remembers %d keys, limit 100", n)
	}
}

func backoff(c *clock) *Backoff {
	b := NewBackoff(3, time.Second, 30*time.Second, 15*time.Minute, 100)
	b.now = c.now
	return b
}

func TestBackoffGrowsExponentiallyAndIsCapped(t *testing.T) {
	c := newClock()
	b := backoff(c)
	for i := range 3 {
		if d := b.Fail("alice"); d != 0 {
			t.Fatalf("free failure %d caused a wait of %v", i, d)
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if d := b.Fail("alice"); d != w {
			t.Fatalf("failure %d: wait %v, want %v", i+4, d, w)
		}
		if got := b.Wait("alice"); got != w {
			t.Fatalf("Wait after failure %d = %v, want %v", i+4, got, w)
		}
		c.add(w)
	}
	for range 100 {
		b.Fail("alice")
	}
	if d := b.Wait("alice"); d > 30*time.Second {
		t.Fatalf("a victim waits %v, more than the cap of 30s", d)
	}
	if b.Wait("bob") != 0 {
		t.Fatal("another key is slowed down")
	}
	b.Reset("alice")
	if b.Wait("alice") != 0 {
		t.Fatal("Reset left a wait")
	}
}

func TestBackoffForgetsOldFailures(t *testing.T) {
	c := newClock()
	b := backoff(c)
	for range 6 {
		b.Fail("k")
	}
	c.add(16 * time.Minute)
	if b.Wait("k") != 0 {
		t.Fatal("failures older than Forget still slow down")
	}
	if d := b.Fail("k"); d != 0 {
		t.Fatalf("first failure after forgetting waits %v", d)
	}
	for i := range 10_000 {
		b.Fail(fmt.Sprint("ip-", i))
	}
	if n := b.Len(); n > 100 {
		t.Fatalf("back-off remembers %d keys, limit 100", n)
	}
}
