// Package signing holds Consentgraph's single Ed25519 key set, shared by all
// server replicas through the store. It signs consent receipts and exports
// (JWS) and outgoing webhook payloads (raw Ed25519), and publishes every
// public key, including retired ones, as a JWKS so that anything signed in
// the past stays verifiable after a rotation.
package signing

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/consentgraph/consentgraph/internal/envelope"
)

// unknownKidRefreshInterval bounds how often a signature by an unknown kid
// may trigger a reload, so forged kids cannot hammer the database.
const unknownKidRefreshInterval = 10 * time.Second

// PublicKey describes one key of the set.
type PublicKey struct {
	Kid        string
	Key        ed25519.PublicKey
	Generation int64
	Active     bool
	CreatedAt  time.Time
	RetiredAt  time.Time // zero unless retired
	ExpiresAt  time.Time // zero unless expired or scheduled to expire
}

func (p PublicKey) expired(now time.Time) bool {
	return !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt)
}

// state is an immutable snapshot of the key set; it is swapped as a whole so
// a signer always sees a matching kid and private key.
type state struct {
	keys       map[string]PublicKey
	active     string
	generation int64
	signer     ed25519.PrivateKey
}

// Keyset signs with the active key and verifies with any published key.
// It is safe for concurrent use.
type Keyset struct {
	store Store
	kr    *envelope.Keyring
	log   *slog.Logger

	state atomic.Pointer[state]

	refreshMu   sync.Mutex // serializes reloads
	lastRefresh time.Time  // guarded by refreshMu
	minRefresh  time.Duration
}

// Open loads the key set from the store, creating its first key if there is
// none. Replicas opening an empty store at the same time agree on one active
// key: generations are unique, so only one first key can be stored.
func Open(ctx context.Context, st Store, kr *envelope.Keyring, logger *slog.Logger) (*Keyset, error) {
	if logger == nil {
		logger = slog.Default()
	}
	ks := &Keyset{
		store:      st,
		kr:         kr,
		log:        logger.With("component", "signing"),
		minRefresh: unknownKidRefreshInterval,
	}
	snap, err := ks.load(ctx, nil)
	if errors.Is(err, errNoKeys) {
		if _, err := ks.insertKey(ctx, 1); err != nil && !errors.Is(err, errGenerationTaken) {
			return nil, fmt.Errorf("create first signing key: %w", err)
		}
		snap, err = ks.load(ctx, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("open signing keys: %w", err)
	}
	ks.state.Store(snap)
	ks.lastRefresh = time.Now()
	return ks, nil
}

var (
	errNoKeys          = errors.New("no signing keys")
	errGenerationTaken = errors.New("signing key generation taken")
)

func privateKeyAAD(kid string) string { return "signing-key:" + kid }

// insertKey generates a key and stores it as the given generation. It fails
// with errGenerationTaken if that generation already exists, i.e. another
// replica got there first; nothing is left behind in that case.
func (ks *Keyset) insertKey(ctx context.Context, generation int64) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate signing key: %w", err)
	}
	kidRaw := make([]byte, 16)
	_, _ = rand.Read(kidRaw)
	kid := base64.RawURLEncoding.EncodeToString(kidRaw)
	wrapped, err := ks.kr.Wrap(priv.Seed(), privateKeyAAD(kid))
	if err != nil {
		return "", fmt.Errorf("wrap signing key: %w", err)
	}
	ok, err := ks.store.InsertKey(ctx, KeyRecord{
		Kid:         kid,
		Generation:  generation,
		Alg:         algEdDSA,
		PublicKey:   pub,
		PrivateKey:  wrapped,
		MasterKeyID: ks.kr.CurrentKeyID(),
		CreatedAt:   time.Now().UTC().Truncate(time.Millisecond),
	})
	if err != nil {
		return "", fmt.Errorf("store signing key: %w", err)
	}
	if !ok {
		return "", errGenerationTaken
	}
	return kid, nil
}

