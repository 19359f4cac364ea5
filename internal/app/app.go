// Package app wires the domain services, the GraphQL handler and the HTTP
// endpoints into one http.Handler. server.go runs it; tests start it too.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/export"
	"github.com/consentgraph/consentgraph/internal/metrics"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/ratelimit"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/telemetry"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// App is a running Consentgraph instance.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	Store    store.Backend
	Keyring  *envelope.Keyring
	Secrets  *envelope.Secrets
	Accounts *accounts.Service
	Signing  *signing.Keyset
	Export   *export.Service
	Audit    *audit.Log
	Metrics  *metrics.Metrics
	Consent  *consent.Service
	// ConsentLog is the public, verifiable log of every consent event and
	// audit entry.
	ConsentLog *translog.Log
	// Partners and Demographics serve the partner API (partners_wiring.go).
	Partners     *partners.Service
	Demographics *demographics.Service
	// Outbox delivers to processors (outbox_wiring.go).
	Outbox *outbox.Service
	// File is the --config file (purposes, policy, controller), or its defaults.
	File *config.File

	// tracing is the OpenTelemetry provider (a no-op one unless an OTLP
	// endpoint is configured); tracer is nil when it records nothing, so
	// the instrumentation is not even installed.
	tracing *telemetry.Provider
	tracer  trace.Tracer

	verifier *verificationMailer
	// rateShare makes the abuse limits hold across replicas (nil when
	// they are off).
	rateShare *ratelimit.Shared
	handler   http.Handler
	stop      context.CancelFunc
	bg        sync.WaitGroup
}

// New opens the store, prepares every service and starts background jobs.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	file, err := config.LoadFile(cfg.ConfigFile)
	if err != nil {
		return nil, err
	}
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := file.ExpandProcessorSettings(getenv, log); err != nil {
		return nil, err
	}
	tracing := telemetry.Wrap(cfg.Tracing)
	if cfg.Tracing == nil {
		if tracing, err = telemetry.Setup(ctx, getenv); err != nil {
			return nil, err
		}
	}
	var tracer trace.Tracer
	if tracing.Exporting {
		tracer = tracing.Tracer()
		log = slog.New(telemetry.LogHandler(log.Handler()))
	}
	a := &App{cfg: cfg, log: log, File: file, Metrics: metrics.New(), tracing: tracing, tracer: tracer}
	st, err := store.Open(ctx, store.Config{MongoDBURI: cfg.MongoDBURI, Database: cfg.Database, DataDir: cfg.DataDir, Logger: log,
		Observer: a.Metrics.StoreObserver(), Tracer: tracer})
	if err != nil {
		return nil, errors.Join(err, tracing.Shutdown(ctx))
	}
	a.Store = st
	if err := a.init(ctx); err != nil {
		_ = st.Close(context.Background())
		return nil, errors.Join(err, tracing.Shutdown(ctx))
	}
	if n, err := a.Accounts.ResumeErasures(ctx); err != nil || n > 0 {
		log.Info("resumed interrupted erasures", "finished", n, "err", err)
	}
	bgCtx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		a.Signing.Run(bgCtx, time.Minute) // picks up key rotations made by other replicas
	}()
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		// Appends after every commit (Notify) and every second, which also
		// picks up what a crash between a commit and its append left.
		a.ConsentLog.Run(bgCtx)
	}()
	a.every(bgCtx, time.Minute, "resume interrupted erasures", func(ctx context.Context) error {
		_, err := a.Accounts.ResumeErasures(ctx)
		return err
	})
	a.every(bgCtx, 30*time.Second, "refresh policy versions", a.Consent.Refresh)
	if a.rateShare != nil {
		a.bg.Add(1)
		go func() {
			defer a.bg.Done()
			a.rateShare.Run(bgCtx, a.cfg.RateLimitSync)
		}()
	}
	a.startDemographicsJobs(bgCtx)
	a.startOutbox(bgCtx)
	a.startProcessorHealth(bgCtx)
	a.every(bgCtx, time.Minute, "sweep expired sessions", func(ctx context.Context) error {
		_, err := a.Accounts.SweepExpiredSessions(ctx)
		return err
	})
	return a, nil
}

