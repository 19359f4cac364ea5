package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/plugins"
)

// processorNames names the processors bound to purpose, for consent
// receipts (before the outbox exists, none).
func (a *App) processorNames(purpose string) []string {
	if a.Outbox == nil {
		return nil
	}
	return a.Outbox.ThirdParties(purpose)
}

// initOutbox builds the configured processors (bad configuration stops
// start-up) and hooks the outbox into consent, accounts and export.
func (a *App) initOutbox(ctx context.Context) error {
	var err error
	a.Outbox, err = outbox.New(ctx, outbox.Options{
		Store: a.Store.Outbox(), Accounts: a.Accounts, Consent: a.Consent, Purposes: a.File.Catalog, Secrets: a.Secrets,
		Signer: a.Signing, Processors: a.File.Processors, PublicURL: a.cfg.PublicURL, Logger: a.log,
		Tuning: outbox.Tuning{PollInterval: max(a.cfg.OutboxPoll, 0)},
		Tracer: a.tracer,
		OnOutcome: func(processor string, action outbox.Action, outcome string) {
			a.Metrics.OutboxOutcome(processor, string(action), outcome)
		},
	})
	if err != nil {
		if a.File.Path != "" {
			return fmt.Errorf("config file %s: %w", a.File.Path, err)
		}
		return err
	}
	a.Metrics.GaugeVecFunc("consentgraph_outbox_items", "Outbox items by state (refreshed at most every 15s).", "state",
		15*time.Second, a.Outbox.CountByState)
	a.Export.Register("disclosures", a.Outbox.ExportSection)
	a.Export.Register("processorLinks", a.Outbox.LinksExportSection)
	return nil
}

// startOutbox runs this replica's dispatcher unless disabled.
func (a *App) startOutbox(ctx context.Context) {
	if a.cfg.OutboxPoll < 0 {
		return
	}
	host, _ := os.Hostname()
	d := a.Outbox.Dispatcher(fmt.Sprintf("%s-%d-%s", host, os.Getpid(), a.Outbox.NewID()[16:24]), outbox.Tuning{})
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		d.Run(ctx)
	}()
}

// pluginRoutes serves processors' own endpoints under /plugins/{name}/.
func (a *App) pluginRoutes() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/plugins/")
		name, _, _ := strings.Cut(rest, "/")
		p, ok := a.Outbox.Processor(name)
		if !ok {
			http.NotFound(w, r)
			return
		}
		h, ok := p.Impl.(plugins.Routed)
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.Handler().ServeHTTP(w, r)
	})
}
