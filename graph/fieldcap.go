package graph

import (
	"context"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
)

// CodeQueryTooLarge answers a document with more fields than the cap.
const CodeQueryTooLarge = "QUERY_TOO_LARGE"

// FieldCap refuses a document with more than Max fields (aliases, and
// fields reached through fragment spreads, each counted where they are
// used) before gqlgen validates it. Validation is the expensive step for a
// large document — some of its rules compare fields pairwise, so 4000
// aliases of `policy { version }` in a 64 KiB body cost seconds of CPU —
// while parsing and counting cost about as much as reading the body.
//
// A document already in the query cache was counted when it was first
// seen, so it is not parsed again. Parsing stops after Tokens tokens, which
// no legitimate query comes near; the executor has the same token limit as
// a backstop.
type FieldCap struct {
	Max    int
	Tokens int
	// Cached reports whether the executor already holds query, parsed and
	// validated.
	Cached func(ctx context.Context, query string) bool
	// Introspection, set in --dev, bounds a document whose operations
	// select only introspection fields instead of Max.
	Introspection *IntrospectionRule
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = FieldCap{}

// ExtensionName implements graphql.HandlerExtension.
func (FieldCap) ExtensionName() string { return "FieldCap" }

// Validate implements graphql.HandlerExtension.
func (FieldCap) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationParameters implements graphql.OperationParameterMutator.
func (f FieldCap) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	if p.Query == "" || (f.Cached != nil && f.Cached(ctx, p.Query)) {
		return nil
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: p.Query}, f.Tokens)
	if err != nil {
		if strings.Contains(err.Error(), "exceeded token limit") {
			return f.tooLarge(f.Max)
		}
		// The executor parses again and reports the syntax error as usual.
		return nil
	}
	limit := f.Max
	if f.Introspection != nil && introspectionDocument(doc) {
		limit = max(f.Max, f.Introspection.MaxFields)
	}
	if CountFields(doc, limit) > limit {
		return f.tooLarge(limit)
	}
	return nil
}

func (f FieldCap) tooLarge(limit int) *gqlerror.Error {
	return &gqlerror.Error{
		Message:    "the query has too many fields; at most " + strconv.Itoa(limit) + " are accepted",
		Extensions: map[string]any{"code": CodeQueryTooLarge, "maxFields": limit},
	}
}

// CountFields counts the fields of doc as validation sees them: every
// operation with its fragment spreads expanded (a fragment's count is
// computed once and reused, so a fragment bomb costs its size to count,
// not its expansion), plus the fragments themselves. It stops as soon as
// the count passes limit, and then returns a number above limit.
func CountFields(doc *ast.QueryDocument, limit int) int {
	defs := make(map[string]*ast.FragmentDefinition, len(doc.Fragments))
	for _, f := range doc.Fragments {
		defs[f.Name] = f
	}
	const visiting = -1
	memo := make(map[string]int, len(defs))
	var fragment func(name string) int
	var set func(ss ast.SelectionSet) int
	set = func(ss ast.SelectionSet) int {
		n := 0
		for _, sel := range ss {
			switch s := sel.(type) {
			case *ast.Field:
				n += 1 + set(s.SelectionSet)
			case *ast.InlineFragment:
				n += set(s.SelectionSet)
			case *ast.FragmentSpread:
				n += fragment(s.Name)
			}
			if n > limit {
				return n
			}
		}
		return n
	}
	fragment = func(name string) int {
		if v, ok := memo[name]; ok {
			if v == visiting {
				return 0 // a cycle: validation refuses it cheaply
			}
			return v
		}
		def := defs[name]
		if def == nil {
			return 0 // unknown: validation refuses it
		}
		memo[name] = visiting
		v := set(def.SelectionSet)
		memo[name] = v
		return v
	}
	total := 0
	for _, op := range doc.Operations {
		if total += set(op.SelectionSet); total > limit {
			return total
		}
	}
	for _, f := range doc.Fragments {
		if total += fragment(f.Name); total > limit {
			return total
		}
	}
	return total
}
