package contract

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/auth"
)

func dataKeyTests() []contractTest {
	return []contractTest{
		{"datakeys/insert-read-delete", testDataKeyCRUD},
		{"datakeys/swap", testDataKeySwap},
		{"datakeys/each-in-user-id-order-and-import", testDataKeyEachAndImport},
	}
}

func sessionTests() []contractTest {
	return []contractTest{
		{"sessions/insert-read-delete", testSessionCRUD},
		{"sessions/expiry", testSessionExpiry},
	}
}

func dataKey(userID string) accounts.DataKey {
	return accounts.DataKey{UserID: userID, Wrapped: []byte("wrapped\x00key:" + userID), CreatedAt: at(3 * ms)}
}

func (e *env) dataKey(userID string) []byte {
	e.t.Helper()
	k, err := e.b.Accounts().DataKey(e.ctx, userID)
	e.must(err, "DataKey(%s)", userID)
	return k
}

func testDataKeyCRUD(e *env) {
	s := e.b.Accounts()
	if k := e.dataKey("u-k"); k != nil {
		e.t.Errorf("DataKey of a user without key = %q, want nil", k)
	}
	k := dataKey("u-k")
	e.must(s.InsertDataKey(e.ctx, k), "InsertDataKey")
	e.must(s.InsertDataKey(e.ctx, dataKey("u-k2")), "InsertDataKey(u-k2)")
	e.equal("DataKey(u-k)", k.Wrapped, e.dataKey("u-k"))

	// At most one key per user: a second key must not replace the first.
	second := accounts.DataKey{UserID: "u-k", Wrapped: []byte("another"), CreatedAt: at(4 * ms)}
	if err := s.InsertDataKey(e.ctx, second); err == nil {
		e.t.Errorf("InsertDataKey of a second key for one user succeeded, want an error (at most one per user)")
	}
	e.equal("DataKey(u-k) after a second insert", k.Wrapped, e.dataKey("u-k"))

	e.must(s.DeleteDataKey(e.ctx, "u-k"), "DeleteDataKey")
	if got := e.dataKey("u-k"); got != nil {
		e.t.Errorf("DataKey after DeleteDataKey = %q, want nil", got)
	}
	e.equal("another user's key after DeleteDataKey", dataKey("u-k2").Wrapped, e.dataKey("u-k2"))
	e.must(s.DeleteDataKey(e.ctx, "u-k"), "DeleteDataKey of a deleted key")
	e.must(s.DeleteDataKey(e.ctx, "u-never"), "DeleteDataKey of an absent key")
}

func testDataKeySwap(e *env) {
	s := e.b.Accounts()
	k := dataKey("u-swap")
	e.must(s.InsertDataKey(e.ctx, k), "InsertDataKey")
	ok, err := s.SwapDataKey(e.ctx, "u-swap", []byte("not the key"), []byte("rewrapped"))
	e.must(err, "SwapDataKey(wrong old)")
	e.wantBool("SwapDataKey with a stale old key", false, ok)
	e.equal("key after a refused swap", k.Wrapped, e.dataKey("u-swap"))

	ok, err = s.SwapDataKey(e.ctx, "u-swap", k.Wrapped, []byte("rewrapped"))
	e.must(err, "SwapDataKey")
	e.wantBool("SwapDataKey", true, ok)
	e.equal("key after a swap", []byte("rewrapped"), e.dataKey("u-swap"))

	ok, err = s.SwapDataKey(e.ctx, "u-swap", k.Wrapped, []byte("again"))
	e.must(err, "SwapDataKey(old twice)")
	e.wantBool("SwapDataKey with the key it replaced", false, ok)

	e.must(s.DeleteDataKey(e.ctx, "u-swap"), "DeleteDataKey")
	ok, err = s.SwapDataKey(e.ctx, "u-swap", []byte("rewrapped"), []byte("resurrected"))
	e.must(err, "SwapDataKey(deleted)")
	e.wantBool("SwapDataKey of a destroyed key", false, ok)
	if got := e.dataKey("u-swap"); got != nil {
		e.t.Errorf("SwapDataKey brought a destroyed key back: %q", got)
	}
	ok, err = s.SwapDataKey(e.ctx, "u-never", nil, []byte("x"))
	e.must(err, "SwapDataKey(absent)")
	e.wantBool("SwapDataKey of a user who never had a key", false, ok)
	if got := e.dataKey("u-never"); got != nil {
		e.t.Errorf("SwapDataKey created a key: %q", got)
	}
}

func testDataKeyEachAndImport(e *env) {
	s := e.b.Accounts()
	var keys []accounts.DataKey
	for _, id := range []string{"u-m", "u-B", "u-b", "u-a10", "u-a9"} {
		keys = append(keys, dataKey(id))
	}
	e.must(s.InsertDataKey(e.ctx, keys[0]), "InsertDataKey")
	e.must(s.ImportDataKeys(e.ctx, keys[1:]), "ImportDataKeys")
	slices.SortFunc(keys, func(a, b accounts.DataKey) int {
		switch {
		case a.UserID < b.UserID:
			return -1
		case a.UserID > b.UserID:
			return 1
		}
		return 0
	})
	var got []accounts.DataKey
	e.must(s.EachDataKey(e.ctx, func(k accounts.DataKey) error { got = append(got, k); return nil }), "EachDataKey")
	e.equal("EachDataKey (all keys, in user id order)", keys, got)
	for _, k := range keys {
		e.equal("DataKey("+k.UserID+") after import", k.Wrapped, e.dataKey(k.UserID))
	}

	stop := errors.New("stop")
	n := 0
	if err := s.EachDataKey(e.ctx, func(accounts.DataKey) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		e.t.Errorf("EachDataKey with fn failing: %v after %d calls; want fn's error after 1 call", err, n)
	}
}

