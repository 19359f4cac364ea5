package telemetry

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// GraphQL is a gqlgen extension making a span per operation (named
// "query Me", after the semantic conventions' "{type} {name}") and a child
// span per resolver call. Only fields with a resolver function get a span:
// a plain struct field is a map lookup, and a span for each would cost more
// than the field. It is written here rather than taken from
// github.com/ravilushqa/otelgqlgen, which records the query text, the
// variables, field arguments and error messages as attributes (personal
// data here) and spans every field.
type GraphQL struct{ Tracer trace.Tracer }

var _ interface {
	graphql.HandlerExtension
	graphql.ResponseInterceptor
	graphql.FieldInterceptor
} = GraphQL{}

// ExtensionName names the extension in gqlgen's list.
func (GraphQL) ExtensionName() string { return "OpenTelemetry" }

// Validate accepts every schema.
func (GraphQL) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptResponse wraps one operation.
func (g GraphQL) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	oc := graphql.GetOperationContext(ctx)
	opType, name := "", oc.OperationName
	if oc.Operation != nil {
		opType = string(oc.Operation.Operation)
		if name == "" {
			name = oc.Operation.Name
		}
	}
	spanName := strings.TrimSpace(opType + " " + name)
	if spanName == "" {
		spanName = "GraphQL operation"
	}
	attrs := make([]attribute.KeyValue, 0, 2)
	if opType != "" {
		attrs = append(attrs, attribute.String("graphql.operation.type", opType))
	}
	if name != "" {
		attrs = append(attrs, attribute.String("graphql.operation.name", name))
	}
	ctx, span := g.Tracer.Start(ctx, spanName, trace.WithAttributes(attrs...))
	defer span.End()
	resp := next(ctx)
	if resp != nil && len(resp.Errors) > 0 {
		var errCodes []string
		for _, e := range resp.Errors {
			if c, ok := e.Extensions["code"].(string); ok && !slices.Contains(errCodes, c) {
				errCodes = append(errCodes, c)
			}
		}
		// The codes only: messages may quote input.
		span.SetAttributes(attribute.StringSlice("graphql.error.codes", errCodes))
		span.SetStatus(codes.Error, strings.Join(errCodes, ","))
	}
	return resp
}

// InterceptField wraps one resolver call.
func (g GraphQL) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	fc := graphql.GetFieldContext(ctx)
	// The parent may have ended: gqlgen resolves a field's children after
	// the field's own resolver returned, in its context, so a nested
	// resolver's span is a child of the (ended) span of the field above.
	if fc == nil || !fc.IsResolver || !inTrace(ctx) {
		return next(ctx)
	}
	object := fc.Object
	ctx, span := g.Tracer.Start(ctx, object+"."+fc.Field.Name, trace.WithAttributes(
		attribute.String("graphql.field.parent", object),
		attribute.String("graphql.field.name", fc.Field.Name),
		attribute.String("graphql.field.path", FieldPath(fc)),
	))
	defer span.End()
	res, err := next(ctx)
	if err != nil {
		code := string(apperr.CodeOf(err))
		if errors.Is(err, context.Canceled) {
			code = "CANCELED"
		}
		span.SetAttributes(attribute.String("error.type", code))
		span.SetStatus(codes.Error, code)
	}
	return res, err
}

// FieldPath is the path of fc by field names, with list indexes collapsed:
// "me.consents[].purpose". It uses names, not gqlgen's response path,
// because that one holds the aliases a client chose, which are free text.
func FieldPath(fc *graphql.FieldContext) string {
	var parts []string
	for c := fc; c != nil; c = c.Parent {
		switch {
		case c.Index != nil:
			parts = append(parts, "[]")
		case c.Field.Field != nil:
			parts = append(parts, c.Field.Name)
		}
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		if parts[i] != "[]" && b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(parts[i])
	}
	return b.String()
}
