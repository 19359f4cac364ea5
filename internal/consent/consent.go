// Package consent records users' consent per purpose: the current state and
// a hash-chained ledger of every change, side by side in the user document
// (see Field), each change one atomic single-document write; signed consent
// receipts; policy versions with material changes that need renewed
// consent; and the Global Privacy Control signal.
//
// Integration points for other domains:
//   - AddWriteHook: contribute extra fields to the very update that records a
//     change (e.g. outbox work items), so they commit or fail together.
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store"
)

// Signer signs and verifies compact JWS; *signing.Keyset implements it.
type Signer interface {
	SignCompact(ctx context.Context, payload []byte, typ string) (string, error)
	Verify(ctx context.Context, compact string) ([]byte, signing.Header, error)
}

// Options configure the service.
type Options struct {
	// DB holds the policy versions collection.
	DB *mongo.Database
	// Users is the users collection (accounts.Service.Users()); consent lives
	// in its documents under Field.
	Users         *mongo.Collection
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
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// Service manages consent. It is safe for concurrent use; register hooks
// and listeners during start-up.
type Service struct {
	users    *mongo.Collection
	policies *mongo.Collection
	opts     Options
	log      *slog.Logger
	rules    atomic.Pointer[Rules]

	mu              sync.RWMutex
	hooks           []WriteHook
	changeListeners []ChangeListener
	policyListeners []PolicyListener
}

// New opens the service, storing the initial policy version on first start.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.DB == nil || opts.Users == nil || opts.Purposes == nil || opts.Signer == nil || opts.Secrets == nil {
		return nil, errors.New("consent: db, users, purposes, signer and secrets are required")
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
	s := &Service{users: opts.Users, policies: opts.DB.Collection(PoliciesCollection), opts: opts, log: opts.Logger.With("component", "consent")}
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

// WriteHook contributes fields to the single-document update that records a
// change, so that they commit atomically with it: it returns extra $set
// entries (dotted paths into the user document, outside Field and _id),
// e.g. outbox work items "outbox.<id>". Under contention the update is
// rebuilt and the hook called again for the new attempt (with another
// Event), so a hook must not have side effects. An error aborts the change.
// Hooks are not called for the events written at sign-up (the user did not
// exist before, so no processor can hold their data).
type WriteHook func(ctx context.Context, ch Change) (bson.D, error)

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
		set := bson.D{
			{Key: Field + ".head", Value: ev.Seq},
			{Key: Field + ".headHash", Value: ev.Hash},
			{Key: Field + ".state." + p.ID, Value: ev.entry()},
			{Key: Field + ".events." + EventKey(ev.Seq), Value: ev},
		}
		for _, h := range s.hookList() {
			extra, err := h(ctx, Change{UserID: userID, Purpose: p, Granted: granted, Event: ev})
			if err != nil {
				return nil, fmt.Errorf("consent write hook: %w", err)
			}
			for _, e := range extra {
				if e.Key == "_id" || e.Key == Field || strings.HasPrefix(e.Key, Field+".") || strings.HasPrefix(e.Key, "$") {
					return nil, fmt.Errorf("consent write hook: field %q is not the hook's to set", e.Key)
				}
			}
			set = append(set, extra...)
		}
		res, err := s.users.UpdateOne(ctx, headFilter(userID, st.Head), bson.D{{Key: "$set", Value: set}})
		if err != nil {
			return nil, fmt.Errorf("record consent change: %w", err)
		}
		if res.MatchedCount == 1 {
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

// headFilter matches the user only while its ledger head is still head.
func headFilter(userID string, head int64) bson.D {
	f := bson.D{{Key: "_id", Value: userID}, {Key: erasingField, Value: bson.D{{Key: "$exists", Value: false}}}}
	if head == 0 {
		return append(f, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: Field + ".head", Value: int64(0)}},
			bson.D{{Key: Field + ".head", Value: bson.D{{Key: "$exists", Value: false}}}},
		}})
	}
	return append(f, bson.E{Key: Field + ".head", Value: head})
}

