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
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/store"
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
	Logger     *slog.Logger
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// Service manages accounts and sessions.
type Service struct {
	users    *mongo.Collection
	sessions *mongo.Collection
	keys     *mongo.Collection
	keyCache ttlCache[*envelope.DataKey]
	// sessionCache saves the session read on most requests; entries live
	// SessionCacheTTL, so a revocation on another replica holds within it.
	sessionCache ttlCache[auth.Principal]
	opts         Options
	// listeners are told about committed changes (see Subscribe).
	listeners []Listener
	log       *slog.Logger
}

// Collection names owned by this package.
const (
	UsersCollection    = "users"
	SessionsCollection = "sessions"
)

// New opens the service and creates its indexes idempotently.
func New(ctx context.Context, db *mongo.Database, opts Options) (*Service, error) {
	if opts.Hasher == nil || opts.Keyring == nil || opts.Secrets == nil {
		return nil, errors.New("accounts: hasher, keyring and secrets are required")
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
	s := &Service{users: db.Collection(UsersCollection), sessions: db.Collection(SessionsCollection),
		keys: db.Collection(DataKeysCollection), opts: opts, log: opts.Logger,
		keyCache: ttlCache[*envelope.DataKey]{max: keyCacheMax}, sessionCache: ttlCache[auth.Principal]{max: sessionCacheMax}}
	if err := store.EnsureIndexes(ctx, s.users,
		mongo.IndexModel{Keys: bson.D{{Key: "usernameKey", Value: 1}}, Options: options.Index().SetUnique(true).SetName("usernameKey_unique")},
		mongo.IndexModel{Keys: bson.D{{Key: "emailIndex", Value: 1}}, Options: options.Index().SetUnique(true).SetSparse(true).SetName("emailIndex_unique")},
	); err != nil {
		return nil, err
	}
	if err := store.EnsureIndexes(ctx, s.sessions,
		mongo.IndexModel{Keys: bson.D{{Key: "expiresAt", Value: 1}}, Options: options.Index().SetExpireAfterSeconds(0).SetName("expiresAt_ttl")},
		mongo.IndexModel{Keys: bson.D{{Key: "userId", Value: 1}}, Options: options.Index().SetName("userId")},
	); err != nil {
		return nil, err
	}
	return s, nil
}

// Users is the collection; other domains that keep per-user state in the
// same document (for single-document atomicity) write through it.
func (s *Service) Users() *mongo.Collection { return s.users }

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
}

// Register validates input, creates the account and signs it in. Extra
// fields (consent state written atomically with the account) may be supplied
// by other domains through extra.
func (s *Service) Register(ctx context.Context, in RegisterInput, extra bson.D) (*User, *Session, error) {
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
	doc, err := s.newDoc(ctx, u, key, hash)
	if err != nil {
		return nil, nil, err
	}
	doc = append(doc, extra...)
	if _, err := s.users.InsertOne(ctx, doc); err != nil {
		if store.IsDuplicateKey(err) {
			return nil, nil, s.conflictFor(ctx, key)
		}
		return nil, nil, fmt.Errorf("insert user: %w", err)
	}
	_ = s.announce(ctx, Change{UserID: u.ID, Kind: Registered})
	sess, err := s.newSession(ctx, u.ID, u.Role)
	if err != nil {
		return nil, nil, err
	}
	return u, sess, nil
}

// conflictFor tells which unique field clashed, without saying more than the
// caller already knows (they typed both values themselves).
func (s *Service) conflictFor(ctx context.Context, usernameKey string) error {
	n, err := s.users.CountDocuments(ctx, bson.D{{Key: "usernameKey", Value: usernameKey}})
	if err == nil && n > 0 {
		return &apperr.Error{Code: apperr.Conflict, Field: "input.username", Message: "this username is taken"}
	}
	return &apperr.Error{Code: apperr.Conflict, Field: "input.email", Message: "this email address belongs to another account"}
}

// errBadCredentials is deliberately the same for unknown users and wrong passwords.
var errBadCredentials = apperr.New(apperr.Unauthenticated, "wrong username or password")

// Login checks the password and opens a session.
func (s *Service) Login(ctx context.Context, username, password string) (*User, *Session, error) {
	var d userDoc
	key, verr := NormalizeUsername("username", username)
	found := false
	if verr == nil && len(password) <= 1024 {
		err := s.users.FindOne(ctx, bson.D{{Key: "usernameKey", Value: key}, {Key: "erasingSince", Value: bson.D{{Key: "$exists", Value: false}}}}).Decode(&d)
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, mongo.ErrNoDocuments):
			return nil, nil, fmt.Errorf("find user: %w", err)
		}
	}
	hash := ""
	if found {
		hash = d.PasswordHash
	}
	// Always run the hash so unknown users take as long as wrong passwords.
	ok, err := s.opts.Hasher.Verify(ctx, password, hash)
	if err != nil {
		return nil, nil, err
	}
	if !ok || !found {
		return nil, nil, errBadCredentials
	}
	if s.opts.Hasher.NeedsRehash(d.PasswordHash) {
		if h, err := s.opts.Hasher.Hash(ctx, password); err == nil {
			_, _ = s.users.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, bson.D{{Key: "$set", Value: bson.D{{Key: "passwordHash", Value: h}}}})
		}
	}
	u, err := s.decode(ctx, &d)
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
// destructive actions).
func (s *Service) CheckPasswordOf(ctx context.Context, userID, password string) error {
	var d userDoc
	err := s.users.FindOne(ctx, bson.D{{Key: "_id", Value: userID}}, options.FindOne().SetProjection(bson.D{{Key: "passwordHash", Value: 1}})).Decode(&d)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("find user: %w", err)
	}
	ok, err := s.opts.Hasher.Verify(ctx, password, d.PasswordHash)
	if err != nil {
		return err
	}
	if !ok {
		return apperr.Invalid("password", "wrong password")
	}
	return nil
}

