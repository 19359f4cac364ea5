package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/store"
)

// ChangeKind says what happened to an account.
type ChangeKind string

const (
	Registered     ChangeKind = "REGISTERED"
	ProfileChanged ChangeKind = "PROFILE_CHANGED"
	EmailChanged   ChangeKind = "EMAIL_CHANGED"
	EmailVerified  ChangeKind = "EMAIL_VERIFIED"
	// Erasing is announced before the account is deleted: listeners remove
	// what they derived from it (aggregates, processor copies) while it can
	// still be read. They must be idempotent: an interrupted erasure is
	// resumed and announced again.
	Erasing ChangeKind = "ERASING"
	// Erased is announced after the account, its sessions and its key are gone.
	Erased ChangeKind = "ERASED"
)

// Change is one committed change to an account.
type Change struct {
	UserID string
	Kind   ChangeKind
	// Fields lists what changed, as data categories' field names
	// ("email", "profile.country", ...).
	Fields []string
}

// Listener reacts to a committed change. An error from an Erasing listener
// stops the erasure, to be resumed later; other errors are logged.
type Listener func(ctx context.Context, c Change) error

// Subscribe registers a listener; call it during start-up only.
func (s *Service) Subscribe(l Listener) { s.listeners = append(s.listeners, l) }

func (s *Service) announce(ctx context.Context, c Change) error {
	var errs []error
	for _, l := range s.listeners {
		if err := l(ctx, c); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil && c.Kind != Erasing {
		s.log.ErrorContext(ctx, "account change listener failed", "kind", c.Kind, "user", c.UserID, "err", err)
	}
	return err
}

// Optional is an input field that may be absent (Set false), set to a value,
// or explicitly cleared (Set true, Value nil).
type Optional[T any] struct {
	Set   bool
	Value *T
}

// ProfileUpdate changes some profile fields and leaves the others alone.
type ProfileUpdate struct {
	BirthYear Optional[int]
	Country   Optional[string]
	Gender    Optional[string]
	Language  Optional[string]
}

// UpdateProfile validates and applies a profile update.
func (s *Service) UpdateProfile(ctx context.Context, userID string, upd ProfileUpdate) (*User, error) {
	var given Profile
	given.BirthYear, given.Country, given.Gender, given.Language = upd.BirthYear.Value, upd.Country.Value, upd.Gender.Value, upd.Language.Value
	norm, err := NormalizeProfile("input", given, s.opts.Now())
	if err != nil {
		return nil, err
	}
	dk, err := s.dataKey(ctx, userID)
	if err != nil {
		return nil, err
	}
	set, unset := bson.D{}, bson.D{}
	var fields []string
	apply := func(name string, isSet bool, v *string) {
		if !isSet {
			return
		}
		fields = append(fields, "profile."+name)
		if v == nil {
			unset = append(unset, bson.E{Key: "profile." + name, Value: ""})
			return
		}
		set = append(set, bson.E{Key: "profile." + name, Value: dk.Seal([]byte(*v), fieldAAD(userID, "profile."+name))})
	}
	var by *string
	if norm.BirthYear != nil {
		v := strconv.Itoa(*norm.BirthYear)
		by = &v
	}
	apply("birthYear", upd.BirthYear.Set, by)
	apply("country", upd.Country.Set, norm.Country)
	apply("gender", upd.Gender.Set, norm.Gender)
	apply("language", upd.Language.Set, norm.Language)
	if len(fields) > 0 {
		if err := s.update(ctx, userID, set, unset); err != nil {
			return nil, err
		}
		_ = s.announce(ctx, Change{UserID: userID, Kind: ProfileChanged, Fields: fields})
	}
	return s.Get(ctx, userID)
}

func (s *Service) update(ctx context.Context, userID string, set, unset bson.D) error {
	upd := bson.D{}
	if len(set) > 0 {
		upd = append(upd, bson.E{Key: "$set", Value: set})
	}
	if len(unset) > 0 {
		upd = append(upd, bson.E{Key: "$unset", Value: unset})
	}
	r, err := s.users.UpdateOne(ctx, bson.D{{Key: "_id", Value: userID}, {Key: "erasingSince", Value: bson.D{{Key: "$exists", Value: false}}}}, upd)
	if store.IsDuplicateKey(err) {
		return &apperr.Error{Code: apperr.Conflict, Field: "email", Message: "this email address belongs to another account"}
	}
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if r.MatchedCount == 0 {
		return apperr.New(apperr.NotFound, "no such user")
	}
	return nil
}

// emailVerificationTTL bounds how long a mailed verification link works.
const emailVerificationTTL = 48 * time.Hour

// SetEmail sets (or with nil removes) the user's email. A new address is
// unverified; the returned token must reach the user by mail and come back
// through VerifyEmail. Only the token's hash is stored.
func (s *Service) SetEmail(ctx context.Context, userID string, email *string) (u *User, token string, err error) {
	set, unset := bson.D{}, bson.D{{Key: "emailVerification", Value: ""}}
	if email == nil {
		unset = append(unset, bson.E{Key: "email", Value: ""}, bson.E{Key: "emailIndex", Value: ""})
		set = append(set, bson.E{Key: "emailVerified", Value: false})
	} else {
		norm, err := NormalizeEmail("email", *email)
		if err != nil {
			return nil, "", err
		}
		current, err := s.Get(ctx, userID)
		if err != nil {
			return nil, "", err
		}
		if current.Email != nil && *current.Email == norm && current.EmailVerified {
			return current, "", nil // nothing changes; no new mail
		}
		dk, err := s.dataKey(ctx, userID)
		if err != nil {
			return nil, "", err
		}
		idx, err := s.emailIndex(ctx, norm)
		if err != nil {
			return nil, "", err
		}
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, "", fmt.Errorf("verification token: %w", err)
		}
		token = "cgv_" + base64.RawURLEncoding.EncodeToString(raw)
		unset = bson.D{}
		set = append(set,
			bson.E{Key: "email", Value: dk.Seal([]byte(norm), fieldAAD(userID, "email"))},
			bson.E{Key: "emailIndex", Value: idx},
			bson.E{Key: "emailVerified", Value: false},
			bson.E{Key: "emailVerification", Value: bson.D{
				{Key: "tokenHash", Value: hashVerification(token)},
				{Key: "expiresAt", Value: s.opts.Now().Add(emailVerificationTTL)},
			}},
		)
	}
	if err := s.update(ctx, userID, set, unset); err != nil {
		return nil, "", err
	}
	_ = s.announce(ctx, Change{UserID: userID, Kind: EmailChanged, Fields: []string{"email"}})
	u, err = s.Get(ctx, userID)
	return u, token, err
}

