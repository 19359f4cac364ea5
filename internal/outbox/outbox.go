// Package outbox hands users' data to processors (plugins) only while their
// consent is in force, and tells processors to forget users on withdrawal or
// erasure, so that nothing is lost or duplicated under crashes.
//
// # Design
//
// Work items are born inside the consent change itself. The consent
// service's write hook (see consent.WriteHook) hands the items to the
// store operation that records the grant or withdrawal, so the consent
// event and its work items commit or fail together: there is no moment
// where one exists without the other. The embedded store writes both in
// one transaction; the MongoDB store writes them in one single-document
// update of the user and then relays the items to the queue idempotently
// (Store.Relay), right after the change and as a periodic recovery sweep.
//
// Account events (an email added, a profile field a processor receives
// changed) enqueue items directly after their commit. Erasure enqueues one
// forget per processor that was ever attempted for the user, under a
// deterministic id, before the account is deleted; a failure pauses the
// erasure, which is resumed later, so that forget cannot be lost either.
//
// Dispatchers claim due items with a lease (Store.Claim; every replica may
// run one). Items of one user and processor run one at a time, so a
// delivery and a forget of the same user never race at the provider. A
// claim increments the attempt count; finishing is guarded by the owner
// and attempt, so an item whose lease ran out and was claimed elsewhere is
// never overwritten by the slow first holder. Failures are retried with exponential backoff
// and full jitter, up to MaxAttempts, then the item is DEAD and visible to
// admins, who can retry it. A throttle (the provider asked to wait:
// plugins.RetryAfter) waits as asked (at most MaxThrottleWait) and does not
// count as an attempt while the item is younger than ThrottleWindow, so a
// long rate limit delays items but never kills them. A success clears the
// item's lastError. Every request
// to a processor carries the item id as idempotency key, so at-least-once
// delivery has an exactly-once effect.
//
// At delivery time consent is checked again: a delivery whose consent is
// no longer in force is SKIPPED, a forget whose consent is in force again
// or for which nothing was ever delivered is SKIPPED; whichever order
// items are processed in, the provider ends in the state the consent says.
// Personal values are never stored in items: they hold field names, and
// values are read (decrypted) at delivery time, so an erased user's
// crypto-shredded data can never go out late.
//
// Per user and processor, the store keeps a ProcState: {attempted,
// delivered, ref} (ref is the provider's id for the user, e.g. a contact id
// or Mailchimp's MD5 member hash, never a clear value). A delivery whose
// Result.Ref is empty keeps the earlier ref. Attempted is recorded before
// the call and ref only after it, so a crash in between leaves a delivery
// that may have reached the provider without a ref: the forget that
// follows is still sent (with Ref "", which is why every processor's Forget
// must work from the Subject alone); a forget is skipped only when no
// delivery was ever attempted.
package outbox

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/internal/work"
	"github.com/consentgraph/consentgraph/plugins"
)

// Action is what an item asks of a processor.
type Action = work.Action

// The actions.
const (
	Deliver = work.Deliver
	Forget  = work.Forget
)

// State is an item's delivery state.
type State = work.State

// The delivery states (see package work).
const (
	Pending = work.Pending
	Waiting = work.Waiting
	Done    = work.Done
	Skipped = work.Skipped
	Dead    = work.Dead
)

// NeedsEmail is the note on an item waiting for an email address, and
// NeedsVerifiedEmail on one waiting for the given address to be verified.
const (
	NeedsEmail         = "NEEDS_EMAIL"
	NeedsVerifiedEmail = "NEEDS_VERIFIED_EMAIL"
)

// Item is one unit of work.
type Item = work.Item

// Processor is a configured processor instance.
type Processor struct {
	Name    string
	Type    string
	Purpose string
	Fields  []string
	// Requires are the categories delivery waits for: the type's and the
	// instance's own.
	Requires    []string
	Description string
	// Descriptions are Description per language, when configured so.
	Descriptions map[string]string
	Manifest     plugins.Manifest
	Impl         plugins.Processor

	mu      sync.Mutex
	enabled bool
	health  atomic.Pointer[Health] // health.go
}

// Enabled reports whether the processor gets work.
func (p *Processor) Enabled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enabled
}

func (p *Processor) setEnabled(v bool) {
	p.mu.Lock()
	p.enabled = v
	p.mu.Unlock()
}

func (p *Processor) needsEmail() bool {
	return slices.Contains(p.Requires, policy.CategoryEmail)
}

