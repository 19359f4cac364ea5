package mongostore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/work"
)

// User-document fields written by more than one port.
const (
	erasingField = "erasingSince"
	consentField = "consent"
	// pendingField holds consent events committed with a change and not
	// yet moved to consent_events, keyed "e<seq>".
	pendingField = consentField + ".pending"
	// legacyEventsField is where the previous version kept the whole
	// ledger; read like pendingField and moved out the same way.
	legacyEventsField = consentField + ".events"
	// embeddedField holds work items committed with a change and not yet
	// relayed to the outbox collection, keyed by item id.
	embeddedField = "outbox"
	procsField    = "procs"
	// relayField marks a user document holding pending events or items:
	// a fresh random tag on every write that adds some. It makes the
	// recovery sweep an index lookup, and a relay that removes exactly what
	// it read is conditional on the tag it read (no write added anything
	// since).
	relayField = "relay"
)

// userDoc is a document of "users", as the previous version laid it out.
// Personal data arrives sealed from the accounts domain.
type userDoc struct {
	ID                string           `bson:"_id"`
	Username          string           `bson:"username"`
	UsernameKey       string           `bson:"usernameKey"`
	PasswordHash      string           `bson:"passwordHash"`
	Role              auth.Role        `bson:"role"`
	CreatedAt         time.Time        `bson:"createdAt"`
	Email             []byte           `bson:"email,omitempty"`
	EmailIndex        string           `bson:"emailIndex,omitempty"`
	EmailVerified     bool             `bson:"emailVerified"`
	EmailVerification *verificationDoc `bson:"emailVerification,omitempty"`
	Profile           profileDoc       `bson:"profile"`
	ErasingSince      *time.Time       `bson:"erasingSince,omitempty"`
	// VerifiedEmailIndex is emailIndex while the email is verified, absent
	// otherwise: its unique sparse index makes a verified address unique
	// while unverified ones clash with nothing (FerretDB v1 has no partial
	// indexes, so a partial filter on emailVerified is not an option).
	VerifiedEmailIndex  string           `bson:"verifiedEmailIndex,omitempty"`
	PasswordReset       *verificationDoc `bson:"passwordReset,omitempty"`
	PasswordFailures    int              `bson:"pwFailures,omitempty"`
	LastPasswordFailure *time.Time       `bson:"pwFailedAt,omitempty"`
	Notices             []noticeDoc      `bson:"notices,omitempty"`

	Consent *consentDoc        `bson:"consent,omitempty"`
	Outbox  map[string]itemDoc `bson:"outbox,omitempty"`
	Procs   map[string]procDoc `bson:"procs,omitempty"`
	Relay   string             `bson:"relay,omitempty"`
}

type verificationDoc struct {
	TokenHash string    `bson:"tokenHash"`
	ExpiresAt time.Time `bson:"expiresAt"`
}

type noticeDoc struct {
	Kind string    `bson:"kind"`
	At   time.Time `bson:"at"`
}

type profileDoc struct {
	BirthYear []byte `bson:"birthYear,omitempty"`
	Country   []byte `bson:"country,omitempty"`
	Gender    []byte `bson:"gender,omitempty"`
	Language  []byte `bson:"language,omitempty"`
}

// profileFields are the profile fields an Update may name.
var profileFields = map[string]bool{"birthYear": true, "country": true, "gender": true, "language": true}

func newUserDoc(r *accounts.Record) userDoc {
	d := userDoc{
		ID: r.ID, Username: r.Username, UsernameKey: r.UsernameKey, PasswordHash: r.PasswordHash,
		Role: r.Role, CreatedAt: r.CreatedAt, Email: r.Email, EmailIndex: r.EmailIndex, EmailVerified: r.EmailVerified,
		Profile:      profileDoc{BirthYear: r.Profile.BirthYear, Country: r.Profile.Country, Gender: r.Profile.Gender, Language: r.Profile.Language},
		ErasingSince: r.ErasingSince,
	}
	if r.Verification != nil {
		d.EmailVerification = &verificationDoc{TokenHash: r.Verification.TokenHash, ExpiresAt: r.Verification.ExpiresAt}
	}
	if r.EmailVerified {
		d.VerifiedEmailIndex = r.EmailIndex
	}
	if v := r.PasswordReset; v != nil {
		d.PasswordReset = &verificationDoc{TokenHash: v.TokenHash, ExpiresAt: v.ExpiresAt}
	}
	d.PasswordFailures = r.PasswordFailures
	if !r.LastPasswordFailure.IsZero() {
		t := r.LastPasswordFailure
		d.LastPasswordFailure = &t
	}
	for _, n := range r.Notices {
		d.Notices = append(d.Notices, noticeDoc{Kind: string(n.Kind), At: n.At})
	}
	return d
}

