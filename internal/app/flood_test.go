package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
)

// floodQueries are what account A sends nonstop: the expensive requests of
// issue 14 (exports, ledger checks, long histories, aliased batches) and
// mutations.
var floodQueries = []string{
	`{ exportMyData { document signature } }`,
	`{ me { ledgerIntact } }`,
	`{ me { consentHistory(first: 100) { totalCount edges { node { sequence hash receipt } } } } }`,
	`{ a: exportMyData { signature } b: exportMyData { signature } c: exportMyData { signature } d: exportMyData { signature } }`,
	`{ me {` + aliased(4, "consentHistory(first: 100) { edges { node { hash receipt } } }") + ` } }`,
	`mutation { grantConsent(purpose: "newsletter") { receipt } }`,
	`mutation { withdrawConsent(purpose: "newsletter") { receipt } }`,
	`{ me { id consents { granted purpose { id processors { name } } } disclosures(first: 100) { edges { cursor } } } }`,
}

// floodScene is account A, which floods, and account B, whose `me` is
// measured, on one server with the default rate limits.
type floodScene struct {
	tb                       testing.TB
	url, floodToken          string
	bystander                *apptest.Client
	admitted, refused, other atomic.Int64
}

func newFloodScene(tb testing.TB) *floodScene {
	s := apptest.Start(tb, func(c *config.Config) { c.RateLimits = true }) // the default limits
	a, b := s.Register(tb, "flooder"), s.Register(tb, "bystander")
	for i := range 10 { // a ledger with some history, so A's reads have work
		m := "grantConsent"
		if i%2 == 1 {
			m = "withdrawConsent"
		}
		if r := a.Do(tb, `mutation { `+m+`(purpose: "newsletter") { changed } }`, nil); len(r.Errors) > 0 {
			tb.Fatalf("seed: %s", r.Raw)
		}
	}
	f := &floodScene{tb: tb, url: s.URL, floodToken: a.Token, bystander: b}
	f.sample(300 * time.Millisecond) // warm up connections and caches
	return f
}

// sample measures B's `me` for d, one request every 25 ms (an open pace,
// so a slow answer does not thin out the samples; and within B's own
// default cost budget). Every one of B's requests must succeed.
func (f *floodScene) sample(d time.Duration) []time.Duration {
	var out []time.Duration
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		start := time.Now()
		r := f.bystander.Do(f.tb, `{ me { id username } }`, nil)
		out = append(out, time.Since(start))
		if len(r.Errors) > 0 {
			f.tb.Fatalf("B's me: %s", r.Raw)
		}
	}
	return out
}

// flood runs A's six connections nonstop until ctx ends.
func (f *floodScene) flood(ctx context.Context, wg *sync.WaitGroup) {
	for w := range 6 {
		wg.Go(func() {
			// Each flooding goroutine has its own connection, as a
			// client hammering the server would.
			hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{}}
			for i := w; ctx.Err() == nil; i++ {
				switch code, err := post(ctx, hc, f.url, f.floodToken, floodQueries[i%len(floodQueries)]); {
				case ctx.Err() != nil:
				case err != nil:
					f.tb.Errorf("flood: %v", err)
					return
				case code == "":
					f.admitted.Add(1)
				case code == "RATE_LIMITED":
					f.refused.Add(1)
				default:
					f.other.Add(1)
					f.tb.Logf("flood: %s", code)
				}
			}
		})
	}
}

// round samples B for phase unloaded, then for phase while A floods.
func (f *floodScene) round(phase time.Duration) (unloaded, loaded []time.Duration) {
	unloaded = f.sample(phase)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	f.flood(ctx, &wg)
	loaded = f.sample(phase)
	cancel()
	wg.Wait()
	return unloaded, loaded
}

// Issue 14: a flood from one account is refused to that account alone:
// while A floods with exports, ledger checks, long histories and
// mutations, every one of B's requests is answered, and A's are refused
// with RATE_LIMITED and nothing else. How much B's latency moves is a
// speed figure, measured by BenchmarkFloodLatency (docs/benchmarks.md),
// not asserted here.
func TestFloodFromOneAccountIsRefusedToThatAccountAlone(t *testing.T) {
	f := newFloodScene(t)
	_, loaded := f.round(2 * time.Second)
	if len(loaded) < 10 {
		t.Errorf("B made only %d requests during the flood", len(loaded))
	}
	if n := f.other.Load(); n > 0 {
		t.Errorf("%d of A's requests failed other than RATE_LIMITED", n)
	}
	if f.refused.Load() == 0 {
		t.Error("A was never rate-limited: the flood was not a flood")
	}
	t.Logf("B: %d requests answered during the flood (median %v); A: %d admitted, %d RATE_LIMITED",
		len(loaded), median(loaded), f.admitted.Load(), f.refused.Load())
}

// BenchmarkFloodLatency: B's `me` latency while A floods, against
// unloaded, in rounds of 2 s each (the first flood spends A's burst, later
// ones run at A's steady budget with the rest refused); the medians of all
// rounds are compared, so noise from the rest of a shared machine moves
// both sides alike. Reported: flooded/unloaded (the ratio; issue 14 asks
// for under 2×) and both medians.
//
//	go test -run '^$' -bench FloodLatency -benchtime 1x -count 3 ./internal/app/
func BenchmarkFloodLatency(b *testing.B) {
	f := newFloodScene(b)
	const rounds, phase = 6, 2 * time.Second
	var unloaded, loaded []time.Duration
	for b.Loop() {
		unloaded, loaded = nil, nil
		for range rounds {
			u, l := f.round(phase)
			unloaded, loaded = append(unloaded, u...), append(loaded, l...)
		}
	}
	mu, ml := median(unloaded), median(loaded)
	b.ReportMetric(float64(ml)/float64(mu), "flooded/unloaded")
	b.ReportMetric(float64(mu.Microseconds()), "unloaded-µs")
	b.ReportMetric(float64(ml.Microseconds()), "flooded-µs")
	b.Logf("B's me: unloaded median %v (p90 %v), during A's flood median %v (p90 %v); A: %d admitted, %d RATE_LIMITED, %d other",
		mu, pct(unloaded, 90), ml, pct(loaded, 90), f.admitted.Load(), f.refused.Load(), f.other.Load())
	if f.other.Load() > 0 {
		b.Errorf("%d of A's requests failed other than RATE_LIMITED", f.other.Load())
	}
}

func median(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// post sends one query and returns the code of its first error ("" for
// none); unlike apptest.Client it may run outside the test's goroutine.
func post(ctx context.Context, hc *http.Client, url, token, query string) (string, error) {
	body, _ := json.Marshal(map[string]any{"query": query})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/graphql", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var out struct {
		Errors []struct {
			Extensions struct{ Code string }
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("status %d: %w", res.StatusCode, err)
	}
	if len(out.Errors) == 0 {
		return "", nil
	}
	return out.Errors[0].Extensions.Code, nil
}
