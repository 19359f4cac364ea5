// Package graph is the GraphQL layer: thin resolvers that translate between
// the schema and the domain packages in internal/.
package graph

import (
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/export"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/signing"
)

// Resolver holds the domain services the resolvers call.
type Resolver struct {
	Accounts *accounts.Service
	Consent  *consent.Service
	Signing  *signing.Keyset
	Export   *export.Service
	Audit    *audit.Log

	PartnerAccounts *partners.Service
	Aggregates      *demographics.Service
	// Outbox knows the processors, their work items and disclosures.
	Processing *outbox.Service
	// Operator is who runs the service, as Query.operator tells anyone.
	Operator *model.Operator
}

// SchemaSources returns the schema files compiled into the server, for
// tests that walk the schema exactly as it is served.
func SchemaSources() []*ast.Source { return append([]*ast.Source(nil), sources...) }