func (d *userDoc) record() *accounts.Record {
	r := &accounts.Record{
		ID: d.ID, Username: d.Username, UsernameKey: d.UsernameKey, PasswordHash: d.PasswordHash,
		Role: d.Role, CreatedAt: d.CreatedAt, Email: d.Email, EmailIndex: d.EmailIndex, EmailVerified: d.EmailVerified,
		Profile:      accounts.SealedProfile{BirthYear: d.Profile.BirthYear, Country: d.Profile.Country, Gender: d.Profile.Gender, Language: d.Profile.Language},
		ErasingSince: d.ErasingSince,
	}
	if v := d.EmailVerification; v != nil {
		r.Verification = &accounts.Verification{TokenHash: v.TokenHash, ExpiresAt: v.ExpiresAt}
	}
	if v := d.PasswordReset; v != nil {
		r.PasswordReset = &accounts.Verification{TokenHash: v.TokenHash, ExpiresAt: v.ExpiresAt}
	}
	r.PasswordFailures = d.PasswordFailures
	if d.LastPasswordFailure != nil {
		r.LastPasswordFailure = *d.LastPasswordFailure
	}
	for _, n := range d.Notices {
		r.Notices = append(r.Notices, accounts.Notice{Kind: accounts.NoticeKind(n.Kind), At: n.At})
	}
	return r
}

// consentDoc is the "consent" field of a user document: the current state,
// and the events committed with it that are not yet in consent_events.
type consentDoc struct {
	Head     int64               `bson:"head"`
	HeadHash string              `bson:"headHash"`
	State    map[string]entryDoc `bson:"state"`
	Pending  map[string]eventDoc `bson:"pending,omitempty"`
	// Events is the previous version's in-document ledger.
	Events map[string]eventDoc `bson:"events,omitempty"`
}

// stored is the consent state alone (never the ledger).
func (d *userDoc) stored() *consent.Stored {
	st := &consent.Stored{Erasing: d.ErasingSince != nil}
	if c := d.Consent; c != nil {
		st.Head, st.HeadHash = c.Head, c.HeadHash
		if len(c.State) > 0 {
			st.State = make(map[string]consent.Entry, len(c.State))
			for p, e := range c.State {
				st.State[p] = e.entry()
			}
		}
	}
	return st
}

// pendingEvents returns the events still held in the document (new and
// legacy layout), by their field path.
func (d *userDoc) pendingEvents() map[string]eventDoc {
	out := map[string]eventDoc{}
	if c := d.Consent; c != nil {
		for k, e := range c.Events {
			out[legacyEventsField+"."+k] = e
		}
		for k, e := range c.Pending {
			out[pendingField+"."+k] = e
		}
	}
	return out
}

type entryDoc struct {
	Granted       bool           `bson:"granted"`
	Seq           int64          `bson:"seq"`
	At            time.Time      `bson:"at"`
	PolicyVersion string         `bson:"policyVersion"`
	PolicyN       int64          `bson:"policyN"`
	Method        consent.Method `bson:"method"`
}

func newEntryDoc(e consent.Entry) entryDoc {
	return entryDoc{Granted: e.Granted, Seq: e.Seq, At: e.At, PolicyVersion: e.PolicyVersion, PolicyN: e.PolicyN, Method: e.Method}
}

func (e entryDoc) entry() consent.Entry {
	return consent.Entry{Granted: e.Granted, Seq: e.Seq, At: e.At, PolicyVersion: e.PolicyVersion, PolicyN: e.PolicyN, Method: e.Method}
}

// entryOf is the state entry an event leaves for its purpose.
func entryOf(ev *consent.Event) entryDoc {
	return entryDoc{Granted: ev.Action == consent.Grant, Seq: ev.Seq, At: ev.At, PolicyVersion: ev.PolicyVersion, PolicyN: ev.PolicyN, Method: ev.Method}
}

type eventDoc struct {
	Seq           int64          `bson:"seq"`
	Purpose       string         `bson:"purpose"`
	Action        consent.Action `bson:"action"`
	PolicyVersion string         `bson:"policyVersion"`
	PolicyN       int64          `bson:"policyN"`
	At            time.Time      `bson:"at"`
	Method        consent.Method `bson:"method"`
	ReceiptID     string         `bson:"receiptId"`
	Receipt       string         `bson:"receipt"`
	PrevHash      string         `bson:"prevHash"`
	Hash          string         `bson:"hash"`
	// Logged is written false with the event, always present, so the
	// appender's partial index {logged: false} finds it (documents of the
	// previous version, without it, are given it once at Open).
	Logged bool `bson:"logged"`
}

