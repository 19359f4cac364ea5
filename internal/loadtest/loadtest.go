// Package loadtest drives a Consentgraph server with a configurable mix of
// sign-ins, `me` reads, consent changes and partner queries from concurrent
// clients, and reports throughput, latency percentiles, errors and the
// server's peak memory. It only ever talks to loopback addresses, and it is
// bounded in requests and time so it always stops by itself.
package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Operations the mix can name.
const (
	OpSignIn  = "signin"
	OpMe      = "me"
	OpConsent = "consent"
	OpPartner = "partner"
)

// Options bound and shape a run.
type Options struct {
	Target      string // base URL, loopback only
	Clients     int
	Duration    time.Duration
	MaxRequests int64
	Mix         map[string]int
	Users       int
	// AdminUsername/AdminPassword let the harness create a partner; without
	// them partner queries are left out of the mix.
	AdminUsername, AdminPassword string
}

// DefaultMix is mostly reads, as a privacy center sees.
func DefaultMix() map[string]int {
	return map[string]int{OpSignIn: 1, OpMe: 10, OpConsent: 3, OpPartner: 1}
}

// ParseMix reads "signin=1,me=10,...".
func ParseMix(s string) (map[string]int, error) {
	mix := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(w)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("mix entry %q: want name=weight", part)
		}
		switch name {
		case OpSignIn, OpMe, OpConsent, OpPartner:
			mix[name] = n
		default:
			return nil, fmt.Errorf("mix entry %q: unknown operation (signin, me, consent, partner)", part)
		}
	}
	return mix, nil
}

// OpStats summarises one operation.
type OpStats struct {
	Name          string
	Count, Errors int64
	P50, P95, P99 time.Duration
}

// Report is the outcome of a run.
type Report struct {
	Elapsed       time.Duration
	Requests      int64
	Errors        int64
	Throughput    float64 // requests per second
	Ops           []OpStats
	PeakRSSBytes  float64
	FirstError    string
	PartnerOmited bool
}

// CheckLoopback refuses any target that is not on this machine.
func CheckLoopback(target string) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("target %q is not a URL", target)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("target %q: the load harness only targets loopback addresses", target)
	}
	return nil
}

type client struct {
	base  string
	http  *http.Client
	token string
}

type gqlResp struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string `json:"message"`
		Extensions struct {
			Code string `json:"code"`
		} `json:"extensions"`
	} `json:"errors"`
}

// apiError is a GraphQL error answer, with its code.
type apiError struct{ code, msg string }

func (e *apiError) Error() string { return e.msg }

// setupError explains the usual reason set-up fails against a real server.
func setupError(step string, err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.code == "RATE_LIMITED" {
		return fmt.Errorf("set-up: %s: %w (the target enforces its abuse limits; start it with --rate-limits=false to measure the service itself)", step, err)
	}
	return fmt.Errorf("set-up: %s: %w", step, err)
}

func (c *client) do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var r gqlResp
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return fmt.Errorf("status %d: %w", res.StatusCode, err)
	}
	if len(r.Errors) > 0 {
		return &apiError{code: r.Errors[0].Extensions.Code, msg: r.Errors[0].Message}
	}
	if out != nil {
		return json.Unmarshal(r.Data, out)
	}
	return nil
}

const password = "load test password"

