package cmd

import (
	"net"
	"testing"
)

func TestBrowserURL(t *testing.T) {
	at := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, c := range []struct {
		public string
		addr   net.Addr
		want   string
	}{
		{"http://127.0.0.1:8080", at("127.0.0.1:8080"), "http://127.0.0.1:8080/"},
		{"https://privacy.example.org", at("[::]:443"), "https://privacy.example.org/"},
		{"http://:8080", at("[::]:8080"), "http://127.0.0.1:8080/"},
		{"http://0.0.0.0:9000", at("0.0.0.0:9000"), "http://127.0.0.1:9000/"},
		{"https://[::]:8443", at("[::]:8443"), "https://127.0.0.1:8443/"},
		{"http://localhost:8080", at("127.0.0.1:8080"), "http://localhost:8080/"},
		// --addr :0: the port is known only once listening
		{"http://127.0.0.1:0", at("[::]:41234"), "http://127.0.0.1:41234/"},
	} {
		if got := browserURL(c.public, c.addr); got != c.want {
			t.Errorf("browserURL(%q, %s) = %q; want %q", c.public, c.addr, got, c.want)
		}
	}
}
