package cmd

import (
	"net"
	"net/url"
)

// browserURL is the address to print for people opening the pages: the
// public URL, unless it names no usable host (the default for --addr :8080
// is http://:8080, or a wildcard address), then this machine's loopback on
// the port listened on. Browsers keep the session cookie per host name, so
// the printed host is the one to keep using: 127.0.0.1 and localhost do
// not share a sign-in.
func browserURL(publicURL string, listened net.Addr) string {
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme == "" {
		u = &url.URL{Scheme: "http"}
	}
	if host := u.Hostname(); host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return publicURL + "/"
		}
	}
	_, port, err := net.SplitHostPort(listened.String())
	if err != nil {
		return publicURL + "/"
	}
	return u.Scheme + "://" + net.JoinHostPort("127.0.0.1", port) + "/"
}
