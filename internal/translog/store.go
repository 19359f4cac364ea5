package translog

import (
	"context"
	"time"
)

// Store is the storage the log needs. Both store adapters implement it.
//
// The log is kept as its leaves (the source of truth, each under its index
// and its item), the hash of every complete subtree of level 1 and up
// (written once, when its last leaf arrives), and the head: the size and
// root of the largest tree whose subtrees are all stored. The root of any
// size up to the head's and every proof then cost one read of O(log n)
// nodes, at any size of the log.
//
// Appending needs no transaction across records: leaves are unique by
// index and by item, so two appenders (two replicas) can never put two
// leaves at one index or log one item twice; nodes follow from the leaves,
// so whoever writes one writes the same hash; the head only grows. A crash
// between the steps of Append leaves leaves beyond the head, which the next
// appender completes (Log.Drain).
type Store interface {
	// Head returns the head; the zero Head (size 0, no root) before the
	// first append.
	Head(ctx context.Context) (Head, error)
	// Leaves returns up to limit leaves with index from or above, in index
	// order.
	Leaves(ctx context.Context, from int64, limit int) ([]Leaf, error)
	// LeavesByItem returns the leaves that log any of items (at most one
	// each), in no particular order.
	LeavesByItem(ctx context.Context, items []string) ([]Leaf, error)
	// ItemLeaves returns every leaf whose item starts with prefix, in item
	// order (bytewise).
	ItemLeaves(ctx context.Context, prefix string) ([]Leaf, error)
	// Nodes returns those of ids that are stored, in no particular order:
	// level 0 from the leaves' hashes, higher levels from the nodes.
	Nodes(ctx context.Context, ids []NodeID) ([]Node, error)
	// Append stores b.Leaves in order, each only while neither its index nor
	// its item is taken, stopping at the first that is, and returns how many
	// it stored. Only when it stored them all does it store b.Nodes (levels 1
	// and up; a node already stored is left as it is) and then set the head
	// to b.Head, if b.Head.Size is larger than the stored head's. A batch
	// without leaves stores its nodes and head.
	Append(ctx context.Context, b Batch) (int, error)
	// Lease makes owner the appender until until, if nobody is, the lease
	// expired by now, or owner holds it already; false otherwise. It keeps
	// replicas from competing for the same appends (correctness does not
	// depend on it).
	Lease(ctx context.Context, owner string, now, until time.Time) (bool, error)
}

// Leaf is one entry of the log.
type Leaf struct {
	Index int64
	// Item names what the leaf logs, server side only (e.g.
	// "consent/<subject>/<seq>"); unique in the log.
	Item string
	// Data is the leaf's public content; Hash is LeafHash(Data).
	Data []byte
	Hash []byte
	// At is when it was appended.
	At time.Time
}

// Node is the hash of a complete subtree.
type Node struct {
	ID   NodeID
	Hash []byte
}

// Head is a tree the log has completely stored: the first Size leaves,
// with root hash Root, stored at At.
type Head struct {
	Size int64
	Root []byte
	At   time.Time
}

// Batch is one Append: new leaves (consecutive indexes, the first at the
// number of leaves stored), the subtrees they complete and the head they
// lead to.
type Batch struct {
	Leaves []Leaf
	Nodes  []Node
	Head   Head
}
