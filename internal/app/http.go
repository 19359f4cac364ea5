package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/rs/cors"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/graph"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/httpsec"
	"github.com/consentgraph/consentgraph/internal/metrics"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
	"github.com/consentgraph/consentgraph/internal/telemetry"
	"github.com/consentgraph/consentgraph/web"
)

func (a *App) routes() http.Handler {
	proxies, _ := httpsec.ParseProxies(a.cfg.TrustedProxies) // validated by config
	mux := http.NewServeMux()
	var api http.Handler = a.graphqlHandler()
	if a.cfg.Dev {
		api = a.devRoutes(mux, api)
	}
	mux.Handle("/graphql", api)
	mux.Handle("GET /.well-known/jwks.json", a.Signing.Handler())
	a.ConsentLog.Routes(mux) // GET /.well-known/consent-log/{checkpoint,consistency}
	mux.Handle("/plugins/", a.pluginRoutes())
	mux.Handle("GET /export", a.authenticate(http.HandlerFunc(a.serveExport)))
	mux.HandleFunc("GET /privacy", a.servePrivacy)
	mux.HandleFunc("GET "+BrandCSSPath, a.brandCSS())
	web.Routes(mux) // the Privacy Center at /, the partner console at /partners
	// The consent widget for the operator's own site, /embed/consent.js.
	web.WidgetRoutes(mux)
	mux.Handle("GET /metrics", a.metricsAccess(proxies, a.Metrics.Handler()))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.Store.Ping(ctx); err != nil {
			a.log.WarnContext(r.Context(), "not ready: store does not answer", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "store unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	// Every handler knows the reader's language (Accept-Language): the
	// API's texts, receipts, mails and the policy page.
	var h http.Handler = a.File.Texts.Middleware(mux)
	// An external logo: the pages' CSP allows its origin for images only.
	h = httpsec.AllowPageImages(a.File.Branding.LogoOrigin(), h)
	if len(a.cfg.CORSOrigins) > 0 {
		h = cors.New(cors.Options{
			AllowedOrigins: a.cfg.CORSOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodPost},
			AllowedHeaders: append([]string{"Authorization", "Content-Type", "Accept", "Accept-Language"}, a.cfg.CORSHeaders...),
			// Scripts on allowed origins may read what users are told to
			// quote (the request id) and when to try again.
			ExposedHeaders:   []string{"X-Request-Id", "Retry-After"},
			AllowCredentials: true,
			MaxAge:           600,
		}).Handler(h)
	}
	scheme := httpsec.Scheme{PublicHTTPS: strings.HasPrefix(a.cfg.PublicURL, "https://"), Proxies: proxies}
	return scheme.Mark(httpsec.Headers(a.withRequestID(a.withLogging(h))))
}

func (a *App) graphqlHandler() http.Handler {
	srv := handler.New(graph.NewExecutableSchema(graph.Config{
		Resolvers: &graph.Resolver{Accounts: a.Accounts, Consent: a.Consent, Signing: a.Signing, Export: a.Export, Audit: a.Audit,
			PartnerAccounts: a.Partners, Aggregates: a.Demographics, Processing: a.Outbox,
			Operator: graph.OperatorModel(a.File.Branding, a.File.Controller)},
		Complexity: graph.Costs(),
		Directives: graph.Directives(func(ctx context.Context, subject string) error {
			return a.Audit.Append(ctx, auth.From(ctx).Actor(), "admin_read_pii", subject, "")
		}),
	}))
	graph.UseRequestLimits(srv, graph.RequestLimits{MaxFields: a.cfg.MaxFields, MaxDepth: a.cfg.MaxDepth,
		MaxComplexity: a.cfg.MaxComplexity, ParserTokens: parserTokens, CacheSize: 1000, Dev: a.cfg.Dev})
	srv.Use(a.Metrics.GraphQL())
	if a.tracer != nil { // OpenTelemetry: operation and resolver spans
		srv.Use(telemetry.GraphQL{Tracer: a.tracer})
	}
	srv.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		if oc := graphql.GetOperationContext(ctx); oc.Operation != nil && oc.Operation.Operation == ast.Query {
			ctx = storectx.WithReadMemo(ctx)
		}
		return next(ctx)
	})
	srv.Use(graph.PartnerGuard{})
	guard := newAbuseGuard(a.cfg, a.rateShare)
	srv.Use(guard)
	srv.Use(newCostGuard(a.cfg, a.rateShare))
	srv.Use(&graph.InputLimits{})
	// Last: a partner's epsilon is charged only for a request every limit
	// above let through.
	srv.Use(graph.DemographicsBatch{Aggregates: a.Demographics, Log: a.log})
	srv.SetErrorPresenter(graph.ErrorPresenter(a.log, RequestID))
	srv.SetRecoverFunc(graph.Recover(a.log))
	return a.limitBody(a.authenticate(http.TimeoutHandler(a.Consent.HonorGPC(guard.bind(srv)), a.cfg.RequestTimeout, timeoutBody)))
}

// parserTokens bounds the tokens of one query document. The Privacy
// Center's largest query has about 150; a 64 KiB body of aliases about
// 25,000. The field cap (--max-fields) is the precise limit; this is the
// backstop of the parser itself.
const parserTokens = 10_000

var timeoutBody = `{"errors":[{"message":"request took too long","extensions":{"code":"INTERNAL"}}]}`

// limitBody refuses bodies over the configured size before anything parses them.
func (a *App) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Method == http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, a.cfg.MaxBodyBytes+1))
		if err != nil {
			writeGraphQLError(w, http.StatusBadRequest, graph.CodeBadRequest, "could not read the request body")
			return
		}
		if int64(len(body)) > a.cfg.MaxBodyBytes {
			writeGraphQLError(w, http.StatusRequestEntityTooLarge, graph.CodePayloadTooLarge,
				"request body is larger than the limit of "+itoa(a.cfg.MaxBodyBytes)+" bytes")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// bearerToken is the token of an "Authorization: Bearer" header; ok
// reports whether the request has one (then a cookie does not count).
func bearerToken(r *http.Request) (token string, ok bool) {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

// authenticate resolves the Bearer token or session cookie into a principal.
// An unknown or expired token makes the caller anonymous rather than failing
// the request, so `me` answers null as documented.
func (a *App) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, bearer := bearerToken(r)
		if c, err := r.Cookie(auth.CookieName); !bearer && err == nil {
			token = c.Value
		}
		var p *auth.Principal
		if token != "" {
			var err error
			if partners.IsKey(token) {
				p, err = a.Partners.Authenticate(r.Context(), token)
			} else {
				p, err = a.Accounts.Authenticate(r.Context(), token)
			}
			if err != nil {
				a.log.ErrorContext(r.Context(), "session lookup failed", "err", err, "request_id", RequestID(r.Context()))
				writeGraphQLError(w, http.StatusServiceUnavailable, "INTERNAL", "session lookup failed; quote request id "+RequestID(r.Context()))
				return
			}
		}
		ctx := auth.NewRequest(r.Context(), p, w, httpsec.Secure(r))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

type requestIDKey struct{}

// RequestID returns the id of the request ctx belongs to.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func (a *App) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		w.Header().Set("X-Request-Id", id)
		ctx := metrics.WithRoundTrips(context.WithValue(r.Context(), requestIDKey{}, id))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (a *App) withLogging(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		level := slog.LevelDebug
		if rec.status >= 500 {
			level = slog.LevelWarn
		}
		a.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "duration_ms", time.Since(start).Milliseconds(), "request_id", RequestID(r.Context()))
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeGraphQLError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]any{{"message": msg, "extensions": map[string]any{"code": code}}}})
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
