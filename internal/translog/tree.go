package translog

import (
	"crypto/sha256"
	"fmt"
	"math/bits"
)

// HashSize is the size of every hash in the log (SHA-256).
const HashSize = sha256.Size

// Domain separation of RFC 9162 §2.1.1: a leaf hash can never equal a node
// hash, so no interior node can be passed off as a leaf (second preimage).
const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// LeafHash is MTH({d}) = SHA-256(0x00 ‖ data), the hash of a leaf holding data.
func LeafHash(data []byte) []byte {
	h := sha256.New()
	h.Write([]byte{leafPrefix})
	h.Write(data)
	return h.Sum(nil)
}

// NodeHash is SHA-256(0x01 ‖ left ‖ right), the hash of an interior node.
func NodeHash(left, right []byte) []byte {
	h := sha256.New()
	h.Write([]byte{nodePrefix})
	h.Write(left)
	h.Write(right)
	return h.Sum(nil)
}

// EmptyRoot is the root hash of the empty tree, MTH({}) = SHA-256().
func EmptyRoot() []byte {
	sum := sha256.Sum256(nil)
	return sum[:]
}

// NodeID names a complete (perfect) subtree of the log: the one of height
// Level whose leaves are [Index·2^Level, (Index+1)·2^Level). Level 0 is the
// leaf Index itself. Every such subtree inside the tree of any size is
// stored once, when its last leaf arrives, and never changes afterwards, so
// the root of any size and every proof is a fold over O(log n) of them.
type NodeID struct {
	Level uint8
	Index int64
}

// SplitNodeIDs separates leaves (level 0, by Index) from inner nodes (by
// Key), which stores keep apart.
func SplitNodeIDs(ids []NodeID) (leaves, inner []int64) {
	for _, id := range ids {
		if id.Level == 0 {
			leaves = append(leaves, id.Index)
		} else {
			inner = append(inner, id.Key())
		}
	}
	return leaves, inner
}

// first is the index of the subtree's first leaf.
func (id NodeID) first() int64 { return id.Index << id.Level }

// String is "level/index", for messages.
func (id NodeID) String() string { return fmt.Sprintf("%d/%d", id.Level, id.Index) }

// span is the range of leaves [lo, hi) a proof element covers.
type span struct{ lo, hi int64 }

// largestPow2Below returns the largest power of two strictly smaller than
// n (n ≥ 2): the split point k of RFC 9162's MTH(D[n]).
func largestPow2Below(n int64) int64 {
	return 1 << (bits.Len64(uint64(n-1)) - 1)
}

// subtrees decomposes [lo, hi) into the complete subtrees it is made of,
// left to right, each as large as alignment allows. Every range the RFC
// 9162 recursions produce starts at a multiple of the smallest power of two
// at least as large as itself, so the pieces come out in decreasing size
// and the range's hash is the right fold of theirs (see spanHash).
func subtrees(lo, hi int64) []NodeID {
	var out []NodeID
	for lo < hi {
		// The largest power of two that fits in what is left and divides lo.
		size := uint64(1) << (bits.Len64(uint64(hi-lo)) - 1)
		if lo != 0 {
			if align := uint64(lo) & -uint64(lo); align < size {
				size = align
			}
		}
		level := uint8(bits.TrailingZeros64(size))
		out = append(out, NodeID{Level: level, Index: lo >> level})
		lo += int64(size)
	}
	return out
}

// foldRight combines the hashes of consecutive complete subtrees into the
// hash of the range they cover: MTH splits off the largest left part first,
// so the rightmost pieces are combined first.
func foldRight(hashes [][]byte) []byte {
	h := hashes[len(hashes)-1]
	for i := len(hashes) - 2; i >= 0; i-- {
		h = NodeHash(hashes[i], h)
	}
	return h
}

