package app

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/consentgraph/consentgraph/graph"
	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/httpsec"
	"github.com/consentgraph/consentgraph/internal/ratelimit"
)

// The abuse limits of the GraphQL API. Every mutation field of a request
// (aliases and fragments included, so `a: grantConsent … b: grantConsent`
// costs two) takes a token from the caller IP's bucket and, when signed in,
// from the account's; register and login also take from a stricter per-IP
// bucket; every request of a partner key takes from the partner's bucket.
// Failed logins back off exponentially per account and per IP.
//
// The buckets are in memory (each limiter remembers at most limiterKeys
// keys); the per-minute limits also hold across replicas through counters
// in the store, synced in the background (ratelimit.Shared), so the request
// path never waits on the store for them.
//
// gqlgen serves one operation per HTTP request (no batching), so a request
// is an operation; mutations in one operation are counted one by one.

const limiterKeys = 100_000

type abuseGuard struct {
	on                bool
	proxies           httpsec.Proxies
	mutIP, mutAccount *ratelimit.Limiter
	authIP, partner   *ratelimit.Limiter
	failAccount       *ratelimit.Backoff
	failIP            *ratelimit.Backoff
}

func newAbuseGuard(cfg config.Config, shared *ratelimit.Shared) *abuseGuard {
	proxies, _ := httpsec.ParseProxies(cfg.TrustedProxies) // validated by config
	if !cfg.RateLimits {
		return &abuseGuard{proxies: proxies}
	}
	burst := func(perMinute int) int { return max(perMinute/2, 5) }
	g := &abuseGuard{
		proxies:    proxies,
		on:         true,
		mutIP:      ratelimit.NewLimiter(cfg.MutationsPerMinute, burst(cfg.MutationsPerMinute), limiterKeys),
		mutAccount: ratelimit.NewLimiter(cfg.MutationsPerMinute, burst(cfg.MutationsPerMinute), limiterKeys),
		authIP:     ratelimit.NewLimiter(cfg.AuthPerMinute, burst(cfg.AuthPerMinute), limiterKeys),
		partner:    ratelimit.NewLimiter(cfg.PartnerPerMinute, burst(cfg.PartnerPerMinute), limiterKeys),
		// Per account: 3 free failures, then 1s, 2s, 4s … at most 30s, so a
		// victim is never kept out for more than half a minute.
		failAccount: ratelimit.NewBackoff(3, time.Second, 30*time.Second, 15*time.Minute, limiterKeys),
		// Per IP: more room for a shared NAT, but up to 5 minutes.
		failIP: ratelimit.NewBackoff(10, time.Second, 5*time.Minute, 30*time.Minute, limiterKeys),
	}
	if shared != nil {
		g.mutIP.ShareAs(shared, "mutation-ip")
		g.mutAccount.ShareAs(shared, "mutation-account")
		g.authIP.ShareAs(shared, "auth-ip")
		g.partner.ShareAs(shared, "partner")
	}
	return g
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
	graphql.FieldInterceptor
} = (*abuseGuard)(nil)

func (g *abuseGuard) ExtensionName() string                   { return "AbuseLimits" }
func (g *abuseGuard) Validate(graphql.ExecutableSchema) error { return nil }
func (g *abuseGuard) String() string                          { return fmt.Sprintf("abuse limits on=%v", g.on) }
func rateLimited(msg string, d time.Duration) *apperr.Error {
	return &apperr.Error{Code: apperr.RateLimited, Message: msg, RetryAfter: d}
}
func retrySeconds(d time.Duration) int { return int(d.Seconds() + 0.999) }
func (g *abuseGuard) fail(ctx context.Context, msg string, d time.Duration) *gqlerror.Error {
	holdRefusal(ctx) // see cost.go
	setRetryAfter(ctx, d)
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{
		"code": string(apperr.RateLimited), "retryAfterSeconds": retrySeconds(d)}}
}

// MutateOperationContext charges the operation to its buckets before it runs.
func (g *abuseGuard) MutateOperationContext(ctx context.Context, rc *graphql.OperationContext) *gqlerror.Error {
	if !g.on || rc.Operation == nil {
		return nil
	}
	c := clientFrom(ctx)
	p := auth.From(ctx)
	if p != nil && p.Role == auth.RolePartner {
		if d := g.partner.Take(p.PartnerID, 1); d > 0 {
			return g.fail(ctx, "this partner key sends too many requests; slow down", d)
		}
	}
	if rc.Operation.Operation != ast.Mutation || c.method == http.MethodGet {
		return nil // a mutation over GET is refused by the transport, uncharged
	}
	total, authOps := countMutations(rc.Doc, rc.Operation.SelectionSet, 0)
	if total > g.mutIP.Burst() {
		return g.fail(ctx, fmt.Sprintf("at most %d mutations in one request", g.mutIP.Burst()), time.Minute)
	}
	if d := g.mutIP.Take(c.ip, total); d > 0 {
		return g.fail(ctx, "too many changes from your network; slow down", d)
	}
	if p != nil && p.UserID != "" {
		if d := g.mutAccount.Take(p.UserID, total); d > 0 {
			return g.fail(ctx, "too many changes to this account; slow down", d)
		}
	}
	if authOps > 0 {
		if d := g.authIP.Take(c.ip, authOps); d > 0 {
			return g.fail(ctx, "too many sign-ups or sign-ins from your network; slow down", d)
		}
	}
	return nil
}

