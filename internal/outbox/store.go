package outbox

import (
	"context"
	"time"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/work"
	"github.com/consentgraph/consentgraph/plugins"
)

// Store is the storage the outbox needs: the queue of work items, each
// user's state per processor, disclosures, processor flags and the
// processors' own state.
type Store interface {
	// Relay moves work items that were committed inside another record
	// (an adapter without multi-record transactions keeps them there until
	// then) into the queue; idempotent. userID "" relays every user's and
	// returns how many users had items waiting.
	Relay(ctx context.Context, userID string) (int, error)
	// Enqueue adds an item; false (and nothing changes) when an item with
	// its id exists.
	Enqueue(ctx context.Context, it work.Item) (bool, error)
	// WakeWaiting puts a user's WAITING items back to PENDING, due at now,
	// without a note.
	WakeWaiting(ctx context.Context, userID string, now time.Time) error
	// Claim leases up to limit PENDING items of the given processors that
	// are due (NextAt and LeaseUntil at or before now) to owner until until,
	// oldest due first, counting an attempt on each. Items of one user and
	// processor run one at a time: an item is not claimed while another
	// item of its user and processor is leased, by this or any other
	// owner, and at most one is claimed per pair.
	Claim(ctx context.Context, owner string, processors []string, now, until time.Time, limit int) ([]work.Item, error)
	// Finish records the outcome of an attempt, only while the item is
	// PENDING and its owner still holds the lease of that attempt
	// (f.Item.LeaseOwner, f.Item.Attempts); false otherwise. It clears the
	// lease (freeing the item's user and processor for their next item).
	// The disclosure and the processor state in f are written with it (the
	// processor state only while the account exists and is not being
	// erased): in the same transaction where the adapter has them, else
	// just before the item, which is harmless when the lease turns out lost
	// because whoever finishes the item writes the same.
	Finish(ctx context.Context, f Finish) (bool, error)
	// Item returns one item, or nil.
	Item(ctx context.Context, id string) (*work.Item, error)
	// Items lists up to limit items in id (creation) order after the id
	// after ("" from the start), of one state unless state is "".
	Items(ctx context.Context, state work.State, after string, limit int) ([]work.Item, error)
	// Retry puts a DEAD or WAITING item back to PENDING with no attempts,
	// due at now; false when the item is in another state or absent.
	Retry(ctx context.Context, id string, now time.Time) (bool, error)
	// CountByState counts the items in each state (states without items
	// may be missing).
	CountByState(ctx context.Context) (map[work.State]int64, error)

	// Recipient reads what a delivery needs to know about a user: consent
	// state, erasure, and the state kept per processor; nil when the
	// account does not exist.
	Recipient(ctx context.Context, userID string) (*Recipient, error)
	// MarkAttempted records that data is about to go to processor, only
	// while the account exists and is not being erased; false otherwise.
	MarkAttempted(ctx context.Context, userID, processor string) (bool, error)

	// Disclosures lists up to limit disclosures of a user, newest (highest
	// id) first, with ids below before ("" from the newest); limit <= 0
	// means all.
	Disclosures(ctx context.Context, userID, before string, limit int) ([]Disclosure, error)
	// CountDisclosures counts a user's disclosures (by the index the
	// listing uses).
	CountDisclosures(ctx context.Context, userID string) (int64, error)

	// ProcessorFlags returns the stored enabled flag of every processor
	// an admin ever switched.
	ProcessorFlags(ctx context.Context) (map[string]bool, error)
	SetProcessorFlag(ctx context.Context, name string, enabled bool) error
	// PluginState is the private key-value storage of one processor instance.
	PluginState(processor string) plugins.State
	// LinkStore keeps the link statuses processors report (links.go).
	LinkStore
}

// Recipient is the user as a delivery sees them.
type Recipient struct {
	Consent consent.Stored
	Erasing bool
	Procs   map[string]ProcState
}

// ProcState is what the outbox keeps per user and processor. Ref is the
// provider's id for the user (a contact id, a hash), never a clear value.
type ProcState struct {
	Attempted bool
	Delivered bool
	Ref       string
}

// Finish is the outcome of one attempt.
type Finish struct {
	// Item is the item as claimed (its id, owner and attempt count decide
	// whether the lease is still held).
	Item work.Item
	// State is the new state; Pending with NextAt means "retry then".
	State  work.State
	NextAt time.Time
	// Note and LastError replace the item's; ResetAttempts sets attempts to 0.
	Note          string
	LastError     string
	ResetAttempts bool
	// Throttled gives back the attempt the claim counted (attempts go down
	// by one): the provider asked to wait, which says nothing about whether
	// the item can ever succeed, so it must not bring the item nearer DEAD.
	// Ignored with ResetAttempts.
	Throttled bool
	// Disclosure, if set, is recorded (once per id).
	Disclosure *Disclosure
	// Proc, if set, updates the user's state for the item's processor.
	Proc *ProcUpdate
	// At is the time of the outcome.
	At time.Time
}

// ProcUpdate sets Delivered and, on a delivery, the provider's Ref.
type ProcUpdate struct {
	Delivered bool
	Ref       string
}

// Disclosure records data a processor received (or was told to forget).
type Disclosure struct {
	// ID is the item's id: one disclosure per item, however often it ran.
	ID        string    `bson:"_id" json:"id"`
	UserID    string    `bson:"userId" json:"-"`
	Processor string    `bson:"processor" json:"processor"`
	Purpose   string    `bson:"purpose" json:"purpose"`
	Fields    []string  `bson:"fields" json:"fields"`
	Action    string    `bson:"action" json:"action"`
	Cause     string    `bson:"cause" json:"cause"`
	At        time.Time `bson:"at" json:"at"`
}
