// Package ordered joins two sequences that are both sorted by the same
// string key (user ids, as every bulk pass of the store yields them)
// without holding either in memory: one is consumed as usual, the other
// is produced by a goroutine and looked up by Seek as the first advances.
package ordered

import (
	"context"
	"errors"
)

// Follower is a sorted sequence read alongside another one.
type Follower[T any] struct {
	items  chan T
	done   chan error
	cancel context.CancelFunc
	key    func(T) string
	next   *T
	// returned: next was the answer of a Seek, so it is not skipped later.
	returned bool
	ended    bool
}

// Follow starts produce, which must call yield with items in ascending key
// order and stop when yield returns an error.
func Follow[T any](ctx context.Context, key func(T) string, produce func(ctx context.Context, yield func(T) error) error) *Follower[T] {
	ctx, cancel := context.WithCancel(ctx)
	f := &Follower[T]{items: make(chan T, 256), done: make(chan error, 1), cancel: cancel, key: key}
	go func() {
		defer close(f.items)
		f.done <- produce(ctx, func(v T) error {
			select {
			case f.items <- v:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return f
}

// Seek returns the item with key k, skipping items with smaller keys; keys
// passed to Seek must not decrease.
func (f *Follower[T]) Seek(k string) (T, bool) { return f.SeekSkipping(k, nil) }

// SeekSkipping is Seek, calling skipped (if not nil) with every item it
// passes over without a match.
func (f *Follower[T]) SeekSkipping(k string, skipped func(T)) (T, bool) {
	for !f.ended && (f.next == nil || f.key(*f.next) < k) {
		if f.next != nil && !f.returned && skipped != nil {
			skipped(*f.next)
		}
		v, ok := <-f.items
		f.returned = false
		if !ok {
			f.ended, f.next = true, nil
			break
		}
		f.next = &v
	}
	if f.next != nil && f.key(*f.next) == k {
		f.returned = true
		return *f.next, true
	}
	var zero T
	return zero, false
}

// Rest calls fn with every item not yet returned or passed over, then
// reports the producer's error.
func (f *Follower[T]) Rest(fn func(T)) error {
	if f.next != nil && !f.returned {
		fn(*f.next)
	}
	f.next = nil
	for v := range f.items {
		fn(v)
	}
	f.ended = true
	return f.Close()
}

// Close stops the producer and returns its error, if it failed on its own.
func (f *Follower[T]) Close() error {
	f.cancel()
	for range f.items {
	}
	err := <-f.done
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
