// Package storectx carries what a request tells the store adapters through
// its context: whether reads may be shared within one read-only operation
// (a read memo), and who counts the store's round trips.
package storectx

import (
	"context"
	"sync"
)

// Memo lets the resolvers of one read-only operation share reads: an
// adapter that keeps a user's account, consent and processor state in one
// document reads it once per query, not once per domain. Only queries get
// one, so a mutation never reads its own stale copy.
type Memo struct {
	mu sync.Mutex
	m  map[string]any
}

type memoKey struct{}

// WithReadMemo returns a context whose reads adapters may share.
func WithReadMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoKey{}, &Memo{m: map[string]any{}})
}

// ReadMemo returns the memo of ctx, or nil.
func ReadMemo(ctx context.Context) *Memo {
	m, _ := ctx.Value(memoKey{}).(*Memo)
	return m
}

// Get returns what was put under key.
func (m *Memo) Get(key string) (any, bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[key]
	return v, ok
}

// Once returns what is under key, putting mk() there first if nothing is:
// the first caller makes it, concurrent ones share it (resolvers of one
// list run in parallel). Without a memo it is just mk().
func (m *Memo) Once(key string, mk func() any) any {
	if m == nil {
		return mk()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.m[key]; ok {
		return v
	}
	v := mk()
	m.m[key] = v
	return v
}

// Put keeps v under key for the rest of the operation.
func (m *Memo) Put(key string, v any) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[key] = v
}

// Observer learns of every round trip an adapter makes to its store: one
// MongoDB command, or one SQLite query or transaction. command names it
// ("find", "update", "read", "write"...); err is its outcome.
type Observer func(ctx context.Context, command string, err error)
