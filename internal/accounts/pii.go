package accounts

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/consentgraph/consentgraph/internal/envelope"
)

// EmailIndexSecret names the secret behind the email blind index.
const EmailIndexSecret = "email-blind-index"

func dataKeyAAD(userID string) string      { return "user:" + userID + ":datakey" }
func fieldAAD(userID, field string) string { return "user:" + userID + ":" + field }

// emailIndex is the blind index used for uniqueness and lookups by email.
func (s *Service) emailIndex(ctx context.Context, email string) (string, error) {
	key, err := s.opts.Secrets.Get(ctx, EmailIndexSecret)
	if err != nil {
		return "", fmt.Errorf("email index key: %w", err)
	}
	return envelope.BlindIndex(key, EmailKey(email)), nil
}

// newRecord creates the user's data key (stored first, so a crash leaves at
// worst an unused key, never a user without one) and the sealed record.
func (s *Service) newRecord(ctx context.Context, u *User, usernameKey, passwordHash string) (*Record, error) {
	dk, wrapped, err := s.opts.Keyring.NewDataKey(dataKeyAAD(u.ID))
	if err != nil {
		return nil, fmt.Errorf("new data key: %w", err)
	}
	if err := s.store.InsertDataKey(ctx, DataKey{UserID: u.ID, Wrapped: wrapped, CreatedAt: u.CreatedAt}); err != nil {
		return nil, fmt.Errorf("store data key: %w", err)
	}
	s.keyCache.put(u.ID, dk, time.Now().Add(keyCacheTTL))
	return s.sealedRecord(ctx, dk, u, usernameKey, passwordHash)
}

// sealedRecord builds the stored record of u with its personal data sealed
// under dk.
func (s *Service) sealedRecord(ctx context.Context, dk *envelope.DataKey, u *User, usernameKey, passwordHash string) (*Record, error) {
	var err error
	d := &Record{
		ID: u.ID, Username: u.Username, UsernameKey: usernameKey, PasswordHash: passwordHash,
		Role: u.Role, CreatedAt: u.CreatedAt,
		Profile: sealProfile(dk, u.ID, u.Profile),
	}
	if u.Email != nil {
		d.Email = dk.Seal([]byte(*u.Email), fieldAAD(u.ID, "email"))
		if d.EmailIndex, err = s.emailIndex(ctx, *u.Email); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func sealProfile(dk *envelope.DataKey, userID string, p Profile) SealedProfile {
	seal := func(field string, v *string) []byte {
		if v == nil {
			return nil
		}
		return dk.Seal([]byte(*v), fieldAAD(userID, "profile."+field))
	}
	var by *string
	if p.BirthYear != nil {
		s := strconv.Itoa(*p.BirthYear)
		by = &s
	}
	return SealedProfile{
		BirthYear: seal("birthYear", by),
		Country:   seal("country", p.Country),
		Gender:    seal("gender", p.Gender),
		Language:  seal("language", p.Language),
	}
}

func (s *Service) decode(ctx context.Context, d *Record) (*User, error) {
	u := &User{ID: d.ID, Username: d.Username, Role: d.Role, CreatedAt: d.CreatedAt, EmailVerified: d.EmailVerified,
		Notices: d.Notices}
	dk, err := s.dataKey(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	open := func(field string, ct []byte) (*string, error) {
		if ct == nil {
			return nil, nil
		}
		pt, err := dk.Open(ct, fieldAAD(d.ID, field))
		if err != nil {
			return nil, fmt.Errorf("decrypt %s of user %s: %w", field, d.ID, err)
		}
		v := string(pt)
		return &v, nil
	}
	if u.Email, err = open("email", d.Email); err != nil {
		return nil, err
	}
	if u.Profile.Country, err = open("profile.country", d.Profile.Country); err != nil {
		return nil, err
	}
	if u.Profile.Gender, err = open("profile.gender", d.Profile.Gender); err != nil {
		return nil, err
	}
	if u.Profile.Language, err = open("profile.language", d.Profile.Language); err != nil {
		return nil, err
	}
	by, err := open("profile.birthYear", d.Profile.BirthYear)
	if err != nil {
		return nil, err
	}
	if by != nil {
		y, err := strconv.Atoi(*by)
		if err != nil {
			return nil, fmt.Errorf("birth year of user %s: %w", d.ID, err)
		}
		u.Profile.BirthYear = &y
	}
	return u, nil
}
