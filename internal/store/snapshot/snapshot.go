// Package snapshot names every kind of record a store holds, so that a
// whole store can be streamed out of one adapter and loaded verbatim into
// another (copy-store): embedded → MongoDB when a site outgrows one
// machine, MongoDB → embedded for a local copy, and the earlier
// FerretDB-based data directory → the embedded store.
//
// Records are copied as stored: sealed personal data stays sealed under the
// same master key, ids and hashes are unchanged, so ledgers, receipts and
// cells verify on the copy exactly as on the original.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/translog"
	"github.com/consentgraph/consentgraph/internal/work"
)

// Kind names a kind of record.
type Kind string

// The kinds, in the order a copy loads them (keys before the accounts they
// open, accounts before what refers to them).
const (
	Secrets     Kind = "secrets"
	SigningKeys Kind = "signing_keys"
	Policies    Kind = "policies"
	DataKeys    Kind = "data_keys"
	Accounts    Kind = "accounts"
	Sessions    Kind = "sessions"
	Events      Kind = "consent_events"
	Archives    Kind = "consent_archives"
	Items       Kind = "outbox_items"
	Disclosures Kind = "disclosures"
	Flags       Kind = "processor_flags"
	PluginState Kind = "plugin_state"
	// Links are the link statuses processors reported (outbox.Link).
	Links    Kind = "processor_links"
	Members  Kind = "demographics_members"
	Cells    Kind = "demographics_cells"
	Dirty    Kind = "demographics_dirty"
	Partners Kind = "partners"
	Audit    Kind = "audit_log"
	// The public consent log: its leaves, the hashes of its complete
	// subtrees and its head, copied as stored so the copy serves the same
	// tree (same root, same proofs) and verifies against old checkpoints.
	LogLeaves Kind = "consent_log_leaves"
	LogNodes  Kind = "consent_log_nodes"
	LogHead   Kind = "consent_log_head"
)

// Kinds lists every kind in load order.
var Kinds = []Kind{Secrets, SigningKeys, Policies, DataKeys, Accounts, Sessions, Events, Archives,
	Items, Disclosures, Flags, PluginState, Links, Members, Cells, Dirty, Partners, Audit, LogLeaves, LogNodes, LogHead}

// Record is one record of one kind: exactly the field of its Kind is set.
type Record struct {
	Kind        Kind
	Secret      *envelope.SecretRecord
	SigningKey  *signing.KeyRecord
	Policy      *consent.PolicyVersion
	DataKey     *accounts.DataKey
	Account     *Account
	Session     *accounts.SessionRecord
	Event       *Event
	Archive     *consent.Archived
	Item        *work.Item
	Disclosure  *outbox.Disclosure
	Flag        *Flag
	PluginState *PluginEntry
	Link        *outbox.Link
	Member      *demographics.Member
	Cell        *Cell
	Dirty       *time.Time
	Partner     *partners.Record
	Audit       *audit.Entry
	LogLeaf     *translog.Leaf
	LogNode     *translog.Node
	LogHead     *translog.Head
}

// Account is an account with everything kept under its id: consent state
// (the ledger comes as Event records) and processor state. Consent events
// and work items an adapter still holds beside the account (the MongoDB
// adapter's user document, before its relay moved them out) are merged
// into the Event and Item records, never carried here.
type Account struct {
	Account accounts.Record
	Consent consent.Stored
	Procs   map[string]outbox.ProcState
}

// Event is one ledger event of one user.
type Event struct {
	UserID string
	Event  consent.Event
}

// Flag is a processor's enabled flag.
type Flag struct {
	Processor string
	Enabled   bool
}

// PluginEntry is one key of a processor's private state.
type PluginEntry struct {
	Processor string
	Key       string
	Value     []byte
}

// Cell is one demographics cell of one dimension subset.
type Cell struct {
	Mask int
	Cell demographics.CellRecord
}

// Source is a store that can be streamed out. It only reads: dumping a
// store changes nothing in it.
type Source interface {
	// Count returns how many records of kind the store holds: as many as
	// Dump would stream.
	Count(ctx context.Context, kind Kind) (int64, error)
	// Dump calls fn for every record of kind, in an order every adapter
	// shares (strings compare bytewise), so two dumps of equal stores
	// match record for record:
	//   - secrets by name, signing keys by generation, policies by number;
	//   - data keys, accounts and members by user id; events by user id,
	//     then sequence number (so a pass over accounts and one over
	//     events can be joined as they stream);
	//   - sessions, items, disclosures and partners by id; archives by
	//     subject; flags by processor; plugin state by processor, then key;
	//   - cells by mask, then id; audit entries by sequence number;
	//   - log leaves by index, log nodes by (level, index); the log head is
	//     one record, or none for an empty log.
	// Dump stops at fn's first error and returns it unchanged.
	Dump(ctx context.Context, kind Kind, fn func(Record) error) error
}

// Sink is a store that records can be loaded into.
type Sink interface {
	// Load stores records of one kind (all of recs have it) verbatim, in
	// as few round trips as the adapter can. The store is expected to be
	// empty of that kind; a record that exists already is an error.
	// Batches of one kind may come in several calls, in Dump's order.
	Load(ctx context.Context, kind Kind, recs []Record) error
	// Count is as for Source.
	Count(ctx context.Context, kind Kind) (int64, error)
}

// Check reports whether r is a record of kind with its field set, so that
// an adapter's Load can rely on the field it reads.
func (r *Record) Check(kind Kind) error {
	if r.Kind != kind {
		return fmt.Errorf("a %s record in a batch of %s", r.Kind, kind)
	}
	var set bool
	switch kind {
	case Secrets:
		set = r.Secret != nil
	case SigningKeys:
		set = r.SigningKey != nil
	case Policies:
		set = r.Policy != nil
	case DataKeys:
		set = r.DataKey != nil
	case Accounts:
		set = r.Account != nil
	case Sessions:
		set = r.Session != nil
	case Events:
		set = r.Event != nil
	case Archives:
		set = r.Archive != nil
	case Items:
		set = r.Item != nil
	case Disclosures:
		set = r.Disclosure != nil
	case Flags:
		set = r.Flag != nil
	case PluginState:
		set = r.PluginState != nil
	case Links:
		set = r.Link != nil
	case Members:
		set = r.Member != nil
	case Cells:
		set = r.Cell != nil
	case Dirty:
		set = r.Dirty != nil
	case Partners:
		set = r.Partner != nil
	case Audit:
		set = r.Audit != nil
	case LogLeaves:
		set = r.LogLeaf != nil
	case LogNodes:
		set = r.LogNode != nil
	case LogHead:
		set = r.LogHead != nil
	default:
		return fmt.Errorf("%w %q", ErrUnknownKind, kind)
	}
	if !set {
		return fmt.Errorf("a %s record without its content", kind)
	}
	return nil
}

// ErrUnknownKind is returned for a kind not in Kinds.
var ErrUnknownKind = errors.New("unknown record kind")
