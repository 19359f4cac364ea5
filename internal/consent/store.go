package consent

import (
	"context"
	"time"

	"github.com/consentgraph/consentgraph/internal/work"
)

// Store is the storage consent needs: each user's current consent and
// hash-chained ledger, the archive of erased users' ledgers, and the
// published policy versions.
//
// The current state and the ledger never disagree: RecordChange commits the
// new event, the new state and the change's work items as one atomic
// operation (one transaction, or one single-document write from which the
// event and the items are then moved out idempotently).
type Store interface {
	// State returns a user's current consent (not the ledger); nil when the
	// account does not exist. A user who never chose anything has the zero
	// Stored. Erasing reports an erasure in progress.
	State(ctx context.Context, userID string) (*Stored, error)
	// RecordChange appends ev as the user's next ledger event, sets the
	// state of ev.Purpose to ev's entry, and stores items as queued work,
	// atomically, only while the ledger head is still ev.Seq-1 and the
	// account exists and is not being erased; false (nothing written)
	// otherwise.
	RecordChange(ctx context.Context, userID string, ev Event, items []work.Item) (bool, error)
	// Events returns up to limit ledger events of a user with sequence
	// numbers above after, in order; limit <= 0 means all.
	Events(ctx context.Context, userID string, after int64, limit int) ([]Event, error)
	// Event returns one event, or nil.
	Event(ctx context.Context, userID string, seq int64) (*Event, error)
	// Unlogged returns up to limit events not yet marked logged (Logged
	// false) of accounts that exist, oldest first: by time, then user id,
	// then sequence number.
	Unlogged(ctx context.Context, limit int) ([]UserEvent, error)
	// MarkLogged marks events logged; events that no longer exist (their
	// account was erased) are skipped.
	MarkLogged(ctx context.Context, events []EventRef) error
	// EachState calls fn for the consent of every account not being
	// erased, in user id order (accounts that never chose anything included).
	EachState(ctx context.Context, fn func(userID string, st *Stored) error) error
	// GrantedBefore lists the users whose current state of purpose is a
	// grant recorded under a policy ordinal below n.
	GrantedBefore(ctx context.Context, purpose string, n int64) ([]string, error)

	// Archive keeps an erased user's final state and ledger under their
	// subject pseudonym, replacing an earlier archive of the same subject.
	Archive(ctx context.Context, a Archived) error
	// Archived returns the archive of a subject, or nil.
	Archived(ctx context.Context, subject string) (*Archived, error)

	// AddFirstPolicy stores v as the first policy version unless any
	// version is stored already (then it does nothing).
	AddFirstPolicy(ctx context.Context, v PolicyVersion) error
	// PolicyVersions returns every published version, oldest first.
	PolicyVersions(ctx context.Context) ([]PolicyVersion, error)
	// AppendPolicy publishes v as version number v.N, only while exactly
	// v.N-1 versions are stored; false otherwise.
	AppendPolicy(ctx context.Context, v PolicyVersion) (bool, error)
}

// UserEvent is a ledger event with the user whose ledger holds it.
type UserEvent struct {
	UserID string
	Event  Event
}

// EventRef names one ledger event.
type EventRef struct {
	UserID string
	Seq    int64
}

// Initial is the consent a new account starts with: the zero state, or
// the withdrawals recorded at sign-up under Global Privacy Control.
type Initial struct {
	State  Stored
	Events []Event
}

// Archived is the consent of an erased account, kept as pseudonymous,
// signed proof of the user's choices that VerifyLedger still checks.
type Archived struct {
	Subject    string
	State      Stored
	Events     []Event
	ArchivedAt time.Time
}
