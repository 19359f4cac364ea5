package consent

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/consentgraph/consentgraph/internal/store/storectx"

	"github.com/consentgraph/consentgraph/internal/translog"
)

// LogReader reads the public consent log for the ledger check;
// *translog.Log implements it.
type LogReader interface {
	// ProvenLeaves returns the leaves whose item starts with prefix, each
	// checked against the log's current root; an error when one is not in
	// the tree the log claims.
	ProvenLeaves(ctx context.Context, prefix string) ([]translog.Leaf, error)
	// Ensure appends items the log lacks, at once.
	Ensure(ctx context.Context, items []translog.Item) error
	// PrefixProofs returns the inclusion proofs of the logged items whose
	// id starts with prefix, against one checkpoint.
	PrefixProofs(ctx context.Context, prefix string) (map[string]*translog.Inclusion, error)
}

// proofsOnce is one request's proofs of a subject's events.
type proofsOnce struct {
	once   sync.Once
	proofs map[string]*translog.Inclusion
	err    error
}

// LogProof returns the inclusion proof of a user's event seq in the public
// log, or nil until it is logged. Within one read-only request the proofs
// of all the user's events are made once, against one checkpoint, however
// many events the request lists.
func (s *Service) LogProof(ctx context.Context, userID string, seq int64) (*translog.Inclusion, error) {
	if s.opts.Log == nil {
		return nil, nil
	}
	subject, err := s.Pseudonym(ctx, userID)
	if err != nil {
		return nil, err
	}
	prefix := logPrefix(subject)
	p := storectx.ReadMemo(ctx).Once("consent-log-proofs:"+prefix, func() any { return &proofsOnce{} }).(*proofsOnce)
	p.once.Do(func() { p.proofs, p.err = s.opts.Log.PrefixProofs(ctx, prefix) })
	if p.err != nil {
		return nil, fmt.Errorf("consent log proof: %w", p.err)
	}
	return p.proofs[logItemID(subject, seq)], nil
}

// logPrefix is the start of the log item ids of one subject's events.
// Item ids stay on the server (the leaves carry the receipt id), so the
// subject pseudonym in them links nothing in public.
func logPrefix(subject string) string { return "consent/" + subject + "/" }

// logItemID names event seq of subject in the log; the zero-padded
// sequence number makes item order ledger order.
func logItemID(subject string, seq int64) string {
	return fmt.Sprintf("%s%020d", logPrefix(subject), seq)
}

// LeafData is the public log leaf of an event: its receipt id (which the
// receipt's holder knows), its ledger hash and its time.
func LeafData(e *Event) []byte {
	return translog.Commitment(translog.KindConsent, e.ReceiptID, e.Hash, e.At)
}

// LogItem is the log item of subject's event e.
func LogItem(subject string, e *Event) translog.Item {
	return translog.Item{ID: logItemID(subject, e.Seq), Data: LeafData(e), At: e.At}
}

// LogItemID names a user's event in the log (for inclusion proofs).
func (s *Service) LogItemID(ctx context.Context, userID string, seq int64) (string, error) {
	subject, err := s.Pseudonym(ctx, userID)
	if err != nil {
		return "", err
	}
	return logItemID(subject, seq), nil
}

// LogSource is the log's source of consent events: those the store holds
// with their "not yet logged" mark.
func (s *Service) LogSource() translog.Source { return logSource{s} }

type logSource struct{ s *Service }

func (ls logSource) Unlogged(ctx context.Context, limit int) ([]translog.Item, error) {
	evs, err := ls.s.store.Unlogged(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("read unlogged consent events: %w", err)
	}
	out := make([]translog.Item, 0, len(evs))
	for i := range evs {
		subject, err := ls.s.Pseudonym(ctx, evs[i].UserID)
		if err != nil {
			return nil, err
		}
		it := LogItem(subject, &evs[i].Event)
		it.Ref = EventRef{UserID: evs[i].UserID, Seq: evs[i].Event.Seq}
		out = append(out, it)
	}
	return out, nil
}

func (ls logSource) MarkLogged(ctx context.Context, items []translog.Item) error {
	refs := make([]EventRef, 0, len(items))
	for _, it := range items {
		if r, ok := it.Ref.(EventRef); ok {
			refs = append(refs, r)
		}
	}
	if err := ls.s.store.MarkLogged(ctx, refs); err != nil {
		return fmt.Errorf("mark consent events logged: %w", err)
	}
	return nil
}

// EnsureLogged appends the user's events the log lacks, at once: erasure
// calls it before the ledger leaves the store.
func (s *Service) EnsureLogged(ctx context.Context, userID string) error {
	if s.opts.Log == nil {
		return nil
	}
	_, events, err := s.Ledger(ctx, userID)
	if err != nil {
		return err
	}
	subject, err := s.Pseudonym(ctx, userID)
	if err != nil {
		return err
	}
	var items []translog.Item
	for i := range events {
		if !events[i].Logged {
			items = append(items, LogItem(subject, &events[i]))
		}
	}
	if err := s.opts.Log.Ensure(ctx, items); err != nil {
		return fmt.Errorf("log the ledger before erasure: %w", err)
	}
	return nil
}

// checkLogged compares a ledger with its logged leaves: every leaf must
// match its event (an altered event shows), no leaf may name an event the
// ledger lacks (a deleted last event shows, whatever head says), and every
// event marked logged must have its leaf (a leaf removed from the log
// shows).
func checkLogged(subject string, events []Event, leaves []translog.Leaf) error {
	prefix := logPrefix(subject)
	have := make(map[int64]bool, len(leaves))
	for _, lf := range leaves {
		seq, err := strconv.ParseInt(strings.TrimPrefix(lf.Item, prefix), 10, 64)
		if err != nil || seq < 1 {
			return fmt.Errorf("log item %q names no event", lf.Item)
		}
		if seq > int64(len(events)) {
			return fmt.Errorf("the log holds event %d, which the ledger lacks", seq)
		}
		if !bytes.Equal(lf.Data, LeafData(&events[seq-1])) {
			return fmt.Errorf("event %d differs from its leaf in the log", seq)
		}
		have[seq] = true
	}
	for i := range events {
		if events[i].Logged && !have[events[i].Seq] {
			return fmt.Errorf("event %d is marked logged, but the log lacks it", events[i].Seq)
		}
	}
	return nil
}
