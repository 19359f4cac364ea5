package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
)

// RequestLimits says how a GraphQL handler reads requests and what it lets
// through to execution.
type RequestLimits struct {
	MaxFields, MaxDepth, MaxComplexity int
	// ParserTokens bounds the lexer (gqlparser's token limit and FieldCap's).
	ParserTokens int
	// CacheSize is the size of the parsed-query and persisted-query caches.
	CacheSize int
	// Dev turns introspection on, measured by its own rule
	// (DevIntrospection), and field suggestions in errors.
	Dev bool
}

// UseRequestLimits installs on srv, in the order they depend on, the GET
// and POST transports, the query cache, automatic persisted queries and
// every limit checked before execution. The server and the request fuzz
// target both build on it, so what is fuzzed is what is served.
func UseRequestLimits(srv *handler.Server, l RequestLimits) {
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	queries := lru.New[*ast.QueryDocument](l.CacheSize)
	srv.SetQueryCache(queries)
	srv.SetParserTokenLimit(l.ParserTokens)
	// Automatic persisted queries: a client may send only the query's SHA-256
	// (also with GET, so browsers and CDNs can cache anonymous queries).
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](l.CacheSize)})
	// After APQ, which may have filled in the query; before validation.
	// In --dev, introspection-only operations are measured by their own
	// rule, so schema tools' standard query passes the data limits.
	var introspection *IntrospectionRule
	if l.Dev {
		introspection = DevIntrospection
	}
	srv.Use(FieldCap{Max: l.MaxFields, Tokens: l.ParserTokens, Introspection: introspection,
		Cached: func(ctx context.Context, q string) bool {
			_, ok := queries.Get(ctx, q)
			return ok
		}})
	if l.Dev {
		srv.Use(extension.Introspection{})
	} else {
		srv.Use(NoIntrospection{})
	}
	srv.SetDisableSuggestion(!l.Dev)
	// The cost model is Costs; budgets per caller are charged by the
	// server's own guards after these.
	srv.Use(&extension.ComplexityLimit{Func: ComplexityFor(l.MaxComplexity, introspection)})
	srv.Use(DepthLimit{Max: l.MaxDepth, Introspection: introspection})
}
