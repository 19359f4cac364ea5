// Package benchmarks_test holds the storage benchmarks of issue 12: the
// scale curve (1k → 1M users), `me` throughput against a bare gqlgen
// server, and the load harness at scale. Each reports ratios against a
// baseline measured in the same run; docs/benchmarks.md has the commands
// and figures. Sizes and stores come from the environment, so the default
// `go test -bench` stays short:
//
//	CONSENTGRAPH_BENCH_USERS=1000,100000,1000000 \
//	  go test -run '^$' -bench ScaleCurve -benchtime 1x -timeout 2h ./internal/benchmarks/
package benchmarks_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/seed"
)

const (
	meQuery      = `{ me { id username consents { purpose { id } granted } } }`
	partnerQuery = `{ demographics(groupBy: [AGE_BAND, COUNTRY], epsilon: 0.01) { cells { count } } }`
	benchPW      = "correct horse battery"
	adminName    = "bench-admin"
	adminPW      = "bench admin password"
)

// envList reads a comma-separated list from the environment, or def.
func envList(name, def string) []string {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func envSizes(b *testing.B, name, def string) []int {
	var out []int
	for _, f := range envList(name, def) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 {
			b.Fatalf("%s: %q is not a user count", name, f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// poster sends prebuilt GraphQL bodies and times whole round trips.
type poster struct {
	url    string
	auth   string
	client *http.Client
}

func newPoster(url, auth string) *poster {
	return &poster{url: url + "/graphql", auth: auth, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// post sends body and fails on any GraphQL error.
func (p *poster) post(b *testing.B, body []byte) time.Duration {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if p.auth != "" {
		req.Header.Set("Authorization", "Bearer "+p.auth)
	}
	t0 := time.Now()
	res, err := p.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	d := time.Since(t0)
	if res.StatusCode != http.StatusOK || bytes.Contains(out, []byte(`"errors"`)) {
		b.Fatalf("request %s: HTTP %d %s", body, res.StatusCode, out)
	}
	return d
}

func gql(query string, vars map[string]any) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"query":%q`, query)
	if vars != nil {
		b.WriteString(`,"variables":{`)
		first := true
		for k, v := range vars {
			if !first {
				b.WriteString(",")
			}
			first = false
			fmt.Fprintf(&b, "%q:%q", k, v)
		}
		b.WriteString("}")
	}
	b.WriteString("}")
	return []byte(b.String())
}

// latencies are one operation's samples.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sample runs op n times (after a short warm-up) and returns the latencies.
func sample(n int, op func() time.Duration) latencies {
	for range min(n/10+1, 20) {
		op()
	}
	out := make(latencies, 0, n)
	for range n {
		out = append(out, op())
	}
	return out
}

// scaleRow is one size of the scale curve.
type scaleRow struct {
	users                   int
	seedTime                time.Duration
	me, login, consent, rep latencies
	// hash is the raw argon2id baseline measured beside this size's logins.
	hash latencies
}

// BenchmarkScaleCurve seeds a store up to each size in
// CONSENTGRAPH_BENCH_USERS (default 1000,100000) and measures `me`, login,
// a consent change and a partner report (p50 and p99) at each, on each
// store in CONSENTGRAPH_BENCH_STORES (default embedded; mongodb runs the
// MongoDB adapter against CONSENTGRAPH_TEST_MONGODB_URI or the embedded
// FerretDB test double). Baseline, in the same run: one raw argon2id hash
// with the server's parameters. Reported: `me` at the largest size over
// `me` at the smallest (goal ≤ 1.5), login over the raw hash (goal ≤ 1.3),
// and a consent change over `me` at the largest size (goal ≤ 2).
func BenchmarkScaleCurve(b *testing.B) {
	sizes := envSizes(b, "CONSENTGRAPH_BENCH_USERS", "1000,100000")
	for _, kind := range envList("CONSENTGRAPH_BENCH_STORES", "embedded") {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				scaleCurve(b, kind, sizes)
			}
		})
	}
}

func scaleCurve(b *testing.B, kind string, sizes []int) {
	s := apptest.StartOn(b, kind, func(c *config.Config) {
		c.RateLimits, c.OutboxPoll = false, -1
		c.AdminUsername, c.AdminPassword = adminName, adminPW
		c.RequestTimeout = time.Minute
	})
	ctx := context.Background()
	user := s.Register(b, "scale-bench-user")
	partnerKey := createPartner(b, s)
	me := newPoster(s.URL, user.Token)
	anon := newPoster(s.URL, "")
	partner := newPoster(s.URL, partnerKey)
	meBody := gql(meQuery, nil)
	loginBody := gql(`mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`,
		map[string]any{"u": "scale-bench-user", "p": benchPW})
	grant := gql(`mutation { grantConsent(purpose: "newsletter") { changed } }`, nil)
	withdraw := gql(`mutation { withdrawConsent(purpose: "newsletter") { changed } }`, nil)
	repBody := gql(partnerQuery, nil)

	// Warm up the server (connections, prepared statements, caches) so the
	// smallest size is not measured cold.
	sample(500, func() time.Duration { return me.post(b, meBody) })
	sample(200, func() time.Duration { return me.post(b, grant) + me.post(b, withdraw) })
	sample(20, func() time.Duration { return anon.post(b, loginBody) + rawHash(s.Cfg) })
	var rows []scaleRow
	have := 2 // the benchmark user and the admin
	for _, size := range sizes {
		t0 := time.Now()
		if size > have {
			if _, err := seed.Run(ctx, s.App, seed.Options{Users: size - have, Grants: 0, RandSeed: uint64(size)}); err != nil {
				b.Fatal(err)
			}
			have = size
			// Serve the grown store from a fresh start, as an operator
			// would after seeding it (the embedded store then has its bulk
			// load in the database file, not in its write-ahead log).
			cfg := s.Cfg
			s.Close()
			s = apptest.StartWith(b, cfg)
			me, anon, partner = newPoster(s.URL, user.Token), newPoster(s.URL, ""), newPoster(s.URL, partnerKey)
		}
		row := scaleRow{users: size, seedTime: time.Since(t0)}
		// Let the store settle, then measure the operations
		// interleaved, request by request, so that whatever else the
		// machine does falls on all of them alike; the raw hash baseline
		// is measured in blocks beside the logins.
		settle(b, me, meBody)
		flip := false
		for i := range 600 {
			row.me = append(row.me, me.post(b, meBody))
			if flip = !flip; flip {
				row.consent = append(row.consent, me.post(b, grant))
			} else {
				row.consent = append(row.consent, me.post(b, withdraw))
			}
			if i%6 == 0 {
				row.rep = append(row.rep, partner.post(b, repBody))
			}
		}
		// Logins and raw hashes in alternating blocks, each after a
		// collection, so that neither pays for the other's 19 MiB buffers.
		for range 3 {
			runtime.GC()
			for range 10 {
				row.login = append(row.login, anon.post(b, loginBody))
			}
			runtime.GC()
			for range 10 {
				row.hash = append(row.hash, rawHash(s.Cfg))
			}
		}
		rows = append(rows, row)
	}

	fmt.Printf("\nscale curve, %s store (ms: p50 / p99)\n", kind)
	fmt.Printf("| users | seeded in | me | login | raw hash | consent change | partner report |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Printf("| %d | %.1f s | %.2f / %.2f | %.1f / %.1f | %.1f / %.1f | %.2f / %.2f | %.2f / %.2f |\n", r.users, r.seedTime.Seconds(),
			ms(r.me.pct(.5)), ms(r.me.pct(.99)), ms(r.login.pct(.5)), ms(r.login.pct(.99)), ms(r.hash.pct(.5)), ms(r.hash.pct(.99)),
			ms(r.consent.pct(.5)), ms(r.consent.pct(.99)), ms(r.rep.pct(.5)), ms(r.rep.pct(.99)))
	}
	first, last := rows[0], rows[len(rows)-1]
	meRatio := ms(last.me.pct(.5)) / ms(first.me.pct(.5))
	loginRatio := ms(last.login.pct(.5)) / ms(last.hash.pct(.5))
	consentRatio := ms(last.consent.pct(.5)) / ms(last.me.pct(.5))
	fmt.Printf("me at %d over me at %d: %.2f× (goal ≤ 1.5); login over a raw hash: %.2f× (goal ≤ 1.3); consent change over me: %.2f× (goal ≤ 2)\n",
		last.users, first.users, meRatio, loginRatio, consentRatio)
	b.ReportMetric(meRatio, "me-largest/smallest")
	b.ReportMetric(loginRatio, "login/argon2")
	b.ReportMetric(consentRatio, "consent/me")
	b.ReportMetric(ms(last.me.pct(.5)), "me-p50-ms")
}

// settle waits until `me` answers at a steady pace: after a bulk load the
// store is still copying the load from its log into the database file.
func settle(b *testing.B, p *poster, body []byte) {
	prev := ms(sample(200, func() time.Duration { return p.post(b, body) }).pct(.5))
	for range 20 {
		time.Sleep(time.Second)
		cur := ms(sample(200, func() time.Duration { return p.post(b, body) }).pct(.5))
		if cur <= prev*1.1 {
			return
		}
		prev = cur
	}
}

// rawHash is one argon2id hash with the server's parameters: the baseline
// of a login.
func rawHash(cfg config.Config) time.Duration {
	t0 := time.Now()
	argon2.IDKey([]byte(benchPW), make([]byte, 16), cfg.Argon2Iterations, cfg.Argon2MemoryKiB, cfg.Argon2Parallelism, 32)
	return time.Since(t0)
}

// createPartner signs in as the configured admin and creates a partner
// with a large budget; it returns the partner's key.
func createPartner(b *testing.B, s *apptest.Server) string {
	b.Helper()
	admin := s.Client()
	var login struct{ Login struct{ Token string } }
	admin.Do(b, `mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`,
		map[string]any{"u": adminName, "p": adminPW}).Decode(b, &login)
	admin.Token = login.Login.Token
	var out struct {
		CreatePartner struct{ APIKey string }
	}
	admin.Do(b, `mutation { createPartner(name: "Bench", epsilonBudget: 1000, budgetPeriodDays: 30) { apiKey } }`, nil).Decode(b, &out)
	if out.CreatePartner.APIKey == "" {
		b.Fatal("no partner key")
	}
	return out.CreatePartner.APIKey
}
