package cmd

import (
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/consentgraph/consentgraph/internal/config"
)

func TestServerTLSFromFlags(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	cfg, err := config.Load([]string{"--dev-tls", "--data-dir", dir}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL != "https://127.0.0.1:8080" {
		t.Errorf("with --dev-tls the public URL is %q", cfg.PublicURL)
	}
	c, err := serverTLS(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if c.MinVersion != tls.VersionTLS12 || len(c.Certificates) != 1 {
		t.Fatalf("dev TLS config: min %x, %d certificates", c.MinVersion, len(c.Certificates))
	}
	if _, err := os.Stat(filepath.Join(dir, "dev-tls-cert.pem")); err != nil {
		t.Fatalf("dev certificate not written for clients to trust: %v", err)
	}

	cfg, err = config.Load([]string{"--tls-cert", filepath.Join(dir, "missing.pem"), "--tls-key", filepath.Join(dir, "missing.key")},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serverTLS(cfg, log); err == nil {
		t.Fatal("a missing certificate file was accepted")
	}
	for _, args := range [][]string{{"--tls-cert", "c.pem"}, {"--dev-tls", "--tls-cert", "c.pem", "--tls-key", "k.pem"}} {
		if _, err := config.Load(args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("config.Load(%v) accepted an inconsistent TLS setting", args)
		}
	}
}
