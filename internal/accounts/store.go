package accounts

import (
	"context"
	"errors"
	"time"

	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/work"
)

// Store is the storage accounts needs: accounts, their data keys and their
// sessions. Both store adapters implement it; every lookup it makes on a
// request path is indexed.
type Store interface {
	DataKeyStore
	SessionStore

	// CreateAccount stores a new account together with what other domains
	// start it with (consent, work items), all or nothing. A username key
	// already in use gives ErrUsernameTaken, a verified email index already
	// verified by another account ErrEmailTaken; either stores nothing. An
	// unverified email index never clashes: it belongs to nobody.
	CreateAccount(ctx context.Context, a NewAccount) error
	// ImportAccounts stores many new accounts (a bulk load of demo data);
	// it fails as a whole if any username or email is taken.
	ImportAccounts(ctx context.Context, accounts []NewAccount) error
	// Account returns an account by id, or nil when there is none.
	Account(ctx context.Context, id string) (*Record, error)
	// AccountByUsername returns the account with this username key, or nil.
	// An account being erased is returned too (ErasingSince set).
	AccountByUsername(ctx context.Context, usernameKey string) (*Record, error)
	// SetPasswordHash replaces an account's password hash.
	SetPasswordHash(ctx context.Context, id, hash string) error
	// AccountByVerifiedEmail returns the account not being erased whose
	// verified email has this blind index, or nil.
	AccountByVerifiedEmail(ctx context.Context, emailIndex string) (*Record, error)
	// UpdateAccount applies u to an account that is not being erased; false
	// when there is none. A new email is unverified, so it never clashes.
	UpdateAccount(ctx context.Context, id string, u Update) (bool, error)
	// VerifyEmail marks the email of the account whose pending verification
	// has tokenHash and expires after now as verified and ends the
	// verification. When another account holds that email index verified
	// already, nothing changes and UserID is "". Otherwise every other
	// account not being erased that holds the same index unverified loses
	// its email (and pending verification) and gets lost appended to its
	// notices; their ids are Evicted. UserID is "" when no token matches.
	VerifyEmail(ctx context.Context, tokenHash string, now time.Time, lost Notice) (VerifiedEmail, error)
	// SetPasswordReset replaces the pending password reset of an account
	// not being erased (so an older token stops working); false when there
	// is none.
	SetPasswordReset(ctx context.Context, id string, v Verification) (bool, error)
	// ResetPassword gives the account not being erased whose pending reset
	// has tokenHash and expires after now the password hash, ends the reset
	// and its password failures, and returns its id; "" when none matches.
	ResetPassword(ctx context.Context, tokenHash string, now time.Time, hash string) (string, error)
	// PasswordFailed counts one more consecutive wrong password at at and
	// returns the new count; 0 when there is no account not being erased.
	PasswordFailed(ctx context.Context, id string, at time.Time) (int, error)
	// ClearPasswordFailures resets the count of consecutive wrong passwords.
	ClearPasswordFailures(ctx context.Context, id string) error
	// ClearNotices removes an account's notices.
	ClearNotices(ctx context.Context, id string) error
	// MarkErasing records that the account's erasure began at at; false when
	// there is no account or it is already marked. From then on the account
	// cannot sign in and none of its records change.
	MarkErasing(ctx context.Context, id string, at time.Time) (bool, error)
	// Erasing lists the accounts whose erasure began and did not finish.
	Erasing(ctx context.Context) ([]string, error)
	// DeleteAccount removes the account and every record kept under its id
	// for it alone (consent state and ledger, processor state, work not yet
	// queued). Sessions and the data key are removed by their own calls;
	// queued work items and disclosures stay. Deleting an absent account is
	// not an error.
	DeleteAccount(ctx context.Context, id string) error
	// EachAccount calls fn for every account not being erased, in id order.
	EachAccount(ctx context.Context, fn func(r *Record) error) error
}

// DataKeyStore keeps one wrapped data key per account, apart from the
// account, so that erasing it shreds every copy of the account's sealed data.
type DataKeyStore interface {
	// InsertDataKey stores a new key; there is at most one per user.
	InsertDataKey(ctx context.Context, k DataKey) error
	// ImportDataKeys stores many new keys.
	ImportDataKeys(ctx context.Context, keys []DataKey) error
	// DataKey returns the wrapped key of a user, or nil when it is gone.
	DataKey(ctx context.Context, userID string) ([]byte, error)
	// DeleteDataKey destroys a user's key; absent keys are not an error.
	DeleteDataKey(ctx context.Context, userID string) error
	// EachDataKey calls fn for every key, in user id order.
	EachDataKey(ctx context.Context, fn func(k DataKey) error) error
	// SwapDataKey replaces a wrapped key if it is still old; false otherwise
	// (it was destroyed or changed meanwhile).
	SwapDataKey(ctx context.Context, userID string, old, new []byte) (bool, error)
}

