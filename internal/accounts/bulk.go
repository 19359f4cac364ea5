package accounts

// Bulk paths for demo data and whole-store passes (demographics
// reconciliation). They exist because the embedded store scans a whole
// collection for every single-document read or update: per-user calls cost
// O(users) each, one cursor over the collection costs O(users) once.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/auth"
)

// ImportUser is one account of a bulk import.
type ImportUser struct {
	ID        string // empty: a new id
	Username  string
	Email     *string
	Profile   Profile
	CreatedAt time.Time
	// Extra fields of other domains (e.g. consent), inserted with the account.
	Extra bson.D
}

// ImportUsers inserts demo accounts in bulk: all share one password, hashed
// once, and no change is announced (the caller fills the derived data in
// bulk too). Personal data is sealed exactly as for a sign-up, each account
// under its own data key. Keys are inserted before accounts, so a crash
// leaves at worst unused keys. It returns the ids in input order.
func (s *Service) ImportUsers(ctx context.Context, users []ImportUser, password string) ([]string, error) {
	if err := CheckPassword("password", password); err != nil {
		return nil, err
	}
	hash, err := s.opts.Hasher.Hash(ctx, password)
	if err != nil {
		return nil, err
	}
	keys := make([]any, 0, len(users))
	docs := make([]any, 0, len(users))
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
		keys = append(keys, keyDoc{ID: u.ID, Wrapped: wrapped, CreatedAt: u.CreatedAt})
		doc, err := s.sealedDoc(ctx, dk, u, key, hash)
		if err != nil {
			return nil, err
		}
		docs = append(docs, append(doc, in.Extra...))
		ids = append(ids, u.ID)
	}
	if len(docs) == 0 {
		return ids, nil
	}
	if _, err := s.keys.InsertMany(ctx, keys); err != nil {
		return nil, fmt.Errorf("import data keys: %w", err)
	}
	if _, err := s.users.InsertMany(ctx, docs); err != nil {
		return nil, fmt.Errorf("import users: %w", err)
	}
	return ids, nil
}

// EachUser calls fn for every account that is not being erased, decrypted,
// together with its stored document (for the fields other domains keep in
// it), in one pass over the data keys and one over the accounts.
func (s *Service) EachUser(ctx context.Context, fn func(u *User, doc bson.Raw) error) error {
	wrapped := map[string][]byte{}
	kc, err := s.keys.Find(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("read data keys: %w", err)
	}
	for kc.Next(ctx) {
		var k keyDoc
		if err := kc.Decode(&k); err != nil {
			_ = kc.Close(ctx)
			return fmt.Errorf("decode data key: %w", err)
		}
		wrapped[k.ID] = k.Wrapped
	}
	if err := kc.Err(); err != nil {
		return fmt.Errorf("read data keys: %w", err)
	}
	_ = kc.Close(ctx)
	cur, err := s.users.Find(ctx, bson.D{{Key: "erasingSince", Value: bson.D{{Key: "$exists", Value: false}}}},
		options.Find().SetProjection(bson.D{{Key: "passwordHash", Value: 0}}))
	if err != nil {
		return fmt.Errorf("read users: %w", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d userDoc
		if err := cur.Decode(&d); err != nil {
			return fmt.Errorf("decode user: %w", err)
		}
		w, ok := wrapped[d.ID]
		if !ok {
			continue // shredded a moment ago
		}
		dk, err := s.opts.Keyring.OpenDataKey(w, dataKeyAAD(d.ID))
		if err != nil {
			return fmt.Errorf("open data key of user %s: %w", d.ID, err)
		}
		s.keyCache.put(d.ID, dk, time.Now().Add(keyCacheTTL)) // decode reads it from there
		u, err := s.decode(ctx, &d)
		if errors.Is(err, ErrShredded) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(u, cur.Current); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read users: %w", err)
	}
	return nil
}
