package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
)

// AuditFunc records that actor read subject's personal data.
type AuditFunc func(ctx context.Context, subject string) error

// Directives returns the implementations of @auth and @pii; audit is told
// about every admin read of someone else's personal data.
func Directives(audit AuditFunc) DirectiveRoot {
	return DirectiveRoot{Auth: authDirective, Pii: piiDirective(audit)}
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
func piiDirective(audit AuditFunc) func(ctx context.Context, obj any, next graphql.Resolver) (any, error) {
	return func(ctx context.Context, obj any, next graphql.Resolver) (any, error) {
		p := auth.From(ctx)
		owned, ok := obj.(model.Owned)
		if !ok {
			return nil, apperr.New(apperr.Forbidden, "personal data is not available here")
		}
		if p == nil {
			return nil, apperr.New(apperr.Unauthenticated, "sign in first")
		}
		own := p.IsUser() && p.UserID == owned.OwnerID()
		if !own && p.Role != auth.RoleAdmin {
			return nil, apperr.New(apperr.Forbidden, "this personal data belongs to someone else")
		}
		if !own && auth.FirstAccessTo(ctx, owned.OwnerID()) {
			// No audit entry, no data: an admin read must leave a trace.
			if err := audit(ctx, owned.OwnerID()); err != nil {
				return nil, err
			}
		}
		return next(ctx)
	}
}