// load reads all keys in one query. prev lets an unchanged active key skip
// unwrapping.
func (ks *Keyset) load(ctx context.Context, prev *state) (*state, error) {
	docs, err := ks.store.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	if len(docs) == 0 {
		return nil, errNoKeys
	}

	st := &state{keys: make(map[string]PublicKey, len(docs))}
	var active *KeyRecord
	for i, d := range docs {
		if d.Alg != algEdDSA || len(d.PublicKey) != ed25519.PublicKeySize {
			ks.log.WarnContext(ctx, "ignoring unusable signing key", "kid", d.Kid, "alg", d.Alg)
			continue
		}
		pk := PublicKey{
			Kid:        d.Kid,
			Key:        ed25519.PublicKey(d.PublicKey),
			Generation: d.Generation,
			CreatedAt:  d.CreatedAt,
		}
		if d.RetiredAt != nil {
			pk.RetiredAt = *d.RetiredAt
		}
		if d.ExpiresAt != nil {
			pk.ExpiresAt = *d.ExpiresAt
		}
		st.keys[d.Kid] = pk
		if active == nil || d.Generation > active.Generation {
			active = &docs[i]
		}
	}
	if active == nil {
		return nil, errors.New("no usable signing key")
	}
	st.active, st.generation = active.Kid, active.Generation
	pk := st.keys[active.Kid]
	pk.Active = true
	st.keys[active.Kid] = pk

	if prev != nil && prev.active == active.Kid {
		st.signer = prev.signer
		return st, nil
	}
	seed, err := ks.kr.Unwrap(active.PrivateKey, privateKeyAAD(active.Kid))
	if err != nil {
		return nil, fmt.Errorf("unwrap active signing key %s (is the master key it was wrapped with configured?): %w", active.Kid, err)
	}
	defer clear(seed)
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("active signing key %s: seed has %d bytes", active.Kid, len(seed))
	}
	st.signer = ed25519.NewKeyFromSeed(seed)
	if !bytes.Equal(st.signer.Public().(ed25519.PublicKey), active.PublicKey) {
		return nil, fmt.Errorf("active signing key %s: private key does not match its public key", active.Kid)
	}
	return st, nil
}

// Refresh reloads the key set, picking up rotations made by other replicas.
// On error the previous key set stays in use.
func (ks *Keyset) Refresh(ctx context.Context) error {
	ks.refreshMu.Lock()
	defer ks.refreshMu.Unlock()
	return ks.refreshLocked(ctx)
}

func (ks *Keyset) refreshLocked(ctx context.Context) error {
	prev := ks.state.Load()
	st, err := ks.load(ctx, prev)
	if err != nil {
		return fmt.Errorf("refresh signing keys: %w", err)
	}
	ks.state.Store(st)
	ks.lastRefresh = time.Now()
	if st.active != prev.active {
		ks.log.InfoContext(ctx, "active signing key changed", "kid", st.active, "previous_kid", prev.active)
	}
	return nil
}

// refreshForUnknownKid reloads unless a reload happened recently. Callers
// re-check the snapshot afterwards either way: if another goroutine was
// already reloading, waiting for it gives the same result.
func (ks *Keyset) refreshForUnknownKid(ctx context.Context) {
	ks.refreshMu.Lock()
	defer ks.refreshMu.Unlock()
	if time.Since(ks.lastRefresh) < ks.minRefresh {
		return
	}
	if err := ks.refreshLocked(ctx); err != nil {
		ks.log.WarnContext(ctx, "reload for unknown kid failed", "err", err)
		// Count the failed attempt too, so a broken store is not hammered.
		ks.lastRefresh = time.Now()
	}
}

// Run refreshes the key set every interval until ctx is done, so that a
// rotation on one replica reaches the signers on all others.
func (ks *Keyset) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := ks.Refresh(ctx); err != nil && ctx.Err() == nil {
				ks.log.WarnContext(ctx, "periodic signing key refresh failed", "err", err)
			}
		}
	}
}

// Rotate creates a new key and makes it the active one; older keys are
// retired (their private keys deleted) but stay published for verification.
// If another replica rotates at the same moment, only one new key wins and
// Rotate returns the winner's kid.
func (ks *Keyset) Rotate(ctx context.Context) (newKid string, err error) {
	// Rotate from what the store says, not from this replica's snapshot.
	if err := ks.Refresh(ctx); err != nil {
		return "", fmt.Errorf("rotate: %w", err)
	}
	gen := ks.state.Load().generation + 1
	kid, err := ks.insertKey(ctx, gen)
	if errors.Is(err, errGenerationTaken) {
		// Lost to a concurrent rotation: that one's key is fresh too.
		if err := ks.Refresh(ctx); err != nil {
			return "", fmt.Errorf("rotate: %w", err)
		}
		kid = ks.state.Load().active
		ks.log.InfoContext(ctx, "signing key rotated concurrently by another replica", "kid", kid)
		return kid, nil
	}
	if err != nil {
		return "", fmt.Errorf("rotate: %w", err)
	}
	if err := ks.retireBelow(ctx, gen); err != nil {
		// The rotation itself has happened; only the clean-up is missing and
		// the next Rotate or RewrapAll repeats it.
		ks.log.WarnContext(ctx, "could not retire old signing keys", "err", err)
	}
	ks.log.InfoContext(ctx, "rotated signing key", "kid", kid, "generation", gen)
	if err := ks.Refresh(ctx); err != nil {
		return kid, fmt.Errorf("rotate: %w", err)
	}
	return kid, nil
}

