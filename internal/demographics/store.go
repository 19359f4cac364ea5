package demographics

import (
	"context"
	"time"
)

// Store is the storage the aggregates need: the member records (what the
// cells count for each user) and the cells of each dimension subset
// (mask 0..31). The crash-safety protocol of the package comment runs on
// top of it and needs only that each call is atomic by itself.
type Store interface {
	// Member returns a user's record, or nil.
	Member(ctx context.Context, userID string) (*Member, error)
	// EachMember calls fn for every record, in user id order.
	EachMember(ctx context.Context, fn func(m *Member) error) error
	// BeginMove stores p as the user's pending move and increments the
	// record's version, only while the version is still ver; ver 0 means
	// there is no record yet and creates one (Tuple nil). False when the
	// condition does not hold.
	BeginMove(ctx context.Context, userID string, ver int64, p Pending) (bool, error)
	// SettleMove ends the pending move op: the record's tuple becomes to
	// (a nil to deletes the record), the pending move is cleared and the
	// version incremented; only while op is the pending move. False otherwise.
	SettleMove(ctx context.Context, userID, op string, to []byte) (bool, error)
	// DeleteMember deletes a record without a pending move while its
	// version is ver.
	DeleteMember(ctx context.Context, userID string, ver int64) (bool, error)
	// ImportMembers inserts records of users who have none (bulk loads).
	ImportMembers(ctx context.Context, members []Member) error

	// AddToCells adds each delta to its cell's count (creating the cell with
	// the sealed values when missing) and increments each cell's version.
	// Each cell's change is atomic; the batch need not be.
	AddToCells(ctx context.Context, deltas []CellDelta) error
	// CellCounts returns id, count and version of every cell of a mask.
	CellCounts(ctx context.Context, mask int) ([]CellCount, error)
	// CellValues returns the sealed values of the given cells of a mask
	// (ids not found are missing).
	CellValues(ctx context.Context, mask int, ids []string) (map[string][]byte, error)
	// SetCellIfUnchanged sets a cell's count and increments its version,
	// only while its version is ver.
	SetCellIfUnchanged(ctx context.Context, mask int, id string, ver, n int64) (bool, error)
	// CreateCell inserts a cell; false when it exists.
	CreateCell(ctx context.Context, mask int, c CellRecord) (bool, error)
	// ReplaceCells replaces every cell of a mask (bulk loads, no live traffic).
	ReplaceCells(ctx context.Context, mask int, cells []CellRecord) error

	// DirtySince returns when a reconciliation was requested (zero: none).
	DirtySince(ctx context.Context) (time.Time, error)
	// MarkDirty requests a reconciliation as of at.
	MarkDirty(ctx context.Context, at time.Time) error
	// ClearDirty clears the request if it is still the one made at since.
	ClearDirty(ctx context.Context, since time.Time) error
}

// Member records, per user, the tuple the cells currently count for them
// (Tuple, sealed; nil: counted nowhere) and the move in progress, if any.
// It is the single source of truth the cells derive from.
type Member struct {
	UserID  string
	Ver     int64
	Tuple   []byte
	Pending *Pending
}

// Pending is a move from one tuple to another, recorded before any cell.
type Pending struct {
	Op    string
	Since time.Time
	From  []byte
	To    []byte
}

// CellDelta changes one cell's count.
type CellDelta struct {
	Mask int
	ID   string
	// Values are the cell's sealed values, stored when the cell is created.
	Values []byte
	Delta  int64
}

// CellCount is a cell without its values.
type CellCount struct {
	ID  string
	N   int64
	Ver int64
}

// CellRecord is one pre-aggregated count: how many counting users share the
// values of one dimension subset. Its id is a keyed hash of subset and
// values; the values are sealed under the master key.
type CellRecord struct {
	ID     string
	N      int64
	Ver    int64
	Values []byte
}