// SessionStore keeps sessions, found by the hash of their token.
type SessionStore interface {
	InsertSession(ctx context.Context, s SessionRecord) error
	// Session returns a session by id, or nil. Expired sessions may still be
	// returned until swept; callers check ExpiresAt.
	Session(ctx context.Context, id string) (*SessionRecord, error)
	DeleteSession(ctx context.Context, id string) error
	DeleteUserSessions(ctx context.Context, userID string) error
	// UserSessions lists a user's sessions, expired ones included.
	UserSessions(ctx context.Context, userID string) ([]SessionRecord, error)
	// CountSessions counts sessions that expire after now.
	CountSessions(ctx context.Context, now time.Time) (int64, error)
	// DeleteExpiredSessions removes sessions that expired at or before now.
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error)
}

// Errors a Store reports for unique fields.
var (
	ErrUsernameTaken = errors.New("username key is taken")
	ErrEmailTaken    = errors.New("email index is taken")
)

// Record is an account as stored. Personal data is sealed with the user's
// own data key, itself wrapped by the master key and kept apart
// (DataKeyStore): erasing that one small record makes every copy of the
// sealed fields — backups, replicas, dumps — unreadable ("crypto-shredding").
type Record struct {
	ID       string
	Username string
	// UsernameKey is the normalized username; unique.
	UsernameKey  string
	PasswordHash string
	Role         auth.Role
	CreatedAt    time.Time
	// Email is sealed; nil when the user gave none.
	Email []byte
	// EmailIndex is the blind index of the email, "" without email. It is
	// unique among accounts whose email is verified: an unverified address
	// belongs to nobody.
	EmailIndex    string
	EmailVerified bool
	// Verification is the pending email verification, if any.
	Verification *Verification
	// PasswordReset is the pending password reset, if any.
	PasswordReset *Verification
	// PasswordFailures counts consecutive wrong passwords, the last at
	// LastPasswordFailure (zero without): the back-off is kept with the
	// account so that it holds across requests, aliases and replicas.
	PasswordFailures    int
	LastPasswordFailure time.Time
	// Notices are messages for the user, oldest first; they hold no
	// personal data.
	Notices []Notice
	Profile SealedProfile
	// ErasingSince is set once the account's erasure began.
	ErasingSince *time.Time
}

// SealedProfile holds the sealed profile fields; nil means not given.
type SealedProfile struct {
	BirthYear []byte
	Country   []byte
	Gender    []byte
	Language  []byte
}

// Verification is a mailed email verification link: only the token's hash
// is stored.
type Verification struct {
	TokenHash string
	ExpiresAt time.Time
}

// Notice is a message kept for a user until they dismiss it.
type Notice struct {
	Kind NoticeKind
	At   time.Time
}

// NoticeKind names what a notice tells.
type NoticeKind string

// NoticeEmailClaimed tells a user that their unverified email address was
// removed because another account verified it first.
const NoticeEmailClaimed NoticeKind = "EMAIL_CLAIMED_BY_ANOTHER_ACCOUNT"

// VerifiedEmail is what VerifyEmail did.
type VerifiedEmail struct {
	// UserID is the account whose email is now verified; "" when none.
	UserID string
	// Evicted are the accounts that lost the address as unverified.
	Evicted []string
}

// NewAccount is a sign-up: the account, and what other domains start it
// with, written together.
type NewAccount struct {
	Account Record
	// Consent is the initial consent state with the events recorded at
	// sign-up (Global Privacy Control withdrawals), if any.
	Consent consent.Initial
	// Work are outbox items the sign-up starts (deliveries for opt-out
	// purposes in force from the first moment).
	Work []work.Item
}

// Update changes some fields of an account and leaves the others alone.
type Update struct {
	// Profile maps a profile field ("birthYear", "country", "gender",
	// "language") to its new sealed value; a nil value clears the field.
	Profile map[string][]byte
	// Email, when set, replaces the email (and its verification).
	Email *EmailUpdate
}

// EmailUpdate sets or removes an account's email. The email is unverified
// afterwards.
type EmailUpdate struct {
	// Sealed is the new sealed email; nil removes the email, its index and
	// any pending verification.
	Sealed []byte
	Index  string
	// Verification is the new pending verification (with Sealed).
	Verification *Verification
}

// DataKey is a user's data key, wrapped by the master key.
type DataKey struct {
	UserID    string
	Wrapped   []byte
	CreatedAt time.Time
}

// SessionRecord is a stored session; ID is the hash of its token.
type SessionRecord struct {
	ID        string
	UserID    string
	Role      auth.Role
	CreatedAt time.Time
	ExpiresAt time.Time
}
