package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// A read memo lets the resolvers of one read-only operation share a single
// fetch of a document: `me { username consents { ... } }` reads the user
// document once, not once per domain. Only queries get one, so a mutation
// never reads its own stale copy.
type memo struct {
	mu   sync.Mutex
	docs map[string]bson.Raw
}

type memoKey struct{}

// WithReadMemo returns a context whose FindByID reads are shared.
func WithReadMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoKey{}, &memo{docs: map[string]bson.Raw{}})
}

// HasReadMemo reports whether ctx shares reads.
func HasReadMemo(ctx context.Context) bool {
	_, ok := ctx.Value(memoKey{}).(*memo)
	return ok
}

// FindByID decodes the whole document with _id id into out, fetching it at
// most once per read memo. It returns mongo.ErrNoDocuments when absent.
func FindByID(ctx context.Context, coll *mongo.Collection, id string, out any) error {
	m, _ := ctx.Value(memoKey{}).(*memo)
	key := coll.Database().Name() + "." + coll.Name() + "/" + id
	if m != nil {
		m.mu.Lock()
		raw, ok := m.docs[key]
		m.mu.Unlock()
		if ok {
			return decodeRaw(raw, out)
		}
	}
	raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return err
		}
		return fmt.Errorf("find %s %s: %w", coll.Name(), id, err)
	}
	if m != nil {
		m.mu.Lock()
		m.docs[key] = raw
		m.mu.Unlock()
	}
	return decodeRaw(raw, out)
}

func decodeRaw(raw bson.Raw, out any) error {
	if err := bson.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode document: %w", err)
	}
	return nil
}
