package accounts

import (
	"sync"
	"time"
)

// ttlCache keeps values for a while, bounded in size: when full it starts
// over, which is crude but keeps memory fixed under any load. Data keys and
// sessions are cached with it; both must be dropped here on erasure or
// logout, and other replicas forget them when their entries expire.
type ttlCache[V any] struct {
	mu  sync.Mutex
	max int
	m   map[string]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func (c *ttlCache[V]) get(id string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(id string, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]ttlEntry[V])
	}
	c.m[id] = ttlEntry[V]{v: v, expires: expires}
}

func (c *ttlCache[V]) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// dropWhere removes every entry whose value matches.
func (c *ttlCache[V]) dropWhere(match func(V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.m {
		if match(e.v) {
			delete(c.m, id)
		}
	}
}