// Logout revokes a session.
func (s *Service) Logout(ctx context.Context, sessionID string) error {
	s.sessionCache.drop(sessionID)
	if _, err := s.sessions.DeleteOne(ctx, bson.D{{Key: "_id", Value: sessionID}}); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// RevokeAllSessions ends every session of a user.
func (s *Service) RevokeAllSessions(ctx context.Context, userID string) error {
	s.sessionCache.dropWhere(func(p auth.Principal) bool { return p.UserID == userID })
	if _, err := s.sessions.DeleteMany(ctx, bson.D{{Key: "userId", Value: userID}}); err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	return nil
}

type sessionDoc struct {
	ID        string    `bson:"_id"`
	UserID    string    `bson:"userId"`
	Role      auth.Role `bson:"role"`
	CreatedAt time.Time `bson:"createdAt"`
	ExpiresAt time.Time `bson:"expiresAt"`
}

// SessionInfo describes an active session (for exports).
type SessionInfo struct {
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Sessions lists a user's unexpired sessions.
func (s *Service) Sessions(ctx context.Context, userID string) ([]SessionInfo, error) {
	cur, err := s.sessions.Find(ctx, bson.D{{Key: "userId", Value: userID}})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	var docs []sessionDoc
	if err := cur.All(ctx, &docs); err != nil {
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
	d := sessionDoc{ID: HashToken(token), UserID: userID, Role: role, CreatedAt: now, ExpiresAt: now.Add(s.opts.SessionTTL)}
	if _, err := s.sessions.InsertOne(ctx, d); err != nil {
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
	var d sessionDoc
	err := s.sessions.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find session: %w", err)
	}
	if !d.ExpiresAt.After(s.opts.Now()) {
		return nil, nil
	}
	p := &auth.Principal{Role: d.Role, UserID: d.UserID, SessionID: d.ID}
	s.cacheSession(id, p, d.ExpiresAt, s.opts.Now())
	return p, nil
}

// CountActiveSessions counts unexpired sessions (for metrics).
func (s *Service) CountActiveSessions(ctx context.Context) (int64, error) {
	n, err := s.sessions.CountDocuments(ctx, bson.D{{Key: "expiresAt", Value: bson.D{{Key: "$gt", Value: s.opts.Now()}}}})
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

// SweepExpiredSessions deletes expired sessions; MongoDB's TTL index does
// this too, the embedded store has no TTL indexes.
func (s *Service) SweepExpiredSessions(ctx context.Context) (int64, error) {
	r, err := s.sessions.DeleteMany(ctx, bson.D{{Key: "expiresAt", Value: bson.D{{Key: "$lte", Value: s.opts.Now()}}}})
	if err != nil {
		return 0, fmt.Errorf("sweep sessions: %w", err)
	}
	return r.DeletedCount, nil
}

// Get returns a user, or a NOT_FOUND error.
func (s *Service) Get(ctx context.Context, userID string) (*User, error) {
	var d userDoc
	err := store.FindByID(ctx, s.users, userID, &d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, apperr.New(apperr.NotFound, "no such user")
	}
	if err != nil {
		return nil, fmt.Errorf("find user: %w", err)
	}
	return s.decode(ctx, &d)
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
	var d userDoc
	err = s.users.FindOne(ctx, bson.D{{Key: "usernameKey", Value: key}}).Decode(&d)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		hash, err := s.opts.Hasher.Hash(ctx, password)
		if err != nil {
			return err
		}
		u := &User{ID: NewID(), Username: username, Role: auth.RoleAdmin, CreatedAt: s.opts.Now().UTC().Truncate(time.Millisecond)}
		doc, err := s.newDoc(ctx, u, key, hash)
		if err != nil {
			return err
		}
		if _, err := s.users.InsertOne(ctx, doc); err != nil && !store.IsDuplicateKey(err) {
			return fmt.Errorf("create admin: %w", err)
		}
		s.log.Info("created admin account", "username", username)
		return nil
	case err != nil:
		return fmt.Errorf("find admin: %w", err)
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
	if _, err := s.users.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, bson.D{{Key: "$set", Value: bson.D{{Key: "passwordHash", Value: hash}}}}); err != nil {
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
