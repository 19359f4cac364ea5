package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

// BenchmarkMeVersusDriver measures `query { me { id username } }` through the
// whole HTTP stack (session lookup, GraphQL, decryption-free fields) against
// a raw read of the same account straight from the store adapter
// (accounts.Store.Account: one indexed lookup by id, no HTTP, no GraphQL),
// interleaved in one loop so both see the same machine load. It reports
// both latencies and their ratio.
func BenchmarkMeVersusDriver(b *testing.B) {
	s := apptest.Start(b)
	c := s.Register(b, "benchmark-user")
	var me struct{ Me struct{ ID string } }
	c.Do(b, `{ me { id } }`, nil).Decode(b, &me)
	accts := s.Store().Accounts()
	body := []byte(`{"query":"query { me { id username } }"}`)
	client := &http.Client{}
	ctx := context.Background()
	var api, raw time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.Token)
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		t1 := time.Now()
		if r, err := accts.Account(ctx, me.Me.ID); err != nil || r == nil {
			b.Fatalf("raw read of the account: %v, %v", r, err)
		}
		t2 := time.Now()
		api += t1.Sub(t0)
		raw += t2.Sub(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(api.Microseconds())/n, "me-µs/op")
	b.ReportMetric(float64(raw.Microseconds())/n, "raw-read-µs/op")
	b.ReportMetric(float64(api)/float64(raw), "ratio")
}

// BenchmarkRegistrationBurst fires bursts of 64 concurrent registrations
// through the full stack and reports registrations per second and the peak
// Go heap during the bursts, beside a baseline measured in the same run:
// raw argon2id hashes with the same parameters on all cores, no server. The
// ratio shows what the service adds to the hash; the peak heap shows that
// the bounded hashing concurrency keeps memory flat however large the burst.
func BenchmarkRegistrationBurst(b *testing.B) {
	// One loopback client stands in for many people: measure hashing, not
	// the per-IP sign-up limits.
	s := apptest.Start(b, func(c *config.Config) { c.RateLimits = false })
	p := s.Cfg
	const burst = 64
	var peak atomic.Uint64
	sampling, stop := context.WithCancel(context.Background())
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-sampling.Done():
				return
			case <-time.After(2 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	var regs int
	var api time.Duration
	n := 0
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		var wg sync.WaitGroup
		for i := range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"query":"mutation { register(input: {username: \"burst-%d-%d\", password: \"correct horse battery\"}) { token } }"}`, n, i)
				res, err := http.Post(s.URL+"/graphql", "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				out, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if !bytes.Contains(out, []byte(`"token"`)) {
					b.Errorf("registration failed: %s", out)
				}
			}()
		}
		wg.Wait()
		api += time.Since(t0)
		regs += burst
		n++
	}
	b.StopTimer()
	stop()

	// Baseline: the same number of raw hashes, NumCPU at a time.
	t0 := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	salt := make([]byte, 16)
	for range regs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			argon2.IDKey([]byte("correct horse battery"), salt, p.Argon2Iterations, p.Argon2MemoryKiB, p.Argon2Parallelism, 32)
			<-sem
		}()
	}
	wg.Wait()
	raw := time.Since(t0)
	b.ReportMetric(float64(regs)/api.Seconds(), "registrations/s")
	b.ReportMetric(float64(regs)/raw.Seconds(), "raw-hashes/s")
	b.ReportMetric(api.Seconds()/raw.Seconds(), "ratio")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(p.Argon2Concurrency)*float64(p.Argon2MemoryKiB)/1024, "hash-bound-MiB")
}
