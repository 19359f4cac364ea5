// Package cmd is the Consentgraph server's command line: a GraphQL API for
// user data where the privacy policy is enforced by the code. The
// repository's own main package is nothing but a call to Main, so a custom
// server with processors of its own is a module whose main.go is
//
//	package main
//
//	import (
//		"github.com/consentgraph/consentgraph/cmd"
//		_ "github.com/consentgraph/consentgraph/plugins/all" // the built-in processors (optional)
//		_ "example.com/yourplugin"                          // registers its type in init
//	)
//
//	func main() { cmd.Main() }
//
// See docs/plugins.md, "Building a server with your plugin".
package cmd

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/consentgraph/consentgraph/internal/app"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/httpsec"
	"github.com/consentgraph/consentgraph/internal/loadtest"
	"github.com/consentgraph/consentgraph/internal/seed"
	"github.com/consentgraph/consentgraph/internal/storecopy"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// Main runs the server, or one of its subcommands, from os.Args and the
// environment, exactly like the consentgraph binary, and exits the process
// with status 1 on failure:
//
//	consentgraph            start with the embedded store under ./data
//	consentgraph -h         list every setting
//	consentgraph copy-store --to <mongodb URI or data dir>   copy the store elsewhere (-h for more)
//	consentgraph verify-log --checkpoint FILE --url URL      check the public consent log against a saved checkpoint
//	consentgraph rotate-master-key | seed | loadtest         see README.md
//
// Processor types are whatever packages the calling program imported
// (each registers itself with plugins.Register in its init function).
func Main() {
	if err := run(os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "consentgraph:", err)
			os.Exit(1)
		}
	}
}

// commands are the subcommands besides serving (`go run . NAME [flags]`);
// each takes the same flags and variables as the server.
var commands = map[string]func(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error{
	"rotate-master-key": rotateMasterKey,
}

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "seed" { // has flags of its own
		return seed.Main(args[1:], getenv, stderr, os.Stdout)
	}
	if len(args) > 0 && args[0] == "loadtest" { // has flags of its own
		return loadtest.Main(args[1:], getenv, stderr, os.Stdout)
	}
	if len(args) > 0 && args[0] == "copy-store" { // has flags of its own
		return storecopy.Main(args[1:], getenv, stderr, os.Stdout)
	}
	if len(args) > 0 && args[0] == "verify-log" { // a client: no store, flags of its own
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return translog.VerifyLogMain(ctx, args[1:], os.Stdout, stderr)
	}
	command := serveCommand
	if len(args) > 0 {
		if c, ok := commands[args[0]]; ok {
			command, args = c, args[1:]
		}
	}
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return command(ctx, cfg, log, os.Stdout)
}

func serveCommand(ctx context.Context, cfg config.Config, log *slog.Logger, _ io.Writer) error {
	return serve(ctx, cfg, log)
}

// rotateMasterKey re-wraps every key the master key protects. Run it with
// the new key as CONSENTGRAPH_MASTER_KEY and the old one in
// CONSENTGRAPH_PREVIOUS_MASTER_KEYS while servers configured the same way
// keep serving: every blob stays readable under one of the two throughout.
func rotateMasterKey(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error {
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close(context.Background())
	r, err := a.RotateMasterKey(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "re-wrapped under master key %s: %d data keys, %d secrets, %d signing keys\n",
		a.Keyring.CurrentKeyID(), r.DataKeys, r.Secrets, r.SigningKeys)
	return nil
}

// serve runs the server until ctx is cancelled, then drains in-flight
// requests and stops the store cleanly.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	a, err := app.New(startCtx, cfg, log)
	cancel()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = a.Close(context.Background())
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.RequestTimeout + 15*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	base := "http://" + ln.Addr().String()
	if cfg.TLSCert != "" || cfg.DevTLS {
		tlsCfg, err := serverTLS(cfg, log)
		if err != nil {
			_ = ln.Close()
			_ = a.Close(context.Background())
			return err
		}
		srv.TLSConfig = tlsCfg
		base = "https://" + ln.Addr().String()
	}
	store := "embedded store in " + cfg.DataDir
	if cfg.MongoDBURI != "" {
		store = "MongoDB"
	}
	log.Info("Consentgraph is running", "privacy_center", base+"/", "partner_console", base+"/partners", "graphql", base+"/graphql", "jwks", base+"/.well-known/jwks.json", "store", store)
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "") // certificates are in TLSConfig
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		_ = a.Close(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests")
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	shutErr := srv.Shutdown(shutCtx)
	closeErr := a.Close(shutCtx)
	log.Info("stopped")
	return errors.Join(shutErr, closeErr)
}

// serverTLS is the TLS configuration of --tls-cert/--tls-key or --dev-tls.
func serverTLS(cfg config.Config, log *slog.Logger) (*tls.Config, error) {
	tlsCfg := httpsec.TLSConfig()
	if cfg.DevTLS {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		cert, path, err := httpsec.DevCertificate(cfg.DataDir, host)
		if err != nil {
			return nil, err
		}
		log.Warn("serving HTTPS with a self-signed development certificate; never use --dev-tls in production", "certificate", path)
		tlsCfg.Certificates = []tls.Certificate{cert}
		return tlsCfg, nil
	}
	cert, err := httpsec.LoadCertificate(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, err
	}
	tlsCfg.Certificates = []tls.Certificate{cert}
	return tlsCfg, nil
}
