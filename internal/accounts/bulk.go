package accounts

// Bulk paths for demo data and whole-store passes (demographics
// reconciliation, copies): one batched write or one ordered pass instead of
// a call per account.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/ordered"
)

// ImportUser is one account of a bulk import.
type ImportUser struct {
	ID        string // empty: a new id
	Username  string
	Email     *string
	Profile   Profile
	CreatedAt time.Time
	// Consent is the consent the account starts with.
	Consent consent.Initial
}

// HashPassword checks a password and returns its hash, for ImportUsers.
func (s *Service) HashPassword(ctx context.Context, password string) (string, error) {
	if err := CheckPassword("password", password); err != nil {
		return "", err
	}
	return s.opts.Hasher.Hash(ctx, password)
}

// ImportUsers inserts demo accounts in bulk: all share one password, given
// as its hash (HashPassword), and no change is announced (the caller fills
// the derived data in bulk too). Personal data is sealed exactly as for a
// sign-up, each account under its own data key. Keys are stored before
// accounts, so a crash leaves at worst unused keys. It returns the ids in
// input order.
func (s *Service) ImportUsers(ctx context.Context, users []ImportUser, passwordHash string) ([]string, error) {
	if passwordHash == "" {
		return nil, errors.New("import users: no password hash")
	}
	hash := passwordHash
	keys := make([]DataKey, 0, len(users))
	accts := make([]NewAccount, 0, len(users))
	ids := make([]string, 0, len(users))
	for i, in := range users {
		field := fmt.Sprintf("users[%d]", i)
		key, err := NormalizeUsername(field+".username", in.Username)
		if err != nil {
			return nil, err
		}
		profile, err := NormalizeProfile(field+".profile", in.Profile, s.opts.Now())
		if err != nil {
			return nil, err
		}
		u := &User{ID: in.ID, Username: in.Username, Role: auth.RoleUser, Profile: profile, CreatedAt: in.CreatedAt.UTC().Truncate(time.Millisecond)}
		if u.ID == "" {
			u.ID = NewID()
		}
		if in.Email != nil {
			e, err := NormalizeEmail(field+".email", *in.Email)
			if err != nil {
				return nil, err
			}
			u.Email = &e
		}
		dk, wrapped, err := s.opts.Keyring.NewDataKey(dataKeyAAD(u.ID))
		if err != nil {
			return nil, fmt.Errorf("new data key: %w", err)
		}
		keys = append(keys, DataKey{UserID: u.ID, Wrapped: wrapped, CreatedAt: u.CreatedAt})
		rec, err := s.sealedRecord(ctx, dk, u, key, hash)
		if err != nil {
			return nil, err
		}
		accts = append(accts, NewAccount{Account: *rec, Consent: in.Consent})
		ids = append(ids, u.ID)
	}
	if len(accts) == 0 {
		return ids, nil
	}
	if err := s.store.ImportDataKeys(ctx, keys); err != nil {
		return nil, fmt.Errorf("import data keys: %w", err)
	}
	if err := s.store.ImportAccounts(ctx, accts); err != nil {
		return nil, fmt.Errorf("import users: %w", err)
	}
	return ids, nil
}

// EachUser calls fn for every account that is not being erased, decrypted,
// in id order, in one pass over the data keys and one over the accounts
// (both in id order, merged).
func (s *Service) EachUser(ctx context.Context, fn func(u *User) error) error {
	keys := ordered.Follow(ctx, func(k DataKey) string { return k.UserID }, func(ctx context.Context, yield func(DataKey) error) error {
		return s.store.EachDataKey(ctx, yield)
	})
	err := s.store.EachAccount(ctx, func(d *Record) error {
		k, ok := keys.Seek(d.ID)
		if !ok {
			return nil // shredded a moment ago
		}
		dk, err := s.opts.Keyring.OpenDataKey(k.Wrapped, dataKeyAAD(d.ID))
		if err != nil {
			return fmt.Errorf("open data key of user %s: %w", d.ID, err)
		}
		s.keyCache.put(d.ID, dk, time.Now().Add(keyCacheTTL)) // decode reads it from there
		u, err := s.decode(ctx, d)
		if errors.Is(err, ErrShredded) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(u)
	})
	if kerr := keys.Close(); err == nil && kerr != nil {
		err = fmt.Errorf("read data keys: %w", kerr)
	}
	if err != nil {
		return fmt.Errorf("read users: %w", err)
	}
	return nil
}