// erasingField marks an account whose erasure has begun (set by package
// accounts); its consent no longer changes.
const erasingField = "erasingSince"

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
		receiptID: ev.ReceiptID, ledger: &LedgerClaim{Sequence: ev.Seq, PreviousHash: ev.PrevHash},
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
		at: s.now(), policy: s.Policy(), receiptID: newReceiptID(),
	}))
	return err
}

type userConsent struct {
	Consent Stored `bson:"consent"`
}

// loadState reads head and state (not the ledger). forWrite skips accounts
// being erased.
func (s *Service) loadState(ctx context.Context, userID string, forWrite bool) (*Stored, error) {
	return s.load(ctx, userID, forWrite, StateProjection())
}

func (s *Service) load(ctx context.Context, userID string, forWrite bool, projection bson.D) (*Stored, error) {
	f := bson.D{{Key: "_id", Value: userID}}
	if forWrite {
		f = append(f, bson.E{Key: erasingField, Value: bson.D{{Key: "$exists", Value: false}}})
	}
	var d userConsent
	var err error
	if !forWrite && store.HasReadMemo(ctx) {
		// Within a query, share the one read of the user document.
		err = store.FindByID(ctx, s.users, userID, &d)
	} else {
		err = s.users.FindOne(ctx, f, options.FindOne().SetProjection(projection)).Decode(&d)
	}
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, apperr.New(apperr.NotFound, "no such user")
	}
	if err != nil {
		return nil, fmt.Errorf("read consent: %w", err)
	}
	return &d.Consent, nil
}

func (s *Service) loadEvent(ctx context.Context, userID string, seq int64) (*Event, error) {
	st, err := s.load(ctx, userID, false, bson.D{{Key: Field + ".events." + EventKey(seq), Value: 1}})
	if err != nil {
		return nil, err
	}
	ev, ok := st.Events[EventKey(seq)]
	if !ok {
		return nil, fmt.Errorf("consent event %d of user %s is missing", seq, userID)
	}
	return &ev, nil
}

// Load returns a user's stored consent including the ledger.
func (s *Service) Load(ctx context.Context, userID string) (*Stored, error) {
	return s.load(ctx, userID, false, bson.D{{Key: Field, Value: 1}})
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

// SignUpFields returns the fields to insert with a new account (pass them
// to accounts.Service.Register as extra), so its consent is created in the
// same atomic insert. Defaults need no event; with Global Privacy Control
// (gpc) the withdrawals of OPT_OUT purposes that share data with third
// parties are recorded, receipts and all.
func (s *Service) SignUpFields(ctx context.Context, userID string, gpc bool) (bson.D, error) {
	st := Stored{State: map[string]Entry{}, Events: map[string]Event{}}
	if gpc {
		pv := s.Policy()
		for _, p := range s.opts.Purposes.All() {
			if !s.gpcApplies(p) {
				continue
			}
			ev, err := s.newEvent(ctx, userID, &st, p, false, GPC, pv)
			if err != nil {
				return nil, err
			}
			st.Head, st.HeadHash = ev.Seq, ev.Hash
			st.State[p.ID] = ev.entry()
			st.Events[EventKey(ev.Seq)] = ev
		}
	}
	return bson.D{{Key: Field, Value: st}}, nil
}

// gpcApplies: Global Privacy Control withdraws OPT_OUT purposes that share
// data with third parties (opt-in purposes are off unless granted anyway).
func (s *Service) gpcApplies(p policy.Purpose) bool {
	return p.Mechanism == policy.OptOut && len(s.thirdParties(p)) > 0
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
	st, err := s.Load(ctx, userID)
	if err != nil {
		return false, err
	}
	subject, err := s.Pseudonym(ctx, userID)
	if err != nil {
		return false, err
	}
	if err := VerifyLedger(ctx, subject, st, s.receiptClaims); err != nil {
		s.log.WarnContext(ctx, "consent ledger is not intact", "user", userID, "problem", err)
		return false, nil
	}
	return true, nil
}

func (s *Service) receiptClaims(ctx context.Context, receipt string) (*Claims, error) {
	c, err := s.verifyReceipt(ctx, receipt)
	if err != nil {
		return nil, err
	}
	return c.Claims, nil
}