// inclusionSpans lists the ranges whose hashes form the inclusion proof of
// leaf m in the tree of n leaves, bottom up (RFC 9162 §2.1.3.1, PATH).
func inclusionSpans(m, n int64) []span {
	var out []span
	lo, hi := int64(0), n
	// Walk down from the root, remembering each sibling; the proof lists
	// them from the leaf up.
	for hi-lo > 1 {
		k := largestPow2Below(hi - lo)
		if m < lo+k {
			out = append(out, span{lo + k, hi})
			hi = lo + k
		} else {
			out = append(out, span{lo, lo + k})
			lo += k
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// consistencySpans lists the ranges whose hashes form the consistency
// proof between the trees of m and n leaves, 0 < m ≤ n (RFC 9162
// §2.1.4.1, PROOF(m, D[n]) = SUBPROOF(m, D[n], true)), in proof order.
func consistencySpans(m, n int64) []span {
	var out []span
	lo, hi, whole := int64(0), n, true
	// m counts leaves from lo. Each step moves into one half and records
	// the other; the recursion's results are appended after the subproof,
	// so they are collected here and reversed.
	for m != hi-lo {
		k := largestPow2Below(hi - lo)
		if m <= k {
			out = append(out, span{lo + k, hi})
			hi = lo + k
		} else {
			out = append(out, span{lo, lo + k})
			lo, m, whole = lo+k, m-k, false
		}
	}
	if !whole {
		// SUBPROOF(m, D[m], false): the old tree's own subtree is needed
		// unless it is the whole old tree, which the verifier knows.
		out = append(out, span{lo, hi})
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// compactRange is the right edge of a tree being built: the hashes of the
// complete subtrees the first size leaves decompose into, largest first.
// Appending a leaf merges equal-sized neighbours, which yields exactly the
// subtrees that became complete.
type compactRange struct {
	size   int64
	ids    []NodeID
	hashes [][]byte
}

// newCompactRange starts from the tree of size leaves, given the hashes of
// subtrees(0, size) in order.
func newCompactRange(size int64, hashes [][]byte) (*compactRange, error) {
	ids := subtrees(0, size)
	if len(ids) != len(hashes) {
		return nil, fmt.Errorf("the tree of %d leaves has %d complete subtrees on its edge, got %d hashes", size, len(ids), len(hashes))
	}
	return &compactRange{size: size, ids: ids, hashes: hashes}, nil
}

// append adds the next leaf's hash and reports every subtree it completed
// (level 1 and up) to emit.
func (c *compactRange) append(leafHash []byte, emit func(Node)) {
	c.ids = append(c.ids, NodeID{Level: 0, Index: c.size})
	c.hashes = append(c.hashes, leafHash)
	c.size++
	for n := len(c.ids); n >= 2 && c.ids[n-1].Level == c.ids[n-2].Level; n = len(c.ids) {
		left := c.ids[n-2]
		parent := Node{ID: NodeID{Level: left.Level + 1, Index: left.Index / 2}, Hash: NodeHash(c.hashes[n-2], c.hashes[n-1])}
		c.ids = append(c.ids[:n-2], parent.ID)
		c.hashes = append(c.hashes[:n-2], parent.Hash)
		if emit != nil {
			emit(parent)
		}
	}
}

// root is the tree hash of the leaves appended so far.
func (c *compactRange) root() []byte {
	if c.size == 0 {
		return EmptyRoot()
	}
	return foldRight(c.hashes)
}

// edge returns a copy of the range's hashes (for the next compactRange).
func (c *compactRange) edge() [][]byte {
	return append([][]byte(nil), c.hashes...)
}

// keyShift places a node's level above its index in Key.
const keyShift = 56

// Key packs id into one integer, level above index (indexes stay below
// 2^56), so stores can keep nodes under one ordered integer key: (level,
// index) order is key order.
func (id NodeID) Key() int64 { return int64(id.Level)<<keyShift | id.Index }

// NodeIDOfKey unpacks a Key.
func NodeIDOfKey(k int64) NodeID {
	return NodeID{Level: uint8(k >> keyShift), Index: k & (1<<keyShift - 1)}
}
