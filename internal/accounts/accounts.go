// Package accounts owns users and sessions: sign-up, sign-in, sign-out,
// session tokens, and the encrypted personal data of each user.
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/work"
)

// User is the decrypted view of an account.
type User struct {
	ID            string
	Username      string
	Role          auth.Role
	Email         *string
	EmailVerified bool
	Profile       Profile
	CreatedAt     time.Time
	// Notices are messages for the user, oldest first.
	Notices []Notice
}

// Session is a freshly issued session; Token is shown to the client once.
type Session struct {
	Token     string
	ID        string
	ExpiresAt time.Time
}

// Options configure the service.
type Options struct {
	Hasher     *Hasher
	Keyring    *envelope.Keyring
	Secrets    *envelope.Secrets
	SessionTTL time.Duration
	// PasswordResetTTL bounds how long a mailed reset token works [30m].
	PasswordResetTTL time.Duration
	// Mailer sends the account mails; nil sends none.
	Mailer Mailer
	Logger *slog.Logger
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// Service manages accounts and sessions.
type Service struct {
	store    Store
	keyCache ttlCache[*envelope.DataKey]
	// sessionCache saves the session read on most requests; entries live
	// SessionCacheTTL, so a revocation on another replica holds within it.
	sessionCache ttlCache[auth.Principal]
	opts         Options
	// listeners are told about committed changes (see Subscribe).
	listeners []Listener
	log       *slog.Logger
	// unknown keeps the password back-off of usernames without an account.
	unknown phantoms
	// bg counts mails sent after their request answered (Wait).
	bg sync.WaitGroup
}

// Mailer sends the mails of the account flows. Failures are its to log:
// the flows go on without them (a mail can be asked for again).
type Mailer interface {
	// SendVerification mails a link that verifies the address.
	SendVerification(ctx context.Context, to Recipient, token string)
	// SendAddressInUse tells the owner of an address verified on another
	// account that someone tried to add it, instead of a verification link:
	// the one who tried learns nothing.
	SendAddressInUse(ctx context.Context, to Recipient)
	// SendPasswordReset mails a password reset token.
	SendPasswordReset(ctx context.Context, to Recipient, token string)
}

// Recipient is who an account mail goes to.
type Recipient struct {
	Email string
	// Language is the profile language of the account the mail is about
	// ("" when the profile gives none), for the mailer to write in.
	Language string
}

func profileLanguage(p Profile) string {
	if p.Language == nil {
		return ""
	}
	return *p.Language
}

// New opens the service on its store.
func New(st Store, opts Options) (*Service, error) {
	if st == nil || opts.Hasher == nil || opts.Keyring == nil || opts.Secrets == nil {
		return nil, errors.New("accounts: store, hasher, keyring and secrets are required")
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 7 * 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PasswordResetTTL <= 0 {
		opts.PasswordResetTTL = 30 * time.Minute
	}
	return &Service{store: st, opts: opts, log: opts.Logger,
		keyCache: ttlCache[*envelope.DataKey]{max: keyCacheMax}, sessionCache: ttlCache[auth.Principal]{max: sessionCacheMax}}, nil
}

// RegisterInput is what a new user gives.
type RegisterInput struct {
	// ID is the new account's id; empty means a fresh NewID(). Callers set
	// it when extra fields must refer to the id (e.g. signed consent
	// receipts written with the account).
	ID       string
	Username string
	Password string
	Email    *string
	Profile  Profile
	// Consent is the consent the account starts with and Work the outbox
	// items its sign-up starts; both are written atomically with it.
	Consent consent.Initial
	Work    []work.Item
}

// Register validates input, creates the account and signs it in.
func (s *Service) Register(ctx context.Context, in RegisterInput) (*User, *Session, error) {
	key, err := NormalizeUsername("input.username", in.Username)
	if err != nil {
		return nil, nil, err
	}
	if err := CheckPassword("input.password", in.Password); err != nil {
		return nil, nil, err
	}
	var email string
	if in.Email != nil {
		if email, err = NormalizeEmail("input.email", *in.Email); err != nil {
			return nil, nil, err
		}
	}
	profile, err := NormalizeProfile("input.profile", in.Profile, s.opts.Now())
	if err != nil {
		return nil, nil, err
	}
	hash, err := s.opts.Hasher.Hash(ctx, in.Password)
	if err != nil {
		return nil, nil, err
	}
	if in.ID == "" {
		in.ID = NewID()
	}
	u := &User{ID: in.ID, Username: in.Username, Role: auth.RoleUser, Profile: profile, CreatedAt: s.opts.Now().UTC().Truncate(time.Millisecond)}
	if in.Email != nil {
		u.Email = &email
	}
	var token string
	if u.Email != nil {
		token = newVerificationToken()
	}
	rec, err := s.newRecord(ctx, u, key, hash)
	if err != nil {
		return nil, nil, err
	}
	if token != "" {
		rec.Verification = s.verification(token)
	}
	err = s.store.CreateAccount(ctx, NewAccount{Account: *rec, Consent: in.Consent, Work: in.Work})
	if err != nil {
		// A refused sign-up leaves nothing behind: its data key goes too.
		if derr := s.shredKey(context.WithoutCancel(ctx), u.ID); derr != nil {
			s.log.ErrorContext(ctx, "removing the data key of a refused sign-up failed", "err", derr)
		}
	}
	switch {
	case errors.Is(err, ErrUsernameTaken):
		return nil, nil, &apperr.Error{Code: apperr.Conflict, Field: "input.username", Message: "this username is taken"}
	case err != nil:
		// ErrEmailTaken cannot happen: a new address is unverified.
		return nil, nil, fmt.Errorf("create account: %w", err)
	}
	_ = s.announce(ctx, Change{UserID: u.ID, Kind: Registered})
	if token != "" {
		s.mailVerification(ctx, u.ID, Recipient{Email: email, Language: profileLanguage(u.Profile)}, rec.EmailIndex, token)
	}
	sess, err := s.newSession(ctx, u.ID, u.Role)
	if err != nil {
		return nil, nil, err
	}
	return u, sess, nil
}

// errBadCredentials is deliberately the same for unknown users and wrong passwords.
var errBadCredentials = apperr.New(apperr.Unauthenticated, "wrong username or password")

// Login checks the password and opens a session.
func (s *Service) Login(ctx context.Context, username, password string) (*User, *Session, error) {
	var d *Record
	key, verr := NormalizeUsername("username", username)
	if verr == nil && len(password) <= 1024 {
		var err error
		if d, err = s.store.AccountByUsername(ctx, key); err != nil {
			return nil, nil, fmt.Errorf("find user: %w", err)
		}
		if d != nil && d.ErasingSince != nil {
			d = nil
		}
	}
	found := d != nil
	hash := ""
	if found {
		hash = d.PasswordHash
		if err := s.guard(d.PasswordFailures, d.LastPasswordFailure); err != nil {
			return nil, nil, err
		}
	} else if verr == nil {
		if err := s.guard(s.unknown.get(key)); err != nil {
			return nil, nil, err
		}
	}
	// Always run the hash so unknown users take as long as wrong passwords.
	ok, err := s.opts.Hasher.Verify(ctx, password, hash)
	if err != nil {
		return nil, nil, err
	}
	if !ok || !found {
		switch {
		case found:
			s.failed(ctx, d.ID)
		case verr == nil:
			s.unknown.fail(key, s.opts.Now())
		}
		return nil, nil, errBadCredentials
	}
	if err := s.succeeded(ctx, d); err != nil {
		return nil, nil, err
	}
	if s.opts.Hasher.NeedsRehash(d.PasswordHash) {
		if h, err := s.opts.Hasher.Hash(ctx, password); err == nil {
			_ = s.store.SetPasswordHash(ctx, d.ID, h)
		}
	}
	u, err := s.decode(ctx, d)
	if err != nil {
		return nil, nil, err
	}
	sess, err := s.newSession(ctx, u.ID, u.Role)
	if err != nil {
		return nil, nil, err
	}
	return u, sess, nil
}

// CheckPasswordOf verifies a user's password (for re-authentication before
// destructive actions). It shares the account's back-off with sign-in.
func (s *Service) CheckPasswordOf(ctx context.Context, userID, password string) error {
	_, err := s.checkPassword(ctx, userID, "password", password)
	return err
}

// checkPassword verifies password against the account's, under the
// account's back-off, and returns the account.
func (s *Service) checkPassword(ctx context.Context, userID, field, password string) (*Record, error) {
	d, err := s.store.Account(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("find user: %w", err)
	}
	hash := ""
	if d != nil {
		hash = d.PasswordHash
		if err := s.guard(d.PasswordFailures, d.LastPasswordFailure); err != nil {
			return nil, err
		}
	}
	if len(password) > 1024 {
		password = password[:1024] // bounded work; such a password is wrong anyway
	}
	ok, err := s.opts.Hasher.Verify(ctx, password, hash)
	if err != nil {
		return nil, err
	}
	if !ok || d == nil {
		if d != nil {
			s.failed(ctx, d.ID)
		}
		return nil, apperr.Invalid(field, "wrong password")
	}
	if err := s.succeeded(ctx, d); err != nil {
		return nil, err
	}
	return d, nil
}

// Logout revokes a session.
func (s *Service) Logout(ctx context.Context, sessionID string) error {
	s.sessionCache.drop(sessionID)
	if err := s.store.DeleteSession(ctx, sessionID); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// RevokeAllSessions ends every session of a user.
func (s *Service) RevokeAllSessions(ctx context.Context, userID string) error {
	s.sessionCache.dropWhere(func(p auth.Principal) bool { return p.UserID == userID })
	if err := s.store.DeleteUserSessions(ctx, userID); err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	return nil
}

// SessionInfo describes an active session (for exports).
type SessionInfo struct {
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Sessions lists a user's unexpired sessions.
func (s *Service) Sessions(ctx context.Context, userID string) ([]SessionInfo, error) {
	docs, err := s.store.UserSessions(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	now := s.opts.Now()
	out := make([]SessionInfo, 0, len(docs))
	for _, d := range docs {
		if d.ExpiresAt.After(now) {
			out = append(out, SessionInfo{CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt})
		}
	}
	return out, nil
}

const tokenPrefix = "cgs_"

// HashToken is how a session token is stored: only its SHA-256. Tokens carry
// 256 random bits, so a fast hash is enough and lookups stay cheap.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (s *Service) newSession(ctx context.Context, userID string, role auth.Role) (*Session, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("session token: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	now := s.opts.Now().UTC().Truncate(time.Millisecond)
	d := SessionRecord{ID: HashToken(token), UserID: userID, Role: role, CreatedAt: now, ExpiresAt: now.Add(s.opts.SessionTTL)}
	if err := s.store.InsertSession(ctx, d); err != nil {
		return nil, fmt.Errorf("insert session: %w", err)
	}
	return &Session{Token: token, ID: d.ID, ExpiresAt: d.ExpiresAt}, nil
}

// Authenticate resolves a session token; unknown, revoked or expired tokens
// give (nil, nil).
func (s *Service) Authenticate(ctx context.Context, token string) (*auth.Principal, error) {
	if len(token) < len(tokenPrefix) || token[:len(tokenPrefix)] != tokenPrefix || len(token) > 100 {
		return nil, nil
	}
	id := HashToken(token)
	if p, ok := s.cachedSession(id, s.opts.Now()); ok {
		return p, nil
	}
	d, err := s.store.Session(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("find session: %w", err)
	}
	if d == nil || !d.ExpiresAt.After(s.opts.Now()) {
		return nil, nil
	}
	p := &auth.Principal{Role: d.Role, UserID: d.UserID, SessionID: d.ID}
	s.cacheSession(id, p, d.ExpiresAt, s.opts.Now())
	return p, nil
}

// CountActiveSessions counts unexpired sessions (for metrics).
func (s *Service) CountActiveSessions(ctx context.Context) (int64, error) {
	n, err := s.store.CountSessions(ctx, s.opts.Now())
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

// SweepExpiredSessions deletes expired sessions (MongoDB's TTL index does
// this too; the embedded store has none).
func (s *Service) SweepExpiredSessions(ctx context.Context) (int64, error) {
	n, err := s.store.DeleteExpiredSessions(ctx, s.opts.Now())
	if err != nil {
		return 0, fmt.Errorf("sweep sessions: %w", err)
	}
	return n, nil
}

// Get returns a user, or a NOT_FOUND error.
func (s *Service) Get(ctx context.Context, userID string) (*User, error) {
	d, err := s.store.Account(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("find user: %w", err)
	}
	if d == nil {
		return nil, apperr.New(apperr.NotFound, "no such user")
	}
	return s.decode(ctx, d)
}

// EnsureAdmin creates the configured first admin, or resets its password
// when the configuration changed it.
func (s *Service) EnsureAdmin(ctx context.Context, username, password string) error {
	key, err := NormalizeUsername("admin username", username)
	if err != nil {
		return err
	}
	if err := CheckPassword("admin password", password); err != nil {
		return err
	}
	d, err := s.store.AccountByUsername(ctx, key)
	switch {
	case err != nil:
		return fmt.Errorf("find admin: %w", err)
	case d == nil:
		hash, err := s.opts.Hasher.Hash(ctx, password)
		if err != nil {
			return err
		}
		u := &User{ID: NewID(), Username: username, Role: auth.RoleAdmin, CreatedAt: s.opts.Now().UTC().Truncate(time.Millisecond)}
		rec, err := s.newRecord(ctx, u, key, hash)
		if err != nil {
			return err
		}
		// Another replica starting at the same moment may win the race.
		if err := s.store.CreateAccount(ctx, NewAccount{Account: *rec}); err != nil && !errors.Is(err, ErrUsernameTaken) {
			return fmt.Errorf("create admin: %w", err)
		}
		s.log.Info("created admin account", "username", username)
		return nil
	case d.Role != auth.RoleAdmin:
		return fmt.Errorf("admin username %q already belongs to a non-admin account", username)
	}
	ok, err := s.opts.Hasher.Verify(ctx, password, d.PasswordHash)
	if err != nil || ok {
		return err
	}
	hash, err := s.opts.Hasher.Hash(ctx, password)
	if err != nil {
		return err
	}
	if err := s.store.SetPasswordHash(ctx, d.ID, hash); err != nil {
		return fmt.Errorf("update admin password: %w", err)
	}
	s.log.Info("admin password changed from configuration", "username", username)
	return nil
}

// NewID returns a random, URL-safe 128-bit identifier.
func NewID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}
