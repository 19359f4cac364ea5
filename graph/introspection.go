package graph

import (
	"context"
	"math"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// IntrospectionRule is how --dev measures an operation that selects only
// introspection fields (__schema, __type, __typename) at its root: by a
// bound of its own instead of the data limits. The canonical introspection
// query of graphql-js (getIntrospectionQuery) is 15 fields deep through
// its TypeRef fragment, and schema tools (codegen, inspector,
// get-graphql-schema) send it unchanged, so the data limits (--max-depth
// 12 by default) would refuse every one of them. Introspection reads only
// the schema held in memory, so a generous depth and field bound keeps it
// cheap while tools pass.
type IntrospectionRule struct {
	// MaxDepth bounds the nesting of an introspection-only operation.
	MaxDepth int
	// MaxFields bounds its fields, counted as FieldCap counts them.
	MaxFields int
}

// DevIntrospection is the bound --dev applies: far above what any tool
// sends (graphql-js's query is depth 15 and about 100 fields with its
// fragments expanded once), far below what could be expensive.
var DevIntrospection = &IntrospectionRule{MaxDepth: 32, MaxFields: 2000}

// IntrospectionOnly reports whether every root field of op is an
// introspection field. An empty selection is not introspection-only.
func IntrospectionOnly(op *ast.OperationDefinition) bool {
	if op == nil || op.Operation != ast.Query {
		return false
	}
	return onlyIntrospection(op.SelectionSet, 0) == 1
}

// onlyIntrospection is 1 when set holds introspection fields and nothing
// else, 0 when it holds none at all, and -1 when it holds another field.
func onlyIntrospection(set ast.SelectionSet, depth int) int {
	if depth > 64 { // fragments nest; validation has refused cycles
		return -1
	}
	found := 0
	for _, sel := range set {
		r := 0
		switch s := sel.(type) {
		case *ast.Field:
			switch s.Name {
			case "__schema", "__type", "__typename":
				r = 1
			default:
				r = -1
			}
		case *ast.InlineFragment:
			r = onlyIntrospection(s.SelectionSet, depth+1)
		case *ast.FragmentSpread:
			if s.Definition == nil {
				return -1
			}
			r = onlyIntrospection(s.Definition.SelectionSet, depth+1)
		}
		if r < 0 {
			return -1
		}
		if r > 0 {
			found = 1
		}
	}
	return found
}

// introspectionDocument reports whether every operation of doc, a parsed
// but not yet validated document, is introspection-only. Fragment spreads
// are resolved against doc's own fragments.
func introspectionDocument(doc *ast.QueryDocument) bool {
	if len(doc.Operations) == 0 {
		return false
	}
	for _, op := range doc.Operations {
		resolveSpreads(op.SelectionSet, doc, 0)
		if !IntrospectionOnly(op) {
			return false
		}
	}
	return true
}

// resolveSpreads fills in the definitions of the fragment spreads of set,
// which the parser leaves empty and validation fills in later.
func resolveSpreads(set ast.SelectionSet, doc *ast.QueryDocument, depth int) {
	if depth > 64 {
		return
	}
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			resolveSpreads(s.SelectionSet, doc, depth+1)
		case *ast.InlineFragment:
			resolveSpreads(s.SelectionSet, doc, depth+1)
		case *ast.FragmentSpread:
			if s.Definition == nil {
				s.Definition = doc.Fragments.ForName(s.Name)
				if s.Definition != nil {
					resolveSpreads(s.Definition.SelectionSet, doc, depth+1)
				}
			}
		}
	}
}

// ComplexityFor is the complexity limit of an operation: limit for data,
// and no limit for an introspection-only operation when rule is set (its
// depth and fields are bounded by rule instead, in DepthLimit and
// FieldCap). It is the Func of gqlgen's extension.ComplexityLimit.
func ComplexityFor(limit int, rule *IntrospectionRule) func(context.Context, *graphql.OperationContext) int {
	return func(_ context.Context, oc *graphql.OperationContext) int {
		if rule != nil && IntrospectionOnly(oc.Operation) {
			return math.MaxInt
		}
		return limit
	}
}
