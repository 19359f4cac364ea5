package translog

import (
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
	payload, err := json.Marshal(CheckpointClaims{TreeSize: head.Size, RootHash: head.Root, IssuedAt: now.Format(time.RFC3339)})
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
	var ids []NodeID
	var inTree []Leaf
	for _, lf := range leaves {
		if lf.Index >= cp.Size {
			continue // appended after the checkpoint's head
		}
		inTree = append(inTree, lf)
		for _, s := range inclusionSpans(lf.Index, cp.Size) {
			ids = append(ids, subtrees(s.lo, s.hi)...)
		}
	}
	hashes, err := l.nodeHashes(ctx, dedupe(ids))
	if err != nil {
		return nil, err
	}
	for _, lf := range inTree {
		spans := inclusionSpans(lf.Index, cp.Size)
		p := &Inclusion{LeafIndex: lf.Index, TreeSize: cp.Size, LeafData: lf.Data, LeafHash: lf.Hash,
			Hashes: make([][]byte, len(spans)), Checkpoint: cp.JWS}
		for i, s := range spans {
			p.Hashes[i] = spanOf(s, hashes)
		}
		out[lf.Item] = p
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
