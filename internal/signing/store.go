package signing

import (
	"context"
	"time"
)

// Store is the storage the key set needs.
type Store interface {
	// Keys returns every key.
	Keys(ctx context.Context) ([]KeyRecord, error)
	// InsertKey stores a new key; false (nothing stored) when its
	// generation exists, i.e. another replica created or rotated first.
	InsertKey(ctx context.Context, k KeyRecord) (bool, error)
	// RetireBelow sets RetiredAt and removes the private key (and its
	// master key id) of every key below generation that still has one.
	RetireBelow(ctx context.Context, generation int64, at time.Time) error
	// SetExpiry sets a key's ExpiresAt.
	SetExpiry(ctx context.Context, kid string, at time.Time) error
	// SwapPrivateKey replaces a key's wrapped private key if it is still
	// old; false otherwise.
	SwapPrivateKey(ctx context.Context, kid string, old, new []byte, masterKeyID string) (bool, error)
}

// KeyRecord is one stored key. The active key is the one with the highest
// generation; generations are unique.
type KeyRecord struct {
	Kid        string
	Generation int64
	Alg        string
	PublicKey  []byte
	// PrivateKey is the Ed25519 seed wrapped by the master key (aad names
	// the kid); nil once the key is retired: old keys only verify.
	PrivateKey  []byte
	MasterKeyID string
	CreatedAt   time.Time
	RetiredAt   *time.Time
	ExpiresAt   *time.Time
}