func (a *App) init(ctx context.Context) error {
	kr, err := a.keyring()
	if err != nil {
		return err
	}
	a.Keyring = kr
	a.Secrets = envelope.OpenSecrets(a.Store.Secrets(), kr)
	if a.Signing, err = signing.Open(ctx, a.Store.Signing(), kr, a.log); err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	hasher, err := accounts.NewHasher(accounts.HashParams{
		MemoryKiB: a.cfg.Argon2MemoryKiB, Iterations: a.cfg.Argon2Iterations,
		Parallelism: a.cfg.Argon2Parallelism, Concurrency: a.cfg.Argon2Concurrency,
	})
	if err != nil {
		return fmt.Errorf("password hashing: %w", err)
	}
	if a.verifier, err = newVerificationMailer(a.cfg.SMTPURL, a.cfg.PublicURL, a.cfg.Dev, a.log,
		a.File.Texts, a.File.Controller.Name, a.cfg.PasswordResetTTL); err != nil {
		return err
	}
	a.Accounts, err = accounts.New(a.Store.Accounts(), accounts.Options{
		Hasher: hasher, Keyring: kr, Secrets: a.Secrets, SessionTTL: a.cfg.SessionTTL, Logger: a.log,
		PasswordResetTTL: a.cfg.PasswordResetTTL, Mailer: a.verifier,
	})
	if err != nil {
		return err
	}
	logURL := a.cfg.PublicURL + translog.Path
	if a.ConsentLog, err = translog.New(translog.Options{Store: a.Store.Translog(), Signer: a.Signing, Name: logURL, Logger: a.log}); err != nil {
		return fmt.Errorf("consent log: %w", err)
	}
	initial := a.File.Policy
	if strings.HasPrefix(initial.URL, "/") {
		// Receipts leave the site: a relative policy URL (the default
		// /privacy page) must name this server.
		initial.URL = a.cfg.PublicURL + initial.URL
	}
	if a.Consent, err = consent.New(ctx, consent.Options{
		Store: a.Store.Consent(), Purposes: a.File.Catalog, Controller: a.File.Controller,
		InitialPolicy: initial, Signer: a.Signing, Secrets: a.Secrets, Logger: a.log,
		ThirdParties: a.processorNames, Log: a.ConsentLog, LogURL: logURL, Texts: a.File.Texts,
	}); err != nil {
		return fmt.Errorf("consent: %w", err)
	}
	if a.cfg.AdminUsername != "" {
		if err := a.Accounts.EnsureAdmin(ctx, a.cfg.AdminUsername, a.cfg.AdminPassword); err != nil {
			return fmt.Errorf("first admin: %w", err)
		}
	}
	// Erasure keeps only the pseudonymous, signed consent events as proof.
	a.Accounts.Subscribe(func(ctx context.Context, c accounts.Change) error {
		if c.Kind != accounts.Erasing {
			return nil
		}
		// The events leave the store with the account: they go into the
		// public log first.
		if err := a.Consent.EnsureLogged(ctx, c.UserID); err != nil {
			return err
		}
		return a.Consent.ArchiveLedger(ctx, c.UserID)
	})
	a.Audit = audit.New(a.Store.Audit(), a.log)
	a.Audit.UseLog(a.ConsentLog)
	a.Audit.OnAppend(a.ConsentLog.Notify)
	a.ConsentLog.AddSource(a.Consent.LogSource())
	a.ConsentLog.AddSource(a.Audit.LogSource())
	a.Metrics.GaugeFunc("consentgraph_sessions_active", "Unexpired sessions (refreshed at most every 30s).", 30*time.Second,
		func(ctx context.Context) (float64, error) {
			n, err := a.Accounts.CountActiveSessions(ctx)
			return float64(n), err
		})
	a.Metrics.GaugeFunc("consentgraph_consent_log_leaves", "Leaves in the public consent log (refreshed at most every 30s).", 30*time.Second,
		func(ctx context.Context) (float64, error) {
			h, err := a.ConsentLog.Head(ctx)
			return float64(h.Size), err
		})
	if err := a.initPartners(ctx); err != nil {
		return err
	}
	if a.cfg.RateLimits {
		a.rateShare = ratelimit.NewShared(a.Store.RateLimits(), 4*limiterKeys, a.log)
	}
	a.Export = a.newExport()
	a.Export.Register("consent", a.Consent.ExportSection)
	if err := a.initOutbox(ctx); err != nil {
		return err
	}
	// After the outbox's relay (listeners run in order), so the event is
	// where the appender looks on every store.
	a.Consent.OnChange(func(context.Context, string, string, bool) { a.ConsentLog.Notify() })
	a.handler = a.routes()
	if a.tracer != nil {
		a.handler = telemetry.HTTP(a.tracer, a.handler)
	}
	return nil
}

// keyring loads the master key from configuration, or for local use from a
// key file generated in the data directory.
func (a *App) keyring() (*envelope.Keyring, error) {
	var current []byte
	if a.cfg.MasterKey != "" {
		k, err := envelope.ParseKey(a.cfg.MasterKey)
		if err != nil {
			return nil, fmt.Errorf("CONSENTGRAPH_MASTER_KEY: %w", err)
		}
		current = k
	} else {
		path := filepath.Join(a.cfg.DataDir, "master.key")
		k, created, err := envelope.LoadOrCreateKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("master key file: %w", err)
		}
		current = k
		a.log.Warn("no CONSENTGRAPH_MASTER_KEY set; using a key file next to the data — fine for local use, not for production",
			"path", path, "created", created)
	}
	var previous [][]byte
	for i, p := range a.cfg.PreviousMasterKeys {
		k, err := envelope.ParseKey(p)
		if err != nil {
			return nil, fmt.Errorf("CONSENTGRAPH_PREVIOUS_MASTER_KEYS entry %d: %w", i+1, err)
		}
		previous = append(previous, k)
	}
	return envelope.NewKeyring(current, previous...)
}

// Handler serves every HTTP endpoint.
func (a *App) Handler() http.Handler { return a.handler }

// Close stops background jobs and the store.
func (a *App) Close(ctx context.Context) error {
	if a.stop != nil {
		a.stop()
	}
	a.bg.Wait()
	if a.Accounts != nil {
		a.Accounts.Wait() // mails still going out after their request answered
	}
	// The provider last: it flushes the spans of everything above.
	return errors.Join(a.closeProcessors(ctx), a.Store.Close(ctx), a.tracing.Shutdown(ctx))
}

// every runs job periodically until ctx ends, logging failures.
func (a *App) every(ctx context.Context, interval time.Duration, name string, job func(context.Context) error) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := job(ctx); err != nil && !errors.Is(err, context.Canceled) {
					a.log.Warn("background job failed", "job", name, "err", err)
				}
			}
		}
	}()
}
