package outbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/store"
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
		if _, err := d.Once(ctx); err != nil && ctx.Err() == nil {
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
	cur, err := s.items.Find(ctx, bson.D{
		{Key: "state", Value: Pending},
		{Key: "nextAt", Value: bson.D{{Key: "$lte", Value: now}}},
		{Key: "leaseUntil", Value: bson.D{{Key: "$lte", Value: now}}},
		{Key: "processor", Value: bson.D{{Key: "$in", Value: enabled}}},
	}, options.Find().SetSort(bson.D{{Key: "nextAt", Value: 1}}).SetLimit(int64(d.t.Batch)).SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "userId", Value: 1}, {Key: "processor", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("find due items: %w", err)
	}
	var ids []struct {
		ID        string `bson:"_id"`
		UserID    string `bson:"userId"`
		Processor string `bson:"processor"`
	}
	if err := cur.All(ctx, &ids); err != nil {
		return 0, fmt.Errorf("find due items: %w", err)
	}
	sem := make(chan struct{}, d.t.Workers)
	var wg sync.WaitGroup
	claimed := 0
	for _, x := range ids {
		// One item per user and processor at a time, so a delivery and a
		// forget for the same user never race at the provider.
		token, err := d.lock(ctx, x.Processor+"|"+x.UserID)
		if err != nil {
			return claimed, err
		}
		if token == "" {
			continue // another item of this user and processor is running
		}
		it, err := d.claim(ctx, x.ID)
		if err != nil || it == nil {
			d.unlock(ctx, x.Processor+"|"+x.UserID, token)
			if err != nil {
				return claimed, err
			}
			continue // someone else has it
		}
		claimed++
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			defer d.unlock(ctx, it.Processor+"|"+it.UserID, token)
			d.process(ctx, it)
		}()
	}
	wg.Wait()
	return claimed, nil
}

// lock takes the lease on key (a processor and user) for as long as an
// item lease lasts; it returns a token for unlock, or "" when another
// dispatcher holds it. Only unique-_id inserts and guarded updates decide.
func (d *Dispatcher) lock(ctx context.Context, key string) (string, error) {
	s := d.s
	now := s.now()
	token := s.NewID()
	doc := bson.D{{Key: "_id", Value: key}, {Key: "token", Value: token}, {Key: "until", Value: now.Add(d.t.Lease)}}
	_, err := s.locks.InsertOne(ctx, doc)
	if err == nil {
		return token, nil
	}
	if !store.IsDuplicateKey(err) {
		return "", fmt.Errorf("lock %s: %w", key, err)
	}
	r, err := s.locks.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "until", Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "token", Value: token}, {Key: "until", Value: now.Add(d.t.Lease)}}}})
	if err != nil {
		return "", fmt.Errorf("lock %s: %w", key, err)
	}
	if r.MatchedCount == 1 {
		return token, nil
	}
	return "", nil
}

func (d *Dispatcher) unlock(ctx context.Context, key, token string) {
	if _, err := d.s.locks.DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: key}, {Key: "token", Value: token}}); err != nil {
		d.s.log.WarnContext(ctx, "unlock failed; the lock expires with the lease", "key", key, "err", err)
	}
}

// claim takes a lease on one item; nil when another dispatcher holds it or
// it is no longer due.
func (d *Dispatcher) claim(ctx context.Context, id string) (*Item, error) {
	s, owner := d.s, d.owner
	now := s.now()
	var it Item
	err := s.items.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "state", Value: Pending}, {Key: "leaseUntil", Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "leaseUntil", Value: now.Add(d.t.Lease)}, {Key: "leaseOwner", Value: owner}, {Key: "updatedAt", Value: now}}},
			{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}},
		},
		options.FindOneAndUpdate().SetReturnDocument(options.After),
	).Decode(&it)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim item: %w", err)
	}
	return &it, nil
}

// finish records an outcome, only while this dispatcher still holds the
// lease it took for this attempt.
func (d *Dispatcher) finish(ctx context.Context, it *Item, set bson.D) {
	s, owner := d.s, d.owner
	set = append(set, bson.E{Key: "leaseUntil", Value: time.Time{}}, bson.E{Key: "updatedAt", Value: s.now()})
	_, err := s.items.UpdateOne(context.WithoutCancel(ctx),
		bson.D{{Key: "_id", Value: it.ID}, {Key: "leaseOwner", Value: owner}, {Key: "attempts", Value: it.Attempts}, {Key: "state", Value: Pending}},
		bson.D{{Key: "$set", Value: set}})
	if err != nil {
		s.log.WarnContext(ctx, "record outbox outcome failed; the lease will expire and the item run again", "item", it.ID, "err", err)
		return
	}
	if s.opts.OnOutcome != nil {
		outcome := "retry"
		for _, e := range set {
			if e.Key == "state" {
				outcome = strings.ToLower(string(e.Value.(State)))
			}
		}
		s.opts.OnOutcome(it.Processor, it.Action, outcome)
	}
}

