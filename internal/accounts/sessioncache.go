package accounts

import (
	"time"

	"github.com/consentgraph/consentgraph/internal/auth"
)

// SessionCacheTTL bounds how long a revoked session can still be accepted by
// a replica that did not revoke it.
const SessionCacheTTL = time.Second

const sessionCacheMax = 50000

// cacheSession keeps a copy of p until the cache TTL or the session's own
// expiry, whichever comes first.
func (s *Service) cacheSession(id string, p *auth.Principal, sessionExpires, now time.Time) {
	exp := now.Add(SessionCacheTTL)
	if sessionExpires.Before(exp) {
		exp = sessionExpires
	}
	cp := *p
	s.sessionCache.put(id, cp, exp)
}

func (s *Service) cachedSession(id string, now time.Time) (*auth.Principal, bool) {
	p, ok := s.sessionCache.get(id, now)
	if !ok {
		return nil, false
	}
	return &p, true
}
