// Package consent records users' consent per purpose: the current state and
// a hash-chained ledger of every change, each change one atomic store
// operation (Store.RecordChange); signed consent receipts; policy versions
// with material changes that need renewed consent; and the Global Privacy
// Control signal.
//
// Integration points for other domains:
//   - AddWriteHook: contribute work items to the very write that records a
//     change (outbox deliveries and forgets), so they commit or fail together.
//   - OnChange: be told after a change committed (e.g. aggregates).
//   - OnPolicyPublished: be told when a new policy version was published.
//   - Rules().InForce / Rules().Status: the pure functions that say whether a
//     purpose is in force for a user, from the stored consent field alone.
package consent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/i18n"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/translog"
	"github.com/consentgraph/consentgraph/internal/work"
)

// Signer signs and verifies compact JWS; *signing.Keyset implements it.
type Signer interface {
	SignCompact(ctx context.Context, payload []byte, typ string) (string, error)
	Verify(ctx context.Context, compact string) ([]byte, signing.Header, error)
}

// Options configure the service.
type Options struct {
	// Store keeps consent state, ledgers and policy versions.
	Store         Store
	Purposes      *policy.Catalog
	Controller    policy.Controller
	InitialPolicy policy.Document
	Signer        Signer
	Secrets       *envelope.Secrets
	// ThirdParties, if set, names the processors bound to a purpose. They
	// are listed in receipts beside the purpose's configured third parties,
	// and an OPT_OUT purpose with any third party is withdrawn by Global
	// Privacy Control.
	ThirdParties func(purpose string) []string
	Logger       *slog.Logger
	// Log, if set, is the public consent log the events go to: LedgerIntact
	// checks every event against it.
	Log LogReader
	// LogURL names that log in receipts (the "log" claim), so a receipt's
	// holder knows where to ask for its inclusion proof.
	LogURL string
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// Texts, if set, translate the receipts' human text into the
	// request's language; without them receipts are in English.
	Texts *i18n.Bundle
}

// Service manages consent. It is safe for concurrent use; register hooks
// and listeners during start-up.
type Service struct {
	store Store
	opts  Options
	log   *slog.Logger
	rules atomic.Pointer[Rules]

	mu              sync.RWMutex
	hooks           []WriteHook
	changeListeners []ChangeListener
	policyListeners []PolicyListener
}

// New opens the service, storing the initial policy version on first start.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Store == nil || opts.Purposes == nil || opts.Signer == nil || opts.Secrets == nil {
		return nil, errors.New("consent: store, purposes, signer and secrets are required")
	}
	if opts.InitialPolicy == (policy.Document{}) {
		opts.InitialPolicy = policy.DefaultDocument()
	}
	if opts.Controller.Name == "" {
		opts.Controller = policy.DefaultController()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{store: opts.Store, opts: opts, log: opts.Logger.With("component", "consent")}
	if err := s.bootstrapPolicy(ctx); err != nil {
		return nil, err
	}
	r, err := s.refresh(ctx)
	if err != nil {
		return nil, err
	}
	if first := r.versions[0]; len(r.versions) == 1 && (first.Version != opts.InitialPolicy.Version || first.URL != opts.InitialPolicy.URL) {
		s.log.WarnContext(ctx, "the configured policy differs from the one stored at first start; publish a new version with publishPolicy instead",
			"stored_version", first.Version, "configured_version", opts.InitialPolicy.Version)
	}
	return s, nil
}

func (s *Service) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

// Purposes lists every purpose in catalog order.
func (s *Service) Purposes() []policy.Purpose { return s.opts.Purposes.All() }

// Purpose returns one purpose or NOT_FOUND.
func (s *Service) Purpose(id string) (policy.Purpose, error) {
	p, ok := s.opts.Purposes.Get(id)
	if !ok {
		return policy.Purpose{}, &apperr.Error{Code: apperr.NotFound, Field: "purpose", Message: fmt.Sprintf("there is no purpose %q", id)}
	}
	return p, nil
}

// Change is a consent change about to be written.
type Change struct {
	UserID  string
	Purpose policy.Purpose
	// Granted is whether the purpose is in force after the change; every
	// recorded change flips it.
	Granted bool
	// Event is the new ledger event, receipt and hash included.
	Event Event
}

// WriteHook contributes work items to the store operation that records a
// change, so that they commit atomically with it. Under contention the
// write is rebuilt and the hook called again for the new attempt (with
// another Event), so a hook must not have side effects. An error aborts the
// change. Hooks are not called for the events written at sign-up (the user
// did not exist before, so no processor can hold their data).
type WriteHook func(ctx context.Context, ch Change) ([]work.Item, error)

