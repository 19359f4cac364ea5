// Package translog is Consentgraph's public, append-only Merkle log: every
// consent event and every audit entry is appended to one global log whose
// tree is hashed as RFC 9162 §2.1 says, whose signed checkpoints anyone can
// fetch, and which proves to anyone holding an older checkpoint that
// nothing logged was removed or rewritten since (consistency proofs), and
// to a user that their event is in it (inclusion proofs).
//
// Records to log come from Sources: each record is written with a "not yet
// logged" mark in the same write that creates it, and one appender at a
// time (Log.Drain, under a lease, with Store's unique leaf index and item as
// the real guard) appends the marked records in a deterministic order —
// oldest first, then by item id — and clears their marks. Appending is
// idempotent: an item already in the log is only marked, leaves an
// interrupted append left beyond the head are completed, and a crash at
// any point delays logging but never loses or doubles an item.
package translog

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	// DefaultBatch is how many items one append takes.
	DefaultBatch = 1000
	// DefaultPoll is how often Run looks for records to log besides the
	// nudges it gets after commits (Notify), e.g. another replica's.
	DefaultPoll = time.Second
	// DefaultLease is how long an appender keeps the lease without
	// renewing it; another replica takes over after it.
	DefaultLease = 15 * time.Second
	// maxRaces bounds the appends in a row one Drain may lose to another
	// appender before it leaves the rest to the next round.
	maxRaces = 50
)

// ErrCorrupt means the stored log contradicts itself (a node or leaf
// missing or altered behind the appender's back).
var ErrCorrupt = errors.New("the stored log is inconsistent")

// Signer signs checkpoints; *signing.Keyset is one.
type Signer interface {
	SignCompact(ctx context.Context, payload []byte, typ string) (string, error)
}

// Options configure a Log.
type Options struct {
	Store  Store
	Signer Signer
	// Name names the log in its checkpoints (the "log" claim): the URL it
	// is served at.
	Name   string
	Logger *slog.Logger
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// Owner names this appender in the lease; a random id when empty.
	Owner string
	// Batch, Poll and Lease default to DefaultBatch, DefaultPoll and
	// DefaultLease.
	Batch int
	Poll  time.Duration
	Lease time.Duration
}

// Log appends to the log and answers for it. It is safe for concurrent
// use; add sources during start-up.
type Log struct {
	store  Store
	signer Signer
	name   string
	log    *slog.Logger
	now    func() time.Time
	owner  string
	batch  int
	poll   time.Duration
	lease  time.Duration

	// mu makes this process one appender: Drain and Ensure never run
	// beside each other here (other replicas are kept apart by the lease
	// and, for correctness, by the store's unique leaves).
	mu      sync.Mutex
	sources []Source
	// edge caches the hashes of subtrees(0, edgeSize), the right edge of
	// the tree as this appender last left it, saving a read per append.
	edgeSize int64
	edge     [][]byte

	wake chan struct{}
	cp   atomic.Pointer[Checkpoint]
	// logged counts the items this process appended or found appended.
	logged atomic.Int64
}