// Run performs the setup (users, a partner) and the timed run.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := CheckLoopback(o.Target); err != nil {
		return nil, err
	}
	if o.Clients < 1 || o.Users < 1 || o.Duration <= 0 || o.MaxRequests < 1 {
		return nil, errors.New("clients, users, duration and requests must be positive")
	}
	transport := &http.Transport{MaxIdleConnsPerHost: o.Clients * 2}
	hc := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	base := strings.TrimRight(o.Target, "/")
	runID := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	names := make([]string, o.Users)
	for i := range names {
		names[i] = fmt.Sprintf("load-%s-%d", runID, i)
		c := &client{base: base, http: hc}
		if err := c.do(ctx, `mutation($u: String!, $p: String!) { register(input: {username: $u, password: $p}) { token } }`,
			map[string]any{"u": names[i], "p": password}, nil); err != nil {
			return nil, setupError("register "+names[i], err)
		}
	}
	mix := o.Mix
	rep := &Report{}
	var partnerKey string
	if mix[OpPartner] > 0 {
		if o.AdminUsername == "" {
			mix = copyMix(mix)
			mix[OpPartner] = 0
			rep.PartnerOmited = true
		} else {
			admin := &client{base: base, http: hc}
			var login struct{ Login struct{ Token string } }
			if err := admin.do(ctx, `mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`,
				map[string]any{"u": o.AdminUsername, "p": o.AdminPassword}, &login); err != nil {
				return nil, setupError("admin login", err)
			}
			admin.token = login.Login.Token
			var cp struct{ CreatePartner struct{ APIKey string } }
			if err := admin.do(ctx, `mutation { createPartner(name: "load test", epsilonBudget: 1000, budgetPeriodDays: 1) { apiKey } }`, nil, &cp); err != nil {
				return nil, setupError("create partner", err)
			}
			partnerKey = cp.CreatePartner.APIKey
		}
	}
	var ops []string
	for name, w := range mix {
		for range w {
			ops = append(ops, name)
		}
	}
	if len(ops) == 0 {
		return nil, errors.New("the mix has no operation with a positive weight")
	}
	sort.Strings(ops)

	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	peak := samplePeakRSS(runCtx, base, hc)
	var issued atomic.Int64
	var mu sync.Mutex
	lat := map[string][]time.Duration{}
	errs := map[string]int64{}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			user := &client{base: base, http: hc}
			name := names[w%len(names)]
			var login struct{ Login struct{ Token string } }
			if err := user.do(runCtx, `mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`,
				map[string]any{"u": name, "p": password}, &login); err == nil {
				user.token = login.Login.Token
			}
			partner := &client{base: base, http: hc, token: partnerKey}
			granted := false
			for runCtx.Err() == nil && issued.Add(1) <= o.MaxRequests {
				op := ops[rng.IntN(len(ops))]
				t0 := time.Now()
				var err error
				switch op {
				case OpSignIn:
					err = user.do(runCtx, `mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`,
						map[string]any{"u": name, "p": password}, nil)
				case OpMe:
					err = user.do(runCtx, `{ me { username consents { purpose { id } granted } } }`, nil, nil)
				case OpConsent:
					m := "grantConsent"
					if granted {
						m = "withdrawConsent"
					}
					err = user.do(runCtx, `mutation { `+m+`(purpose: "surveys") { consent { granted } } }`, nil, nil)
					granted = !granted
				case OpPartner:
					err = partner.do(runCtx, `{ demographics(groupBy: [AGE_BAND, COUNTRY], epsilon: 0.01) { threshold } }`, nil, nil)
				}
				d := time.Since(t0)
				if runCtx.Err() != nil && err != nil {
					return // the deadline cut this request short: not a server error
				}
				mu.Lock()
				lat[op] = append(lat[op], d)
				if err != nil {
					errs[op]++
					if rep.FirstError == "" {
						rep.FirstError = op + ": " + err.Error()
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	cancel()
	rep.PeakRSSBytes = <-peak
	for name, ds := range lat {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		rep.Ops = append(rep.Ops, OpStats{Name: name, Count: int64(len(ds)), Errors: errs[name],
			P50: pct(ds, 50), P95: pct(ds, 95), P99: pct(ds, 99)})
		rep.Requests += int64(len(ds))
		rep.Errors += errs[name]
	}
	sort.Slice(rep.Ops, func(i, j int) bool { return rep.Ops[i].Name < rep.Ops[j].Name })
	all := []time.Duration{}
	for _, ds := range lat {
		all = append(all, ds...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	rep.Ops = append(rep.Ops, OpStats{Name: "all", Count: rep.Requests, Errors: rep.Errors, P50: pct(all, 50), P95: pct(all, 95), P99: pct(all, 99)})
	rep.Throughput = float64(rep.Requests) / rep.Elapsed.Seconds()
	return rep, nil
}

func copyMix(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return sorted[i-1]
}

// samplePeakRSS polls the server's process_resident_memory_bytes until ctx
// ends and sends the highest value seen.
func samplePeakRSS(ctx context.Context, base string, hc *http.Client) <-chan float64 {
	out := make(chan float64, 1)
	go func() {
		peak := 0.0
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := scrapeRSS(base, hc); err == nil && v > peak {
				peak = v
			}
			select {
			case <-ctx.Done():
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func scrapeRSS(base string, hc *http.Client) (float64, error) {
	res, err := hc.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("no process_resident_memory_bytes")
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "%-9s %9s %7s %10s %10s %10s\n", "operation", "requests", "errors", "p50", "p95", "p99")
	for _, o := range r.Ops {
		fmt.Fprintf(w, "%-9s %9d %7d %10s %10s %10s\n", o.Name, o.Count, o.Errors,
			o.P50.Round(10*time.Microsecond), o.P95.Round(10*time.Microsecond), o.P99.Round(10*time.Microsecond))
	}
	fmt.Fprintf(w, "throughput: %.1f requests/s over %s; errors: %d; server peak RSS: %.1f MiB\n",
		r.Throughput, r.Elapsed.Round(time.Millisecond), r.Errors, r.PeakRSSBytes/(1<<20))
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	if r.PartnerOmited {
		fmt.Fprintln(w, "partner queries left out: no admin credentials (CONSENTGRAPH_ADMIN_USERNAME/PASSWORD) to create a partner")
	}
}