// Tuning adjusts a dispatcher; zero values take the defaults in brackets.
type Tuning struct {
	PollInterval  time.Duration // [1s] between looks for due items
	Lease         time.Duration // [30s] how long a claim lasts (a crashed replica's work waits this long)
	CallTimeout   time.Duration // [10s] per processor call (at most Lease/2)
	BaseBackoff   time.Duration // [5s] first retry delay
	MaxBackoff    time.Duration // [1h] retry delay cap
	MaxAttempts   int           // [12] attempts before DEAD (throttled attempts do not count)
	Batch         int           // [32] items claimed per look
	Workers       int           // [8] concurrent calls per dispatcher
	SweepInterval time.Duration // [1m] relay recovery sweep

	// MaxThrottleWait caps one wait a provider asks for (Retry-After or a
	// rate-limit reset header) [24h: a daily quota's reset]; a shorter ask
	// is honoured as is, but no sooner than PollInterval.
	MaxThrottleWait time.Duration
	// ThrottleWindow is how long after its creation an item's throttled
	// attempts stay free [7 days]; later, a throttle counts as an attempt,
	// so a provider that throttles for ever still ends in DEAD.
	ThrottleWindow time.Duration
}

func (t Tuning) withDefaults() Tuning {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.PollInterval, time.Second)
	def(&t.Lease, 30*time.Second)
	def(&t.CallTimeout, 10*time.Second)
	def(&t.BaseBackoff, 5*time.Second)
	def(&t.MaxBackoff, time.Hour)
	def(&t.SweepInterval, time.Minute)
	def(&t.MaxThrottleWait, 24*time.Hour)
	def(&t.ThrottleWindow, 7*24*time.Hour)
	if t.MaxAttempts <= 0 {
		t.MaxAttempts = 12
	}
	if t.Batch <= 0 {
		t.Batch = 32
	}
	if t.Workers <= 0 {
		t.Workers = 8
	}
	t.CallTimeout = min(t.CallTimeout, t.Lease/2)
	return t
}

// Options configure the service.
type Options struct {
	Store    Store
	Accounts *accounts.Service
	Consent  *consent.Service
	Purposes *policy.Catalog
	Secrets  *envelope.Secrets
	Signer   plugins.Signer
	// Processors come from the config file.
	Processors []config.Processor
	HTTPClient *http.Client
	PublicURL  string
	Logger     *slog.Logger
	Now        func() time.Time

	// Tuning is the default dispatcher tuning (Dispatcher can override).
	Tuning Tuning
	// OnOutcome, if set, learns how each attempt ended: the item's new
	// state in lower case (done, skipped, waiting, dead) or "retry".
	OnOutcome func(processor string, action Action, outcome string)
	// Tracer, if set, makes a span per attempt (a trace of its own, with
	// the store calls and provider calls inside it).
	Tracer trace.Tracer
}

// Service is the outbox.
type Service struct {
	store  Store
	opts   Options
	log    *slog.Logger
	procs  []*Processor
	byName map[string]*Processor

	keyMu sync.Mutex
	keys  map[string][]byte
}

// New validates the configured processors (unknown type, bad settings, or
// a field its purpose does not allow stop start-up) and wires the service
// into consent and accounts.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Store == nil || opts.Accounts == nil || opts.Consent == nil || opts.Purposes == nil || opts.Secrets == nil {
		return nil, errors.New("outbox: store, accounts, consent, purposes and secrets are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Tuning = opts.Tuning.withDefaults()
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: opts.Tuning.CallTimeout}
	}
	s := &Service{
		store: opts.Store, opts: opts, log: opts.Logger.With("component", "outbox"),
		byName: map[string]*Processor{}, keys: map[string][]byte{},
	}
	var errs []error
	for i, c := range opts.Processors {
		p, err := s.build(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("processors[%d] (%s): %w", i, c.Name, err))
			continue
		}
		s.procs = append(s.procs, p)
		s.byName[p.Name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("processor configuration: %w", err)
	}
	if err := s.RefreshEnabled(ctx); err != nil {
		return nil, err
	}
	opts.Consent.AddWriteHook(s.writeHook)
	opts.Consent.OnChange(func(ctx context.Context, userID, _ string, _ bool) {
		if err := s.RelayUser(ctx, userID); err != nil {
			s.log.WarnContext(ctx, "relay after consent change failed; the sweep will retry", "user", userID, "err", err)
		}
	})
	opts.Accounts.Subscribe(s.onAccountChange)
	opts.Accounts.Subscribe(s.onAccountChangeLinks)
	opts.Consent.OnPolicyPublished(s.onPolicyPublished)
	return s, nil
}