// New returns a log on its store.
func New(opts Options) (*Log, error) {
	if opts.Store == nil || opts.Signer == nil {
		return nil, errors.New("translog: a store and a signer are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Owner == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		opts.Owner = "appender-" + hex.EncodeToString(b)
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	return &Log{store: opts.Store, signer: opts.Signer, name: opts.Name, log: opts.Logger.With("component", "consent-log"), now: opts.Now,
		owner: opts.Owner, batch: opts.Batch, poll: opts.Poll, lease: opts.Lease, edgeSize: -1, wake: make(chan struct{}, 1)}, nil
}

func (l *Log) clock() time.Time { return l.now().UTC().Truncate(time.Millisecond) }

// AddSource adds a kind of record to log; call it during start-up.
func (l *Log) AddSource(s Source) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sources = append(l.sources, s)
}

// Logged is how many items this process appended or found appended.
func (l *Log) Logged() int64 { return l.logged.Load() }

// Notify asks Run to look for records to log now (after a commit), so a
// proof is available within moments. It never blocks.
func (l *Log) Notify() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run appends until ctx ends: at once, after every Notify, and every Poll.
// Failures are logged and retried on the next round.
func (l *Log) Run(ctx context.Context) {
	t := time.NewTicker(l.poll)
	defer t.Stop()
	failing := false
	for {
		_, err := l.Drain(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				l.log.WarnContext(ctx, "appending to the consent log failed; retrying", "err", err)
			}
			failing = true
		case err == nil && failing:
			l.log.InfoContext(ctx, "appending to the consent log works again")
			failing = false
		}
		select {
		case <-ctx.Done():
			l.release(context.WithoutCancel(ctx))
			return
		case <-l.wake:
		case <-t.C:
		}
	}
}

// release gives up this appender's lease on shutdown, so that a restarted
// or another replica appends at once instead of after the lease expires.
// A lease held by another appender is left alone (Lease only renews one's
// own).
func (l *Log) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if _, err := l.store.Lease(ctx, l.owner, now, now); err != nil {
		l.log.DebugContext(ctx, "release the consent log lease", "err", err)
	}
}

// pendingItem is an item with the source it came from.
type pendingItem struct {
	Item
	src Source
}

// Drain appends every record not yet logged and returns how many it
// logged. When another replica holds the lease it does nothing (that
// replica appends).
func (l *Log) Drain(ctx context.Context) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	total, races := 0, 0
	for {
		n, lost, err := l.step(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if lost {
			if races++; races >= maxRaces {
				return total, nil
			}
			continue
		}
		if n == 0 {
			return total, nil
		}
		races = 0
	}
}

// step does one batch: it completes leaves an interrupted append left
// beyond the head, or else appends the oldest unlogged records. lost
// reports an append another appender beat.
func (l *Log) step(ctx context.Context) (n int, lost bool, err error) {
	head, err := l.store.Head(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("read the log head: %w", err)
	}
	tail, err := l.store.Leaves(ctx, head.Size, l.batch)
	if err != nil {
		return 0, false, fmt.Errorf("read leaves beyond the head: %w", err)
	}
	var items []pendingItem
	if len(tail) == 0 {
		if items, err = l.unlogged(ctx); err != nil || len(items) == 0 {
			return 0, false, err
		}
	}
	// There is work: take (or renew) the lease, so replicas do not all
	// append the same records at once.
	now := l.now()
	ok, err := l.store.Lease(ctx, l.owner, now, now.Add(l.lease))
	if err != nil {
		return 0, false, fmt.Errorf("take the appender lease: %w", err)
	}
	if !ok {
		return 0, false, nil
	}
	if len(tail) > 0 {
		n, err := l.complete(ctx, head, tail)
		return n, false, err
	}
	fresh, done, err := l.split(ctx, items)
	if err != nil {
		return 0, false, err
	}
	if err := l.mark(ctx, done); err != nil {
		return 0, false, err
	}
	if len(fresh) == 0 {
		return len(done), false, nil
	}
	added, err := l.appendAt(ctx, head, fresh)
	if err != nil {
		return len(done), false, err
	}
	if err := l.mark(ctx, fresh[:added]); err != nil {
		return len(done) + added, false, err
	}
	return len(done) + added, added < len(fresh), nil
}

