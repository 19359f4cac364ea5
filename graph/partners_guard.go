package graph

import (
	"context"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
)

// PartnerGuard confines partner keys to the root fields marked
// @auth(requires: PARTNER): whatever a field's own rule says (sign-up,
// sign-in and `me` are open to anyone), a partner key cannot call it. Partners
// fetch aggregated demographics and nothing else.
type PartnerGuard struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.RootFieldInterceptor
} = PartnerGuard{}

// ExtensionName implements graphql.HandlerExtension.
func (PartnerGuard) ExtensionName() string { return "PartnerGuard" }

// Validate implements graphql.HandlerExtension.
func (PartnerGuard) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptRootField implements graphql.RootFieldInterceptor.
func (PartnerGuard) InterceptRootField(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
	p := auth.From(ctx)
	if p == nil || p.Role != auth.RolePartner {
		return next(ctx)
	}
	fc := graphql.GetRootFieldContext(ctx)
	if fc != nil && fc.Field.Field != nil && (strings.HasPrefix(fc.Field.Name, "__") || RequiredRole(fc.Field.Definition) == auth.RolePartner) {
		return next(ctx)
	}
	graphql.AddError(ctx, apperr.New(apperr.Forbidden, "a partner key can only call the partner fields (demographics, partnerMe)"))
	return graphql.Null
}

// RequiredRole returns the role a field's @auth directive requires, or ""
// when the field has none (anyone may call it).
func RequiredRole(def *ast.FieldDefinition) auth.Role {
	if def == nil {
		return ""
	}
	d := def.Directives.ForName("auth")
	if d == nil {
		return ""
	}
	arg := d.Arguments.ForName("requires")
	if arg == nil || arg.Value == nil {
		return ""
	}
	return auth.Role(arg.Value.Raw)
}
