package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/consentgraph/consentgraph/plugins"
)

// Health is the result of a processor's last health check.
type Health struct {
	OK        bool
	CheckedAt time.Time
	// Message is the plugin's error text when not OK.
	Message string
}

// healthTimeout bounds one plugin's check, so that one slow provider
// cannot hold up the others' results.
const healthTimeout = 10 * time.Second

// Health returns the last health check's result, or nil when the plugin
// has no health check (plugins.HealthChecker) or none finished yet. It
// never calls the provider.
func (p *Processor) Health() *Health {
	return p.health.Load()
}

// CheckHealth asks every processor implementing plugins.HealthChecker for
// its health, concurrently, and caches the results for Processor.Health.
// The core calls it in the background only: a request reads the cache.
func (s *Service) CheckHealth(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range s.procs {
		hc, ok := p.Impl.(plugins.HealthChecker)
		if !ok {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, healthTimeout)
			defer cancel()
			err := checkOne(cctx, hc)
			if ctx.Err() != nil {
				return // shutting down: not the provider's fault
			}
			h := &Health{OK: err == nil, CheckedAt: s.opts.Now().UTC()}
			if err != nil {
				h.Message = err.Error()
				if prev := p.health.Load(); prev == nil || prev.OK {
					s.log.WarnContext(ctx, "processor health check failed", "processor", p.Name, "err", err)
				}
			}
			p.health.Store(h)
		})
	}
	wg.Wait()
	return ctx.Err()
}

// checkOne runs one check, turning a plugin's panic into a failed check
// rather than a crashed server.
func checkOne(ctx context.Context, hc plugins.HealthChecker) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("health check panicked: %v", r)
		}
	}()
	return hc.Health(ctx)
}

// Close closes every processor implementing plugins.Closer, once, at
// shutdown (after the dispatcher stopped), and joins their errors.
func (s *Service) Close(ctx context.Context) error {
	var errs []error
	for _, p := range s.procs {
		c, ok := p.Impl.(plugins.Closer)
		if !ok {
			continue
		}
		if err := c.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close processor %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}
