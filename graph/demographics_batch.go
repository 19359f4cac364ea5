package graph

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/demographics"
)

// DemographicsBatch makes a partner's request pay for its demographics
// fields all or nothing. Before the operation runs it finds every
// demographics field the operation will resolve (aliases, fragments and
// @skip/@include as the executor sees them), and has the aggregates charge
// the sum of their epsilons once; the resolvers then draw on that charge.
// If the answer does not reach the partner (data nulled by any error, or
// the request cancelled), the charge is refunded. The rules themselves are
// in demographics.Batch; this only finds the fields and the outcome.
type DemographicsBatch struct {
	Aggregates *demographics.Service
	Log        *slog.Logger
}

var _ interface {
	graphql.HandlerExtension
	graphql.ResponseInterceptor
} = DemographicsBatch{}

// ExtensionName implements graphql.HandlerExtension.
func (DemographicsBatch) ExtensionName() string { return "DemographicsBatch" }

// Validate implements graphql.HandlerExtension.
func (DemographicsBatch) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptResponse implements graphql.ResponseInterceptor.
func (x DemographicsBatch) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	p := auth.From(ctx)
	if !graphql.HasOperationContext(ctx) || p == nil || p.Role != auth.RolePartner {
		// Anyone else is refused demographics by @auth before a resolver runs.
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Query {
		return next(ctx)
	}
	epsilons := demographicsEpsilons(oc)
	if len(epsilons) == 0 {
		return next(ctx)
	}
	b := x.Aggregates.Reserve(ctx, p.PartnerID, epsilons)
	resp := next(demographics.WithBatch(ctx, b))
	delivered := resp != nil && ctx.Err() == nil && len(resp.Data) > 0 && string(resp.Data) != "null"
	if err := b.Settle(ctx, delivered); err != nil && x.Log != nil {
		// The partner was overcharged, never undercharged: log and move on.
		x.Log.ErrorContext(ctx, "demographics refund failed", "err", err)
	}
	return resp
}

// demographicsEpsilons returns the epsilon argument of every demographics
// root field the operation resolves (nil when not given). A value it cannot
// read becomes NaN, which Reserve refuses, so a request is never answered
// with a field the charge did not count.
func demographicsEpsilons(oc *graphql.OperationContext) []*float64 {
	var out []*float64
	for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, []string{"Query"}) {
		if f.Name != "demographics" {
			continue
		}
		out = append(out, epsilonArg(f.Field, oc.Variables))
	}
	return out
}

func epsilonArg(f *ast.Field, vars map[string]any) (eps *float64) {
	nan := math.NaN()
	defer func() {
		// ArgumentMap panics on a value it cannot coerce; validation makes
		// that impossible, but fail closed rather than crash.
		if recover() != nil {
			eps = &nan
		}
	}()
	var v float64
	switch x := f.ArgumentMap(vars)["epsilon"].(type) {
	case nil:
		return nil
	case float64:
		v = x
	case float32:
		v = float64(x)
	case int:
		v = float64(x)
	case int64:
		v = float64(x)
	case json.Number:
		n, err := x.Float64()
		if err != nil {
			return &nan
		}
		v = n
	default:
		return &nan
	}
	return &v
}
