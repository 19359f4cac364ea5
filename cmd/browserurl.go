package cmd

import (
	"net"
	"net/url"

	"github.com/consentgraph/consentgraph/internal/config"
)

// browserURL is the address to print for people opening the pages: the
// public URL, unless it names no usable host (a wildcard address in
// --public-url) or no port yet (--addr :0 gives http://127.0.0.1:0), then
// its host, or this machine's loopback, on the port actually listened on.
// Browsers keep the session cookie per host name, so the printed host is
// the one to keep using: 127.0.0.1 and localhost do not share a sign-in.
func browserURL(publicURL string, listened net.Addr) string {
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme == "" {
		u = &url.URL{Scheme: "http"}
	}
	host := u.Hostname()
	if !config.NoHost(host) && u.Port() != "0" {
		return publicURL + "/"
	}
	_, port, err := net.SplitHostPort(listened.String())
	if err != nil {
		return publicURL + "/"
	}
	if config.NoHost(host) {
		host = "127.0.0.1"
	}
	return u.Scheme + "://" + net.JoinHostPort(host, port) + "/"
}