func (s *Service) build(c config.Processor) (*Processor, error) {
	m, factory, ok := plugins.Lookup(c.Type)
	if !ok {
		return nil, fmt.Errorf("unknown type %q (known: %v)", c.Type, plugins.Types())
	}
	purpose := c.Purpose
	if purpose == "" {
		purpose = m.Purpose
	}
	if purpose == "" {
		return nil, errors.New("purpose is required for this type")
	}
	pp, ok := s.opts.Purposes.Get(purpose)
	if !ok {
		return nil, fmt.Errorf("purpose %q is not configured", purpose)
	}
	fields := c.Fields
	if len(fields) == 0 {
		fields = slices.Clone(m.DataCategories)
		fields = slices.DeleteFunc(fields, func(f string) bool { return !slices.Contains(pp.DataCategories, f) })
	}
	for _, f := range fields {
		switch {
		case !policy.KnownCategory(f):
			return nil, fmt.Errorf("fields: %q is not a known data category", f)
		case !slices.Contains(m.DataCategories, f):
			return nil, fmt.Errorf("fields: type %s does not use %q (it uses %v)", c.Type, f, m.DataCategories)
		case !slices.Contains(pp.DataCategories, f):
			return nil, fmt.Errorf("fields: purpose %q does not allow %q (it allows %v)", purpose, f, pp.DataCategories)
		}
	}
	for _, r := range m.Requires {
		if !slices.Contains(fields, r) {
			return nil, fmt.Errorf("fields: type %s needs %q", c.Type, r)
		}
	}
	requires := slices.Clone(m.Requires)
	for _, r := range c.Requires {
		if !slices.Contains(fields, r) {
			return nil, fmt.Errorf("requires: %q is not one of the instance's fields %v", r, fields)
		}
		if !slices.Contains(requires, r) {
			requires = append(requires, r)
		}
	}
	impl, err := factory(plugins.Env{
		Name: c.Name, Purpose: purpose, Fields: fields, Settings: c.Settings, Signer: s.opts.Signer,
		HTTPClient: s.opts.HTTPClient, State: s.store.PluginState(c.Name), PublicURL: s.opts.PublicURL, Logger: s.log.With("processor", c.Name),
		Links: s.linkStore(c.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("type %s: %w", c.Type, err)
	}
	if _, ok := impl.(plugins.Actor); len(m.Actions) > 0 && !ok {
		return nil, fmt.Errorf("type %s declares actions but does not implement plugins.Actor", c.Type)
	}
	desc := m.Description
	if d, ok := c.Settings["description"].(string); ok && d != "" {
		desc = d
	}
	return &Processor{Name: c.Name, Type: c.Type, Purpose: purpose, Fields: fields, Requires: requires, Description: desc,
		Descriptions: c.Descriptions, Manifest: m, Impl: impl, enabled: true}, nil
}

// DescriptionIn is the processor's description in lang, else Description.
func (p *Processor) DescriptionIn(lang string) string {
	if d, ok := p.Descriptions[lang]; ok {
		return d
	}
	return p.Description
}

// Processors lists the configured processors in config order.
func (s *Service) Processors() []*Processor { return s.procs }

// Processor returns one by name.
func (s *Service) Processor(name string) (*Processor, bool) {
	p, ok := s.byName[name]
	return p, ok
}

// ForPurpose lists the processors bound to purpose.
func (s *Service) ForPurpose(purpose string) []*Processor {
	var out []*Processor
	for _, p := range s.procs {
		if p.Purpose == purpose {
			out = append(out, p)
		}
	}
	return out
}

// ThirdParties names the processors bound to purpose (for receipts).
func (s *Service) ThirdParties(purpose string) []string {
	var out []string
	for _, p := range s.ForPurpose(purpose) {
		out = append(out, p.Name)
	}
	return out
}

// RefreshEnabled reads the enabled flags (set by any replica).
func (s *Service) RefreshEnabled(ctx context.Context) error {
	flags, err := s.store.ProcessorFlags(ctx)
	if err != nil {
		return fmt.Errorf("read processor flags: %w", err)
	}
	for name, enabled := range flags {
		if p, ok := s.byName[name]; ok {
			p.setEnabled(enabled)
		}
	}
	return nil
}

// SetEnabled turns a processor on or off; a disabled processor's items wait.
func (s *Service) SetEnabled(ctx context.Context, name string, enabled bool) (*Processor, error) {
	p, ok := s.byName[name]
	if !ok {
		return nil, &apperr.Error{Code: apperr.NotFound, Field: "name", Message: fmt.Sprintf("there is no processor %q", name)}
	}
	if err := s.store.SetProcessorFlag(ctx, name, enabled); err != nil {
		return nil, fmt.Errorf("set processor flag: %w", err)
	}
	p.setEnabled(enabled)
	return p, nil
}

// NewID returns a fresh item id that sorts by creation time.
func (s *Service) NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%016x%s", s.opts.Now().UnixNano(), hex.EncodeToString(b))
}

func (s *Service) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

func (s *Service) newItem(userID string, p *Processor, a Action, cause string) Item {
	now := s.now()
	return Item{ID: s.NewID(), UserID: userID, Processor: p.Name, Purpose: p.Purpose, Action: a, Cause: cause,
		State: Pending, NextAt: now, CreatedAt: now, UpdatedAt: now}
}

// writeHook adds one item per processor of the purpose to the consent
// change's own write. It has no side effects.
func (s *Service) writeHook(_ context.Context, ch consent.Change) ([]Item, error) {
	var items []Item
	for _, p := range s.ForPurpose(ch.Purpose.ID) {
		a := Forget
		if ch.Granted {
			a = Deliver
		}
		items = append(items, s.newItem(ch.UserID, p, a, "consent "+consent.EventKey(ch.Event.Seq)))
	}
	return items, nil
}

// SignUpWork returns the work a new account starts with, for the sign-up's
// own write: a delivery to each processor of an OPT_OUT purpose, whose
// consent is in force from the first moment — unless Global Privacy
// Control withdrew it (GPC withdraws every opt-out purpose that shares data,
// and a purpose with a processor does).
func (s *Service) SignUpWork(userID string, gpc bool) []Item {
	if gpc {
		return nil
	}
	var items []Item
	for _, p := range s.procs {
		pur, ok := s.opts.Purposes.Get(p.Purpose)
		if !ok || pur.Mechanism != policy.OptOut {
			continue
		}
		items = append(items, s.newItem(userID, p, Deliver, "sign-up: opt-out purpose in force by default"))
	}
	return items
}

// onPolicyPublished: grants of the purposes a new policy changed materially
// stop counting, so their processors are told to forget those users. The
// forget re-checks consent when it runs, so whoever grants again in the
// meantime keeps their data there. Ids are deterministic: announcing the
// same version twice (another replica) enqueues nothing new.
func (s *Service) onPolicyPublished(ctx context.Context, pv consent.PolicyVersion) {
	for _, purpose := range pv.Reconsent {
		procs := s.ForPurpose(purpose)
		if len(procs) == 0 {
			continue
		}
		users, err := s.opts.Consent.GrantedBefore(ctx, purpose, pv.N)
		if err != nil {
			s.log.ErrorContext(ctx, "reconsent: list affected users", "purpose", purpose, "err", err)
			continue
		}
		for _, u := range users {
			for _, p := range procs {
				it := s.newItem(u, p, Forget, "policy "+pv.Version+" asks for consent again")
				it.ID = fmt.Sprintf("reconsent-%d-%s-%s", pv.N, p.Name, u)
				if _, err := s.store.Enqueue(ctx, it); err != nil {
					s.log.ErrorContext(ctx, "reconsent: enqueue forget", "processor", p.Name, "err", err)
				}
			}
		}
	}
}

// RelayUser moves the work items committed with a user's consent change or
// sign-up into the queue, where the store keeps them elsewhere first. It is
// idempotent.
func (s *Service) RelayUser(ctx context.Context, userID string) error {
	if _, err := s.store.Relay(ctx, userID); err != nil {
		return fmt.Errorf("relay work items: %w", err)
	}
	return nil
}

// Sweep relays every user's pending work items (recovery after a crash
// between a consent change and its relay). It returns how many users had
// items.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	n, err := s.store.Relay(ctx, "")
	if err != nil {
		return n, fmt.Errorf("sweep outbox: %w", err)
	}
	return n, nil
}

