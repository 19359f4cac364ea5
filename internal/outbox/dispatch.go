package outbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/consentgraph/consentgraph/plugins"
)

// Dispatcher delivers due items. Any number of dispatchers (in one process
// or on several replicas) may share one store: leases keep them apart.
type Dispatcher struct {
	s     *Service
	t     Tuning
	owner string
}

// Dispatcher returns a dispatcher named owner (unique per replica) with
// tuning t (zero fields: the service's defaults).
func (s *Service) Dispatcher(owner string, t Tuning) *Dispatcher {
	if t == (Tuning{}) {
		t = s.opts.Tuning
	}
	return &Dispatcher{s: s, t: t.withDefaults(), owner: owner}
}

// Run dispatches due items until ctx ends. It also runs the relay sweep.
func (d *Dispatcher) Run(ctx context.Context) {
	s := d.s
	if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "outbox sweep failed", "err", err)
	}
	poll := time.NewTicker(d.t.PollInterval)
	defer poll.Stop()
	lastSweep := time.Now()
	for {
		n, err := d.Once(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "outbox dispatch failed", "err", err)
		}
		if time.Since(lastSweep) >= d.t.SweepInterval {
			lastSweep = time.Now()
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "outbox sweep failed", "err", err)
			}
			if err := s.RefreshEnabled(ctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "processor flags refresh failed", "err", err)
			}
		}
		if n == d.t.Batch && err == nil {
			// A full batch: more is probably due; do not wait for the tick.
			if ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
	}
}

// Once claims the due items (up to Batch) and processes them with up to
// Workers calls at once. It returns how many it claimed.
func (d *Dispatcher) Once(ctx context.Context) (int, error) {
	s := d.s
	var enabled []string
	for _, p := range s.procs {
		if p.Enabled() {
			enabled = append(enabled, p.Name)
		}
	}
	if len(enabled) == 0 {
		return 0, nil
	}
	now := s.now()
	// Items of one user and processor are claimed one at a time, so a
	// delivery and a forget for the same user never race at the provider.
	items, err := s.store.Claim(ctx, d.owner, enabled, now, now.Add(d.t.Lease), d.t.Batch)
	if err != nil {
		return 0, fmt.Errorf("claim due items: %w", err)
	}
	sem := make(chan struct{}, d.t.Workers)
	var wg sync.WaitGroup
	for i := range items {
		it := &items[i]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			d.process(ctx, it)
		}()
	}
	wg.Wait()
	return len(items), nil
}

// finish records an outcome, only while this dispatcher still holds the
// lease it took for this attempt.
func (d *Dispatcher) finish(ctx context.Context, it *Item, f Finish) {
	s := d.s
	f.Item, f.At = *it, s.now()
	ok, err := s.store.Finish(context.WithoutCancel(ctx), f)
	if err != nil {
		s.log.WarnContext(ctx, "record outbox outcome failed; the lease will expire and the item run again", "item", it.ID, "err", err)
		return
	}
	if !ok {
		s.log.WarnContext(ctx, "outbox lease was lost before the outcome was recorded; the new holder records it", "item", it.ID)
		return
	}
	outcome := "retry"
	if f.State != Pending {
		outcome = strings.ToLower(string(f.State))
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("outbox.outcome", outcome))
		if f.State == Dead {
			span.SetStatus(codes.Error, outcome)
		}
	}
	if s.opts.OnOutcome != nil {
		s.opts.OnOutcome(it.Processor, it.Action, outcome)
	}
}

func (d *Dispatcher) finishState(ctx context.Context, it *Item, st State, note string) {
	d.finish(ctx, it, Finish{State: st, Note: note})
}

// process runs one claimed item.
func (d *Dispatcher) process(ctx context.Context, it *Item) {
	s := d.s
	if s.opts.Tracer != nil {
		// Names and counts only: the item's user id stays out of the span.
		var span trace.Span
		ctx, span = s.opts.Tracer.Start(ctx, "outbox deliver "+it.Processor, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("outbox.processor", it.Processor), attribute.String("outbox.action", string(it.Action)),
				attribute.Int("outbox.attempt", it.Attempts)))
		defer span.End()
	}
	p, ok := s.byName[it.Processor]
	if !ok {
		d.finish(ctx, it, Finish{State: Dead, LastError: "processor is no longer configured"})
		return
	}
	err := d.run(ctx, it, p)
	if err == nil || errors.Is(err, errHandled) {
		return
	}
	if ctx.Err() != nil {
		return // shutting down: the lease expires and the item runs again
	}
	msg := err.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	if wait, ok := plugins.RetryAfterOf(err); ok && !plugins.IsPermanent(err) && s.now().Sub(it.CreatedAt) < d.t.ThrottleWindow {
		// The provider said "wait": that is no failure of the item, so
		// the attempt is given back and it cannot bring the item nearer
		// DEAD. The floor keeps a "Retry-After: 0" from spinning.
		wait = min(max(wait, d.t.PollInterval), d.t.MaxThrottleWait)
		s.log.InfoContext(ctx, "processor throttled", "item", it.ID, "processor", p.Name, "wait", wait)
		d.finish(ctx, it, Finish{State: Pending, NextAt: s.now().Add(wait), Note: it.Note, LastError: msg, Throttled: true})
		return
	}
	if plugins.IsPermanent(err) || it.Attempts >= d.t.MaxAttempts {
		s.log.WarnContext(ctx, "outbox item is dead", "item", it.ID, "processor", p.Name, "attempts", it.Attempts, "err", msg)
		d.finish(ctx, it, Finish{State: Dead, LastError: msg})
		d.linkDead(ctx, it, p)
		return
	}
	delay := d.t.Backoff(it.Attempts)
	if w, ok := plugins.RetryAfterOf(err); ok && w > delay { // a throttle past ThrottleWindow
		delay = min(w, d.t.MaxThrottleWait)
	}
	d.finish(ctx, it, Finish{State: Pending, NextAt: s.now().Add(delay), Note: it.Note, LastError: msg})
}

