package app

import (
	"context"
	"fmt"
	"time"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/consentgraph/consentgraph/graph"
	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/ratelimit"
)

// costGuard charges every admitted operation, query or mutation, its cost
// (graph/cost.go, as computed by the complexity limit that runs just
// before it) against the caller's budget per minute: a partner key's, a
// signed-in account's, or for anonymous callers their IP's. Exports,
// ledger checks, audit log pages and long history pages also take from a
// small per-account rate of expensive reads, one token per occurrence, so
// aliases cannot multiply them.
//
// Together with the per-request maximum this bounds what one caller can
// make the server do per minute, whatever the mix of fields; the buckets
// hold across replicas like the other limits (ratelimit.Shared).
type costGuard struct {
	on            bool
	es            graphql.ExecutableSchema
	account, anon *ratelimit.Limiter
	partner       *ratelimit.Limiter
	reads         *ratelimit.Limiter
}

func newCostGuard(cfg config.Config, shared *ratelimit.Shared) *costGuard {
	if !cfg.RateLimits {
		return &costGuard{}
	}
	// A bucket holds half a minute's budget, and always at least one
	// request of the largest accepted cost, so no admitted request is
	// beyond any budget.
	burst := func(perMinute int) int { return max(perMinute/2, cfg.MaxComplexity) }
	g := &costGuard{
		on:      true,
		account: ratelimit.NewLimiter(cfg.CostPerMinute, burst(cfg.CostPerMinute), limiterKeys),
		partner: ratelimit.NewLimiter(cfg.CostPerMinute, burst(cfg.CostPerMinute), limiterKeys),
		anon:    ratelimit.NewLimiter(cfg.AnonymousCostPerMinute, burst(cfg.AnonymousCostPerMinute), limiterKeys),
		reads:   ratelimit.NewLimiter(cfg.ExpensiveReadsPerMinute, max(cfg.ExpensiveReadsPerMinute/2, 2), limiterKeys),
	}
	if shared != nil {
		g.account.ShareAs(shared, "cost-account")
		g.partner.ShareAs(shared, "cost-partner")
		g.anon.ShareAs(shared, "cost-ip")
		g.reads.ShareAs(shared, "expensive-reads")
	}
	return g
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = (*costGuard)(nil)

func (g *costGuard) ExtensionName() string { return "CostBudgets" }
func (g *costGuard) Validate(es graphql.ExecutableSchema) error {
	g.es = es
	return nil
}

// MutateOperationContext charges the operation before it runs.
func (g *costGuard) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if !g.on || oc.Operation == nil {
		return nil
	}
	cost := 0
	if graph.IntrospectionOnly(oc.Operation) {
		// Only --dev lets introspection this far (NoIntrospection refuses
		// it before). It reads the schema in memory, and its complexity,
		// unbounded by the data limit, could exceed any bucket.
		cost = 1
	} else if st, ok := oc.Stats.GetExtension("ComplexityLimit").(*extension.ComplexityStats); ok {
		cost = st.Complexity
	} else {
		cost = complexity.Calculate(ctx, g.es, oc.Operation, oc.Variables)
	}
	p := auth.From(ctx)
	switch {
	case p != nil && p.Role == auth.RolePartner:
		return g.charge(ctx, g.partner, p.PartnerID, cost, "this partner key")
	case p.IsUser():
		// Expensive reads first: they are the smaller budget, and a request
		// refused for them should not also spend the cost budget.
		if n := graph.ExpensiveReads(oc.Operation, oc.Variables); n > 0 {
			if n > g.reads.Burst() {
				return g.fail(ctx, fmt.Sprintf("at most %d exports, ledger checks or long pages in one request", g.reads.Burst()), time.Minute)
			}
			if d := g.reads.Take(p.UserID, n); d > 0 {
				return g.fail(ctx, "too many exports, ledger checks or long pages for this account; slow down", d)
			}
		}
		return g.charge(ctx, g.account, p.UserID, cost, "this account")
	default:
		return g.charge(ctx, g.anon, clientFrom(ctx).ip, cost, "your network")
	}
}

func (g *costGuard) charge(ctx context.Context, l *ratelimit.Limiter, key string, cost int, who string) *gqlerror.Error {
	if d := l.Take(key, cost); d > 0 {
		return g.fail(ctx, fmt.Sprintf("%s has used its request budget for now (this request costs %d); slow down", who, cost), d)
	}
	return nil
}

// fail answers RATE_LIMITED with the wait in extensions and Retry-After.
func (g *costGuard) fail(ctx context.Context, msg string, d time.Duration) *gqlerror.Error {
	holdRefusal(ctx)
	setRetryAfter(ctx, d)
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{
		"code": string(apperr.RateLimited), "retryAfterSeconds": retrySeconds(d)}}
}

// refusalHold is how long a RATE_LIMITED answer is held back before it is
// sent, and heldRefusals how many may be held at once.
//
// A refusal is cheap, but a client that ignores Retry-After and resends at
// once (a flood loop) turns cheap refusals into thousands of requests a
// second, which crowd other users' requests off the CPU: measured, a flood
// of six connections from one account doubled another user's median
// latency although every one of its requests was refused. Held back, each
// such connection gets a few answers a second. Beyond heldRefusals the
// answers go out at once, so holding costs bounded memory and a client
// with many connections is no worse off than without the hold.
const (
	refusalHold  = 250 * time.Millisecond
	heldRefusals = 256
)

var refusalSlots = make(chan struct{}, heldRefusals)

// holdRefusal waits refusalHold if a slot is free, or not at all.
func holdRefusal(ctx context.Context) {
	select {
	case refusalSlots <- struct{}{}:
	default:
		return
	}
	defer func() { <-refusalSlots }()
	t := time.NewTimer(refusalHold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
