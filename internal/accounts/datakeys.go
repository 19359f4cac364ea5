package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/envelope"
)

// ErrShredded means the user's data key is gone: the account was erased and
// whatever copies of its sealed data remain can no longer be read.
var ErrShredded = errors.New("data key destroyed")

// dataKey returns the user's unwrapped key, from a short-lived cache when
// possible (it saves a store round trip on every read of personal data).
func (s *Service) dataKey(ctx context.Context, userID string) (*envelope.DataKey, error) {
	if dk, ok := s.keyCache.get(userID, time.Now()); ok {
		return dk, nil
	}
	wrapped, err := s.store.DataKey(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("find data key: %w", err)
	}
	if wrapped == nil {
		return nil, fmt.Errorf("user %s: %w", userID, ErrShredded)
	}
	dk, err := s.opts.Keyring.OpenDataKey(wrapped, dataKeyAAD(userID))
	if err != nil {
		return nil, fmt.Errorf("open data key of user %s: %w", userID, err)
	}
	s.keyCache.put(userID, dk, time.Now().Add(keyCacheTTL))
	return dk, nil
}

// shredKey destroys a user's data key.
func (s *Service) shredKey(ctx context.Context, userID string) error {
	s.keyCache.drop(userID)
	if err := s.store.DeleteDataKey(ctx, userID); err != nil {
		return fmt.Errorf("destroy data key: %w", err)
	}
	return nil
}

// RewrapDataKeys re-wraps every data key under the current master key, one
// document at a time: each is readable under either key throughout, so
// reads never stop during a master key rotation.
func (s *Service) RewrapDataKeys(ctx context.Context) (rewrapped int, err error) {
	err = s.store.EachDataKey(ctx, func(k DataKey) error {
		out, changed, err := s.opts.Keyring.RewrapDataKey(k.Wrapped, dataKeyAAD(k.UserID))
		if err != nil {
			return fmt.Errorf("rewrap data key of %s: %w", k.UserID, err)
		}
		if !changed {
			return nil
		}
		// Conditional on the old blob, so a concurrent erasure is not undone.
		ok, err := s.store.SwapDataKey(ctx, k.UserID, k.Wrapped, out)
		if err != nil {
			return fmt.Errorf("store rewrapped key of %s: %w", k.UserID, err)
		}
		if ok {
			rewrapped++
		}
		return nil
	})
	return rewrapped, err
}

// Unwrapped data keys are cached briefly (keyCacheTTL). Erasure drops the
// entry on this replica; other replicas forget it when it expires.
const (
	keyCacheTTL = 30 * time.Second
	keyCacheMax = 10000
)
