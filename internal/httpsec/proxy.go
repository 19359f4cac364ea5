package httpsec

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Proxies are the reverse proxies (load balancers, TLS terminators) whose
// forwarding headers are believed. Headers from anyone else are written by
// the client and are ignored.
type Proxies struct {
	nets []*net.IPNet
}

// ParseProxies reads CIDRs like 10.0.0.0/8.
func ParseProxies(cidrs []string) (Proxies, error) {
	var p Proxies
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(strings.TrimSpace(c))
		if err != nil {
			return Proxies{}, fmt.Errorf("trusted proxy %q is not a CIDR like 10.0.0.0/8: %w", c, err)
		}
		p.nets = append(p.nets, n)
	}
	return p, nil
}

// Trusts reports whether ip is one of the proxies.
func (p Proxies) Trusts(ip string) bool {
	parsed := net.ParseIP(ip)
	if parsed == nil {
		return false
	}
	for _, n := range p.nets {
		if n.Contains(parsed) {
			return true
		}
	}
	return false
}

// fromProxy reports whether the TCP peer of r is a trusted proxy, and the peer.
func (p Proxies) fromProxy(r *http.Request) (string, bool) {
	peer, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		peer = r.RemoteAddr
	}
	return peer, p.Trusts(peer)
}

// ClientIP is the TCP peer, unless that peer is a trusted proxy: then the
// rightmost X-Forwarded-For hop that is not itself a trusted proxy. Hops
// further left are written by the client and cannot be believed.
func (p Proxies) ClientIP(r *http.Request) string {
	peer, trusted := p.fromProxy(r)
	if !trusted {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if net.ParseIP(hop) == nil {
			break
		}
		if !p.Trusts(hop) {
			return hop
		}
	}
	return peer
}

// forwardedHTTPS reports whether a trusted proxy says the client reached it
// over HTTPS. The proxy nearest to us writes the rightmost value of
// X-Forwarded-Proto; values further left may come from the client.
func (p Proxies) forwardedHTTPS(r *http.Request) bool {
	if _, trusted := p.fromProxy(r); !trusted {
		return false
	}
	values := strings.Split(strings.Join(r.Header.Values("X-Forwarded-Proto"), ","), ",")
	return strings.EqualFold(strings.TrimSpace(values[len(values)-1]), "https")
}

// Scheme decides whether a request reached the user over HTTPS: served
// over TLS here, or the operator says users always use HTTPS (a public URL
// starting with https://), or a trusted proxy says so in
// X-Forwarded-Proto. Only then do cookies get Secure and responses HSTS.
type Scheme struct {
	// PublicHTTPS: users reach the server at an https:// URL.
	PublicHTTPS bool
	Proxies     Proxies
}

type httpsKey struct{}

// Mark records Scheme's verdict in each request's context for Secure.
func (s Scheme) Mark(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil && (s.PublicHTTPS || s.Proxies.forwardedHTTPS(r)) {
			r = r.WithContext(context.WithValue(r.Context(), httpsKey{}, true))
		}
		next.ServeHTTP(w, r)
	})
}

// Secure reports whether r reached the user over HTTPS (see Scheme).
func Secure(r *http.Request) bool {
	marked, _ := r.Context().Value(httpsKey{}).(bool)
	return r.TLS != nil || marked
}
