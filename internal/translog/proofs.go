package translog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// CheckpointType is the JWS "typ" of checkpoints (explicit typing, RFC
// 8725), so that nothing else the same keys sign passes for one.
const CheckpointType = "consent-log-checkpoint+jwt"

// CheckpointClaims is the payload of a checkpoint: the log's tree of
// TreeSize leaves has root RootHash (base64 in JSON), as of IssuedAt
// (RFC 3339).
type CheckpointClaims struct {
	TreeSize int64  `json:"treeSize"`
	RootHash []byte `json:"rootHash"`
	IssuedAt string `json:"issuedAt"`
	// Log names the log (its URL, Options.Name), so a checkpoint of one
	// log is never taken for one of another.
	Log string `json:"log,omitempty"`
}

// Checkpoint is a signed statement of the log's tree head.
type Checkpoint struct {
	Size     int64
	Root     []byte
	IssuedAt time.Time
	// JWS is the compact JWS (EdDSA) of the CheckpointClaims.
	JWS string
}

// checkpointReuse is how long a signed checkpoint is handed out again while
// the tree has not grown, so bursts of requests share one signature.
const checkpointReuse = time.Second

// Checkpoint signs the current head (or reuses a signature of it made
// within the last second).
func (l *Log) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	head, err := l.Head(ctx)
	if err != nil {
		return nil, err
	}
	now := l.now().UTC().Truncate(time.Second)
	if cp := l.cp.Load(); cp != nil && cp.Size == head.Size && now.Sub(cp.IssuedAt) < checkpointReuse && !now.Before(cp.IssuedAt) {
		return cp, nil
	}
	payload, err := json.Marshal(CheckpointClaims{TreeSize: head.Size, RootHash: head.Root, IssuedAt: now.Format(time.RFC3339), Log: l.name})
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	jws, err := l.signer.SignCompact(ctx, payload, CheckpointType)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	cp := &Checkpoint{Size: head.Size, Root: head.Root, IssuedAt: now, JWS: jws}
	l.cp.Store(cp)
	return cp, nil
}

// ParseCheckpointClaims decodes a checkpoint payload (its signature checked
// elsewhere) and checks its form.
func ParseCheckpointClaims(payload []byte) (CheckpointClaims, error) {
	var c CheckpointClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, fmt.Errorf("not a checkpoint: %w", err)
	}
	if c.TreeSize < 0 || len(c.RootHash) != HashSize {
		return c, fmt.Errorf("not a checkpoint: tree size %d, root of %d bytes", c.TreeSize, len(c.RootHash))
	}
	if _, err := time.Parse(time.RFC3339, c.IssuedAt); err != nil {
		return c, fmt.Errorf("not a checkpoint: issuedAt: %w", err)
	}
	return c, nil
}

// Inclusion proves that a leaf is in the tree a checkpoint signs.
type Inclusion struct {
	LeafIndex int64
	TreeSize  int64
	// LeafData is the leaf's content; LeafHash = LeafHash(LeafData).
	LeafData []byte
	LeafHash []byte
	// Hashes is the RFC 9162 inclusion path, from the leaf up.
	Hashes [][]byte
	// Checkpoint is the signed tree head (size TreeSize) the path leads to.
	Checkpoint string
}

// InclusionProofs returns, for each of items that is in the current tree,
// its inclusion proof against one checkpoint; items not (yet) logged are
// left out. It costs one read of the head, one of the leaves and one of
// the O(log n) nodes each proof needs, however many items there are.
func (l *Log) InclusionProofs(ctx context.Context, items []string) (map[string]*Inclusion, error) {
	out := map[string]*Inclusion{}
	if len(items) == 0 {
		return out, nil
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	leaves, err := l.store.LeavesByItem(ctx, items)
	if err != nil {
		return nil, fmt.Errorf("look up logged items: %w", err)
	}
	paths, err := l.paths(ctx, leaves, cp.Size)
	if err != nil {
		return nil, err
	}
	for _, lf := range leaves {
		if path, ok := paths[lf.Index]; ok {
			out[lf.Item] = &Inclusion{LeafIndex: lf.Index, TreeSize: cp.Size, LeafData: lf.Data, LeafHash: lf.Hash,
				Hashes: path, Checkpoint: cp.JWS}
		}
	}
	return out, nil
}

// PrefixProofs returns the inclusion proofs of every logged item whose id
// starts with prefix (e.g. all events of one subject), against one
// checkpoint, in one read of their leaves and one of their nodes.
func (l *Log) PrefixProofs(ctx context.Context, prefix string) (map[string]*Inclusion, error) {
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	leaves, err := l.ItemLeaves(ctx, prefix)
	if err != nil {
		return nil, err
	}
	paths, err := l.paths(ctx, leaves, cp.Size)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Inclusion, len(leaves))
	for _, lf := range leaves {
		if path, ok := paths[lf.Index]; ok {
			out[lf.Item] = &Inclusion{LeafIndex: lf.Index, TreeSize: cp.Size, LeafData: lf.Data, LeafHash: lf.Hash,
				Hashes: path, Checkpoint: cp.JWS}
		}
	}
	return out, nil
}

