package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/envelope"
)

// DataKeysCollection holds one wrapped AES-256 key per user.
const DataKeysCollection = "data_keys"

type keyDoc struct {
	ID        string    `bson:"_id"`
	Wrapped   []byte    `bson:"wrapped"`
	CreatedAt time.Time `bson:"createdAt"`
}

// ErrShredded means the user's data key is gone: the account was erased and
// whatever copies of its sealed data remain can no longer be read.
var ErrShredded = errors.New("data key destroyed")

// dataKey returns the user's unwrapped key, from a short-lived cache when
// possible (it saves a store round trip on every read of personal data).
func (s *Service) dataKey(ctx context.Context, userID string) (*envelope.DataKey, error) {
	if dk, ok := s.keyCache.get(userID, time.Now()); ok {
		return dk, nil
	}
	var d keyDoc
	err := s.keys.FindOne(ctx, bson.D{{Key: "_id", Value: userID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("user %s: %w", userID, ErrShredded)
	}
	if err != nil {
		return nil, fmt.Errorf("find data key: %w", err)
	}
	dk, err := s.opts.Keyring.OpenDataKey(d.Wrapped, dataKeyAAD(userID))
	if err != nil {
		return nil, fmt.Errorf("open data key of user %s: %w", userID, err)
	}
	s.keyCache.put(userID, dk, time.Now().Add(keyCacheTTL))
	return dk, nil
}

// shredKey destroys a user's data key.
func (s *Service) shredKey(ctx context.Context, userID string) error {
	s.keyCache.drop(userID)
	if _, err := s.keys.DeleteOne(ctx, bson.D{{Key: "_id", Value: userID}}); err != nil {
		return fmt.Errorf("destroy data key: %w", err)
	}
	return nil
}

// RewrapDataKeys re-wraps every data key under the current master key, one
// document at a time: each is readable under either key throughout, so
// reads never stop during a master key rotation.
func (s *Service) RewrapDataKeys(ctx context.Context) (rewrapped int, err error) {
	cur, err := s.keys.Find(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("list data keys: %w", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d keyDoc
		if err := cur.Decode(&d); err != nil {
			return rewrapped, fmt.Errorf("decode data key: %w", err)
		}
		out, changed, err := s.opts.Keyring.RewrapDataKey(d.Wrapped, dataKeyAAD(d.ID))
		if err != nil {
			return rewrapped, fmt.Errorf("rewrap data key of %s: %w", d.ID, err)
		}
		if !changed {
			continue
		}
		// Conditional on the old blob, so a concurrent erasure is not undone.
		_, err = s.keys.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}, {Key: "wrapped", Value: d.Wrapped}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "wrapped", Value: out}}}})
		if err != nil {
			return rewrapped, fmt.Errorf("store rewrapped key of %s: %w", d.ID, err)
		}
		rewrapped++
	}
	return rewrapped, cur.Err()
}

// Unwrapped data keys are cached briefly (keyCacheTTL). Erasure drops the
// entry on this replica; other replicas forget it when it expires.
const (
	keyCacheTTL = 30 * time.Second
	keyCacheMax = 10000
)
