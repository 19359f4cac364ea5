package mongostore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/audit"
)

type auditStore struct{ d *DB }

var _ audit.Store = (*auditStore)(nil)

// auditDoc is a document of audit_log; the sequence number is the _id, so
// two appends can never take the same place.
type auditDoc struct {
	Seq     int64     `bson:"_id"`
	At      time.Time `bson:"at"`
	Actor   string    `bson:"actor"`
	Action  string    `bson:"action"`
	Subject string    `bson:"subject,omitempty"`
	Detail  string    `bson:"detail,omitempty"`
	Prev    string    `bson:"prev"`
	Hash    string    `bson:"hash"`
	// Logged is always present (see eventDoc.Logged).
	Logged bool `bson:"logged"`
}

func newAuditDoc(e *audit.Entry) auditDoc {
	return auditDoc{Seq: e.Seq, At: e.At, Actor: e.Actor, Action: e.Action, Subject: e.Subject, Detail: e.Detail, Prev: e.Prev, Hash: e.Hash, Logged: e.Logged}
}

func (d *auditDoc) entry() audit.Entry {
	return audit.Entry{Seq: d.Seq, At: d.At, Actor: d.Actor, Action: d.Action, Subject: d.Subject, Detail: d.Detail, Prev: d.Prev, Hash: d.Hash, Logged: d.Logged}
}

// Append reads the head, builds the entry and inserts it under its
// sequence number; a duplicate key means another replica's append took the
// place, so it waits a little (jittered, growing to auditMaxWait) and tries
// on the new head, until it wins or ctx ends: an audited action is never
// refused because others were audited at the same time. (audit.Log already
// serializes the appends of one process, so only replicas race here.)
func (s *auditStore) Append(ctx context.Context, next func(head *audit.Entry) audit.Entry) (audit.Entry, error) {
	coll := s.d.coll(auditColl)
	for attempt := 1; ; attempt++ {
		var head *audit.Entry
		var doc auditDoc
		err := coll.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}})).Decode(&doc)
		switch {
		case errNotFound(err):
		case err != nil:
			return audit.Entry{}, fmt.Errorf("read audit head: %w", err)
		default:
			e := doc.entry()
			head = &e
		}
		e := next(head)
		_, err = coll.InsertOne(ctx, newAuditDoc(&e))
		if err == nil {
			return e, nil
		}
		if !isDup(err) {
			return audit.Entry{}, fmt.Errorf("append audit entry: %w", err)
		}
		if attempt%100 == 0 {
			s.d.log.WarnContext(ctx, "audit append keeps losing races to other replicas", "attempts", attempt)
		}
		// Full jitter over a window growing to auditMaxWait, so replicas
		// that collided spread out instead of colliding again.
		limit := min(time.Duration(attempt)*2*time.Millisecond, auditMaxWait)
		t := time.NewTimer(limit/4 + rand.N(limit))
		select {
		case <-ctx.Done():
			t.Stop()
			return audit.Entry{}, fmt.Errorf("append audit entry after %d attempts: %w", attempt, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// auditMaxWait caps the back-off between two attempts of an append.
const auditMaxWait = 50 * time.Millisecond

func (s *auditStore) Page(ctx context.Context, before int64, limit int) ([]audit.Entry, error) {
	f := bson.D{}
	if before > 0 {
		f = bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: before}}}}
	}
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: -1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := s.d.coll(auditColl).Find(ctx, f, opts)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	var docs []auditDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	out := make([]audit.Entry, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].entry())
	}
	return out, nil
}

func (s *auditStore) Each(ctx context.Context, fn func(e audit.Entry) error) error {
	cur, err := s.d.coll(auditColl).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var doc auditDoc
		if err := cur.Decode(&doc); err != nil {
			return fmt.Errorf("decode audit entry: %w", err)
		}
		if err := fn(doc.entry()); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	return nil
}

func (s *auditStore) Unlogged(ctx context.Context, limit int) ([]audit.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	cur, err := s.d.coll(auditColl).Find(ctx, bson.D{{Key: "logged", Value: false}},
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("read unlogged audit entries: %w", err)
	}
	var docs []auditDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read unlogged audit entries: %w", err)
	}
	out := make([]audit.Entry, len(docs))
	for i := range docs {
		out[i] = docs[i].entry()
	}
	return out, nil
}

func (s *auditStore) MarkLogged(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	_, err := s.d.coll(auditColl).UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: seqs}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "logged", Value: true}}}})
	if err != nil {
		return fmt.Errorf("mark audit entries logged: %w", err)
	}
	return nil
}
