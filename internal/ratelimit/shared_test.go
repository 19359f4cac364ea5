package ratelimit_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/ratelimit"
	"github.com/consentgraph/consentgraph/internal/store/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// replica is one server's limiter sharing counts through the store.
type replica struct {
	shared  *ratelimit.Shared
	limiter *ratelimit.Limiter
}

func newReplica(t *testing.T, st ratelimit.Store, c *clock, perMinute, burst int) replica {
	t.Helper()
	sh := ratelimit.NewShared(st, 1000, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sh.SetNow(c.now)
	l := ratelimit.NewLimiter(perMinute, burst, 1000)
	l.SetNow(c.now)
	l.ShareAs(sh, "mutations")
	return replica{sh, l}
}

func (r replica) admitted(key string, tries int) int {
	n := 0
	for range tries {
		if r.limiter.Take(key, 1) == 0 {
			n++
		}
	}
	return n
}

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "rl.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	return db
}

func TestSharedLimitHoldsAcrossReplicas(t *testing.T) {
	st := openStore(t).RateLimits()
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 5, 0, time.UTC)}
	const perMinute, burst = 20, 15
	a, b := newReplica(t, st, c, perMinute, burst), newReplica(t, st, c, perMinute, burst)
	ctx := context.Background()

	if n := a.admitted("198.51.100.7", 12); n != 12 {
		t.Fatalf("replica a admitted %d of 12 within its burst", n)
	}
	if err := a.shared.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// b has not heard of the key yet: its first request is admitted and
	// counted; at its next sync it learns the total of both.
	if n := b.admitted("198.51.100.7", 1); n != 1 {
		t.Fatalf("b's first request refused")
	}
	if err := b.shared.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.admitted("198.51.100.7", 15); n != perMinute-13 {
		t.Errorf("b admitted %d more after learning of a's 12 and its own 1, want %d (the per-minute limit over both)", n, perMinute-13)
	}
	if wait := b.limiter.Take("198.51.100.7", 1); wait < 50*time.Second || wait > 56*time.Second {
		t.Errorf("refused until the minute ends: wait %v, want about 55s", wait)
	}
	if n := b.admitted("203.0.113.1", 3); n != 3 {
		t.Errorf("another key is limited on its own: %d of 3", n)
	}
	if err := b.shared.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// a learns of b's use at its next sync after using the key again: that
	// one request is the slack of sharing by sync.
	if n := a.admitted("198.51.100.7", 1); n != 1 {
		t.Fatalf("a, not yet told, refused")
	}
	if err := a.shared.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := a.admitted("198.51.100.7", 5); n != 0 {
		t.Errorf("a admitted %d after the shared total reached the limit", n)
	}
	// A new minute starts from zero (the local bucket has refilled too).
	c.add(time.Minute)
	if n := a.admitted("198.51.100.7", 3); n != 3 {
		t.Errorf("next minute: a admitted %d of 3", n)
	}
}

func TestSharedLimitWithTheStoreDownFallsBackToLocalBuckets(t *testing.T) {
	db := openStore(t)
	st := db.RateLimits()
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 5, 0, time.UTC)}
	a := newReplica(t, st, c, 20, 5)
	if err := db.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := a.admitted("k", 10); n != 5 {
		t.Errorf("with the store gone the local bucket still decides: %d admitted, want the burst 5", n)
	}
	if err := a.shared.Sync(context.Background()); err == nil {
		t.Error("sync to a closed store reported no error")
	}
}
