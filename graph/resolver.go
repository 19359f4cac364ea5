// Package graph is the GraphQL layer: thin resolvers that translate between
// the schema and the domain packages in internal/.
package graph

import (
	"github.com/consentgraph/consentgraph/internal/accounts"
)

// Resolver holds the domain services the resolvers call.
type Resolver struct {
	Accounts *accounts.Service
}
