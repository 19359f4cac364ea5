package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/consentgraph/consentgraph/internal/translog"
)

// LogReader reads the public consent log for Verify; *translog.Log
// implements it.
type LogReader interface {
	// ProvenLeaves returns the leaves whose item starts with prefix, each
	// checked against the log's current root.
	ProvenLeaves(ctx context.Context, prefix string) ([]translog.Leaf, error)
}

const logPrefix = "audit/"

// logItemID names entry seq in the log; zero-padded so item order is
// sequence order.
func logItemID(seq int64) string { return fmt.Sprintf("%s%020d", logPrefix, seq) }

// LeafData is the public log leaf of an entry: its sequence number, chain
// hash and time. Actor and subject stay out: they may name people.
func LeafData(e *Entry) []byte {
	return translog.Commitment(translog.KindAudit, strconv.FormatInt(e.Seq, 10), e.Hash, e.At)
}

// UseLog makes Verify check every entry against the log too. Call it
// during start-up.
func (l *Log) UseLog(r LogReader) { l.pub = r }

// LogSource is the log's source of audit entries: those stored with their
// "not yet logged" mark.
func (l *Log) LogSource() translog.Source { return logSource{l.store} }

type logSource struct{ store Store }

func (s logSource) Unlogged(ctx context.Context, limit int) ([]translog.Item, error) {
	es, err := s.store.Unlogged(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("read unlogged audit entries: %w", err)
	}
	out := make([]translog.Item, len(es))
	for i := range es {
		out[i] = translog.Item{ID: logItemID(es[i].Seq), Data: LeafData(&es[i]), At: es[i].At, Ref: es[i].Seq}
	}
	return out, nil
}

func (s logSource) MarkLogged(ctx context.Context, items []translog.Item) error {
	seqs := make([]int64, 0, len(items))
	for _, it := range items {
		if seq, ok := it.Ref.(int64); ok {
			seqs = append(seqs, seq)
		}
	}
	if err := s.store.MarkLogged(ctx, seqs); err != nil {
		return fmt.Errorf("mark audit entries logged: %w", err)
	}
	return nil
}

// loggedLeaves reads the audit entries' leaves by sequence number; ok is
// false when the log itself does not verify.
func (l *Log) loggedLeaves(ctx context.Context) (map[int64][]byte, bool, error) {
	leaves, err := l.pub.ProvenLeaves(ctx, logPrefix)
	if err != nil {
		if isLogBroken(err) {
			l.log.WarnContext(ctx, "the consent log does not verify", "err", err)
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("read the audit entries' leaves: %w", err)
	}
	out := make(map[int64][]byte, len(leaves))
	for _, lf := range leaves {
		seq, err := strconv.ParseInt(strings.TrimPrefix(lf.Item, logPrefix), 10, 64)
		if err != nil || seq < 1 {
			l.log.WarnContext(ctx, "a log item names no audit entry", "item", lf.Item)
			return nil, false, nil
		}
		out[seq] = lf.Data
	}
	return out, true, nil
}

// matchesLog reports whether e agrees with the log: its leaf, if logged,
// is its own; an entry marked logged has one.
func matchesLog(e *Entry, leaves map[int64][]byte) bool {
	data, ok := leaves[e.Seq]
	if !ok {
		return !e.Logged
	}
	return bytes.Equal(data, LeafData(e))
}

func isLogBroken(err error) bool {
	return errors.Is(err, translog.ErrCorrupt) || errors.Is(err, translog.ErrProof)
}
