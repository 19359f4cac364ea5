package translog

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrProof means a proof does not prove what it is claimed to prove.
var ErrProof = errors.New("proof does not verify")

// The verifiers below place each proof hash on the range of leaves it must
// cover — the ranges follow from the tree sizes alone (RFC 9162's PATH and
// PROOF) — and recompute the roots from them. A proof of the wrong length
// or with a wrong hash anywhere fails.

// VerifyInclusion checks that proof shows the leaf with hash leafHash at
// index in the tree of size leaves whose root is root.
func VerifyInclusion(leafHash []byte, index, size int64, proof [][]byte, root []byte) error {
	if index < 0 || index >= size {
		return fmt.Errorf("%w: leaf %d is outside a tree of %d leaves", ErrProof, index, size)
	}
	spans := inclusionSpans(index, size)
	if len(proof) != len(spans) {
		return fmt.Errorf("%w: an inclusion proof of leaf %d in a tree of %d leaves has %d hashes, not %d", ErrProof, index, size, len(proof), len(spans))
	}
	known := map[span][]byte{{index, index + 1}: leafHash}
	for i, s := range spans {
		known[s] = proof[i]
	}
	got, ok := spanHash(0, size, known)
	if !ok || !bytes.Equal(got, root) {
		return fmt.Errorf("%w: leaf %d does not lead to the root of the tree of %d leaves", ErrProof, index, size)
	}
	return nil
}

// VerifyConsistency checks that proof shows the tree of size1 leaves with
// root root1 to be the first size1 leaves of the tree of size2 leaves with
// root root2, 0 ≤ size1 ≤ size2. Every tree extends the empty one, and a
// tree of the same size must be the same tree (an empty proof both times).
func VerifyConsistency(size1, size2 int64, proof [][]byte, root1, root2 []byte) error {
	switch {
	case size1 < 0 || size1 > size2:
		return fmt.Errorf("%w: a tree of %d leaves cannot extend one of %d", ErrProof, size2, size1)
	case size1 == 0 || size1 == size2:
		if len(proof) != 0 {
			return fmt.Errorf("%w: a proof between sizes %d and %d has no hashes, got %d", ErrProof, size1, size2, len(proof))
		}
		if size1 == 0 && !bytes.Equal(root1, EmptyRoot()) {
			return fmt.Errorf("%w: the root of the empty tree is not %x", ErrProof, root1)
		}
		if size1 == size2 && !bytes.Equal(root1, root2) {
			return fmt.Errorf("%w: two trees of %d leaves with different roots", ErrProof, size1)
		}
		return nil
	}
	spans := consistencySpans(size1, size2)
	if len(proof) != len(spans) {
		return fmt.Errorf("%w: a consistency proof between sizes %d and %d has %d hashes, not %d", ErrProof, size1, size2, len(proof), len(spans))
	}
	known := map[span][]byte{}
	for i, s := range spans {
		known[s] = proof[i]
	}
	if isComplete(size1) {
		// The old tree is a complete subtree of the new one: the proof
		// leaves it out, and the old root stands in for it.
		known[span{0, size1}] = root1
	} else if old, ok := spanHash(0, size1, known); !ok || !bytes.Equal(old, root1) {
		return fmt.Errorf("%w: the proof does not lead to the root of the tree of %d leaves", ErrProof, size1)
	}
	got, ok := spanHash(0, size2, known)
	if !ok || !bytes.Equal(got, root2) {
		return fmt.Errorf("%w: the proof does not lead to the root of the tree of %d leaves", ErrProof, size2)
	}
	return nil
}

// spanHash is MTH(D[lo:hi]) computed from the hashes of known ranges,
// splitting as RFC 9162 §2.1.1 does; false when a range it needs is not
// known.
func spanHash(lo, hi int64, known map[span][]byte) ([]byte, bool) {
	if h, ok := known[span{lo, hi}]; ok {
		return h, true
	}
	if hi-lo <= 1 {
		return nil, false
	}
	k := largestPow2Below(hi - lo)
	left, ok := spanHash(lo, lo+k, known)
	if !ok {
		return nil, false
	}
	right, ok := spanHash(lo+k, hi, known)
	if !ok {
		return nil, false
	}
	return NodeHash(left, right), true
}

// isComplete reports whether n leaves make a complete tree (n a power of 2).
func isComplete(n int64) bool { return n > 0 && n&(n-1) == 0 }
