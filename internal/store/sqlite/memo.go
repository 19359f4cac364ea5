package sqlite

import (
	"context"
	"database/sql"
	"maps"
	"slices"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
)

// Within a read-only GraphQL operation (a context with a read memo), the
// account and its consent state are read together, once: `me` asks for
// both, so it costs one round trip instead of two.

// userSnap is one such read; rec is nil when there is no account.
type userSnap struct {
	rec *accounts.Record
	st  *consent.Stored
}

var qUserWithState = sqlq(`SELECT ` + userCols + `, consent_head, consent_head_hash, ` + stateCols + `
	FROM users u LEFT JOIN consent_state s ON s.user_id = u.id WHERE u.id = ?`)

// snapshot returns the memoized read of an account, reading it if this
// operation has not yet; ok is false without a memo.
func (d *DB) snapshot(ctx context.Context, id string) (snap *userSnap, ok bool, err error) {
	memo := storectx.ReadMemo(ctx)
	if memo == nil {
		return nil, false, nil
	}
	key := "sqlite.user:" + id
	if v, hit := memo.Get(key); hit {
		return v.(*userSnap), true, nil
	}
	snap = &userSnap{}
	err = d.readRows(ctx, qUserWithState, []any{id}, func(rows *sql.Rows) error {
		var a accountRow
		var head int64
		var hash string
		var r stateRow
		if err := rows.Scan(append(append(a.dest(), &head, &hash), r.dest()...)...); err != nil {
			return err
		}
		if snap.rec == nil {
			snap.rec = a.record()
			snap.st = &consent.Stored{Head: head, HeadHash: hash, Erasing: snap.rec.ErasingSince != nil}
		}
		r.addTo(snap.st)
		return nil
	})
	if err != nil {
		return nil, true, err
	}
	memo.Put(key, snap)
	return snap, true, nil
}

// record returns a copy the caller may change without touching the memo.
func (s *userSnap) record() *accounts.Record {
	if s.rec == nil {
		return nil
	}
	r := *s.rec
	if v := s.rec.Verification; v != nil {
		vc := *v
		r.Verification = &vc
	}
	if e := s.rec.ErasingSince; e != nil {
		ec := *e
		r.ErasingSince = &ec
	}
	if v := s.rec.PasswordReset; v != nil {
		vc := *v
		r.PasswordReset = &vc
	}
	r.Notices = slices.Clone(s.rec.Notices)
	return &r
}

// state returns a copy of the consent state (nil without an account).
func (s *userSnap) state() *consent.Stored {
	if s.st == nil {
		return nil
	}
	st := *s.st
	st.State = maps.Clone(s.st.State)
	return &st
}