// categoryOfField maps accounts' changed-field names to data categories.
var categoryOfField = map[string]string{
	"email":             policy.CategoryEmail,
	"profile.birthYear": policy.CategoryAgeBand,
	"profile.country":   policy.CategoryCountry,
	"profile.gender":    policy.CategoryGender,
	"profile.language":  policy.CategoryLanguage,
}

func (s *Service) onAccountChange(ctx context.Context, c accounts.Change) error {
	switch c.Kind {
	case accounts.Registered:
		return s.RelayUser(ctx, c.UserID)
	case accounts.Erasing:
		return s.enqueueErasure(ctx, c.UserID)
	case accounts.EmailChanged, accounts.EmailVerified, accounts.ProfileChanged:
		return s.enqueueUpdates(ctx, c)
	}
	return nil
}

// enqueueErasure records a forget for every processor ever attempted for
// the user, under deterministic ids (the erasure may be announced again).
func (s *Service) enqueueErasure(ctx context.Context, userID string) error {
	d, err := s.store.Recipient(ctx, userID)
	if err != nil || d == nil {
		return err
	}
	for name, st := range d.Procs {
		p, ok := s.byName[name]
		if !ok || !st.Attempted {
			continue
		}
		it := s.newItem(userID, p, Forget, "erasure")
		it.ID = "erase-" + name + "-" + userID
		it.Erase, it.Ref = true, st.Ref
		if _, err := s.store.Enqueue(ctx, it); err != nil {
			return fmt.Errorf("enqueue forget on erasure: %w", err)
		}
	}
	return nil
}

