package accounts

import (
	"sync"
	"time"

	"github.com/consentgraph/consentgraph/internal/auth"
)

// SessionCacheTTL bounds how long a revoked session can still be accepted by
// a replica that did not revoke it.
const SessionCacheTTL = time.Second

const sessionCacheMax = 50000

type sessionCache struct {
	mu sync.Mutex
	m  map[string]cachedSession
}

type cachedSession struct {
	p       *auth.Principal
	expires time.Time
}

func (c *sessionCache) get(id string, now time.Time) (*auth.Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	cp := *e.p
	return &cp, true
}

func (c *sessionCache) put(id string, p *auth.Principal, sessionExpires, now time.Time) {
	exp := now.Add(SessionCacheTTL)
	if sessionExpires.Before(exp) {
		exp = sessionExpires
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= sessionCacheMax {
		c.m = make(map[string]cachedSession) // bounded: start over when full
	}
	cp := *p
	c.m[id] = cachedSession{p: &cp, expires: exp}
}

func (c *sessionCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

func (c *sessionCache) dropUser(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.m {
		if e.p.UserID == userID {
			delete(c.m, id)
		}
	}
}