// paths returns the inclusion paths of the leaves inside the tree of size
// leaves (by leaf index), reading every node they need at once.
func (l *Log) paths(ctx context.Context, leaves []Leaf, size int64) (map[int64][][]byte, error) {
	var ids []NodeID
	for _, lf := range leaves {
		if lf.Index >= size {
			continue // appended after the tree's head
		}
		for _, s := range inclusionSpans(lf.Index, size) {
			ids = append(ids, subtrees(s.lo, s.hi)...)
		}
	}
	hashes, err := l.nodeHashes(ctx, dedupe(ids))
	if err != nil {
		return nil, err
	}
	out := make(map[int64][][]byte, len(leaves))
	for _, lf := range leaves {
		if lf.Index >= size {
			continue
		}
		spans := inclusionSpans(lf.Index, size)
		path := make([][]byte, len(spans))
		for i, s := range spans {
			path[i] = spanOf(s, hashes)
		}
		out[lf.Index] = path
	}
	return out, nil
}

// ProvenLeaves returns the leaves whose item starts with prefix that are
// in the current tree, each checked by its inclusion proof against the
// stored head: a leaf rewritten in the store (data or hash) or a subtree
// altered under it fails with ErrProof, one whose hash does not match its
// data with ErrCorrupt. Records are checked against these, never against
// leaves taken on trust.
func (l *Log) ProvenLeaves(ctx context.Context, prefix string) ([]Leaf, error) {
	head, err := l.Head(ctx)
	if err != nil {
		return nil, err
	}
	all, err := l.ItemLeaves(ctx, prefix)
	if err != nil {
		return nil, err
	}
	paths, err := l.paths(ctx, all, head.Size)
	if err != nil {
		return nil, err
	}
	out := make([]Leaf, 0, len(all))
	for _, lf := range all {
		path, ok := paths[lf.Index]
		if !ok {
			continue // beyond the head: not in the log yet
		}
		if !bytes.Equal(lf.Hash, LeafHash(lf.Data)) {
			return nil, fmt.Errorf("%w: leaf %d does not match its data", ErrCorrupt, lf.Index)
		}
		if err := VerifyInclusion(lf.Hash, lf.Index, head.Size, path, head.Root); err != nil {
			return nil, fmt.Errorf("leaf %d (%s): %w", lf.Index, lf.Item, err)
		}
		out = append(out, lf)
	}
	return out, nil
}

// ErrRange means a consistency proof was asked for between sizes that do
// not make sense for the log; the message says why.
var ErrRange = errors.New("bad tree sizes")

// ConsistencyProof returns the RFC 9162 consistency proof between the
// trees of first and second leaves, 1 ≤ first ≤ second ≤ the current size.
func (l *Log) ConsistencyProof(ctx context.Context, first, second int64) ([][]byte, error) {
	if first < 1 || second < first {
		return nil, fmt.Errorf("%w: need 1 ≤ first ≤ second, got first=%d second=%d", ErrRange, first, second)
	}
	head, err := l.Head(ctx)
	if err != nil {
		return nil, err
	}
	if second > head.Size {
		return nil, fmt.Errorf("%w: the log has %d leaves, fewer than second=%d", ErrRange, head.Size, second)
	}
	spans := consistencySpans(first, second)
	var ids []NodeID
	for _, s := range spans {
		ids = append(ids, subtrees(s.lo, s.hi)...)
	}
	hashes, err := l.nodeHashes(ctx, dedupe(ids))
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(spans))
	for i, s := range spans {
		out[i] = spanOf(s, hashes)
	}
	return out, nil
}

// spanOf is the hash of a proof range from its complete subtrees.
func spanOf(s span, hashes map[NodeID][]byte) []byte {
	ids := subtrees(s.lo, s.hi)
	hs := make([][]byte, len(ids))
	for i, id := range ids {
		hs[i] = hashes[id]
	}
	return foldRight(hs)
}

func dedupe(ids []NodeID) []NodeID {
	slices.SortFunc(ids, func(a, b NodeID) int {
		if a.Level != b.Level {
			return int(a.Level) - int(b.Level)
		}
		switch {
		case a.Index < b.Index:
			return -1
		case a.Index > b.Index:
			return 1
		}
		return 0
	})
	return slices.Compact(ids)
}
