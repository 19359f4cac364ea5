package graph

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// Protocol-level codes, beside the domain codes of package apperr and
// gqlgen's GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED and
// COMPLEXITY_LIMIT_EXCEEDED.
const (
	CodeBadRequest      = "BAD_REQUEST"
	CodePayloadTooLarge = "PAYLOAD_TOO_LARGE"
	CodeDepthExceeded   = "DEPTH_LIMIT_EXCEEDED"
)

// RequestIDFunc returns the current request's id, for error responses.
type RequestIDFunc func(ctx context.Context) string

// ErrorPresenter turns errors into GraphQL errors with a stable
// extensions.code. Domain errors keep their message; anything unexpected is
// logged in full and shown only as INTERNAL with the request id.
func ErrorPresenter(log *slog.Logger, requestID RequestIDFunc) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gerr := graphql.DefaultErrorPresenter(ctx, err)
		if ae, ok := apperr.As(err); ok && ae.Code != apperr.Internal {
			gerr.Message = ae.Message
			ext := map[string]any{"code": string(ae.Code)}
			if ae.Field != "" {
				ext["field"] = ae.Field
			}
			if ae.RetryAfter > 0 {
				ext["retryAfterSeconds"] = int(ae.RetryAfter.Seconds() + 0.999)
			}
			gerr.Extensions = ext
			return gerr
		}
		var ge *gqlerror.Error
		if errors.As(err, &ge) {
			if ge.Extensions != nil && ge.Extensions["code"] != nil {
				// Parse, validation and complexity errors from gqlgen itself.
				return gerr
			}
			if graphql.GetFieldContext(ctx) == nil {
				// A request-level error from the transport (e.g. a body that is not
				// a GraphQL request); never echo the body, it may hold a password.
				msg := gerr.Message
				if i := strings.Index(msg, " body:"); i >= 0 {
					msg = msg[:i]
				}
				gerr.Message = msg
				gerr.Extensions = map[string]any{"code": CodeBadRequest}
				return gerr
			}
		}
		id := requestID(ctx)
		level := slog.LevelError
		if errors.Is(err, context.Canceled) {
			level = slog.LevelDebug // the client went away; not a fault of ours
		}
		log.Log(ctx, level, "internal error", "err", err, "path", gerr.Path.String(), "request_id", id)
		gerr.Message = "internal error; quote request id " + id + " when reporting it"
		gerr.Extensions = map[string]any{"code": string(apperr.Internal), "requestId": id}
		return gerr
	}
}

// Recover turns a panic in a resolver into a masked internal error.
func Recover(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in resolver", "panic", p)
		return errors.New("panic in resolver")
	}
}
