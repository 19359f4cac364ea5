package envelope

import (
	"context"
	"time"
)

// SecretStore keeps the named secrets, wrapped under the master key.
type SecretStore interface {
	// Secret returns a secret by name, or nil.
	Secret(ctx context.Context, name string) (*SecretRecord, error)
	// InsertSecret stores a new secret; false (nothing stored) when the
	// name exists.
	InsertSecret(ctx context.Context, s SecretRecord) (bool, error)
	// Secrets returns every secret.
	Secrets(ctx context.Context) ([]SecretRecord, error)
	// SwapSecret replaces a secret's wrapped value if it is still old.
	SwapSecret(ctx context.Context, name string, old, new []byte, keyID string) (bool, error)
}

// SecretRecord is one stored secret.
type SecretRecord struct {
	Name      string
	Value     []byte
	KeyID     string
	CreatedAt time.Time
}
