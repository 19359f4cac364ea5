package accounts

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHashAndVerify(t *testing.T) {
	h, err := NewHasher(DefaultHashParams())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not use OWASP parameters", enc)
	}
	if ok, err := h.Verify(ctx, "correct horse battery", enc); !ok || err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if ok, _ := h.Verify(ctx, "correct horse batterY", enc); ok {
		t.Fatal("wrong password accepted")
	}
	if ok, _ := h.Verify(ctx, "consentgraph-timing-equaliser", ""); ok {
		t.Fatal("empty hash (unknown user) accepted the dummy password")
	}
	enc2, _ := h.Hash(ctx, "correct horse battery")
	if enc == enc2 {
		t.Fatal("two hashes of one password are equal: salt missing")
	}
	if h.NeedsRehash(enc) {
		t.Fatal("fresh hash needs rehash")
	}
	stronger, _ := NewHasher(HashParams{MemoryKiB: 32 * 1024, Iterations: 3, Parallelism: 1, Concurrency: 1})
	if !stronger.NeedsRehash(enc) {
		t.Fatal("weaker hash not flagged for rehash")
	}
	if ok, _ := stronger.Verify(ctx, "correct horse battery", enc); !ok {
		t.Fatal("stronger hasher cannot verify old hash")
	}
}

func TestHashParamsBelowOWASPRefused(t *testing.T) {
	for _, p := range []HashParams{
		{MemoryKiB: 8 * 1024, Iterations: 2, Parallelism: 1, Concurrency: 1},
		{MemoryKiB: 19 * 1024, Iterations: 1, Parallelism: 1, Concurrency: 1},
		{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 1, Concurrency: 0},
	} {
		if _, err := NewHasher(p); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

// A burst of hashes never runs more than Concurrency at once.
func TestHashConcurrencyBounded(t *testing.T) {
	h, err := NewHasher(HashParams{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 1, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	var running, peak atomic.Int32
	stop := make(chan struct{})
	go func() { // sample the semaphore while the burst runs
		for {
			select {
			case <-stop:
				return
			default:
				n := int32(len(h.slots))
				running.Store(n)
				if n > peak.Load() {
					peak.Store(n)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Hash(context.Background(), "burst password"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	if p := peak.Load(); p > 2 || p == 0 {
		t.Fatalf("peak concurrent hashes = %d, want 1..2", p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.slots <- struct{}{}
	h.slots <- struct{}{}
	cancel()
	if _, err := h.Hash(ctx, "waits for a slot"); err == nil {
		t.Fatal("hash with all slots busy and a cancelled context did not fail")
	}
}
