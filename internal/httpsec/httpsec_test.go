package httpsec

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestPageCSPIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
		"img-src 'self' data:", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(PageCSP, want) {
			t.Errorf("page CSP lacks %q: %s", want, PageCSP)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "http:"} {
		if strings.Contains(PageCSP, bad) {
			t.Errorf("page CSP allows %q: %s", bad, PageCSP)
		}
	}
}

func TestPageOverridesTheAPIPolicy(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/page", Page(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<p>hi</p>")) })))
	mux.Handle("/api", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{}")) }))
	h := Headers(mux)
	for path, csp := range map[string]string{"/page": PageCSP, "/api": APICSP, "/missing": APICSP} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if got := rec.Header().Get("Content-Security-Policy"); got != csp {
			t.Errorf("%s: CSP %q, want %q", path, got, csp)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: missing nosniff or frame options: %v", path, rec.Header())
		}
		if rec.Header().Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS on plain HTTP", path)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "https://example.org/api", nil)
	req.TLS = &tls.ConnectionState{}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Header().Get("Strict-Transport-Security") != HSTS {
		t.Errorf("no HSTS over TLS: %v", rec.Header())
	}
}

func TestDevCertificateIsUsableAndWritten(t *testing.T) {
	dir := t.TempDir()
	cert, path, err := DevCertificate(dir, "cg.local", "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("certificate not written: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("written certificate is not PEM")
	}
	for _, host := range []string{"localhost", "127.0.0.1", "cg.local", "10.1.2.3"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("certificate does not verify for %s: %v", host, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.org"}); err == nil {
		t.Error("certificate verifies for a host it was not made for")
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), "PRIVATE KEY") {
		t.Error("the private key was written next to the certificate")
	}
}

func TestTLSConfigIsModern(t *testing.T) {
	c := TLSConfig()
	if c.MinVersion != tls.VersionTLS12 {
		t.Fatalf("MinVersion %x", c.MinVersion)
	}
	insecure := map[uint16]bool{}
	for _, s := range tls.InsecureCipherSuites() {
		insecure[s.ID] = true
	}
	for _, id := range c.CipherSuites {
		name := tls.CipherSuiteName(id)
		if insecure[id] || strings.Contains(name, "CBC") || !strings.Contains(name, "ECDHE") {
			t.Errorf("cipher suite %s is not modern", name)
		}
	}
}
