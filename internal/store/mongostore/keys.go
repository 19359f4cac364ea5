package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/signing"
)

type signingStore struct{ d *DB }

var _ signing.Store = (*signingStore)(nil)

// signingKeyDoc is a document of signing_keys; generation is unique.
type signingKeyDoc struct {
	Kid         string     `bson:"_id"`
	Generation  int64      `bson:"generation"`
	Alg         string     `bson:"alg"`
	PublicKey   []byte     `bson:"publicKey"`
	PrivateKey  []byte     `bson:"privateKey,omitempty"`
	MasterKeyID string     `bson:"masterKeyId,omitempty"`
	CreatedAt   time.Time  `bson:"createdAt"`
	RetiredAt   *time.Time `bson:"retiredAt"`
	ExpiresAt   *time.Time `bson:"expiresAt"`
}

func (s *signingStore) Keys(ctx context.Context) ([]signing.KeyRecord, error) {
	cur, err := s.d.coll(signingKeysColl).Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	var docs []signingKeyDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	out := make([]signing.KeyRecord, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].record())
	}
	return out, nil
}

func newSigningKeyDoc(k *signing.KeyRecord) signingKeyDoc {
	return signingKeyDoc{Kid: k.Kid, Generation: k.Generation, Alg: k.Alg, PublicKey: k.PublicKey,
		PrivateKey: k.PrivateKey, MasterKeyID: k.MasterKeyID, CreatedAt: k.CreatedAt, RetiredAt: k.RetiredAt, ExpiresAt: k.ExpiresAt}
}

func (d *signingKeyDoc) record() signing.KeyRecord {
	return signing.KeyRecord{Kid: d.Kid, Generation: d.Generation, Alg: d.Alg, PublicKey: d.PublicKey, PrivateKey: d.PrivateKey,
		MasterKeyID: d.MasterKeyID, CreatedAt: d.CreatedAt, RetiredAt: d.RetiredAt, ExpiresAt: d.ExpiresAt}
}

// InsertKey relies on the unique generation (and kid) index: a duplicate
// means another replica created or rotated first.
func (s *signingStore) InsertKey(ctx context.Context, k signing.KeyRecord) (bool, error) {
	_, err := s.d.coll(signingKeysColl).InsertOne(ctx, newSigningKeyDoc(&k))
	if isDup(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store signing key: %w", err)
	}
	return true, nil
}

func (s *signingStore) RetireBelow(ctx context.Context, generation int64, at time.Time) error {
	_, err := s.d.coll(signingKeysColl).UpdateMany(ctx,
		bson.D{{Key: "generation", Value: bson.D{{Key: "$lt", Value: generation}}}, {Key: "privateKey", Value: bson.D{{Key: "$exists", Value: true}}}},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "retiredAt", Value: at}}},
			{Key: "$unset", Value: bson.D{{Key: "privateKey", Value: ""}, {Key: "masterKeyId", Value: ""}}},
		})
	if err != nil {
		return fmt.Errorf("retire signing keys: %w", err)
	}
	return nil
}

func (s *signingStore) SetExpiry(ctx context.Context, kid string, at time.Time) error {
	if _, err := s.d.coll(signingKeysColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: kid}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expiresAt", Value: at}}}}); err != nil {
		return fmt.Errorf("set signing key expiry: %w", err)
	}
	return nil
}

// SwapPrivateKey is conditional on the old blob, so a private key that a
// concurrent rotation removed is never resurrected.
func (s *signingStore) SwapPrivateKey(ctx context.Context, kid string, old, new []byte, masterKeyID string) (bool, error) {
	r, err := s.d.coll(signingKeysColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: kid}, {Key: "privateKey", Value: old}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "privateKey", Value: new}, {Key: "masterKeyId", Value: masterKeyID}}}})
	if err != nil {
		return false, fmt.Errorf("swap signing key: %w", err)
	}
	return r.MatchedCount == 1, nil
}

type secretStore struct{ d *DB }

var _ envelope.SecretStore = (*secretStore)(nil)

// secretDoc is a document of secrets.
type secretDoc struct {
	Name      string    `bson:"_id"`
	Value     []byte    `bson:"value"`
	KeyID     string    `bson:"keyId"`
	CreatedAt time.Time `bson:"createdAt"`
}

func (d *secretDoc) record() envelope.SecretRecord {
	return envelope.SecretRecord{Name: d.Name, Value: d.Value, KeyID: d.KeyID, CreatedAt: d.CreatedAt}
}

func (s *secretStore) Secret(ctx context.Context, name string) (*envelope.SecretRecord, error) {
	var doc secretDoc
	err := s.d.coll(secretsColl).FindOne(ctx, bson.D{{Key: "_id", Value: name}}).Decode(&doc)
	if errNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read secret %q: %w", name, err)
	}
	r := doc.record()
	return &r, nil
}

func (s *secretStore) InsertSecret(ctx context.Context, r envelope.SecretRecord) (bool, error) {
	_, err := s.d.coll(secretsColl).InsertOne(ctx, secretDoc{Name: r.Name, Value: r.Value, KeyID: r.KeyID, CreatedAt: r.CreatedAt})
	if isDup(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store secret %q: %w", r.Name, err)
	}
	return true, nil
}

func (s *secretStore) Secrets(ctx context.Context) ([]envelope.SecretRecord, error) {
	cur, err := s.d.coll(secretsColl).Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	var docs []secretDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	out := make([]envelope.SecretRecord, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].record())
	}
	return out, nil
}

func (s *secretStore) SwapSecret(ctx context.Context, name string, old, new []byte, keyID string) (bool, error) {
	r, err := s.d.coll(secretsColl).UpdateOne(ctx, bson.D{{Key: "_id", Value: name}, {Key: "value", Value: old}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "value", Value: new}, {Key: "keyId", Value: keyID}}}})
	if err != nil {
		return false, fmt.Errorf("swap secret %q: %w", name, err)
	}
	return r.MatchedCount == 1, nil
}
