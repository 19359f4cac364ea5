package mongostore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/outbox"
)

// linkDoc is one outbox.Link in processor_links under
// _id = processor + "\x00" + subject, so every operation is an _id lookup
// and no secondary index is needed.
type linkDoc struct {
	ID        string    `bson:"_id"`
	Processor string    `bson:"processor"`
	Subject   string    `bson:"subject"`
	State     string    `bson:"state"`
	Data      []byte    `bson:"data"`
	UpdatedAt time.Time `bson:"updatedAt"`
}

func linkID(k outbox.LinkKey) (string, error) {
	if strings.Contains(k.Processor, "\x00") {
		return "", fmt.Errorf("processor name %q contains NUL", k.Processor)
	}
	return k.Processor + "\x00" + k.Subject, nil
}

func linkIDs(keys []outbox.LinkKey) ([]string, error) {
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		id, err := linkID(k)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (s *outboxStore) PutLink(ctx context.Context, l outbox.Link) error {
	id, err := linkID(outbox.LinkKey{Processor: l.Processor, Subject: l.Subject})
	if err != nil {
		return err
	}
	if l.Data == nil {
		l.Data = []byte{}
	}
	doc := linkDoc{ID: id, Processor: l.Processor, Subject: l.Subject, State: l.State, Data: l.Data, UpdatedAt: l.UpdatedAt}
	err = upsertRetry(func() error {
		_, err := s.d.coll(linksColl).ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, doc, options.Replace().SetUpsert(true))
		return err
	})
	if err != nil {
		return fmt.Errorf("store link of %s: %w", l.Processor, err)
	}
	return nil
}

func (s *outboxStore) Links(ctx context.Context, keys []outbox.LinkKey) ([]outbox.Link, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ids, err := linkIDs(keys)
	if err != nil {
		return nil, err
	}
	cur, err := s.d.coll(linksColl).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return nil, fmt.Errorf("read links: %w", err)
	}
	var docs []linkDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read links: %w", err)
	}
	out := make([]outbox.Link, 0, len(docs))
	for _, d := range docs {
		if d.Data == nil {
			d.Data = []byte{} // stored empty
		}
		out = append(out, outbox.Link{Processor: d.Processor, Subject: d.Subject, State: d.State, Data: d.Data, UpdatedAt: d.UpdatedAt.UTC()})
	}
	return out, nil
}

func (s *outboxStore) DeleteLinks(ctx context.Context, keys []outbox.LinkKey) error {
	if len(keys) == 0 {
		return nil
	}
	ids, err := linkIDs(keys)
	if err != nil {
		return err
	}
	if _, err := s.d.coll(linksColl).DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
		return fmt.Errorf("delete links: %w", err)
	}
	return nil
}