// ChangeListener is told after a change committed, with whether purpose is
// now in force. It runs synchronously in the request that made the change;
// it is not called for sign-up. Since it runs after the commit, a crash can
// skip it: derived data must be reconcilable from the users' stored state.
type ChangeListener func(ctx context.Context, userID, purpose string, granted bool)

// PolicyListener is told after a policy version was published.
type PolicyListener func(ctx context.Context, v PolicyVersion)

// AddWriteHook registers a hook; call it during start-up.
func (s *Service) AddWriteHook(h WriteHook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, h)
}

// OnChange registers a listener for committed changes; call it during start-up.
func (s *Service) OnChange(l ChangeListener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changeListeners = append(s.changeListeners, l)
}

// OnPolicyPublished registers a listener for new policy versions.
func (s *Service) OnPolicyPublished(l PolicyListener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policyListeners = append(s.policyListeners, l)
}

func (s *Service) hookList() []WriteHook {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hooks
}

func (s *Service) changeListenerList() []ChangeListener {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changeListeners
}

func (s *Service) policyListenerList() []PolicyListener {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.policyListeners
}

// Result is the outcome of a grant or withdrawal.
type Result struct {
	// Status is the purpose's state afterwards.
	Status Status
	// Changed is false when the request repeated the current state.
	Changed bool
	// Receipt is the signed receipt for the current state: the new event's,
	// the last event's when nothing changed, or a fresh one for a default
	// state no event records.
	Receipt string
	// Event is the event the receipt belongs to; nil for a default state.
	Event *Event
}

// Grant records that the user grants purpose.
func (s *Service) Grant(ctx context.Context, userID, purpose string) (*Result, error) {
	return s.Set(ctx, userID, purpose, true, Explicit)
}

// Withdraw records that the user withdraws purpose.
func (s *Service) Withdraw(ctx context.Context, userID, purpose string) (*Result, error) {
	return s.Set(ctx, userID, purpose, false, Explicit)
}

// Set brings purpose to the granted state for the user. Repeating the
// current state records nothing and returns a receipt for it. Unknown
// purposes are NOT_FOUND; NOTICE_ONLY purposes cannot be withdrawn.
func (s *Service) Set(ctx context.Context, userID, purposeID string, granted bool, method Method) (*Result, error) {
	p, err := s.Purpose(purposeID)
	if err != nil {
		return nil, err
	}
	if p.Mechanism == policy.NoticeOnly && !granted {
		return nil, apperr.Invalid("purpose", "%q is notice-only: it is essential to run your account and cannot be withdrawn (you can delete your account instead)", p.ID)
	}
	res, err := s.change(ctx, userID, p, granted, method, false)
	if err != nil || res.Changed {
		return res, err
	}
	if err := s.currentReceipt(ctx, userID, res); err != nil {
		return nil, err
	}
	return res, nil
}

// maxAttempts bounds optimistic-concurrency retries of one change.
const maxAttempts = 60

