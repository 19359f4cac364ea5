package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
)

// Directives returns the implementations of @auth and @pii.
func Directives() DirectiveRoot {
	return DirectiveRoot{Auth: authDirective, Pii: piiDirective}
}

func authDirective(ctx context.Context, _ any, next graphql.Resolver, requires model.Role) (any, error) {
	p := auth.From(ctx)
	if p == nil {
		return nil, apperr.New(apperr.Unauthenticated, "sign in first")
	}
	if !p.Satisfies(auth.Role(requires)) {
		return nil, apperr.New(apperr.Forbidden, "this needs the %s role", requires)
	}
	return next(ctx)
}

// piiDirective lets personal data through only to its owner or an admin.
// Resolvers only ever hand out the caller's own objects; this is the second
// line of defence, and it fails closed for types that forget to say whose
// data they hold.
func piiDirective(ctx context.Context, obj any, next graphql.Resolver) (any, error) {
	p := auth.From(ctx)
	owned, ok := obj.(model.Owned)
	if !ok {
		return nil, apperr.New(apperr.Forbidden, "personal data is not available here")
	}
	if p == nil {
		return nil, apperr.New(apperr.Unauthenticated, "sign in first")
	}
	if p.Role != auth.RoleAdmin && (!p.IsUser() || p.UserID != owned.OwnerID()) {
		return nil, apperr.New(apperr.Forbidden, "this personal data belongs to someone else")
	}
	return next(ctx)
}
