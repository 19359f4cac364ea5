package translog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Item is something to be logged.
type Item struct {
	// ID names it in the log, server side only: unique and stable, so the
	// same thing is never logged twice (e.g. "consent/<subject>/<seq>").
	ID string
	// Data is the leaf's public content (see Commitment).
	Data []byte
	// At orders the items of different sources: older ones are logged first.
	At time.Time
	// Ref is the source's own reference, handed back to its MarkLogged.
	Ref any
}

// Source is a kind of record that goes into the log (consent events, audit
// entries). Records carry a "not yet logged" mark from the write that
// creates them, so a crash can delay their logging but never lose it.
type Source interface {
	// Unlogged returns up to limit items whose records are not marked
	// logged, oldest first.
	Unlogged(ctx context.Context, limit int) ([]Item, error)
	// MarkLogged marks the records of items (as Unlogged returned them)
	// logged.
	MarkLogged(ctx context.Context, items []Item) error
}

// LeafVersion is the version of the leaf encoding (Commitment).
const LeafVersion = 1

// commitment is the public content of a leaf. encoding/json writes struct
// fields in declaration order, so the encoding is canonical.
type commitment struct {
	V    int    `json:"v"`
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Hash string `json:"hash"`
	At   string `json:"at"`
}

// Kinds of logged records.
const (
	KindConsent = "consent"
	KindAudit   = "audit"
)

// timeFormat is the leaf's time layout: UTC with milliseconds, what both
// stores keep.
const timeFormat = "2006-01-02T15:04:05.000Z"

// Commitment is the leaf data for a record: its kind, a public id, its hash
// in its own chain (the consent ledger or the audit chain) and its time,
// e.g. {"v":1,"kind":"consent","id":"<receipt id>","hash":"<hex>","at":"…"}.
// Leaves are public, so they hold no personal data and nothing that links
// two leaves to one person: the id of a consent event is the random id of
// its receipt (which only the receipt's holder knows to look for), that of
// an audit entry its sequence number; the hash covers values an outsider
// does not know (a signed receipt, the chain before it). Whoever holds the
// record recomputes the leaf from it.
func Commitment(kind, id, hash string, at time.Time) []byte {
	b, err := json.Marshal(commitment{V: LeafVersion, Kind: kind, ID: id, Hash: hash, At: at.UTC().Format(timeFormat)})
	if err != nil {
		panic(fmt.Sprintf("encode a leaf commitment: %v", err)) // plain strings cannot fail
	}
	return b
}