func hashVerification(token string) string {
	sum := sha256.Sum256([]byte("email-verification:" + token))
	return hex.EncodeToString(sum[:])
}

// VerifyEmail marks the address the token was sent to as verified.
func (s *Service) VerifyEmail(ctx context.Context, token string) (*User, error) {
	bad := apperr.Invalid("token", "this verification link is invalid or has expired")
	if len(token) < 10 || len(token) > 100 {
		return nil, bad
	}
	var d struct {
		ID string `bson:"_id"`
	}
	err := s.users.FindOneAndUpdate(ctx,
		bson.D{
			{Key: "emailVerification.tokenHash", Value: hashVerification(token)},
			{Key: "emailVerification.expiresAt", Value: bson.D{{Key: "$gt", Value: s.opts.Now()}}},
		},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "emailVerified", Value: true}}},
			{Key: "$unset", Value: bson.D{{Key: "emailVerification", Value: ""}}},
		},
	).Decode(&d) // no projection: FerretDB v1 does not implement it for findAndModify
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, bad
	}
	if err != nil {
		return nil, fmt.Errorf("verify email: %w", err)
	}
	_ = s.announce(ctx, Change{UserID: d.ID, Kind: EmailVerified, Fields: []string{"email"}})
	return s.Get(ctx, d.ID)
}

// Erase deletes an account for good: listeners first undo what they derived
// from it, then its sessions, its data key (crypto-shredding every copy of its
// personal data) and the document itself go. The account is marked first, so
// an erasure interrupted by a crash is finished by ResumeErasures.
func (s *Service) Erase(ctx context.Context, userID string) error {
	r, err := s.users.UpdateOne(ctx, bson.D{{Key: "_id", Value: userID}, {Key: "erasingSince", Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "erasingSince", Value: s.opts.Now()}}}})
	if err != nil {
		return fmt.Errorf("mark erasure: %w", err)
	}
	if r.MatchedCount == 0 {
		n, err := s.users.CountDocuments(ctx, bson.D{{Key: "_id", Value: userID}})
		if err != nil {
			return fmt.Errorf("find user: %w", err)
		}
		if n == 0 {
			return apperr.New(apperr.NotFound, "no such user")
		}
		// Already marked: an earlier attempt was interrupted; finish it.
	}
	return s.finishErasure(ctx, userID)
}

func (s *Service) finishErasure(ctx context.Context, userID string) error {
	if err := s.announce(ctx, Change{UserID: userID, Kind: Erasing}); err != nil {
		return fmt.Errorf("erasure of %s interrupted, will resume: %w", userID, err)
	}
	if err := s.RevokeAllSessions(ctx, userID); err != nil {
		return err
	}
	if err := s.shredKey(ctx, userID); err != nil {
		return err
	}
	if _, err := s.users.DeleteOne(ctx, bson.D{{Key: "_id", Value: userID}}); err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	_ = s.announce(ctx, Change{UserID: userID, Kind: Erased})
	return nil
}

// ResumeErasures finishes erasures interrupted by a crash or a failing
// listener. It runs at start-up and periodically.
func (s *Service) ResumeErasures(ctx context.Context) (int, error) {
	cur, err := s.users.Find(ctx, bson.D{{Key: "erasingSince", Value: bson.D{{Key: "$exists", Value: true}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("find interrupted erasures: %w", err)
	}
	var ids []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &ids); err != nil {
		return 0, fmt.Errorf("find interrupted erasures: %w", err)
	}
	var errs []error
	done := 0
	for _, d := range ids {
		if err := s.finishErasure(ctx, d.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		done++
	}
	return done, errors.Join(errs...)
}
