package app

import (
	"context"
	"fmt"
)

// RotationReport counts what a master key rotation re-wrapped.
type RotationReport struct {
	DataKeys, Secrets, SigningKeys int
}

// RotateMasterKey re-wraps data keys, secrets and signing keys under the
// current master key. Idempotent: blobs already under it are left alone.
func (a *App) RotateMasterKey(ctx context.Context) (RotationReport, error) {
	var r RotationReport
	var err error
	if r.DataKeys, err = a.Accounts.RewrapDataKeys(ctx); err != nil {
		return r, fmt.Errorf("data keys: %w", err)
	}
	if r.Secrets, err = a.Secrets.RewrapAll(ctx); err != nil {
		return r, fmt.Errorf("secrets: %w", err)
	}
	if r.SigningKeys, err = a.Signing.RewrapAll(ctx); err != nil {
		return r, fmt.Errorf("signing keys: %w", err)
	}
	detail := fmt.Sprintf("key %s: %d data keys, %d secrets, %d signing keys", a.Keyring.CurrentKeyID(), r.DataKeys, r.Secrets, r.SigningKeys)
	if err := a.Audit.Append(ctx, "operator", "master_key_rotation", "", detail); err != nil {
		return r, err
	}
	a.log.Info("master key rotation finished", "key", a.Keyring.CurrentKeyID(),
		"data_keys", r.DataKeys, "secrets", r.Secrets, "signing_keys", r.SigningKeys)
	return r, nil
}
