package mongostore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/plugins"
)

// pluginState keeps one processor's keys in plugin_state under
// _id = processor + "\x00" + key, every call one single-document command.
// A processor name with a NUL in it is refused, so that no two processors'
// keys can collide.
type pluginState struct {
	d         *DB
	processor string
}

var _ plugins.State = (*pluginState)(nil)

type pluginStateDoc struct {
	ID        string    `bson:"_id"`
	Processor string    `bson:"processor"`
	Key       string    `bson:"key"`
	Value     []byte    `bson:"value"`
	UpdatedAt time.Time `bson:"updatedAt"`
}

func (p *pluginState) id(key string) (string, error) {
	if strings.Contains(p.processor, "\x00") {
		return "", fmt.Errorf("processor name %q contains NUL", p.processor)
	}
	return p.processor + "\x00" + key, nil
}

func (p *pluginState) Get(ctx context.Context, key string) ([]byte, bool, error) {
	id, err := p.id(key)
	if err != nil {
		return nil, false, err
	}
	var doc pluginStateDoc
	err = p.d.coll(pluginStateColl).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if errNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read state of processor %s: %w", p.processor, err)
	}
	if doc.Value == nil {
		doc.Value = []byte{}
	}
	return doc.Value, true, nil
}

func (p *pluginState) Put(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	id, err := p.id(key)
	if err != nil {
		return err
	}
	doc := pluginStateDoc{ID: id, Processor: p.processor, Key: key, Value: value, UpdatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	err = upsertRetry(func() error {
		_, err := p.d.coll(pluginStateColl).ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true))
		return err
	})
	if err != nil {
		return fmt.Errorf("store state of processor %s: %w", p.processor, err)
	}
	return nil
}

func (p *pluginState) Delete(ctx context.Context, key string) error {
	id, err := p.id(key)
	if err != nil {
		return err
	}
	if _, err := p.d.coll(pluginStateColl).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("delete state of processor %s: %w", p.processor, err)
	}
	return nil
}
