package consent

import (
	"context"
	"net/http"
	"strings"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
)

// GPCHeader carries the Global Privacy Control signal.
const GPCHeader = "Sec-GPC"

// GPCRequested reports whether h carries "Sec-GPC: 1".
func GPCRequested(h http.Header) bool { return strings.TrimSpace(h.Get(GPCHeader)) == "1" }

type gpcKey struct{}

// WithGPC marks ctx as a request that carried the GPC signal.
func WithGPC(ctx context.Context) context.Context { return context.WithValue(ctx, gpcKey{}, true) }

// GPCFrom reports whether the request of ctx carried the GPC signal.
func GPCFrom(ctx context.Context) bool {
	v, _ := ctx.Value(gpcKey{}).(bool)
	return v
}

// HonorGPC is HTTP middleware (inside authentication): a request with
// Sec-GPC: 1 is marked (sign-up reads the mark) and, for a signed-in user,
// records the withdrawals the signal asks for before the request proceeds.
func (s *Service) HonorGPC(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !GPCRequested(r.Header) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := WithGPC(r.Context())
		if p := auth.From(ctx); p.IsUser() {
			if _, err := s.ApplyGPC(ctx, p.UserID); err != nil && apperr.CodeOf(err) != apperr.NotFound {
				s.log.ErrorContext(ctx, "could not record a Global Privacy Control opt-out", "user", p.UserID, "err", err)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"errors":[{"message":"could not record your Global Privacy Control opt-out; try again","extensions":{"code":"INTERNAL"}}]}`))
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
