package demographics

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// errBusy means another replica is moving the same user and did not finish
// in time; the dirty flag makes a reconciliation pick the user up.
var errBusy = errors.New("demographics: another update of this user is in progress")

// errLost means a move was taken over by a recovery before it committed.
var errLost = errors.New("demographics: the move was recovered by another process before it finished")

func memberAAD(userID string) string { return "demographics-member:" + userID }

func (s *Service) sealTuple(userID string, t *Tuple) ([]byte, error) {
	if t == nil {
		return nil, nil
	}
	b, err := s.opts.Keyring.Wrap([]byte(t.encode()), memberAAD(userID))
	if err != nil {
		return nil, fmt.Errorf("seal tuple of %s: %w", userID, err)
	}
	return b, nil
}

func (s *Service) openTuple(userID string, b []byte) (*Tuple, error) {
	if len(b) == 0 {
		return nil, nil
	}
	plain, err := s.opts.Keyring.Unwrap(b, memberAAD(userID))
	if err != nil {
		return nil, fmt.Errorf("open tuple of %s: %w", userID, err)
	}
	t, err := decodeTuple(string(plain))
	if err != nil {
		return nil, fmt.Errorf("tuple of %s: %w", userID, err)
	}
	return &t, nil
}

func (s *Service) loadMember(ctx context.Context, userID string) (*Member, error) {
	m, err := s.store.Member(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("find member %s: %w", userID, err)
	}
	return m, nil
}

func (s *Service) loadAllMembers(ctx context.Context) (map[string]*Member, error) {
	out := map[string]*Member{}
	err := s.store.EachMember(ctx, func(m *Member) error {
		out[m.UserID] = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read members: %w", err)
	}
	return out, nil
}

// Sync brings the cells in line with the user's current profile and
// consent. It is idempotent and safe to call at any time, from any replica;
// call it after every change that may affect the user's tuple.
func (s *Service) Sync(ctx context.Context, userID string) error {
	_, err := s.sync(ctx, userID, false)
	return err
}

// Leave takes a user out of the aggregates whatever their stored state (an
// erasure has begun). Idempotent.
func (s *Service) Leave(ctx context.Context, userID string) error {
	_, err := s.sync(ctx, userID, true)
	return err
}

// sync moves the user's contribution to their current tuple (none when
// leave) and reports whether anything moved.
func (s *Service) sync(ctx context.Context, userID string, leave bool) (bool, error) {
	defer s.lock(userID)()
	waitUntil := time.Now().Add(s.busyWait)
	for attempt := 0; attempt < 100; attempt++ {
		m, err := s.loadMember(ctx, userID)
		if err != nil {
			return false, err
		}
		if m != nil && m.Pending != nil {
			if s.now().Sub(m.Pending.Since) >= abandonAfter {
				if err := s.recoverMember(ctx, m); err != nil {
					return false, err
				}
				continue
			}
			if time.Now().After(waitUntil) {
				_ = s.markDirty(ctx)
				return false, errBusy
			}
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return false, err
			}
			continue
		}
		// Read the member first and the truth second: a change committed
		// before this read is seen here, one committed after it triggers
		// another sync, which the version check below orders after this one.
		var cur, target *Tuple
		if m != nil {
			if cur, err = s.openTuple(userID, m.Tuple); err != nil {
				return false, err
			}
		}
		if !leave {
			subj, err := s.opts.Source.Subject(ctx, userID)
			if err != nil {
				return false, err
			}
			if subj != nil {
				t := TupleOf(subj)
				target = &t
			}
		}
		if sameTuple(cur, target) {
			if target == nil && m != nil {
				// Counted nowhere: the record can go.
				if _, err := s.store.DeleteMember(ctx, userID, m.Ver); err != nil {
					return false, fmt.Errorf("delete member %s: %w", userID, err)
				}
			}
			return false, nil
		}
		moved, err := s.move(ctx, userID, m, cur, target)
		if err != nil {
			return false, err
		}
		if moved {
			return true, nil
		}
		// Lost a race with another replica: look again.
	}
	_ = s.markDirty(ctx)
	return false, errBusy
}