// change records granted for p unless it is the current state (or, with
// onlyIfDefault, unless a recorded choice of the user decides it). A
// no-op result carries no receipt.
func (s *Service) change(ctx context.Context, userID string, p policy.Purpose, granted bool, method Method, onlyIfDefault bool) (*Result, error) {
	for attempt := 0; ; attempt++ {
		rules := s.Rules()
		if attempt == 0 {
			// A publication on another replica must apply to this write.
			var err error
			if rules, err = s.refresh(ctx); err != nil {
				return nil, err
			}
		}
		st, err := s.loadState(ctx, userID, true)
		if err != nil {
			return nil, err
		}
		status, _ := rules.Status(st, p.ID)
		if status.Granted == granted || (onlyIfDefault && status.Explicit) {
			return &Result{Status: status}, nil
		}
		ev, err := s.newEvent(ctx, userID, st, p, granted, method, rules.Current())
		if err != nil {
			return nil, err
		}
		var items []work.Item
		for _, h := range s.hookList() {
			extra, err := h(ctx, Change{UserID: userID, Purpose: p, Granted: granted, Event: ev})
			if err != nil {
				return nil, fmt.Errorf("consent write hook: %w", err)
			}
			items = append(items, extra...)
		}
		ok, err := s.store.RecordChange(ctx, userID, ev, items)
		if err != nil {
			return nil, fmt.Errorf("record consent change: %w", err)
		}
		if ok {
			if st.State == nil {
				st.State = map[string]Entry{}
			}
			st.State[p.ID] = ev.entry()
			after, _ := rules.Status(st, p.ID)
			for _, l := range s.changeListenerList() {
				l(ctx, userID, p.ID, after.Granted)
			}
			return &Result{Status: after, Changed: true, Receipt: ev.Receipt, Event: &ev}, nil
		}
		// Someone else changed this user's consent since we read it (or the
		// account is going away, which the next read reports).
		if attempt+1 >= maxAttempts {
			return nil, apperr.New(apperr.Conflict, "your consent was changed concurrently too often; try again")
		}
		if err := backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// backoff sleeps a little longer after each failed attempt, with jitter so
// that competing writers spread out.
func backoff(ctx context.Context, attempt int) error {
	limit := time.Duration(min(attempt+1, 10)) * 2 * time.Millisecond
	t := time.NewTimer(limit/2 + rand.N(limit))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("consent change: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}

func (s *Service) newEvent(ctx context.Context, userID string, st *Stored, p policy.Purpose, granted bool, method Method, pv PolicyVersion) (Event, error) {
	subject, err := s.Pseudonym(ctx, userID)
	if err != nil {
		return Event{}, err
	}
	ev := Event{
		Seq: st.Head + 1, Purpose: p.ID, Action: actionOf(granted), PolicyVersion: pv.Version, PolicyN: pv.N,
		At: s.now(), Method: method, ReceiptID: newReceiptID(), PrevHash: st.HeadHash,
	}
	ev.Receipt, err = s.sign(ctx, s.claims(receiptInput{
		subject: subject, purpose: p, action: ev.Action, method: method, at: ev.At, policy: pv,
		receiptID: ev.ReceiptID, ledger: &LedgerClaim{Sequence: ev.Seq, PreviousHash: ev.PrevHash}, lang: s.language(ctx),
	}))
	if err != nil {
		return Event{}, err
	}
	ev.Hash = HashEvent(subject, &ev)
	return ev, nil
}

// currentReceipt fills res (a no-op) with the receipt of the current state:
// the stored receipt of the event that decides it, or a fresh receipt for a
// default state.
func (s *Service) currentReceipt(ctx context.Context, userID string, res *Result) error {
	if res.Status.Explicit && res.Status.Last != nil {
		ev, err := s.loadEvent(ctx, userID, res.Status.Last.Seq)
		if err != nil {
			return err
		}
		res.Receipt, res.Event = ev.Receipt, ev
		return nil
	}
	subject, err := s.Pseudonym(ctx, userID)
	if err != nil {
		return err
	}
	res.Receipt, err = s.sign(ctx, s.claims(receiptInput{
		subject: subject, purpose: res.Status.Purpose, action: actionOf(res.Status.Granted), method: Default,
		at: s.now(), policy: s.Policy(), receiptID: newReceiptID(), lang: s.language(ctx),
	}))
	return err
}

// loadState reads head and state (not the ledger). forWrite also refuses
// accounts being erased, whose consent no longer changes.
func (s *Service) loadState(ctx context.Context, userID string, forWrite bool) (*Stored, error) {
	st, err := s.store.State(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("read consent: %w", err)
	}
	if st == nil || forWrite && st.Erasing {
		return nil, apperr.New(apperr.NotFound, "no such user")
	}
	return st, nil
}

func (s *Service) loadEvent(ctx context.Context, userID string, seq int64) (*Event, error) {
	ev, err := s.store.Event(ctx, userID, seq)
	if err != nil {
		return nil, fmt.Errorf("read consent event: %w", err)
	}
	if ev == nil {
		return nil, fmt.Errorf("consent event %d of user %s is missing", seq, userID)
	}
	return ev, nil
}

// Ledger returns a user's current state and whole ledger, in order.
func (s *Service) Ledger(ctx context.Context, userID string) (*Stored, []Event, error) {
	st, err := s.loadState(ctx, userID, false)
	if err != nil {
		return nil, nil, err
	}
	events, err := s.store.Events(ctx, userID, 0, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("read consent ledger: %w", err)
	}
	return st, events, nil
}

// Statuses returns the user's effective consent for every purpose, with
// defaults applied for purposes never touched.
func (s *Service) Statuses(ctx context.Context, userID string) ([]Status, error) {
	st, err := s.loadState(ctx, userID, false)
	if err != nil {
		return nil, err
	}
	return s.Rules().Statuses(st), nil
}

// InForce reports whether purpose is in force for the user now.
func (s *Service) InForce(ctx context.Context, userID, purpose string) (bool, error) {
	st, err := s.loadState(ctx, userID, false)
	if err != nil {
		return false, err
	}
	return s.Rules().InForce(st, purpose), nil
}

// SignUp returns the consent a new account starts with (pass it to
// accounts.Service.Register), so it is created in the same atomic write as
// the account. Defaults need no event; with Global Privacy Control (gpc)
// the withdrawals of OPT_OUT purposes that share data with third parties
// are recorded, receipts and all.
func (s *Service) SignUp(ctx context.Context, userID string, gpc bool) (Initial, error) {
	in := Initial{State: Stored{State: map[string]Entry{}}}
	if gpc {
		pv := s.Policy()
		for _, p := range s.opts.Purposes.All() {
			if !s.gpcApplies(p) {
				continue
			}
			ev, err := s.newEvent(ctx, userID, &in.State, p, false, GPC, pv)
			if err != nil {
				return Initial{}, err
			}
			in.State.Head, in.State.HeadHash = ev.Seq, ev.Hash
			in.State.State[p.ID] = ev.entry()
			in.Events = append(in.Events, ev)
		}
	}
	return in, nil
}

// gpcApplies: Global Privacy Control withdraws OPT_OUT purposes that share
// data with third parties (opt-in purposes are off unless granted anyway).
func (s *Service) gpcApplies(p policy.Purpose) bool {
	return p.Mechanism == policy.OptOut && len(s.thirdParties(p, "")) > 0
}

// ApplyGPC honours a Global Privacy Control signal from a signed-in user:
// every OPT_OUT purpose that shares data with third parties and is in force
// only by default is withdrawn (method GPC). A grant the user made
// explicitly is respected. It returns how many withdrawals it recorded.
func (s *Service) ApplyGPC(ctx context.Context, userID string) (int, error) {
	var todo []policy.Purpose
	for _, p := range s.opts.Purposes.All() {
		if s.gpcApplies(p) {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	st, err := s.loadState(ctx, userID, false)
	if err != nil {
		return 0, err
	}
	rules, n := s.Rules(), 0
	for _, p := range todo {
		if status, _ := rules.Status(st, p.ID); !status.Granted || status.Explicit {
			continue
		}
		res, err := s.change(ctx, userID, p, false, GPC, true)
		if err != nil {
			return n, err
		}
		if res.Changed {
			n++
		}
	}
	return n, nil
}

// LedgerIntact recomputes the user's hash chain and checks every stored
// receipt; see VerifyLedger. A broken ledger is logged with the reason.
// Receipts signed with a key that was since expired (signing.Keyset.Expire)
// no longer verify, so never expire a key that ledgers still reference;
// rotation alone keeps old keys published.
func (s *Service) LedgerIntact(ctx context.Context, userID string) (bool, error) {
	// The ledger and the log are read one after the other, so a change
	// landing in between looks like a deleted or unlogged event. Tampering
	// stays put and a change in flight does not: only a problem that a
	// fresh read shows again is reported.
	const reads = 3
	var problem error
	for range reads {
		var err error
		if problem, err = s.ledgerProblem(ctx, userID); err != nil || problem == nil {
			return err == nil, err
		}
	}
	s.log.WarnContext(ctx, "consent ledger is not intact", "user", userID, "problem", problem)
	return false, nil
}

// ledgerProblem reads the ledger and its leaves in the log once and says
// what is wrong with them (nil: nothing); err is a failure to read.
func (s *Service) ledgerProblem(ctx context.Context, userID string) (problem, err error) {
	st, events, err := s.Ledger(ctx, userID)
	if err != nil {
		return nil, err
	}
	subject, err := s.Pseudonym(ctx, userID)
	if err != nil {
		return nil, err
	}
	if problem := VerifyLedger(ctx, subject, st, events, s.receiptClaims); problem != nil {
		return problem, nil
	}
	if s.opts.Log == nil {
		return nil, nil
	}
	// The chain proves order, not completeness: the log, whose history
	// others hold checkpoints of, shows a deleted or rewritten event.
	leaves, err := s.opts.Log.ProvenLeaves(ctx, logPrefix(subject))
	if errors.Is(err, translog.ErrCorrupt) || errors.Is(err, translog.ErrProof) {
		return err, nil
	}
	if err != nil {
		return nil, fmt.Errorf("check the ledger against the log: %w", err)
	}
	return checkLogged(subject, events, leaves), nil
}

func (s *Service) receiptClaims(ctx context.Context, receipt string) (*Claims, error) {
	c, err := s.verifyReceipt(ctx, receipt)
	if err != nil {
		return nil, err
	}
	return c.Claims, nil
}

// GrantedBefore lists the users whose grant of purpose was recorded under
// a policy version older than ordinal n (a new version asks them again).
func (s *Service) GrantedBefore(ctx context.Context, purpose string, n int64) ([]string, error) {
	ids, err := s.store.GrantedBefore(ctx, purpose, n)
	if err != nil {
		return nil, fmt.Errorf("list grants before policy %d: %w", n, err)
	}
	return ids, nil
}

// EachState calls fn with the stored consent of every account not being
// erased, in user id order (bulk passes such as the demographics
// reconciliation).
func (s *Service) EachState(ctx context.Context, fn func(userID string, st *Stored) error) error {
	return s.store.EachState(ctx, fn)
}
