package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
)

// Main is `consentgraph loadtest`: against --target, or against a server it
// starts in-process on a temporary embedded store.
func Main(args []string, getenv func(string) string, stderr, stdout io.Writer) error {
	fs := flag.NewFlagSet("consentgraph loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "base URL of a running server (loopback only); empty starts one in-process")
	clients := fs.Int("clients", 8, "concurrent clients")
	duration := fs.Duration("duration", 15*time.Second, "longest the run may take")
	requests := fs.Int64("requests", 20000, "most requests the run sends")
	users := fs.Int("users", 16, "accounts created for the run")
	mixFlag := fs.String("mix", "signin=1,me=10,consent=3,partner=1", "operation weights")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mix, err := ParseMix(*mixFlag)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	o := Options{Target: *target, Clients: *clients, Duration: *duration, MaxRequests: *requests, Mix: mix, Users: *users,
		AdminUsername: getenv(config.EnvName("admin-username")), AdminPassword: getenv(config.EnvName("admin-password"))}
	if o.Target == "" {
		url, admin, adminPW, shutdown, err := startInProcess(ctx, getenv)
		if err != nil {
			return err
		}
		defer shutdown()
		o.Target, o.AdminUsername, o.AdminPassword = url, admin, adminPW
		fmt.Fprintf(stdout, "started a server in-process at %s on a temporary embedded store (rate limits off)\n", url)
	}
	fmt.Fprintf(stdout, "load: %d clients, at most %d requests or %s, mix %s, %d users\n", o.Clients, o.MaxRequests, o.Duration, *mixFlag, o.Users)
	rep, err := Run(ctx, o)
	if err != nil {
		return err
	}
	rep.Print(stdout)
	return nil
}

func startInProcess(ctx context.Context, getenv func(string) string) (url, admin, adminPW string, shutdown func(), err error) {
	dir, err := os.MkdirTemp("", "consentgraph-loadtest-*")
	if err != nil {
		return "", "", "", nil, err
	}
	cfg, err := config.Load(nil, getenv, io.Discard)
	if err != nil {
		return "", "", "", nil, err
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	cfg.DataDir, cfg.MongoDBURI, cfg.MasterKey = dir, "", ""
	cfg.AdminUsername, cfg.AdminPassword = "loadtest-admin", "pw-"+hex.EncodeToString(b)
	// One loopback client stands in for many people: measure the service,
	// not the per-IP abuse limits (against --target they stay as configured).
	cfg.RateLimits = false
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", "", "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = a.Close(context.Background())
		_ = os.RemoveAll(dir)
		return "", "", "", nil, err
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	shutdown = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = a.Close(sctx)
		_ = os.RemoveAll(dir)
	}
	return "http://" + ln.Addr().String(), cfg.AdminUsername, cfg.AdminPassword, shutdown, nil
}