// unlogged gathers up to a batch of the oldest unlogged records of every
// source, in logging order.
func (l *Log) unlogged(ctx context.Context) ([]pendingItem, error) {
	var all []pendingItem
	for _, src := range l.sources {
		items, err := src.Unlogged(ctx, l.batch)
		if err != nil {
			return nil, fmt.Errorf("find records to log: %w", err)
		}
		for _, it := range items {
			all = append(all, pendingItem{Item: it, src: src})
		}
	}
	slices.SortFunc(all, func(a, b pendingItem) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return all[:min(len(all), l.batch)], nil
}

// split separates items already in the log (an append stopped before
// marking them, or another replica logged them) from those that are not.
func (l *Log) split(ctx context.Context, items []pendingItem) (fresh, done []pendingItem, err error) {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	leaves, err := l.store.LeavesByItem(ctx, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("look up logged items: %w", err)
	}
	in := make(map[string]bool, len(leaves))
	for _, lf := range leaves {
		in[lf.Item] = true
	}
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		switch {
		case in[it.ID]:
			done = append(done, it)
		case seen[it.ID]:
			// Two records claiming one identity: the first is logged, the
			// second is marked with it and its disagreement shows when the
			// record is checked against the log.
			done = append(done, it)
		default:
			seen[it.ID] = true
			fresh = append(fresh, it)
		}
	}
	return fresh, done, nil
}

// mark clears the "not yet logged" marks of items, per source.
func (l *Log) mark(ctx context.Context, items []pendingItem) error {
	if len(items) == 0 {
		return nil
	}
	for _, src := range l.sources {
		var mine []Item
		for _, it := range items {
			if it.src == src {
				mine = append(mine, it.Item)
			}
		}
		if len(mine) == 0 {
			continue
		}
		if err := src.MarkLogged(ctx, mine); err != nil {
			return fmt.Errorf("mark records logged: %w", err)
		}
	}
	l.logged.Add(int64(len(items)))
	return nil
}

// appendAt appends items as the leaves after head (which must have no
// leaves beyond it) and returns how many it stored.
func (l *Log) appendAt(ctx context.Context, head Head, items []pendingItem) (int, error) {
	cr, err := l.rightEdge(ctx, head)
	if err != nil {
		return 0, err
	}
	now := l.clock()
	leaves := make([]Leaf, len(items))
	var nodes []Node
	for i, it := range items {
		h := LeafHash(it.Data)
		leaves[i] = Leaf{Index: head.Size + int64(i), Item: it.ID, Data: it.Data, Hash: h, At: now}
		cr.append(h, func(n Node) { nodes = append(nodes, n) })
	}
	next := Head{Size: cr.size, Root: cr.root(), At: now}
	added, err := l.store.Append(ctx, Batch{Leaves: leaves, Nodes: nodes, Head: next})
	if err != nil {
		l.edgeSize = -1 // the store may hold some of it; read it again
		return 0, fmt.Errorf("append to the log: %w", err)
	}
	if added == len(leaves) {
		l.edgeSize, l.edge = cr.size, cr.edge()
	} else {
		l.edgeSize = -1
	}
	return added, nil
}

// complete stores the subtrees and the head of leaves left beyond the head
// (an append interrupted between its leaves and its head, here or on
// another replica).
func (l *Log) complete(ctx context.Context, head Head, tail []Leaf) (int, error) {
	cr, err := l.rightEdge(ctx, head)
	if err != nil {
		return 0, err
	}
	var nodes []Node
	for i, lf := range tail {
		if lf.Index != head.Size+int64(i) {
			return 0, fmt.Errorf("%w: leaf %d follows leaf %d", ErrCorrupt, lf.Index, head.Size+int64(i)-1)
		}
		if !bytes.Equal(lf.Hash, LeafHash(lf.Data)) {
			return 0, fmt.Errorf("%w: leaf %d does not match its data", ErrCorrupt, lf.Index)
		}
		cr.append(lf.Hash, func(n Node) { nodes = append(nodes, n) })
	}
	next := Head{Size: cr.size, Root: cr.root(), At: l.clock()}
	if _, err := l.store.Append(ctx, Batch{Nodes: nodes, Head: next}); err != nil {
		l.edgeSize = -1
		return 0, fmt.Errorf("complete an interrupted append: %w", err)
	}
	l.edgeSize, l.edge = cr.size, cr.edge()
	l.log.InfoContext(ctx, "completed leaves an interrupted append had left beyond the head", "leaves", len(tail), "tree_size", next.Size)
	return len(tail), nil
}