func newEventDoc(e *consent.Event) eventDoc {
	return eventDoc{Seq: e.Seq, Purpose: e.Purpose, Action: e.Action, PolicyVersion: e.PolicyVersion, PolicyN: e.PolicyN,
		At: e.At, Method: e.Method, ReceiptID: e.ReceiptID, Receipt: e.Receipt, PrevHash: e.PrevHash, Hash: e.Hash, Logged: e.Logged}
}

func (e *eventDoc) event() consent.Event {
	return consent.Event{Seq: e.Seq, Purpose: e.Purpose, Action: e.Action, PolicyVersion: e.PolicyVersion, PolicyN: e.PolicyN,
		At: e.At, Method: e.Method, ReceiptID: e.ReceiptID, Receipt: e.Receipt, PrevHash: e.PrevHash, Hash: e.Hash, Logged: e.Logged}
}

// eventRow is a document of consent_events: one ledger event, found by
// user and sequence number.
type eventRow struct {
	ID     string   `bson:"_id"`
	UserID string   `bson:"userId"`
	Event  eventDoc `bson:",inline"`
}

// eventID is the _id of a user's event seq: zero-padded so that ids sort
// like sequence numbers.
func eventID(userID string, seq int64) string {
	return fmt.Sprintf("%s:%020d", userID, seq)
}

func pendingKey(seq int64) string { return "e" + strconv.FormatInt(seq, 10) }

// itemDoc is a work item, in the outbox collection or embedded in a user
// document until relayed.
type itemDoc struct {
	ID         string      `bson:"_id"`
	UserID     string      `bson:"userId"`
	Processor  string      `bson:"processor"`
	Purpose    string      `bson:"purpose"`
	Action     work.Action `bson:"action"`
	Erase      bool        `bson:"erase,omitempty"`
	Ref        string      `bson:"ref,omitempty"`
	Cause      string      `bson:"cause"`
	State      work.State  `bson:"state"`
	Attempts   int         `bson:"attempts"`
	NextAt     time.Time   `bson:"nextAt"`
	LeaseUntil time.Time   `bson:"leaseUntil"`
	LeaseOwner string      `bson:"leaseOwner,omitempty"`
	LastError  string      `bson:"lastError,omitempty"`
	Note       string      `bson:"note,omitempty"`
	CreatedAt  time.Time   `bson:"createdAt"`
	UpdatedAt  time.Time   `bson:"updatedAt"`
}

func newItemDoc(it *work.Item) itemDoc {
	return itemDoc{ID: it.ID, UserID: it.UserID, Processor: it.Processor, Purpose: it.Purpose, Action: it.Action, Erase: it.Erase,
		Ref: it.Ref, Cause: it.Cause, State: it.State, Attempts: it.Attempts, NextAt: it.NextAt, LeaseUntil: it.LeaseUntil,
		LeaseOwner: it.LeaseOwner, LastError: it.LastError, Note: it.Note, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt}
}

func (d *itemDoc) item() work.Item {
	return work.Item{ID: d.ID, UserID: d.UserID, Processor: d.Processor, Purpose: d.Purpose, Action: d.Action, Erase: d.Erase,
		Ref: d.Ref, Cause: d.Cause, State: d.State, Attempts: d.Attempts, NextAt: d.NextAt, LeaseUntil: d.LeaseUntil,
		LeaseOwner: d.LeaseOwner, LastError: d.LastError, Note: d.Note, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

// procDoc is what the outbox keeps per user and processor.
type procDoc struct {
	Attempted bool   `bson:"attempted"`
	Delivered bool   `bson:"delivered"`
	Ref       string `bson:"ref,omitempty"`
}

func (d *userDoc) procs() map[string]outbox.ProcState {
	if len(d.Procs) == 0 {
		return nil
	}
	out := make(map[string]outbox.ProcState, len(d.Procs))
	for k, p := range d.Procs {
		out[k] = outbox.ProcState{Attempted: p.Attempted, Delivered: p.Delivered, Ref: p.Ref}
	}
	return out
}

// checkKey refuses a name that cannot be a field name inside a document
// (a dotted path would reach elsewhere; "$" starts an operator).
func checkKey(kind, k string) error {
	if k == "" || strings.ContainsAny(k, ".\x00") || strings.HasPrefix(k, "$") {
		return fmt.Errorf("%s %q cannot be stored as a document field name", kind, k)
	}
	return nil
}