// countMutations counts the root fields of a mutation, following fragments,
// and how many of them are register or login.
func countMutations(doc *ast.QueryDocument, set ast.SelectionSet, depth int) (total, authOps int) {
	if depth > 10 {
		return 0, 0
	}
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "__typename" {
				continue
			}
			total++
			if s.Name == "register" || s.Name == "login" {
				authOps++
			}
		case *ast.InlineFragment:
			t, a := countMutations(doc, s.SelectionSet, depth+1)
			total, authOps = total+t, authOps+a
		case *ast.FragmentSpread:
			if f := doc.Fragments.ForName(s.Name); f != nil {
				t, a := countMutations(doc, f.SelectionSet, depth+1)
				total, authOps = total+t, authOps+a
			}
		}
	}
	return total, authOps
}

// InterceptField applies the failed-login back-off around Mutation.login,
// and gives any RATE_LIMITED answer of a resolver (the per-account password
// back-off, say) its Retry-After header.
func (g *abuseGuard) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	res, err := g.interceptLogin(ctx, next)
	var ae *apperr.Error
	if errors.As(err, &ae) && ae.Code == apperr.RateLimited && ae.RetryAfter > 0 {
		setRetryAfter(ctx, ae.RetryAfter)
	}
	return res, err
}

// interceptLogin: the account key is the normalized username whether or not
// it exists, so the limit reveals nothing about which usernames are taken.
func (g *abuseGuard) interceptLogin(ctx context.Context, next graphql.Resolver) (any, error) {
	if !g.on {
		return next(ctx)
	}
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Object != "Mutation" || fc.Field.Name != "login" {
		return next(ctx)
	}
	name, _ := fc.Args["username"].(string)
	key, err := accounts.NormalizeUsername("username", name)
	if err != nil {
		key = "invalid:" + strings.ToLower(name[:min(len(name), 64)])
	}
	ip := clientFrom(ctx).ip
	if d := max(g.failAccount.Wait(key), g.failIP.Wait(ip)); d > 0 {
		setRetryAfter(ctx, d)
		return nil, rateLimited("too many failed sign-ins; wait before trying again", d)
	}
	res, err := next(ctx)
	switch {
	case err == nil:
		g.failAccount.Reset(key)
	case apperr.CodeOf(err) == apperr.Unauthenticated:
		g.failAccount.Fail(key)
		g.failIP.Fail(ip)
	}
	return res, err
}

type clientKey struct{}

type clientInfo struct {
	ip     string
	method string
	header http.Header
}

func clientFrom(ctx context.Context) clientInfo {
	c, _ := ctx.Value(clientKey{}).(clientInfo)
	return c
}

func setRetryAfter(ctx context.Context, d time.Duration) {
	if h := clientFrom(ctx).header; h != nil {
		h.Set("Retry-After", strconv.Itoa(retrySeconds(d)))
	}
}

// bind records the caller's address for the limits and brings gqlgen's
// answers in line with the GraphQL-over-HTTP specification: a mutation sent
// with GET gets 405 Method Not Allowed with an Allow header (gqlgen: 406),
// other methods 405 too, a POST body that is not JSON 415, and a parse or
// validation error answered as application/json 200 (gqlgen: 422; with
// application/graphql-response+json gqlgen already answers 400).
//
// The IP is the TCP peer, or behind a trusted reverse proxy the client it
// names in X-Forwarded-For.
func (g *abuseGuard) bind(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := g.proxies.ClientIP(r)
		if parsed := net.ParseIP(ip); parsed != nil && parsed.To4() == nil {
			// One IPv6 user usually holds a whole /64.
			ip = parsed.Mask(net.CIDRMask(64, 128)).String() + "/64"
		}
		switch r.Method {
		case http.MethodGet, http.MethodPost, http.MethodOptions:
		default:
			w.Header().Set("Allow", "GET, POST")
			writeGraphQLError(w, http.StatusMethodNotAllowed, "BAD_REQUEST", "use GET for queries and POST for anything")
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("Upgrade") == "" {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				writeGraphQLError(w, http.StatusUnsupportedMediaType, "BAD_REQUEST", "send the request as Content-Type: application/json")
				return
			}
		}
		if err := graph.CheckParams(r); err != nil {
			writeGraphQLError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
			return
		}
		ctx := context.WithValue(r.Context(), clientKey{}, clientInfo{ip: ip, method: r.Method, header: w.Header()})
		next.ServeHTTP(&specWriter{ResponseWriter: w, get: r.Method == http.MethodGet, anonymous: auth.From(ctx) == nil}, r.WithContext(ctx))
	})
}

type specWriter struct {
	http.ResponseWriter
	get       bool
	anonymous bool
	wrote     bool
	// requestError: gqlgen answered a parse or validation failure, whose
	// body must not hold a data entry.
	requestError bool
}

func (w *specWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.requestError {
		if _, err := w.ResponseWriter.Write(withoutData(b)); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *specWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	ct := w.Header().Get("Content-Type")
	// gqlgen answers a document that does not parse or validate with 422
	// (application/json) or 400 (application/graphql-response+json).
	w.requestError = (code == http.StatusUnprocessableEntity || code == http.StatusBadRequest) &&
		(strings.HasPrefix(ct, "application/json") || strings.HasPrefix(ct, "application/graphql-response+json"))
	if w.requestError {
		w.Header().Del("Content-Length")
	}
	switch {
	case w.get && code == http.StatusNotAcceptable:
		w.Header().Set("Allow", "POST")
		code = http.StatusMethodNotAllowed
	case code == http.StatusUnprocessableEntity && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json"):
		code = http.StatusOK
	}
	// Anonymous GET queries (policy, purposes) are the same for everyone
	// who reads the same language, and may be cached; anything tied to a
	// caller must not be.
	h := w.Header()
	if w.get && code == http.StatusOK && w.anonymous {
		h.Set("Cache-Control", "public, max-age=60")
		h.Add("Vary", "Accept, Accept-Language, Authorization, Cookie")
	} else if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	w.ResponseWriter.WriteHeader(code)
}
