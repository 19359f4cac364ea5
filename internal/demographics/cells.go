package demographics

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/bits"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/store"
)

// CellsCollectionPrefix starts the name of every cell collection; the rest
// names the dimension subset (see maskName), e.g. demographics_cells_AC.
const CellsCollectionPrefix = "demographics_cells_"

// CellIDSecret names the secret behind cell ids.
const CellIDSecret = "demographics-cell-id"

// cellDoc is one pre-aggregated count: how many counting users share the
// values of one dimension subset. Its id is a keyed hash of subset and
// values, so a cell is found by _id and its values are not readable from
// the id; the values themselves are sealed under the master key. A cell of
// one person stored in clear next to its signup month would otherwise tie
// that person's demographics to the users collection.
type cellDoc struct {
	ID string `bson:"_id"`
	// N is the true count.
	N int64 `bson:"n"`
	// Ver counts every write, so repairs can be conditional on "unchanged".
	Ver int64 `bson:"ver"`
	// V is the sealed list of values.
	V []byte `bson:"v"`
}

// cells reads and writes the cell collections.
type cells struct {
	db      *mongo.Database
	keyring *envelope.Keyring
	idKey   []byte

	mu     sync.Mutex
	values map[string][]string // decrypted values by cell id; they never change
}

const maxCachedValues = 1 << 20

func collectionFor(mask int) string { return CellsCollectionPrefix + maskName(mask) }

func (c *cells) coll(mask int) *mongo.Collection { return c.db.Collection(collectionFor(mask)) }

// id is the cell id of values under mask.
func (c *cells) id(mask int, values []string) string {
	m := hmac.New(sha256.New, c.idKey)
	m.Write([]byte{byte(mask)})
	m.Write([]byte(strings.Join(values, tupleSep)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

func cellAAD(id string) string { return "demographics-cell:" + id }

func (c *cells) seal(id string, values []string) ([]byte, error) {
	v, err := c.keyring.Wrap([]byte(strings.Join(values, tupleSep)), cellAAD(id))
	if err != nil {
		return nil, fmt.Errorf("seal cell values: %w", err)
	}
	return v, nil
}

func (c *cells) open(d *cellDoc, width int) ([]string, error) {
	c.mu.Lock()
	v, ok := c.values[d.ID]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	plain, err := c.keyring.Unwrap(d.V, cellAAD(d.ID))
	if err != nil {
		return nil, fmt.Errorf("open cell %s: %w", d.ID, err)
	}
	v = []string{}
	if width > 0 {
		v = strings.Split(string(plain), tupleSep)
	}
	if len(v) != width {
		return nil, fmt.Errorf("cell %s has %d values, want %d", d.ID, len(v), width)
	}
	c.mu.Lock()
	if len(c.values) >= maxCachedValues {
		c.values = make(map[string][]string)
	}
	c.values[d.ID] = v
	c.mu.Unlock()
	return v, nil
}

// add changes a cell's count by delta, creating the cell if needed. It is a
// single-document update; see the package comment for why it need not be
// idempotent.
func (c *cells) add(ctx context.Context, mask int, values []string, delta int64) error {
	id := c.id(mask, values)
	sealed, err := c.seal(id, values)
	if err != nil {
		return err
	}
	upd := bson.D{
		{Key: "$inc", Value: bson.D{{Key: "n", Value: delta}, {Key: "ver", Value: int64(1)}}},
		{Key: "$setOnInsert", Value: bson.D{{Key: "v", Value: sealed}}},
	}
	for attempt := 0; ; attempt++ {
		_, err = c.coll(mask).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, upd, options.UpdateOne().SetUpsert(true))
		// Two upserts creating the same cell: the loser retries as an update.
		if err == nil || !store.IsDuplicateKey(err) || attempt > 0 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("update cell %s of %s: %w", id, maskName(mask), err)
	}
	return nil
}

// read returns every cell of a mask with a positive count, with its
// values. Only ids and counts are read; the sealed values (which never
// change for an id) are fetched for ids not seen before.
func (c *cells) read(ctx context.Context, mask int) ([]cellValues, error) {
	cur, err := c.coll(mask).Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "n", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("read cells of %s: %w", maskName(mask), err)
	}
	var docs []cellDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read cells of %s: %w", maskName(mask), err)
	}
	out := make([]cellValues, 0, len(docs))
	var missing []string
	c.mu.Lock()
	for _, d := range docs {
		if d.N <= 0 {
			continue
		}
		v, ok := c.values[d.ID]
		if !ok {
			missing = append(missing, d.ID)
		}
		out = append(out, cellValues{ID: d.ID, N: d.N, Values: v})
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	width := bits.OnesCount(uint(mask))
	cur, err = c.coll(mask).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: missing}}}},
		options.Find().SetProjection(bson.D{{Key: "v", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("read cell values of %s: %w", maskName(mask), err)
	}
	var sealed []cellDoc
	if err := cur.All(ctx, &sealed); err != nil {
		return nil, fmt.Errorf("read cell values of %s: %w", maskName(mask), err)
	}
	opened := make(map[string][]string, len(sealed))
	for i := range sealed {
		v, err := c.open(&sealed[i], width)
		if err != nil {
			return nil, err
		}
		opened[sealed[i].ID] = v
	}
	for i := range out {
		if out[i].Values == nil {
			if out[i].Values = opened[out[i].ID]; out[i].Values == nil {
				return nil, fmt.Errorf("cell %s of %s vanished while being read", out[i].ID, maskName(mask))
			}
		}
	}
	return out, nil
}

// cellValues is a cell as reports see it.
type cellValues struct {
	ID     string
	N      int64
	Values []string
}

// counter is what reads see: id, count and version, without the values.
type counter struct {
	N, Ver int64
}

// snapshot returns id → (count, version) of every cell of every mask.
func (c *cells) snapshot(ctx context.Context) ([numMasks]map[string]counter, error) {
	var out [numMasks]map[string]counter
	for mask := range numMasks {
		cur, err := c.coll(mask).Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "n", Value: 1}, {Key: "ver", Value: 1}}))
		if err != nil {
			return out, fmt.Errorf("read cells of %s: %w", maskName(mask), err)
		}
		var docs []cellDoc
		if err := cur.All(ctx, &docs); err != nil {
			return out, fmt.Errorf("read cells of %s: %w", maskName(mask), err)
		}
		out[mask] = make(map[string]counter, len(docs))
		for _, d := range docs {
			out[mask][d.ID] = counter{N: d.N, Ver: d.Ver}
		}
	}
	return out, nil
}

// setIfUnchanged sets a cell's count if its version is still ver.
func (c *cells) setIfUnchanged(ctx context.Context, mask int, id string, ver, n int64) (bool, error) {
	r, err := c.coll(mask).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "ver", Value: ver}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: n}}}, {Key: "$inc", Value: bson.D{{Key: "ver", Value: int64(1)}}}})
	if err != nil {
		return false, fmt.Errorf("repair cell %s of %s: %w", id, maskName(mask), err)
	}
	return r.ModifiedCount == 1, nil
}

// create inserts a missing cell; false if it exists by now.
func (c *cells) create(ctx context.Context, mask int, values []string, n int64) (bool, error) {
	id := c.id(mask, values)
	sealed, err := c.seal(id, values)
	if err != nil {
		return false, err
	}
	_, err = c.coll(mask).InsertOne(ctx, cellDoc{ID: id, N: n, Ver: 1, V: sealed})
	if store.IsDuplicateKey(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create cell %s of %s: %w", id, maskName(mask), err)
	}
	return true, nil
}
