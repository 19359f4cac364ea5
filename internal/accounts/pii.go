package accounts

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/envelope"
)

// userDoc is the stored account. Personal data is sealed with the user's own
// data key, itself wrapped by the master key and kept in a separate
// collection (data_keys): erasing that one small document makes every copy of
// the sealed fields — backups, replicas, exports of the users collection —
// unreadable ("crypto-shredding").
type userDoc struct {
	ID            string        `bson:"_id"`
	Username      string        `bson:"username"`
	UsernameKey   string        `bson:"usernameKey"`
	PasswordHash  string        `bson:"passwordHash"`
	Role          auth.Role     `bson:"role"`
	CreatedAt     time.Time     `bson:"createdAt"`
	DataKey       []byte        `bson:"dataKey"`
	Email         []byte        `bson:"email,omitempty"`
	EmailIndex    string        `bson:"emailIndex,omitempty"`
	EmailVerified bool          `bson:"emailVerified"`
	Profile       sealedProfile `bson:"profile"`
}

type sealedProfile struct {
	BirthYear []byte `bson:"birthYear,omitempty"`
	Country   []byte `bson:"country,omitempty"`
	Gender    []byte `bson:"gender,omitempty"`
	Language  []byte `bson:"language,omitempty"`
}

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

// newDoc creates the user's data key (stored first, so a crash leaves at
// worst an unused key, never a user without one) and the sealed document.
func (s *Service) newDoc(ctx context.Context, u *User, usernameKey, passwordHash string) (bson.D, error) {
	dk, wrapped, err := s.opts.Keyring.NewDataKey(dataKeyAAD(u.ID))
	if err != nil {
		return nil, fmt.Errorf("new data key: %w", err)
	}
	if _, err := s.keys.InsertOne(ctx, keyDoc{ID: u.ID, Wrapped: wrapped, CreatedAt: u.CreatedAt}); err != nil {
		return nil, fmt.Errorf("store data key: %w", err)
	}
	s.keyCache.put(u.ID, dk, time.Now().Add(keyCacheTTL))
	return s.sealedDoc(ctx, dk, u, usernameKey, passwordHash)
}

// sealedDoc builds the stored document of u with its personal data sealed
// under dk.
func (s *Service) sealedDoc(ctx context.Context, dk *envelope.DataKey, u *User, usernameKey, passwordHash string) (bson.D, error) {
	var err error
	d := userDoc{
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
	raw, err := bson.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("marshal user: %w", err)
	}
	var out bson.D
	if err := bson.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("marshal user: %w", err)
	}
	return out, nil
}

func sealProfile(dk *envelope.DataKey, userID string, p Profile) sealedProfile {
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
	return sealedProfile{
		BirthYear: seal("birthYear", by),
		Country:   seal("country", p.Country),
		Gender:    seal("gender", p.Gender),
		Language:  seal("language", p.Language),
	}
}

func (s *Service) decode(ctx context.Context, d *userDoc) (*User, error) {
	u := &User{ID: d.ID, Username: d.Username, Role: d.Role, CreatedAt: d.CreatedAt, EmailVerified: d.EmailVerified}
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