// Backoff is the delay after the given attempt: exponential, capped, with
// jitter over its upper half (so competing retries spread out).
func (t Tuning) Backoff(attempt int) time.Duration {
	d := t.BaseBackoff
	for i := 1; i < attempt && d < t.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, t.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// errHandled: run already recorded the outcome.
var errHandled = errors.New("handled")

func (d *Dispatcher) run(ctx context.Context, it *Item, p *Processor) error {
	s := d.s
	subject, err := s.Pseudonym(ctx, p.Name, it.UserID)
	if err != nil {
		return err
	}
	req := plugins.Request{ID: it.ID, Subject: subject, Purpose: p.Purpose, Attempt: it.Attempts}
	callCtx, cancel := context.WithTimeout(ctx, d.t.CallTimeout)
	defer cancel()
	if it.Action == Act {
		return d.act(ctx, callCtx, it, p, subject)
	}

	if it.Action == Forget && it.Erase {
		req.Ref, req.Erase = it.Ref, true
		if req.Ref == "" {
			// The erasure enqueued this before a delivery in flight had
			// stored its Ref; while the account is still being erased,
			// the stored state may know it by now.
			if doc, err := s.store.Recipient(ctx, it.UserID); err == nil && doc != nil {
				req.Ref = doc.Procs[p.Name].Ref
			}
		}
		if err := p.Impl.Forget(callCtx, req); err != nil {
			return err
		}
		if err := d.linkAfter(ctx, it, p, subject, nil); err != nil {
			return err
		}
		d.finish(ctx, it, Finish{State: Done, Disclosure: s.disclosure(it, nil, "FORGOTTEN")})
		return errHandled
	}
	doc, err := d.liveRecipient(ctx, it)
	if doc == nil {
		return err
	}
	inForce := s.opts.Consent.Rules().InForce(&doc.Consent, p.Purpose)
	st := doc.Procs[p.Name]
	req.Ref = st.Ref

	if it.Action == Forget {
		if inForce {
			d.finishState(ctx, it, Skipped, "consent granted again")
			return errHandled
		}
		// Only "never attempted" allows a skip: an attempted delivery may
		// have reached the provider even when its Ref was never stored (a
		// crash between the call and the outcome), so the forget goes out,
		// with Ref "" then, and the processor forgets by Subject.
		if !st.Attempted {
			d.finishState(ctx, it, Skipped, "nothing was delivered")
			return errHandled
		}
		if err := p.Impl.Forget(callCtx, req); err != nil {
			return err
		}
		if err := d.linkAfter(ctx, it, p, subject, nil); err != nil {
			return err
		}
		d.finish(ctx, it, Finish{State: Done, Proc: &ProcUpdate{Delivered: false, Ref: st.Ref},
			Disclosure: s.disclosure(it, nil, "FORGOTTEN")})
		return errHandled
	}

	if !inForce {
		d.finishState(ctx, it, Skipped, "consent not in force")
		return errHandled
	}
	u, err := s.opts.Accounts.Get(ctx, it.UserID)
	if err != nil {
		return fmt.Errorf("read user: %w", err)
	}
	if need := emailNeed(p, u); need != "" {
		d.finish(ctx, it, Finish{State: Waiting, Note: need, ResetAttempts: true})
		return errHandled
	}
	req.Fields = fieldValues(u, p.Fields, s.opts.Now())
	// Mark the attempt before calling, only while the account is not being
	// erased: an erasure that starts later sees it and enqueues a forget.
	marked, err := s.store.MarkAttempted(ctx, it.UserID, p.Name)
	if err != nil {
		return fmt.Errorf("mark attempt: %w", err)
	}
	if !marked {
		d.finishState(ctx, it, Skipped, "account erased")
		return errHandled
	}
	res, err := p.Impl.Deliver(callCtx, req)
	if err != nil {
		return err
	}
	if err := d.linkAfter(ctx, it, p, subject, &res); err != nil {
		return err
	}
	ref := res.Ref
	if ref == "" {
		// Providers often return their id only when they create the
		// contact (Brevo answers an update with 204): keep the one we have,
		// or a later forget would lose it.
		ref = st.Ref
	}
	var fields []string
	for _, f := range p.Fields {
		if _, ok := req.Fields[f]; ok {
			fields = append(fields, f)
		}
	}
	d.finish(ctx, it, Finish{State: Done, Proc: &ProcUpdate{Delivered: true, Ref: ref},
		Disclosure: s.disclosure(it, fields, "DELIVERED")})
	return errHandled
}

// disclosure is the record of what an item gave a processor (or told it to
// forget), kept once per item.
func (s *Service) disclosure(it *Item, fields []string, action string) *Disclosure {
	if fields == nil {
		fields = []string{}
	}
	return &Disclosure{ID: it.ID, UserID: it.UserID, Processor: it.Processor, Purpose: it.Purpose,
		Fields: fields, Action: action, Cause: it.Cause, At: s.now()}
}

// liveRecipient reads the user an item is for. An account gone or being
// erased finishes the item as SKIPPED and returns (nil, errHandled); a read
// failure returns (nil, err) to retry.
func (d *Dispatcher) liveRecipient(ctx context.Context, it *Item) (*Recipient, error) {
	doc, err := d.s.store.Recipient(ctx, it.UserID)
	if err != nil {
		return nil, fmt.Errorf("read user for outbox: %w", err)
	}
	if doc == nil || doc.Erasing {
		d.finishState(ctx, it, Skipped, "account erased")
		return nil, errHandled
	}
	return doc, nil
}
