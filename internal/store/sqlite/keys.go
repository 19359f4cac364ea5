package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/signing"
)

// signingStore implements signing.Store.
type signingStore struct{ d *DB }

const keyCols = `kid, generation, alg, public_key, private_key, master_key_id, created_at, retired_at, expires_at`

var (
	qKeys = sqlq(`SELECT ` + keyCols + ` FROM signing_keys ORDER BY generation`)
	// A taken generation means another replica created or rotated first:
	// nothing is stored. A taken kid stays an error.
	qInsertKey = sqlq(`INSERT INTO signing_keys (` + keyCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (generation) DO NOTHING`)
	qRetireBelow = sqlq(`UPDATE signing_keys SET retired_at = ?, private_key = NULL, master_key_id = ''
		WHERE generation < ? AND private_key IS NOT NULL`)
	qSetExpiry = sqlq(`UPDATE signing_keys SET expires_at = ? WHERE kid = ?`)
	qSwapKey   = sqlq(`UPDATE signing_keys SET private_key = ?, master_key_id = ? WHERE kid = ? AND private_key = ?`)
)

func (s signingStore) Keys(ctx context.Context) ([]signing.KeyRecord, error) {
	var out []signing.KeyRecord
	err := s.d.readRows(ctx, qKeys, nil, func(rows *sql.Rows) error {
		var k signing.KeyRecord
		var created int64
		var retired, expires sql.NullInt64
		if err := rows.Scan(&k.Kid, &k.Generation, &k.Alg, &k.PublicKey, &k.PrivateKey, &k.MasterKeyID, &created, &retired, &expires); err != nil {
			return err
		}
		k.CreatedAt, k.RetiredAt, k.ExpiresAt = fromMS(created), fromNullMS(retired), fromNullMS(expires)
		out = append(out, k)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	return out, nil
}

func (s signingStore) InsertKey(ctx context.Context, k signing.KeyRecord) (bool, error) {
	n, err := s.d.exec(ctx, qInsertKey, k.Kid, k.Generation, k.Alg, blob(k.PublicKey), blob(k.PrivateKey), k.MasterKeyID,
		ms(k.CreatedAt), msPtr(k.RetiredAt), msPtr(k.ExpiresAt))
	if err != nil {
		return false, fmt.Errorf("insert signing key: %w", err)
	}
	return n == 1, nil
}

func (s signingStore) RetireBelow(ctx context.Context, generation int64, at time.Time) error {
	if _, err := s.d.exec(ctx, qRetireBelow, at.UnixMilli(), generation); err != nil {
		return fmt.Errorf("retire signing keys: %w", err)
	}
	return nil
}

func (s signingStore) SetExpiry(ctx context.Context, kid string, at time.Time) error {
	if _, err := s.d.exec(ctx, qSetExpiry, at.UnixMilli(), kid); err != nil {
		return fmt.Errorf("set signing key expiry: %w", err)
	}
	return nil
}

func (s signingStore) SwapPrivateKey(ctx context.Context, kid string, old, new []byte, masterKeyID string) (bool, error) {
	n, err := s.d.exec(ctx, qSwapKey, blob(new), masterKeyID, kid, blob(old))
	if err != nil {
		return false, fmt.Errorf("swap signing key: %w", err)
	}
	return n == 1, nil
}

// secretStore implements envelope.SecretStore.
type secretStore struct{ d *DB }

var (
	qSecret       = sqlq(`SELECT name, value, key_id, created_at FROM secrets WHERE name = ?`)
	qSecrets      = sqlq(`SELECT name, value, key_id, created_at FROM secrets ORDER BY name`)
	qInsertSecret = sqlq(`INSERT INTO secrets (name, value, key_id, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`)
	qSwapSecret   = sqlq(`UPDATE secrets SET value = ?, key_id = ? WHERE name = ? AND value = ?`)
)

func scanSecret(sc scanner) (envelope.SecretRecord, error) {
	var r envelope.SecretRecord
	var created int64
	err := sc.Scan(&r.Name, &r.Value, &r.KeyID, &created)
	r.CreatedAt = fromMS(created)
	return r, err
}

func (s secretStore) Secret(ctx context.Context, name string) (*envelope.SecretRecord, error) {
	var out *envelope.SecretRecord
	err := s.d.readRows(ctx, qSecret, []any{name}, func(rows *sql.Rows) error {
		r, err := scanSecret(rows)
		out = &r
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	return out, nil
}

func (s secretStore) InsertSecret(ctx context.Context, r envelope.SecretRecord) (bool, error) {
	n, err := s.d.exec(ctx, qInsertSecret, r.Name, blob(r.Value), r.KeyID, ms(r.CreatedAt))
	if err != nil {
		return false, fmt.Errorf("insert secret: %w", err)
	}
	return n == 1, nil
}

func (s secretStore) Secrets(ctx context.Context) ([]envelope.SecretRecord, error) {
	var out []envelope.SecretRecord
	err := s.d.readRows(ctx, qSecrets, nil, func(rows *sql.Rows) error {
		r, err := scanSecret(rows)
		out = append(out, r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	return out, nil
}

func (s secretStore) SwapSecret(ctx context.Context, name string, old, new []byte, keyID string) (bool, error) {
	n, err := s.d.exec(ctx, qSwapSecret, blob(new), keyID, name, blob(old))
	if err != nil {
		return false, fmt.Errorf("swap secret: %w", err)
	}
	return n == 1, nil
}