// retireBelow marks every key older than generation retired and deletes its
// private key: old keys only verify from now on, and a later leak of store
// and master key cannot forge signatures under their kids. Idempotent.
func (ks *Keyset) retireBelow(ctx context.Context, generation int64) error {
	if err := ks.store.RetireBelow(ctx, generation, time.Now().UTC().Truncate(time.Millisecond)); err != nil {
		return fmt.Errorf("retire signing keys: %w", err)
	}
	return nil
}

// Expire stops publishing and accepting a retired key from at onwards.
// Signatures made with it no longer verify after that, so only expire keys
// whose signatures nobody needs to check any more. The active key cannot be
// expired; rotate first.
func (ks *Keyset) Expire(ctx context.Context, kid string, at time.Time) error {
	if err := ks.Refresh(ctx); err != nil {
		return err
	}
	st := ks.state.Load()
	if _, ok := st.keys[kid]; !ok {
		return fmt.Errorf("expire signing key %q: %w", kid, ErrUnknownKey)
	}
	if kid == st.active {
		return fmt.Errorf("expire signing key %q: it is the active key", kid)
	}
	if err := ks.store.SetExpiry(ctx, kid, at.UTC().Truncate(time.Millisecond)); err != nil {
		return fmt.Errorf("expire signing key %q: %w", kid, err)
	}
	return ks.Refresh(ctx)
}

// RewrapAll re-wraps the active private key under the current master key
// after a master-key rotation and returns how many keys it changed. Older
// keys that still hold a private key (a Rotate interrupted before clean-up)
// are retired instead of re-wrapped.
func (ks *Keyset) RewrapAll(ctx context.Context) (n int, err error) {
	if err := ks.Refresh(ctx); err != nil {
		return 0, err
	}
	st := ks.state.Load()
	if err := ks.retireBelow(ctx, st.generation); err != nil {
		return 0, err
	}
	keys, err := ks.store.Keys(ctx)
	if err != nil {
		return 0, fmt.Errorf("read active signing key: %w", err)
	}
	var d *KeyRecord
	for i := range keys {
		if keys[i].Kid == st.active {
			d = &keys[i]
		}
	}
	if d == nil {
		return 0, fmt.Errorf("read active signing key: %s is gone", st.active)
	}
	out, changed, err := ks.kr.Rewrap(d.PrivateKey, privateKeyAAD(d.Kid))
	if err != nil {
		return 0, fmt.Errorf("rewrap signing key %s: %w", d.Kid, err)
	}
	if !changed {
		return 0, nil
	}
	// Conditional on the old blob, so that a private key a concurrent
	// rotation has just deleted is not resurrected.
	ok, err := ks.store.SwapPrivateKey(ctx, d.Kid, d.PrivateKey, out, ks.kr.CurrentKeyID())
	if err != nil {
		return 0, fmt.Errorf("store rewrapped signing key %s: %w", d.Kid, err)
	}
	if !ok {
		return 0, nil
	}
	return 1, nil
}

// ActiveKid returns the kid new signatures are made with.
func (ks *Keyset) ActiveKid() string { return ks.state.Load().active }

// PublicKeys returns every key of the set, newest (the active one) first.
// Expired keys are included, marked by ExpiresAt.
func (ks *Keyset) PublicKeys() []PublicKey {
	st := ks.state.Load()
	out := make([]PublicKey, 0, len(st.keys))
	for _, k := range st.keys {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b PublicKey) int { return cmp.Compare(b.Generation, a.Generation) })
	return out
}

// publicKey returns a non-expired key by kid, reloading at most once per
// interval when the kid is unknown (another replica may have rotated).
func (ks *Keyset) publicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	k, ok := ks.state.Load().keys[kid]
	if !ok {
		ks.refreshForUnknownKid(ctx)
		k, ok = ks.state.Load().keys[kid]
	}
	if !ok {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
	}
	if k.expired(time.Now()) {
		return nil, fmt.Errorf("%w: kid %q expired", ErrUnknownKey, kid)
	}
	return k.Key, nil
}
