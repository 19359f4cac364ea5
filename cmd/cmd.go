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
	"strings"
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
// with status 1 on failure. `consentgraph -h` lists the subcommands and the
// server's settings; `consentgraph COMMAND -h` gives a subcommand's own.
//
// Processor types are whatever packages the calling program imported
// (each registers itself with plugins.Register in its init function).
func Main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "consentgraph:", err)
			os.Exit(1)
		}
	}
}

// command is a subcommand: `consentgraph NAME [flags]`.
type command struct {
	name, summary string
	run           func(args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order -h shows them.
var commands = []command{
	{"copy-store", "copy every record to another store (a MongoDB URI or a data directory) and verify the copy",
		func(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
			return storecopy.Main(args, getenv, stderr, stdout)
		}},
	{"verify-log", "check the public consent log at a URL against a checkpoint saved earlier",
		func(args []string, _ func(string) string, stdout, stderr io.Writer) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return translog.VerifyLogMain(ctx, args, stdout, stderr)
		}},
	{"rotate-master-key", "re-wrap every data key, secret and signing key under CONSENTGRAPH_MASTER_KEY",
		func(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
			if wantsHelp(args) {
				fmt.Fprintln(stderr, "usage: consentgraph rotate-master-key [server flags]")
				fmt.Fprintln(stderr, "Re-wraps every data key, secret and signing key under CONSENTGRAPH_MASTER_KEY, with the old key in")
				fmt.Fprintln(stderr, "CONSENTGRAPH_PREVIOUS_MASTER_KEYS, while servers keep serving. It takes the server's settings.")
				fmt.Fprintln(stderr)
			}
			return withServerConfig(args, getenv, stdout, stderr, rotateMasterKey)
		}},
	{"seed", "add synthetic users to the store, for demos and benchmarks",
		func(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
			return seed.Main(args, getenv, stderr, stdout)
		}},
	{"loadtest", "send a mix of requests to a server and report throughput and latency",
		func(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
			return loadtest.Main(args, getenv, stderr, stdout)
		}},
}

func commandNames() []string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return names
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		for _, c := range commands {
			if c.name == args[0] {
				return c.run(args[1:], getenv, stdout, stderr)
			}
		}
		return fmt.Errorf("unknown command %q; the commands are %s (consentgraph -h says more)",
			args[0], strings.Join(commandNames(), ", "))
	}
	if wantsHelp(args) {
		fmt.Fprintln(stderr, "usage: consentgraph [flags]            serve the API, the Privacy Center and the partner console")
		fmt.Fprintln(stderr, "       consentgraph COMMAND [flags]    run a command (COMMAND -h for its flags)")
		fmt.Fprintln(stderr, "\ncommands:")
		for _, c := range commands {
			fmt.Fprintf(stderr, "  %-18s %s\n", c.name, c.summary)
		}
		fmt.Fprintln(stderr)
	}
	return withServerConfig(args, getenv, stdout, stderr, serveCommand)
}

// wantsHelp reports whether args ask for the usage text, as the flag
// package understands it.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--h", "--help":
			return true
		case "--":
			return false
		}
	}
	return false
}

// withServerConfig runs fn with the server's configuration from args and
// the environment (for commands that take exactly the server's settings).
func withServerConfig(args []string, getenv func(string) string, stdout, stderr io.Writer,
	fn func(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return fn(ctx, cfg, log, stdout)
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
	log.Info("open this address in a browser, with this exact host: the session cookie belongs to it, so 127.0.0.1 and localhost do not share a sign-in",
		"url", browserURL(cfg.PublicURL, ln.Addr()))
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