// rightEdge returns the compact range of the tree at head: from the cache
// when this appender made head, else from the store, checked against the
// head's root.
func (l *Log) rightEdge(ctx context.Context, head Head) (*compactRange, error) {
	if l.edgeSize == head.Size {
		return newCompactRange(head.Size, slices.Clone(l.edge))
	}
	ids := subtrees(0, head.Size)
	hashes, err := l.nodeHashes(ctx, ids)
	if err != nil {
		return nil, err
	}
	edge := make([][]byte, len(ids))
	for i, id := range ids {
		edge[i] = hashes[id]
	}
	cr, err := newCompactRange(head.Size, edge)
	if err != nil {
		return nil, err
	}
	if head.Size > 0 && !bytes.Equal(cr.root(), head.Root) {
		return nil, fmt.Errorf("%w: the stored subtrees of the tree of %d leaves do not hash to its root", ErrCorrupt, head.Size)
	}
	return cr, nil
}

// nodeHashes reads the hashes of ids; every one must be stored.
func (l *Log) nodeHashes(ctx context.Context, ids []NodeID) (map[NodeID][]byte, error) {
	out := make(map[NodeID][]byte, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	nodes, err := l.store.Nodes(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("read log nodes: %w", err)
	}
	for _, n := range nodes {
		out[n.ID] = n.Hash
	}
	for _, id := range ids {
		if len(out[id]) != HashSize {
			return nil, fmt.Errorf("%w: subtree %s is missing", ErrCorrupt, id)
		}
	}
	return out, nil
}

// Ensure logs items now, unless they are logged already, without marking
// their records (it serves records about to disappear, such as the ledger
// of an account being erased, whose events must be in the log before the
// account goes). It works under any lease: the store's unique leaves keep
// it apart from other appenders.
func (l *Log) Ensure(ctx context.Context, items []Item) error {
	if len(items) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	todo := make([]pendingItem, len(items))
	for i, it := range items {
		todo[i] = pendingItem{Item: it}
	}
	races := 0
	for {
		head, err := l.store.Head(ctx)
		if err != nil {
			return fmt.Errorf("read the log head: %w", err)
		}
		tail, err := l.store.Leaves(ctx, head.Size, l.batch)
		if err != nil {
			return fmt.Errorf("read leaves beyond the head: %w", err)
		}
		if len(tail) > 0 {
			if _, err := l.complete(ctx, head, tail); err != nil {
				return err
			}
			continue
		}
		fresh, done, err := l.split(ctx, todo)
		if err != nil {
			return err
		}
		l.logged.Add(int64(len(done)))
		if len(fresh) == 0 {
			return nil
		}
		batch := fresh[:min(len(fresh), l.batch)]
		added, err := l.appendAt(ctx, head, batch)
		if err != nil {
			return err
		}
		l.logged.Add(int64(added))
		todo = fresh[added:]
		if added < len(batch) {
			if races++; races >= maxRaces {
				return errors.New("translog: other appenders kept taking the next place")
			}
		}
	}
}

// Head returns the stored head (the zero Head for an empty log).
func (l *Log) Head(ctx context.Context) (Head, error) {
	h, err := l.store.Head(ctx)
	if err != nil {
		return Head{}, fmt.Errorf("read the log head: %w", err)
	}
	if h.Size == 0 {
		h.Root = EmptyRoot()
	}
	return h, nil
}

// ItemLeaves returns the leaves whose item starts with prefix, in item
// order (e.g. every logged event of one subject).
func (l *Log) ItemLeaves(ctx context.Context, prefix string) ([]Leaf, error) {
	leaves, err := l.store.ItemLeaves(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("read logged items: %w", err)
	}
	return leaves, nil
}
