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

	"github.com/consentgraph/consentgraph/internal/apperr"
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
func (s *Service) UpdateProfile(ctx context.Context, userID string, in ProfileUpdate) (*User, error) {
	var given Profile
	given.BirthYear, given.Country, given.Gender, given.Language = in.BirthYear.Value, in.Country.Value, in.Gender.Value, in.Language.Value
	norm, err := NormalizeProfile("input", given, s.opts.Now())
	if err != nil {
		return nil, err
	}
	dk, err := s.dataKey(ctx, userID)
	if err != nil {
		return nil, err
	}
	upd := Update{Profile: map[string][]byte{}}
	var fields []string
	apply := func(name string, isSet bool, v *string) {
		if !isSet {
			return
		}
		fields = append(fields, "profile."+name)
		if v == nil {
			upd.Profile[name] = nil
			return
		}
		upd.Profile[name] = dk.Seal([]byte(*v), fieldAAD(userID, "profile."+name))
	}
	var by *string
	if norm.BirthYear != nil {
		v := strconv.Itoa(*norm.BirthYear)
		by = &v
	}
	apply("birthYear", in.BirthYear.Set, by)
	apply("country", in.Country.Set, norm.Country)
	apply("gender", in.Gender.Set, norm.Gender)
	apply("language", in.Language.Set, norm.Language)
	if len(fields) > 0 {
		if err := s.update(ctx, userID, upd); err != nil {
			return nil, err
		}
		_ = s.announce(ctx, Change{UserID: userID, Kind: ProfileChanged, Fields: fields})
	}
	return s.Get(ctx, userID)
}

func (s *Service) update(ctx context.Context, userID string, u Update) error {
	ok, err := s.store.UpdateAccount(ctx, userID, u)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if !ok {
		return apperr.New(apperr.NotFound, "no such user")
	}
	return nil
}

// emailVerificationTTL bounds how long a mailed verification link works.
const emailVerificationTTL = 48 * time.Hour

// SetEmail sets (or with nil removes) the user's email. A new address is
// unverified and belongs to nobody until verified: it never clashes with
// another account's, and the answer is the same whether the address is in
// use or not. The verification mail goes out here (see mailVerification).
func (s *Service) SetEmail(ctx context.Context, userID string, email *string) (*User, error) {
	emailUpd := &EmailUpdate{}
	var norm, token, lang string
	if email != nil {
		var err error
		if norm, err = NormalizeEmail("email", *email); err != nil {
			return nil, err
		}
		current, err := s.Get(ctx, userID)
		if err != nil {
			return nil, err
		}
		if current.Email != nil && *current.Email == norm && current.EmailVerified {
			return current, nil // nothing changes; no new mail
		}
		lang = profileLanguage(current.Profile)
		dk, err := s.dataKey(ctx, userID)
		if err != nil {
			return nil, err
		}
		idx, err := s.emailIndex(ctx, norm)
		if err != nil {
			return nil, err
		}
		token = newVerificationToken()
		emailUpd = &EmailUpdate{
			Sealed:       dk.Seal([]byte(norm), fieldAAD(userID, "email")),
			Index:        idx,
			Verification: s.verification(token),
		}
	}
	if err := s.update(ctx, userID, Update{Email: emailUpd}); err != nil {
		return nil, err
	}
	_ = s.announce(ctx, Change{UserID: userID, Kind: EmailChanged, Fields: []string{"email"}})
	if token != "" {
		s.mailVerification(ctx, userID, Recipient{Email: norm, Language: lang}, emailUpd.Index, token)
	}
	return s.Get(ctx, userID)
}

func newVerificationToken() string { return newToken("cgv_") }

// newToken returns prefix and 256 random bits.
func newToken(prefix string) string {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return prefix + base64.RawURLEncoding.EncodeToString(raw)
}

func (s *Service) verification(token string) *Verification {
	return &Verification{
		TokenHash: hashVerification(token),
		ExpiresAt: s.opts.Now().UTC().Truncate(time.Millisecond).Add(emailVerificationTTL),
	}
}

