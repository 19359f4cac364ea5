package i18n

import (
	"context"
	"net/http"
)

type langKey struct{}

// WithLanguage returns ctx carrying the language of the request it serves.
func WithLanguage(ctx context.Context, lang string) context.Context {
	return context.WithValue(ctx, langKey{}, lang)
}

// FromContext returns the language WithLanguage stored, or "" when none
// was: callers then choose their own fallback (e.g. a profile language).
func FromContext(ctx context.Context) string {
	lang, _ := ctx.Value(langKey{}).(string)
	return lang
}

// Middleware stores the language negotiated from the request's
// Accept-Language header in the request context, so resolvers, receipts
// and mails triggered by the request know it. The pages send the
// reader's chosen language in that header with every GraphQL request. A
// request without the header carries no language, so that callers can
// tell "asked for English" from "did not say".
func (b *Bundle) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if accept := r.Header.Get("Accept-Language"); accept != "" {
			r = r.WithContext(WithLanguage(r.Context(), b.Negotiate(accept)))
		}
		next.ServeHTTP(w, r)
	})
}
