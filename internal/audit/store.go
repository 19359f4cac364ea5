package audit

import "context"

// Store is the storage the audit log needs.
type Store interface {
	// Append stores next(head) as the entry after head, the last entry
	// (nil for an empty log), atomically: two appends never take the same
	// place. next may be called again with a newer head if another append
	// won the race, so it must have no side effects.
	Append(ctx context.Context, next func(head *Entry) Entry) (Entry, error)
	// Page returns up to limit entries with Seq below before (0: from the
	// newest), newest first.
	Page(ctx context.Context, before int64, limit int) ([]Entry, error)
	// Each calls fn for every entry in order.
	Each(ctx context.Context, fn func(e Entry) error) error
	// Unlogged returns up to limit entries not yet marked logged (Logged
	// false), in sequence order.
	Unlogged(ctx context.Context, limit int) ([]Entry, error)
	// MarkLogged marks the entries with these sequence numbers logged.
	MarkLogged(ctx context.Context, seqs []int64) error
}