func (d *Dispatcher) finishState(ctx context.Context, it *Item, st State, note string) {
	set := bson.D{{Key: "state", Value: st}}
	if note != "" {
		set = append(set, bson.E{Key: "note", Value: note})
	}
	d.finish(ctx, it, set)
}

// process runs one claimed item.
func (d *Dispatcher) process(ctx context.Context, it *Item) {
	s := d.s
	p, ok := s.byName[it.Processor]
	if !ok {
		d.finish(ctx, it, bson.D{{Key: "state", Value: Dead}, {Key: "lastError", Value: "processor is no longer configured"}})
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
	if plugins.IsPermanent(err) || it.Attempts >= d.t.MaxAttempts {
		s.log.WarnContext(ctx, "outbox item is dead", "item", it.ID, "processor", p.Name, "attempts", it.Attempts, "err", msg)
		d.finish(ctx, it, bson.D{{Key: "state", Value: Dead}, {Key: "lastError", Value: msg}})
		return
	}
	delay := d.t.Backoff(it.Attempts)
	if d, ok := plugins.RetryAfterOf(err); ok && d > delay {
		delay = d
	}
	d.finish(ctx, it, bson.D{{Key: "nextAt", Value: s.now().Add(delay)}, {Key: "lastError", Value: msg}})
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
	procKey := ProcsField + "." + p.Name
	live := bson.D{{Key: "erasingSince", Value: bson.D{{Key: "$exists", Value: false}}}}

	if it.Action == Forget && it.Erase {
		req.Ref, req.Erase = it.Ref, true
		if err := p.Impl.Forget(callCtx, req); err != nil {
			return err
		}
		s.disclose(ctx, it, nil, "FORGOTTEN")
		d.finishState(ctx, it, Done, "")
		return errHandled
	}
	doc, err := s.loadUser(ctx, it.UserID)
	if err != nil {
		return err
	}
	if doc == nil || doc.Erasing != nil {
		d.finishState(ctx, it, Skipped, "account erased")
		return errHandled
	}
	inForce := s.opts.Consent.Rules().InForce(&doc.Consent, p.Purpose)
	st := doc.Procs[p.Name]
	req.Ref = st.Ref
	userFilter := append(bson.D{{Key: "_id", Value: it.UserID}}, live...)

	if it.Action == Forget {
		if inForce {
			d.finishState(ctx, it, Skipped, "consent granted again")
			return errHandled
		}
		if !st.Attempted {
			d.finishState(ctx, it, Skipped, "nothing was delivered")
			return errHandled
		}
		if err := p.Impl.Forget(callCtx, req); err != nil {
			return err
		}
		if _, err := s.users.UpdateOne(ctx, userFilter, bson.D{{Key: "$set", Value: bson.D{{Key: procKey + ".delivered", Value: false}}}}); err != nil {
			return fmt.Errorf("record forget: %w", err)
		}
		s.disclose(ctx, it, nil, "FORGOTTEN")
		d.finishState(ctx, it, Done, "")
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
	if p.needsEmail() && (u.Email == nil || (p.Manifest.RequiresVerifiedEmail && !u.EmailVerified)) {
		d.finish(ctx, it, bson.D{{Key: "state", Value: Waiting}, {Key: "note", Value: NeedsEmail}, {Key: "attempts", Value: 0}})
		return errHandled
	}
	req.Fields = fieldValues(u, p.Fields, s.opts.Now())
	// Mark the attempt before calling, only while the account is not being
	// erased: an erasure that starts later sees it and enqueues a forget.
	r, err := s.users.UpdateOne(ctx, userFilter, bson.D{{Key: "$set", Value: bson.D{{Key: procKey + ".attempted", Value: true}}}})
	if err != nil {
		return fmt.Errorf("mark attempt: %w", err)
	}
	if r.MatchedCount == 0 {
		d.finishState(ctx, it, Skipped, "account erased")
		return errHandled
	}
	res, err := p.Impl.Deliver(callCtx, req)
	if err != nil {
		return err
	}
	if _, err := s.users.UpdateOne(ctx, userFilter, bson.D{{Key: "$set", Value: bson.D{
		{Key: procKey + ".delivered", Value: true}, {Key: procKey + ".ref", Value: res.Ref},
	}}}); err != nil {
		return fmt.Errorf("record delivery: %w", err)
	}
	var fields []string
	for _, f := range p.Fields {
		if _, ok := req.Fields[f]; ok {
			fields = append(fields, f)
		}
	}
	s.disclose(ctx, it, fields, "DELIVERED")
	d.finishState(ctx, it, Done, "")
	return errHandled
}
