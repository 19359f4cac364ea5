// Package audit keeps a tamper-evident, append-only log of sensitive
// actions: admin reads of personal data, exports, erasures, key rotations
// and configuration changes. Entries form one hash chain; each append is an
// insert with the next sequence number as _id, so two writers can never
// both take the same place (the only write FerretDB and MongoDB both make
// atomic), and a loser simply retries on the new head.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/store"
)

// Collection holds the log.
const Collection = "audit_log"

// Entry is one logged action.
type Entry struct {
	Seq    int64     `bson:"_id" json:"seq"`
	At     time.Time `bson:"at" json:"at"`
	Actor  string    `bson:"actor" json:"actor"`
	Action string    `bson:"action" json:"action"`
	// Subject is whom the action concerned (a user id), if anyone.
	Subject string `bson:"subject,omitempty" json:"subject,omitempty"`
	Detail  string `bson:"detail,omitempty" json:"detail,omitempty"`
	Prev    string `bson:"prev" json:"prev"`
	Hash    string `bson:"hash" json:"hash"`
}

// Log appends to and reads the audit log.
type Log struct {
	coll *mongo.Collection
	log  *slog.Logger
	now  func() time.Time
}

// New opens the log.
func New(db *mongo.Database, logger *slog.Logger) *Log {
	return &Log{coll: db.Collection(Collection), log: logger, now: time.Now}
}

func (e *Entry) computeHash() string {
	b, _ := json.Marshal([]any{e.Seq, e.At.UTC().Format(time.RFC3339Nano), e.Actor, e.Action, e.Subject, e.Detail, e.Prev})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Append adds an entry at the end of the chain.
func (l *Log) Append(ctx context.Context, actor, action, subject, detail string) error {
	for attempt := 0; attempt < 50; attempt++ {
		head, err := l.head(ctx)
		if err != nil {
			return err
		}
		e := Entry{Seq: 1, At: l.now().UTC().Truncate(time.Millisecond), Actor: actor, Action: action, Subject: subject, Detail: detail}
		if head != nil {
			e.Seq, e.Prev = head.Seq+1, head.Hash
		}
		e.Hash = e.computeHash()
		_, err = l.coll.InsertOne(ctx, e)
		if err == nil {
			return nil
		}
		if !store.IsDuplicateKey(err) {
			return fmt.Errorf("append audit entry: %w", err)
		}
	}
	return errors.New("append audit entry: too much contention")
}

func (l *Log) head(ctx context.Context) (*Entry, error) {
	var e Entry
	err := l.coll.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}})).Decode(&e)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read audit head: %w", err)
	}
	return &e, nil
}

// Page returns up to first entries, newest first, older than before
// (0 = from the newest).
func (l *Log) Page(ctx context.Context, first int, before int64) ([]Entry, error) {
	filter := bson.D{}
	if before > 0 {
		filter = bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: before}}}}
	}
	cur, err := l.coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetLimit(int64(first)))
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	var out []Entry
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}

// Verify recomputes the whole chain and returns the first broken sequence
// number, or 0 when the chain is intact.
func (l *Log) Verify(ctx context.Context) (int64, error) {
	cur, err := l.coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("read audit log: %w", err)
	}
	defer cur.Close(ctx)
	prev, want := "", int64(1)
	for cur.Next(ctx) {
		var e Entry
		if err := cur.Decode(&e); err != nil {
			return 0, fmt.Errorf("decode audit entry: %w", err)
		}
		if e.Seq != want || e.Prev != prev || e.Hash != e.computeHash() {
			return want, nil
		}
		prev, want = e.Hash, want+1
	}
	return 0, cur.Err()
}