// enqueueUpdates: an email given or a delivered field changed while
// consent is in force → a fresh delivery; waiting items wake up.
func (s *Service) enqueueUpdates(ctx context.Context, c accounts.Change) error {
	if c.Kind != accounts.ProfileChanged {
		if err := s.store.WakeWaiting(ctx, c.UserID, s.now()); err != nil {
			return fmt.Errorf("wake waiting items: %w", err)
		}
	}
	d, err := s.store.Recipient(ctx, c.UserID)
	if err != nil || d == nil {
		return err
	}
	rules := s.opts.Consent.Rules()
	for _, p := range s.procs {
		if !d.Procs[p.Name].Delivered || !rules.InForce(&d.Consent, p.Purpose) {
			continue
		}
		var cause string
		for _, f := range c.Fields {
			if slices.Contains(p.Fields, categoryOfField[f]) {
				cause = f
				break
			}
		}
		if cause == "" {
			continue
		}
		if _, err := s.store.Enqueue(ctx, s.newItem(c.UserID, p, Deliver, cause)); err != nil {
			return fmt.Errorf("enqueue update: %w", err)
		}
	}
	return nil
}

// Pseudonym is the user's subject id for one processor: HMAC-SHA256 of
// the user id under a key of the processor's own.
func (s *Service) Pseudonym(ctx context.Context, processor, userID string) (string, error) {
	s.keyMu.Lock()
	key, ok := s.keys[processor]
	s.keyMu.Unlock()
	if !ok {
		var err error
		if key, err = s.opts.Secrets.Get(ctx, "processor-pseudonym:"+processor); err != nil {
			return "", fmt.Errorf("processor pseudonym key: %w", err)
		}
		s.keyMu.Lock()
		s.keys[processor] = key
		s.keyMu.Unlock()
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(userID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// EmailNeed tells why purpose, granted by u, waits before some enabled
// processor can act: NeedsEmail (no address), NeedsVerifiedEmail (an
// address not yet verified), or "" when it does not wait.
func (s *Service) EmailNeed(u *accounts.User, purpose string) string {
	need := ""
	for _, p := range s.ForPurpose(purpose) {
		if n := emailNeed(p, u); n == NeedsEmail {
			return n
		} else if n != "" {
			need = n
		}
	}
	return need
}

// emailNeed is EmailNeed for one processor. Every processor that declared
// the email needs a verified one: an unverified address belongs to nobody
// yet, so no processor ever receives it (fieldValues enforces it too).
func emailNeed(p *Processor, u *accounts.User) string {
	switch {
	case !p.needsEmail():
		return ""
	case u.Email == nil:
		return NeedsEmail
	case !u.EmailVerified:
		return NeedsVerifiedEmail
	}
	return ""
}

func fieldValues(u *accounts.User, fields []string, now time.Time) map[string]string {
	out := map[string]string{}
	put := func(k string, v *string) {
		if v != nil && *v != "" {
			out[k] = *v
		}
	}
	for _, f := range fields {
		switch f {
		case policy.CategoryEmail:
			// The one place every processor payload is built: an address
			// is given only once verified, whatever the processor declared.
			if u.EmailVerified {
				put(f, u.Email)
			}
		case policy.CategoryAgeBand:
			if u.Profile.BirthYear != nil {
				band := ageBand(*u.Profile.BirthYear, now)
				put(f, &band)
			}
		case policy.CategoryCountry:
			put(f, u.Profile.Country)
		case policy.CategoryGender:
			put(f, u.Profile.Gender)
		case policy.CategoryLanguage:
			put(f, u.Profile.Language)
		}
	}
	return out
}

func ageBand(birthYear int, now time.Time) string {
	age := now.Year() - birthYear
	bounds := []struct {
		below int
		band  string
	}{{18, "under 18"}, {25, "18-24"}, {35, "25-34"}, {45, "35-44"}, {55, "45-54"}, {65, "55-64"}}
	for _, b := range bounds {
		if age < b.below {
			return b.band
		}
	}
	return "65+"
}
