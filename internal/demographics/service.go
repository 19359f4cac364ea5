package demographics

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/consentgraph/consentgraph/internal/envelope"
)

// Source tells the service who counts and with which values.
type Source interface {
	// Subject returns a user's current values, or nil when the user does not
	// count: unknown, erased, not a USER, or aggregate_statistics withdrawn.
	Subject(ctx context.Context, userID string) (*Subject, error)
	// Each calls fn for every user who counts, in one pass.
	Each(ctx context.Context, fn func(userID string, s *Subject) error) error
}

// Budget charges a partner's privacy budget. Charge must be atomic (one
// conditional single-document update) and charge nothing when it refuses
// (with a BUDGET_EXHAUSTED error); it returns what is left and the budget
// period charged. Refund gives back a charge of that period (nothing once
// the period is over, and never below zero spent).
type Budget interface {
	Charge(ctx context.Context, partnerID string, microEpsilon int64) (remaining float64, period int64, err error)
	Refund(ctx context.Context, partnerID string, period, microEpsilon int64) error
}

// Options configure the service.
type Options struct {
	Store   Store
	Keyring *envelope.Keyring
	Secrets *envelope.Secrets
	Source  Source
	Budget  Budget
	// K is a floor of the release threshold (see Mechanism); at least 2,
	// default 10.
	K int
	// Delta is the δ of one report (default DefaultDelta, at most MaxDelta).
	Delta float64
	// MaxEpsilon caps the epsilon of one report (default
	// DefaultMaxEpsilon, between MinEpsilon and MaxEpsilon).
	MaxEpsilon float64
	Logger     *slog.Logger
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// DefaultK is the default floor of the release threshold.
const DefaultK = 10

// DefaultMaxEpsilon is the default cap of the epsilon of one report.
const DefaultMaxEpsilon = 1.0

// Timing of the crash-safety protocol (see the package comment).
const (
	// opTimeout bounds one user's move between cells; after it the owner
	// stops writing.
	opTimeout = 30 * time.Second
	// abandonAfter is when a pending move counts as abandoned (its owner
	// crashed or gave up) and may be recovered by someone else. It is well
	// above opTimeout, so an owner never writes after a recovery.
	abandonAfter = 2 * time.Minute
	// defaultBusyWait is how long a sync waits for another replica's move
	// of the same user to finish.
	defaultBusyWait = 5 * time.Second
)

// Service keeps the pre-aggregated cells and answers partner reports.
type Service struct {
	opts Options
	log  *slog.Logger
	// maxEps is Options.MaxEpsilon in millionths.
	maxEps Epsilon
	cells  *cells
	store  Store

	locks     [64]sync.Mutex
	reconcile sync.Mutex

	// busyWait is how long a sync waits for another process's move of the
	// same user (tests shorten it).
	busyWait time.Duration
	// applyCells, when set by tests, replaces the cell writes of a move; an
	// error stops the move there, as a crash would.
	applyCells func(ctx context.Context, deltas []CellDelta) error
}

// New opens the service.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Store == nil || opts.Keyring == nil || opts.Secrets == nil || opts.Source == nil {
		return nil, errors.New("demographics: store, keyring, secrets and source are required")
	}
	if opts.K == 0 {
		opts.K = DefaultK
	}
	if opts.K < 2 {
		return nil, fmt.Errorf("demographics: k is %d, it must be at least 2", opts.K)
	}
	if opts.Delta == 0 {
		opts.Delta = DefaultDelta
	}
	if err := ParseDelta(opts.Delta); err != nil {
		return nil, fmt.Errorf("demographics: %w", err)
	}
	if opts.MaxEpsilon == 0 {
		opts.MaxEpsilon = DefaultMaxEpsilon
	}
	maxEps, err := ParseEpsilon("max epsilon", opts.MaxEpsilon)
	if err != nil {
		return nil, fmt.Errorf("demographics: the cap of one report's epsilon: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	idKey, err := opts.Secrets.Get(ctx, CellIDSecret)
	if err != nil {
		return nil, fmt.Errorf("demographics: cell id key: %w", err)
	}
	return &Service{
		opts: opts, log: opts.Logger, maxEps: maxEps,
		cells:    &cells{store: opts.Store, keyring: opts.Keyring, idKey: idKey, values: map[string][]string{}},
		store:    opts.Store,
		busyWait: defaultBusyWait,
	}, nil
}

// K is the floor of the release threshold in use.
func (s *Service) K() int { return s.opts.K }

// Delta is the δ of one report.
func (s *Service) Delta() float64 { return s.opts.Delta }

// MaxEpsilon is the cap of the epsilon of one report.
func (s *Service) MaxEpsilon() float64 { return s.maxEps.Float() }

func (s *Service) now() time.Time { return s.opts.Now().UTC() }

func (s *Service) lock(userID string) func() {
	h := fnv.New32a()
	h.Write([]byte(userID))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}
