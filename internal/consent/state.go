package consent

import (
	"strconv"
	"time"

	"github.com/consentgraph/consentgraph/internal/policy"
)

// Action is what a ledger event did.
type Action string

const (
	Grant    Action = "GRANT"
	Withdraw Action = "WITHDRAW"
)

func actionOf(granted bool) Action {
	if granted {
		return Grant
	}
	return Withdraw
}

// Method is how a choice was expressed.
type Method string

const (
	// Explicit: the user asked for it (grantConsent, withdrawConsent).
	Explicit Method = "EXPLICIT"
	// GPC: the user's agent sent the Global Privacy Control signal (Sec-GPC: 1).
	GPC Method = "GPC"
	// Default appears only in receipts for states no event was recorded for:
	// the mechanism's default applies.
	Default Method = "DEFAULT"
)

// Entry is the current state of one purpose for a user: a copy of the
// purpose's last ledger event, kept for cheap reads.
type Entry struct {
	Granted       bool
	Seq           int64
	At            time.Time
	PolicyVersion string
	// PolicyN is the ordinal of PolicyVersion among published policies;
	// a grant counts only while no later policy changed its purpose
	// materially (see Rules).
	PolicyN int64
	Method  Method
}

// Event is one entry of a user's consent ledger.
type Event struct {
	Seq           int64
	Purpose       string
	Action        Action
	PolicyVersion string
	PolicyN       int64
	At            time.Time
	Method        Method
	ReceiptID     string
	// Receipt is the signed consent receipt (compact JWS) issued for this
	// event. It names only the subject pseudonym, so it can outlive the
	// account as proof.
	Receipt  string
	PrevHash string
	Hash     string
	// Logged says the event is in the public consent log. It is false in
	// the write that records the event (the mark that makes the log
	// appender pick it up, even after a crash) and set once the event is
	// appended; it is not part of the hashed content.
	Logged bool
}

func (e *Event) entry() Entry {
	return Entry{Granted: e.Action == Grant, Seq: e.Seq, At: e.At, PolicyVersion: e.PolicyVersion, PolicyN: e.PolicyN, Method: e.Method}
}

// EventKey names event seq ("e<seq>"), e.g. in the cause of work items.
func EventKey(seq int64) string { return "e" + strconv.FormatInt(seq, 10) }

// Stored is a user's current consent: the ledger's head and the latest
// entry per purpose the user ever changed. Purposes never touched have no
// entry: their mechanism's default applies. The zero value is a user who
// never chose anything.
type Stored struct {
	// Head is the sequence number of the last ledger event, 0 before any;
	// HeadHash is that event's hash, "" before any.
	Head     int64
	HeadHash string
	State    map[string]Entry
	// Erasing is set (by the store, from the account) once the account's
	// erasure began: its consent no longer changes.
	Erasing bool
}

// Status is the effective consent of one user for one purpose.
type Status struct {
	Purpose policy.Purpose
	// Granted reports whether the purpose is in force now.
	Granted bool
	// Explicit is true when a recorded choice of the user decides Granted;
	// false when the mechanism's default applies.
	Explicit bool
	// NeedsRenewal: the user granted the purpose, a later policy version
	// changed it materially, and the default does not cover it, so it stays
	// off until the user grants it again.
	NeedsRenewal bool
	// Last is the user's last recorded choice, even one that stopped
	// counting; nil when there is none.
	Last *Entry
}

// Rules decide what a stored choice means now: the purposes with their
// mechanisms and the policy versions with their material changes. A Rules
// value is an immutable snapshot; Service.Rules returns the current one.
type Rules struct {
	purposes *policy.Catalog
	versions []PolicyVersion
	// renewAfter maps a purpose to the ordinal of the latest policy that
	// changed it materially: grants recorded under an older policy no
	// longer count.
	renewAfter map[string]int64
}

// NewRules builds rules from purposes and the published policy versions in
// publication order (at least one).
func NewRules(purposes *policy.Catalog, versions []PolicyVersion) *Rules {
	r := &Rules{purposes: purposes, versions: versions, renewAfter: map[string]int64{}}
	for _, v := range versions {
		for _, p := range v.Reconsent {
			if v.N > r.renewAfter[p] {
				r.renewAfter[p] = v.N
			}
		}
	}
	return r
}

// Purposes is the purpose catalog.
func (r *Rules) Purposes() *policy.Catalog { return r.purposes }

// Current is the policy version in force.
func (r *Rules) Current() PolicyVersion { return r.versions[len(r.versions)-1] }

// Versions lists every published policy version, oldest first.
func (r *Rules) Versions() []PolicyVersion { return append([]PolicyVersion(nil), r.versions...) }

// Status computes the effective consent for purpose from a user's stored
// consent (at least head and state; the zero Stored is a user who never
// changed anything). ok is false for an unknown purpose.
//
// A grant stops counting when a policy published after it lists the purpose
// in reconsent; withdrawals always keep counting. A purpose whose recorded
// choice does not count falls back to its mechanism's default, and
// NOTICE_ONLY purposes are always in force.
func (r *Rules) Status(st *Stored, purpose string) (s Status, ok bool) {
	p, ok := r.purposes.Get(purpose)
	if !ok {
		return Status{}, false
	}
	s = Status{Purpose: p, Granted: p.Mechanism.Default()}
	var e Entry
	var has bool
	if st != nil {
		e, has = st.State[purpose]
	}
	if has {
		s.Last = &e
	}
	switch {
	case p.Mechanism == policy.NoticeOnly:
		s.Explicit = has && e.Granted
	case !has:
	case e.Granted && e.PolicyN < r.renewAfter[purpose]:
		s.NeedsRenewal = !s.Granted
	default:
		s.Granted, s.Explicit = e.Granted, true
	}
	return s, true
}

// InForce reports whether purpose is in force for the user whose stored
// consent is st: the pure function the processors and the aggregates use.
// Unknown purposes are never in force.
func (r *Rules) InForce(st *Stored, purpose string) bool {
	s, ok := r.Status(st, purpose)
	return ok && s.Granted
}

// Statuses returns the status of every purpose, in catalog order.
func (r *Rules) Statuses(st *Stored) []Status {
	ids := r.purposes.IDs()
	out := make([]Status, 0, len(ids))
	for _, id := range ids {
		s, _ := r.Status(st, id)
		out = append(out, s)
	}
	return out
}
