package benchmarks_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/benchmarks/baregql"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/loadtest"
	"github.com/consentgraph/consentgraph/internal/seed"
)

// throughput runs clients concurrent loops of post for d and returns
// requests per second.
func throughput(b *testing.B, posters []*poster, body []byte, d time.Duration) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for _, p := range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				p.post(b, body)
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// BenchmarkMeThroughput measures `me { id username consents { purpose { id }
// granted } }` with 16 concurrent clients (16 signed-in users) on a store
// seeded with CONSENTGRAPH_BENCH_THROUGHPUT_USERS users (default 100000),
// against a bare gqlgen server answering the same query from memory (no
// session, no store, no limits), alternating 5-second rounds of each three
// times in one run. Reported: the medians and their ratio (goal ≥ 0.5).
func BenchmarkMeThroughput(b *testing.B) {
	size := envSizes(b, "CONSENTGRAPH_BENCH_THROUGHPUT_USERS", "100000")[0]
	kind := envList("CONSENTGRAPH_BENCH_STORES", "embedded")[0]
	const clients = 16
	s := apptest.StartOn(b, kind, func(c *config.Config) { c.RateLimits, c.OutboxPoll = false, -1 })
	if _, err := seed.Run(context.Background(), s.App, seed.Options{Users: size - clients, Grants: 0, RandSeed: 16}); err != nil {
		b.Fatal(err)
	}
	var real []*poster
	for i := range clients {
		c := s.Register(b, fmt.Sprintf("throughput-%d", i))
		real = append(real, newPoster(s.URL, c.Token))
	}
	bare := httptest.NewServer(baregql.Handler(&baregql.User{ID: "u1", Username: "throughput-0", Consents: []*baregql.Consent{
		{Purpose: &baregql.Purpose{ID: "newsletter"}, Granted: true}, {Purpose: &baregql.Purpose{ID: "surveys"}},
		{Purpose: &baregql.Purpose{ID: "aggregate_statistics"}, Granted: true}, {Purpose: &baregql.Purpose{ID: "essential"}, Granted: true},
	}}))
	defer bare.Close()
	var barePosters []*poster
	for range clients {
		barePosters = append(barePosters, newPoster(bare.URL, ""))
	}
	body := gql(meQuery, nil)
	round := 5 * time.Second
	for b.Loop() {
		var realRates, bareRates []float64
		throughput(b, real, body, time.Second) // warm-up
		throughput(b, barePosters, body, time.Second)
		for range 3 {
			realRates = append(realRates, throughput(b, real, body, round))
			bareRates = append(bareRates, throughput(b, barePosters, body, round))
		}
		slices.Sort(realRates)
		slices.Sort(bareRates)
		ratio := realRates[1] / bareRates[1]
		fmt.Printf("\nme throughput, %d clients, %d users, %s store: Consentgraph %.0f req/s (rounds %.0f–%.0f), bare gqlgen %.0f req/s (rounds %.0f–%.0f), ratio %.2f (goal ≥ 0.5)\n",
			clients, size, kind, realRates[1], realRates[0], realRates[2], bareRates[1], bareRates[0], bareRates[2], ratio)
		b.ReportMetric(realRates[1], "consentgraph-req/s")
		b.ReportMetric(bareRates[1], "bare-gqlgen-req/s")
		b.ReportMetric(ratio, "ratio")
	}
}

// BenchmarkLoadHarness runs the load harness's default mix (sign-ins, me,
// consent changes, partner reports) for 15 s with 8 clients against a
// server seeded with CONSENTGRAPH_BENCH_LOAD_USERS users (default 100000)
// and fails on any error. Baseline in the same run: the same harness
// against the same server seeded with nobody but the harness's users.
func BenchmarkLoadHarness(b *testing.B) {
	size := envSizes(b, "CONSENTGRAPH_BENCH_LOAD_USERS", "100000")[0]
	kind := envList("CONSENTGRAPH_BENCH_STORES", "embedded")[0]
	run := func(users int) *loadtest.Report {
		s := apptest.StartOn(b, kind, func(c *config.Config) {
			c.RateLimits = false
			c.AdminUsername, c.AdminPassword = adminName, adminPW
		})
		if users > 0 {
			if _, err := seed.Run(context.Background(), s.App, seed.Options{Users: users, Grants: 0, RandSeed: 9}); err != nil {
				b.Fatal(err)
			}
		}
		rep, err := loadtest.Run(context.Background(), loadtest.Options{Target: s.URL, Clients: 8, Duration: 15 * time.Second,
			MaxRequests: 1 << 30, Mix: loadtest.DefaultMix(), Users: 50, AdminUsername: adminName, AdminPassword: adminPW})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Errors > 0 {
			b.Fatalf("%d errors, first: %s", rep.Errors, rep.FirstError)
		}
		return rep
	}
	for b.Loop() {
		empty := run(0)
		full := run(size)
		p99 := func(r *loadtest.Report) time.Duration {
			var worst time.Duration
			for _, o := range r.Ops {
				worst = max(worst, o.P99)
			}
			return worst
		}
		fmt.Printf("\nload harness, default mix, 8 clients, 15 s, %s store:\n  empty store: %.0f req/s, worst p99 %s, 0 errors\n  %d users:    %.0f req/s, worst p99 %s, 0 errors\n  ratio %.2f\n",
			kind, empty.Throughput, p99(empty).Round(time.Millisecond), size, full.Throughput, p99(full).Round(time.Millisecond), full.Throughput/empty.Throughput)
		for _, o := range full.Ops {
			fmt.Printf("    %-8s %6d requests  p50 %-8s p95 %-8s p99 %s\n", o.Name, o.Count, o.P50.Round(time.Microsecond), o.P95.Round(time.Microsecond), o.P99.Round(time.Microsecond))
		}
		b.ReportMetric(full.Throughput, "req/s")
		b.ReportMetric(float64(p99(full).Microseconds())/1000, "worst-p99-ms")
		b.ReportMetric(full.Throughput/empty.Throughput, "ratio-to-empty")
	}
}