// mailVerification sends the verification link for a new address — or,
// when another account holds the address verified, a note to its owner
// instead: the link could not work (the first to verify wins), and one
// mail either way keeps the answer and its timing the same for whoever
// set the address.
//
// The note goes in its owner's profile language: it is their mail, not the
// setter's.
func (s *Service) mailVerification(ctx context.Context, userID string, to Recipient, idx, token string) {
	if s.opts.Mailer == nil {
		return
	}
	owner, err := s.store.AccountByVerifiedEmail(ctx, idx)
	if err != nil {
		s.log.ErrorContext(ctx, "looking up the owner of an address failed; no verification mail sent", "err", err)
		return
	}
	if owner != nil && owner.ID != userID {
		u, err := s.decode(ctx, owner)
		if err != nil {
			s.log.ErrorContext(ctx, "reading the owner of an address failed; no mail sent", "err", err)
			return
		}
		s.opts.Mailer.SendAddressInUse(ctx, Recipient{Email: to.Email, Language: profileLanguage(u.Profile)})
		return
	}
	s.opts.Mailer.SendVerification(ctx, to, token)
}

func hashVerification(token string) string {
	sum := sha256.Sum256([]byte("email-verification:" + token))
	return hex.EncodeToString(sum[:])
}

// VerifyEmail marks the address the token was sent to as verified. The
// first account to verify an address wins it: any other account holding it
// unverified loses it and finds a notice. A token for an address another
// account verified first fails like an unknown one.
func (s *Service) VerifyEmail(ctx context.Context, token string) (*User, error) {
	bad := apperr.Invalid("token", "this verification link is invalid or has expired")
	if len(token) < 10 || len(token) > 100 {
		return nil, bad
	}
	now := s.opts.Now().UTC().Truncate(time.Millisecond)
	res, err := s.store.VerifyEmail(ctx, hashVerification(token), now, Notice{Kind: NoticeEmailClaimed, At: now})
	if err != nil {
		return nil, fmt.Errorf("verify email: %w", err)
	}
	if res.UserID == "" {
		return nil, bad
	}
	for _, id := range res.Evicted {
		_ = s.announce(ctx, Change{UserID: id, Kind: EmailChanged, Fields: []string{"email"}})
	}
	_ = s.announce(ctx, Change{UserID: res.UserID, Kind: EmailVerified, Fields: []string{"email"}})
	return s.Get(ctx, res.UserID)
}

// DismissNotices removes the user's notices once they have read them.
func (s *Service) DismissNotices(ctx context.Context, userID string) error {
	if err := s.store.ClearNotices(ctx, userID); err != nil {
		return fmt.Errorf("dismiss notices: %w", err)
	}
	return nil
}

// Erase deletes an account for good: listeners first undo what they derived
// from it, then its sessions, its data key (crypto-shredding every copy of its
// personal data) and the document itself go. The account is marked first, so
// an erasure interrupted by a crash is finished by ResumeErasures.
func (s *Service) Erase(ctx context.Context, userID string) error {
	marked, err := s.store.MarkErasing(ctx, userID, s.opts.Now().UTC().Truncate(time.Millisecond))
	if err != nil {
		return fmt.Errorf("mark erasure: %w", err)
	}
	if !marked {
		d, err := s.store.Account(ctx, userID)
		if err != nil {
			return fmt.Errorf("find user: %w", err)
		}
		if d == nil {
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
	if err := s.store.DeleteAccount(ctx, userID); err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	_ = s.announce(ctx, Change{UserID: userID, Kind: Erased})
	return nil
}

// ResumeErasures finishes erasures interrupted by a crash or a failing
// listener. It runs at start-up and periodically.
func (s *Service) ResumeErasures(ctx context.Context) (int, error) {
	ids, err := s.store.Erasing(ctx)
	if err != nil {
		return 0, fmt.Errorf("find interrupted erasures: %w", err)
	}
	var errs []error
	done := 0
	for _, id := range ids {
		if err := s.finishErasure(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		done++
	}
	return done, errors.Join(errs...)
}
