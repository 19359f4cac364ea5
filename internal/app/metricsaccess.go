package app

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"

	"github.com/consentgraph/consentgraph/internal/httpsec"
)

// metricsAccess guards /metrics, which names partners and their spending:
// with CONSENTGRAPH_METRICS_TOKEN set, only a request bearing that token is
// answered; without it, only clients on this machine (loopback, judged
// after trusted proxies, so a proxy on localhost does not open it to all).
func (a *App) metricsAccess(proxies httpsec.Proxies, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(a.cfg.MetricsToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.MetricsToken != "" {
			token, _ := bearerToken(r)
			// Compare digests so the time taken says nothing about the token.
			got := sha256.Sum256([]byte(token))
			if token == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "metrics need Authorization: Bearer <CONSENTGRAPH_METRICS_TOKEN>", "code": "UNAUTHENTICATED"})
				return
			}
		} else if ip := net.ParseIP(proxies.ClientIP(r)); ip == nil || !ip.IsLoopback() {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "metrics are served only to this machine unless CONSENTGRAPH_METRICS_TOKEN is set", "code": "FORBIDDEN"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
