package app

import (
	"context"
	"errors"
	"time"
)

// healthInterval is how often processors' health checks run.
const healthInterval = time.Minute

// startProcessorHealth checks the processors' providers once at start-up
// and then every healthInterval, in the background: admins read the
// cached results (Processor.health), and no request ever waits for a
// provider.
func (a *App) startProcessorHealth(ctx context.Context) {
	if a.Outbox == nil {
		return
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if err := a.Outbox.CheckHealth(ctx); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Warn("processor health checks failed", "err", err)
		}
	}()
	a.every(ctx, healthInterval, "processor health checks", a.Outbox.CheckHealth)
}

// closeProcessors closes the plugins that hold resources (plugins.Closer),
// after the dispatcher stopped.
func (a *App) closeProcessors(ctx context.Context) error {
	if a.Outbox == nil {
		return nil
	}
	return a.Outbox.Close(ctx)
}