func session(id, userID string, expires time.Time) accounts.SessionRecord {
	return accounts.SessionRecord{ID: id, UserID: userID, Role: auth.RoleUser, CreatedAt: at(ms), ExpiresAt: expires}
}

func (e *env) userSessions(userID string) []accounts.SessionRecord {
	e.t.Helper()
	ss, err := e.b.Accounts().UserSessions(e.ctx, userID)
	e.must(err, "UserSessions(%s)", userID)
	slices.SortFunc(ss, func(a, b accounts.SessionRecord) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return ss
}

func testSessionCRUD(e *env) {
	s := e.b.Accounts()
	a1 := session("sha256-a1", "u-1", at(time.Hour))
	a2 := session("sha256-a2", "u-1", at(-time.Hour)) // expired: still listed and returned
	a2.Role = auth.RoleAdmin
	b1 := session("sha256-b1", "u-2", at(time.Hour))
	for _, x := range []accounts.SessionRecord{a1, a2, b1} {
		e.must(s.InsertSession(e.ctx, x), "InsertSession(%s)", x.ID)
	}
	for _, x := range []accounts.SessionRecord{a1, a2, b1} {
		got, err := s.Session(e.ctx, x.ID)
		e.must(err, "Session(%s)", x.ID)
		e.equal("Session("+x.ID+")", &x, got)
	}
	if got, err := s.Session(e.ctx, "sha256-none"); err != nil || got != nil {
		e.t.Errorf("Session of an absent id = %+v, %v; want nil", got, err)
	}
	e.equal("UserSessions(u-1) (expired ones included)", []accounts.SessionRecord{a1, a2}, e.userSessions("u-1"))
	e.equal("UserSessions of a user without sessions", []accounts.SessionRecord(nil), e.userSessions("u-none"))

	e.must(s.DeleteSession(e.ctx, "sha256-a1"), "DeleteSession")
	if got, err := s.Session(e.ctx, "sha256-a1"); err != nil || got != nil {
		e.t.Errorf("Session after DeleteSession = %+v, %v; want nil", got, err)
	}
	e.must(s.DeleteSession(e.ctx, "sha256-a1"), "DeleteSession of a deleted session")
	e.equal("UserSessions(u-1) after DeleteSession", []accounts.SessionRecord{a2}, e.userSessions("u-1"))

	e.must(s.InsertSession(e.ctx, a1), "InsertSession(a1 again)")
	e.must(s.DeleteUserSessions(e.ctx, "u-1"), "DeleteUserSessions")
	e.equal("UserSessions(u-1) after DeleteUserSessions", []accounts.SessionRecord(nil), e.userSessions("u-1"))
	for _, id := range []string{"sha256-a1", "sha256-a2"} {
		if got, err := s.Session(e.ctx, id); err != nil || got != nil {
			e.t.Errorf("Session(%s) after DeleteUserSessions = %+v, %v; want nil", id, got, err)
		}
	}
	e.equal("another user's sessions after DeleteUserSessions", []accounts.SessionRecord{b1}, e.userSessions("u-2"))
	e.must(s.DeleteUserSessions(e.ctx, "u-none"), "DeleteUserSessions of a user without sessions")
}

func testSessionExpiry(e *env) {
	s := e.b.Accounts()
	now := at(time.Hour)
	// Expiring: 3 before now, 1 exactly at now (expired: "at or before"), 4 after.
	offsets := []time.Duration{-time.Hour, -time.Second, -ms, 0, ms, time.Second, time.Hour, 48 * time.Hour}
	for i, d := range offsets {
		e.must(s.InsertSession(e.ctx, session(fmt.Sprintf("sha256-%d", i), fmt.Sprintf("u-%d", i%3), now.Add(d))), "InsertSession")
	}
	n, err := s.CountSessions(e.ctx, now)
	e.must(err, "CountSessions")
	if n != 4 {
		e.t.Errorf("CountSessions(now) = %d, want 4 (sessions expiring after now)", n)
	}
	n, err = s.CountSessions(e.ctx, now.Add(-2*time.Hour))
	e.must(err, "CountSessions(earlier)")
	if n != 8 {
		e.t.Errorf("CountSessions(2h before) = %d, want 8", n)
	}
	n, err = s.DeleteExpiredSessions(e.ctx, now)
	e.must(err, "DeleteExpiredSessions")
	if n != 4 {
		e.t.Errorf("DeleteExpiredSessions(now) = %d, want 4 (expired at or before now)", n)
	}
	for i, d := range offsets {
		got, err := s.Session(e.ctx, fmt.Sprintf("sha256-%d", i))
		e.must(err, "Session")
		if (got != nil) != (d > 0) {
			e.t.Errorf("session expiring at now%+v: present after DeleteExpiredSessions(now) = %v, want %v", d, got != nil, d > 0)
		}
	}
	n, err = s.DeleteExpiredSessions(e.ctx, now)
	e.must(err, "DeleteExpiredSessions again")
	if n != 0 {
		e.t.Errorf("DeleteExpiredSessions again = %d, want 0", n)
	}
	n, err = s.CountSessions(e.ctx, now)
	e.must(err, "CountSessions after sweep")
	if n != 4 {
		e.t.Errorf("CountSessions after sweep = %d, want 4", n)
	}
}
