// Package metrics exposes what operators need to see inside Consentgraph as
// Prometheus metrics, and counts store round trips per request so tests and
// dashboards can keep the common operations cheap.
package metrics

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the registry and the service's own collectors.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	roundTrips    *prometheus.HistogramVec
	storeCommands *prometheus.CounterVec
	storeFailures *prometheus.CounterVec
	epsilon       *prometheus.CounterVec
	refunded      *prometheus.CounterVec
	outbox        *prometheus.CounterVec
}

// New creates the registry with Go runtime and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: r,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consentgraph_graphql_requests_total",
			Help: "GraphQL operations by root fields and outcome (ok or the first error code).",
		}, []string{"operation", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consentgraph_graphql_request_duration_seconds",
			Help:    "Time to answer a GraphQL operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation"}),
		roundTrips: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consentgraph_graphql_store_round_trips",
			Help:    "Store commands issued while answering one GraphQL operation.",
			Buckets: []float64{0, 1, 2, 3, 4, 6, 8, 12, 20, 50},
		}, []string{"operation"}),
		storeCommands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consentgraph_store_commands_total",
			Help: "Commands sent to the store (round trips), by command name.",
		}, []string{"command"}),
		storeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consentgraph_store_command_failures_total",
			Help: "Store commands that failed, by command name.",
		}, []string{"command"}),
		epsilon: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consentgraph_partner_epsilon_spent_total",
			Help: "Differential-privacy epsilon charged to each partner since start (refunds are counted apart, in consentgraph_partner_epsilon_refunded_total).",
		}, []string{"partner"}),
		refunded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consentgraph_partner_epsilon_refunded_total",
			Help: "Epsilon given back to each partner since start, for requests whose answer released nothing.",
		}, []string{"partner"}),
		outbox: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consentgraph_outbox_attempts_total",
			Help: "Outbox delivery and forget attempts per processor by outcome (done, skipped, waiting, retry, dead).",
		}, []string{"processor", "action", "outcome"}),
	}
	r.MustRegister(m.requests, m.latency, m.roundTrips, m.storeCommands, m.storeFailures, m.epsilon, m.refunded, m.outbox)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// EpsilonSpent records a charge to a partner's privacy budget.
func (m *Metrics) EpsilonSpent(partnerID string, epsilon float64) {
	m.epsilon.WithLabelValues(partnerID).Add(epsilon)
}

// EpsilonRefunded records a refund to a partner's privacy budget.
func (m *Metrics) EpsilonRefunded(partnerID string, epsilon float64) {
	m.refunded.WithLabelValues(partnerID).Add(epsilon)
}

// GaugeFunc registers a gauge read at scrape time, at most once per
// interval, so a scrape never costs more than one query per interval.
func (m *Metrics) GaugeFunc(name, help string, interval time.Duration, read func(context.Context) (float64, error)) {
	var mu sync.Mutex
	var last float64
	var at time.Time
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) >= interval {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if v, err := read(ctx); err == nil {
				last, at = v, time.Now()
			}
		}
		return last
	}))
}

type counterKey struct{}

// WithRoundTrips returns a context in which store commands are counted.
func WithRoundTrips(ctx context.Context) context.Context {
	return context.WithValue(ctx, counterKey{}, new(atomic.Int64))
}

// RoundTrips returns the store commands issued so far under ctx.
func RoundTrips(ctx context.Context) int64 {
	if c, ok := ctx.Value(counterKey{}).(*atomic.Int64); ok {
		return c.Load()
	}
	return 0
}

// StoreObserver counts every store round trip, globally and for the
// request whose context issued it.
func (m *Metrics) StoreObserver() func(ctx context.Context, command string, err error) {
	return func(ctx context.Context, command string, err error) {
		m.storeCommands.WithLabelValues(command).Inc()
		if err != nil {
			m.storeFailures.WithLabelValues(command).Inc()
		}
		if c, ok := ctx.Value(counterKey{}).(*atomic.Int64); ok {
			c.Add(1)
		}
	}
}

// GraphQL returns a gqlgen extension recording requests, latency and store
// round trips per operation.
func (m *Metrics) GraphQL() graphql.HandlerExtension { return gqlExtension{m} }

type gqlExtension struct{ m *Metrics }

var _ interface {
	graphql.HandlerExtension
	graphql.ResponseInterceptor
} = gqlExtension{}

func (gqlExtension) ExtensionName() string                   { return "Metrics" }
func (gqlExtension) Validate(graphql.ExecutableSchema) error { return nil }

func (g gqlExtension) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	start := time.Now()
	before := RoundTrips(ctx)
	resp := next(ctx)
	op := OperationName(ctx)
	outcome := "ok"
	if resp != nil && len(resp.Errors) > 0 {
		outcome = "error"
		if code, ok := resp.Errors[0].Extensions["code"].(string); ok {
			outcome = code
		}
	}
	g.m.requests.WithLabelValues(op, outcome).Inc()
	g.m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	g.m.roundTrips.WithLabelValues(op).Observe(float64(RoundTrips(ctx) - before))
	return resp
}

// OperationName names an operation by its type and root fields (bounded by
// the schema, unlike client-chosen operation names).
func OperationName(ctx context.Context) string {
	if !graphql.HasOperationContext(ctx) {
		return "invalid"
	}
	oc := graphql.GetOperationContext(ctx)
	if oc == nil || oc.Operation == nil {
		return "invalid"
	}
	seen := map[string]bool{}
	for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, nil) {
		seen[f.Name] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 4 {
		names = append(names[:4], "...")
	}
	return string(oc.Operation.Operation) + " " + strings.Join(names, ",")
}

// OutboxOutcome counts how an outbox attempt ended for a processor.
func (m *Metrics) OutboxOutcome(processor, action, outcome string) {
	m.outbox.WithLabelValues(processor, action, outcome).Inc()
}

// GaugeVecFunc registers gauges with one label, read at scrape time at most
// once per interval.
func (m *Metrics) GaugeVecFunc(name, help, label string, interval time.Duration, read func(context.Context) (map[string]float64, error)) {
	m.Registry.MustRegister(&cachedVec{desc: prometheus.NewDesc(name, help, []string{label}, nil), interval: interval, read: read})
}

type cachedVec struct {
	desc     *prometheus.Desc
	interval time.Duration
	read     func(context.Context) (map[string]float64, error)

	mu   sync.Mutex
	last map[string]float64
	at   time.Time
}

func (c *cachedVec) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *cachedVec) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.at) >= c.interval {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if v, err := c.read(ctx); err == nil {
			c.last, c.at = v, time.Now()
		}
		cancel()
	}
	values := c.last
	c.mu.Unlock()
	for k, v := range values {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, k)
	}
}
