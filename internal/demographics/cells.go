package demographics

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"math/bits"
	"strings"
	"sync"

	"github.com/consentgraph/consentgraph/internal/envelope"
)

// CellIDSecret names the secret behind cell ids.
const CellIDSecret = "demographics-cell-id"

// cells reads and writes the cells of every dimension subset.
type cells struct {
	store   Store
	keyring *envelope.Keyring
	idKey   []byte

	mu     sync.Mutex
	values map[string][]string // decrypted values by cell id; they never change
	macs   sync.Pool           // hmac hashers under idKey
}

const maxCachedValues = 1 << 20

// id is the cell id of values under mask.
func (c *cells) id(mask int, values []string) string {
	m, _ := c.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, c.idKey)
	}
	m.Reset()
	m.Write([]byte{byte(mask)})
	m.Write([]byte(strings.Join(values, tupleSep)))
	var sum [sha256.Size]byte
	id := base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:18])
	c.macs.Put(m)
	return id
}

// tally counts tuples' projections per mask by their values, so that a
// whole-store pass computes each cell id once per distinct cell rather
// than once per user and mask.
type tally [numMasks]map[string]*tallied

type tallied struct {
	values []string
	n      int64
}

func newTally() *tally {
	var t tally
	for mask := range numMasks {
		t[mask] = map[string]*tallied{}
	}
	return &t
}

// add counts t once in every mask.
func (t *tally) add(tuple *Tuple) {
	for mask := range numMasks {
		v := tuple.project(mask)
		key := strings.Join(v, tupleSep)
		e := t[mask][key]
		if e == nil {
			e = &tallied{values: v}
			t[mask][key] = e
		}
		e.n++
	}
}

// byID returns the tally of one mask keyed by cell id.
func (t *tally) byID(c *cells, mask int) map[string]*tallied {
	out := make(map[string]*tallied, len(t[mask]))
	for _, e := range t[mask] {
		out[c.id(mask, e.values)] = e
	}
	return out
}

func cellAAD(id string) string { return "demographics-cell:" + id }

func (c *cells) seal(id string, values []string) ([]byte, error) {
	v, err := c.keyring.Wrap([]byte(strings.Join(values, tupleSep)), cellAAD(id))
	if err != nil {
		return nil, fmt.Errorf("seal cell values: %w", err)
	}
	return v, nil
}

func (c *cells) open(id string, sealed []byte, width int) ([]string, error) {
	c.mu.Lock()
	v, ok := c.values[id]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	plain, err := c.keyring.Unwrap(sealed, cellAAD(id))
	if err != nil {
		return nil, fmt.Errorf("open cell %s: %w", id, err)
	}
	v = []string{}
	if width > 0 {
		v = strings.Split(string(plain), tupleSep)
	}
	if len(v) != width {
		return nil, fmt.Errorf("cell %s has %d values, want %d", id, len(v), width)
	}
	c.mu.Lock()
	if len(c.values) >= maxCachedValues {
		c.values = make(map[string][]string)
	}
	c.values[id] = v
	c.mu.Unlock()
	return v, nil
}

// delta is the change of one cell by n, with the cell's sealed values in
// case it has to be created.
func (c *cells) delta(mask int, values []string, n int64) (CellDelta, error) {
	id := c.id(mask, values)
	sealed, err := c.seal(id, values)
	if err != nil {
		return CellDelta{}, err
	}
	return CellDelta{Mask: mask, ID: id, Values: sealed, Delta: n}, nil
}

// read returns every cell of a mask with a positive count, with its
// values. Only ids and counts are read; the sealed values (which never
// change for an id) are fetched for ids not seen before.
func (c *cells) read(ctx context.Context, mask int) ([]cellValues, error) {
	docs, err := c.store.CellCounts(ctx, mask)
	if err != nil {
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
	sealed, err := c.store.CellValues(ctx, mask, missing)
	if err != nil {
		return nil, fmt.Errorf("read cell values of %s: %w", maskName(mask), err)
	}
	opened := make(map[string][]string, len(sealed))
	for id, b := range sealed {
		v, err := c.open(id, b, width)
		if err != nil {
			return nil, err
		}
		opened[id] = v
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
		docs, err := c.store.CellCounts(ctx, mask)
		if err != nil {
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
	ok, err := c.store.SetCellIfUnchanged(ctx, mask, id, ver, n)
	if err != nil {
		return false, fmt.Errorf("repair cell %s of %s: %w", id, maskName(mask), err)
	}
	return ok, nil
}

// create inserts a missing cell; false if it exists by now.
func (c *cells) create(ctx context.Context, mask int, values []string, n int64) (bool, error) {
	id := c.id(mask, values)
	sealed, err := c.seal(id, values)
	if err != nil {
		return false, err
	}
	ok, err := c.store.CreateCell(ctx, mask, CellRecord{ID: id, N: n, Ver: 1, Values: sealed})
	if err != nil {
		return false, fmt.Errorf("create cell %s of %s: %w", id, maskName(mask), err)
	}
	return ok, nil
}
