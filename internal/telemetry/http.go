package telemetry

import (
	"context"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// untraced are probes and scrapes: a span each would bury the requests
// people look for.
var untraced = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// routes are the fixed paths a span may be named after; any other path
// (the pages, plugin callbacks that may carry a token in the path) is
// named by its method alone, as the HTTP conventions allow.
var routes = map[string]bool{"/graphql": true, "/export": true, "/.well-known/jwks.json": true}

// HTTP wraps next in a server span per request, continuing the caller's
// W3C trace context when it sends one. Attributes are the method, the route
// when it is one of the fixed ones, and the status code: never the URL
// query, the client address or the user agent.
func HTTP(tracer trace.Tracer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if untraced[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		name := r.Method
		attrs := []attribute.KeyValue{attribute.String("http.request.method", r.Method)}
		if routes[r.URL.Path] {
			name += " " + r.URL.Path
			attrs = append(attrs, attribute.String("http.route", r.URL.Path))
		}
		ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		defer span.End()
		rec := &status{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(ctx))
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 500 {
			span.SetStatus(codes.Error, "")
		}
	})
}

type status struct {
	http.ResponseWriter
	code int
}

func (s *status) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer (flushes,
// deadlines).
func (s *status) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// LogHandler adds trace_id and span_id to every record logged with a
// context inside a span, so a log line leads to its trace and back.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (l logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return l.Handler.Handle(ctx, r)
}

func (l logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{l.Handler.WithAttrs(as)}
}
func (l logHandler) WithGroup(name string) slog.Handler { return logHandler{l.Handler.WithGroup(name)} }
