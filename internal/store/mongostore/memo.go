package mongostore

import (
	"context"
	"fmt"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/store/storectx"
)

// memoProjection loads what Account, State and Recipient need from a user
// document, and none of what is waiting to be moved out of it.
func memoProjection() bson.D {
	return bson.D{{Key: pendingField, Value: 0}, {Key: legacyEventsField, Value: 0}, {Key: embeddedField, Value: 0}}
}

// memoEntry is one user document shared by the reads of one query. done
// stays false after a failed read, so the next reader tries again.
type memoEntry struct {
	mu    sync.Mutex
	done  bool
	found bool
	doc   userDoc
}

// readUser returns a user document with projection proj, or (nil, nil).
// Within a query (storectx.ReadMemo), every such read shares ONE FindOne
// of the document with memoProjection instead: account, consent and
// processor state all live in it, so `me { username consents {...} }`
// costs one round trip after the session lookup.
func (d *DB) readUser(ctx context.Context, id string, proj bson.D) (*userDoc, error) {
	m := storectx.ReadMemo(ctx)
	if m == nil {
		return d.findUser(ctx, id, proj)
	}
	key := "mongostore:" + d.db.Name() + ":users:" + id
	d.memoMu.Lock()
	v, ok := m.Get(key)
	e, _ := v.(*memoEntry)
	if !ok || e == nil {
		e = &memoEntry{}
		m.Put(key, e)
	}
	d.memoMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.done {
		doc, err := d.findUser(ctx, id, memoProjection())
		if err != nil {
			return nil, err
		}
		e.done, e.found = true, doc != nil
		if doc != nil {
			e.doc = *doc
		}
	}
	if !e.found {
		return nil, nil
	}
	// Callers may keep what they get; the maps stay shared but nobody
	// writes to a decoded document.
	doc := e.doc
	return &doc, nil
}

func (d *DB) findUser(ctx context.Context, id string, proj bson.D) (*userDoc, error) {
	var doc userDoc
	err := d.coll(usersColl).FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(proj)).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read user %s: %w", id, err)
	}
	return &doc, nil
}