func sameTuple(a, b *Tuple) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func newOpID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// move records the move as pending (conditional on the member version read),
// updates the cells, and commits. false means the record changed meanwhile.
func (s *Service) move(ctx context.Context, userID string, m *Member, cur, target *Tuple) (bool, error) {
	from, err := s.sealTuple(userID, cur)
	if err != nil {
		return false, err
	}
	to, err := s.sealTuple(userID, target)
	if err != nil {
		return false, err
	}
	p := Pending{Op: newOpID(), Since: s.now().Truncate(time.Millisecond), From: from, To: to}
	// The move runs to its end even if the request that caused it goes away,
	// but never longer than opTimeout (see abandonAfter).
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	var ver int64
	if m != nil {
		ver = m.Ver
	}
	begun, err := s.store.BeginMove(wctx, userID, ver, p)
	if err != nil {
		return false, fmt.Errorf("begin move of %s: %w", userID, err)
	}
	if !begun {
		return false, nil
	}
	if err := s.applyMove(wctx, cur, target); err != nil {
		return false, fmt.Errorf("move of %s stopped half-way (a reconciliation repairs it): %w", userID, err)
	}
	committed, err := s.store.SettleMove(wctx, userID, p.Op, to)
	if err != nil {
		return false, fmt.Errorf("commit move of %s: %w", userID, err)
	}
	if !committed {
		return false, errLost
	}
	return true, nil
}

// applyMove takes one from every cell of cur and adds one to every cell of
// target, skipping the subsets whose values do not change, in one store
// call (at most 32 subsets × 2 cells).
func (s *Service) applyMove(ctx context.Context, cur, target *Tuple) error {
	var deltas []CellDelta
	write := func(mask int, values []string, n int64) error {
		d, err := s.cells.delta(mask, values, n)
		if err != nil {
			return err
		}
		deltas = append(deltas, d)
		return nil
	}
	for mask := range numMasks {
		var a, b []string
		if cur != nil {
			a = cur.project(mask)
		}
		if target != nil {
			b = target.project(mask)
		}
		if cur != nil && target != nil && slices.Equal(a, b) {
			continue
		}
		if cur != nil {
			if err := write(mask, a, -1); err != nil {
				return err
			}
		}
		if target != nil {
			if err := write(mask, b, 1); err != nil {
				return err
			}
		}
	}
	if s.applyCells != nil {
		return s.applyCells(ctx, deltas)
	}
	if err := s.store.AddToCells(ctx, deltas); err != nil {
		return fmt.Errorf("update cells: %w", err)
	}
	return nil
}

// recoverMember takes over an abandoned move: the user's record is set to
// their current tuple and a reconciliation is requested, which recounts the
// cells the half-done move may have left wrong. The request is recorded
// before the record changes, so a crash in between loses nothing.
func (s *Service) recoverMember(ctx context.Context, m *Member) error {
	if err := s.markDirty(ctx); err != nil {
		return err
	}
	subj, err := s.opts.Source.Subject(ctx, m.UserID)
	if err != nil {
		return err
	}
	var to []byte
	if subj != nil {
		t := TupleOf(subj)
		if to, err = s.sealTuple(m.UserID, &t); err != nil {
			return err
		}
	}
	if _, err := s.store.SettleMove(ctx, m.UserID, m.Pending.Op, to); err != nil {
		return fmt.Errorf("recover member %s: %w", m.UserID, err)
	}
	s.log.WarnContext(ctx, "recovered an abandoned demographics update; a reconciliation will repair the cells", "op", m.Pending.Op)
	return nil
}

// markDirty records that the cells may be wrong until the next
// reconciliation, which ReconcileIfDirty then runs soon.
func (s *Service) markDirty(ctx context.Context) error {
	if err := s.store.MarkDirty(context.WithoutCancel(ctx), s.now().Truncate(time.Millisecond)); err != nil {
		return fmt.Errorf("request reconciliation: %w", err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
