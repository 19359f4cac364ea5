// Package httpsec holds the HTTP security policy of the server in one place:
// the headers every response carries, the stricter Content-Security-Policy
// of the web pages, and the TLS configuration.
package httpsec

import (
	"net/http"
)

// APICSP is the policy of every response that is not a page: nothing may be
// loaded, run or framed from it.
const APICSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// PageCSP is the policy of the web pages: scripts, styles, fonts and API
// calls only from this origin (no inline script, no eval), images from this
// origin or data: URLs, and no framing.
const PageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// HSTS is sent on every response that reached the user over HTTPS (see Secure).
const HSTS = "max-age=63072000; includeSubDomains"

// Headers sets the security headers on every response before next runs, so
// even errors written by next carry them. Handlers of pages wrap themselves
// in Page, which replaces the policy with PageCSP.
func Headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		h.Set("Content-Security-Policy", APICSP)
		if Secure(r) {
			h.Set("Strict-Transport-Security", HSTS)
		}
		next.ServeHTTP(w, r)
	})
}

// Page marks next as serving web pages: it gets PageCSP instead of APICSP
// (and every header of Headers, should it be mounted outside of it).
func Page(next http.Handler) http.Handler {
	return Headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetPageHeaders(w)
		next.ServeHTTP(w, r)
	}))
}

// SetPageHeaders switches a response to the policy of the pages.
func SetPageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", PageCSP)
}
