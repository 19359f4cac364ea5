// Package auth holds who is calling: the principal resolved from a session
// token or partner key, carried through the request context.
package auth

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Role is what a principal may do; the schema's @auth directive checks it.
type Role string

const (
	RoleUser    Role = "USER"
	RolePartner Role = "PARTNER"
	RoleAdmin   Role = "ADMIN"
)

// Principal is an authenticated caller.
type Principal struct {
	Role Role
	// UserID is set for USER and ADMIN principals.
	UserID string
	// PartnerID is set for PARTNER principals.
	PartnerID string
	// SessionID is the hashed session token, for logout.
	SessionID string
}

// Satisfies reports whether the principal may use a field that requires role.
// Admins are users too, so they pass USER checks; partners pass only PARTNER.
func (p *Principal) Satisfies(required Role) bool {
	if p == nil {
		return false
	}
	switch required {
	case RoleUser:
		return p.Role == RoleUser || p.Role == RoleAdmin
	default:
		return p.Role == required
	}
}

// IsUser reports whether the principal is a signed-in user (or admin).
func (p *Principal) IsUser() bool { return p.Satisfies(RoleUser) }

// Request is the per-request authentication state. Mutations such as login
// replace the principal mid-request so the fields of their result are
// resolved as the new user, and set the session cookie on the response.
type Request struct {
	mu        sync.Mutex
	principal *Principal
	w         http.ResponseWriter
	secure    bool
	seen      map[string]bool
}

type ctxKey struct{}

// NewRequest attaches authentication state for one HTTP request.
func NewRequest(ctx context.Context, p *Principal, w http.ResponseWriter, secure bool) context.Context {
	return context.WithValue(ctx, ctxKey{}, &Request{principal: p, w: w, secure: secure})
}

func request(ctx context.Context) *Request {
	r, _ := ctx.Value(ctxKey{}).(*Request)
	return r
}

// From returns the caller, or nil when nobody is signed in.
func From(ctx context.Context) *Principal {
	r := request(ctx)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.principal
}

// WithPrincipal returns a context for work done on behalf of p outside an
// HTTP request (background jobs, tests).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return NewRequest(ctx, p, nil, false)
}

// CookieName is the session cookie.
const CookieName = "cg_session"

// SignIn switches the request to p and sets the session cookie.
func SignIn(ctx context.Context, p *Principal, token string, expires time.Time) {
	r := request(ctx)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.principal = p
	if r.w != nil {
		http.SetCookie(r.w, &http.Cookie{
			Name: CookieName, Value: token, Path: "/", Expires: expires,
			HttpOnly: true, Secure: r.secure, SameSite: http.SameSiteLaxMode,
		})
	}
}

// SignOut clears the principal and the session cookie.
func SignOut(ctx context.Context) {
	r := request(ctx)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.principal = nil
	if r.w != nil {
		http.SetCookie(r.w, &http.Cookie{
			Name: CookieName, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: r.secure, SameSite: http.SameSiteLaxMode,
		})
	}
}

// FirstAccessTo reports whether this request touches subject's data for the
// first time, so an admin read is audited once per request, not per field.
func FirstAccessTo(ctx context.Context, subject string) bool {
	r := request(ctx)
	if r == nil {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[subject] {
		return false
	}
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	r.seen[subject] = true
	return true
}

// Actor names the principal for audit entries.
func (p *Principal) Actor() string {
	switch {
	case p == nil:
		return "anonymous"
	case p.PartnerID != "":
		return "partner:" + p.PartnerID
	default:
		return strings.ToLower(string(p.Role)) + ":" + p.UserID
	}
}
