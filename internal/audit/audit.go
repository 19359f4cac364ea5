// Package audit keeps a tamper-evident, append-only log of sensitive
// actions: admin reads of personal data, exports, erasures, key rotations
// and configuration changes. Entries form one hash chain; the store appends
// each entry after the current last one atomically (Store.Append), so two
// writers can never both take the same place.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Entry is one logged action.
type Entry struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	// Subject is whom the action concerned (a user id), if anyone.
	Subject string `json:"subject,omitempty"`
	Detail  string `json:"detail,omitempty"`
	Prev    string `json:"prev"`
	Hash    string `json:"hash"`
	// Logged says the entry is in the public consent log; false when it is
	// written (the mark the log appender looks for), not part of the hash.
	Logged bool `json:"-"`
}

// Log appends to and reads the audit log.
type Log struct {
	store Store
	log   *slog.Logger
	now   func() time.Time
	// turn serializes this process's appends: they all want the same next
	// place in the chain, so running them at once only makes them lose
	// races to each other (and retry) in the store. What is left is
	// contention between replicas, which the store retries until the
	// context ends. A channel rather than a mutex, so a waiting append
	// gives up when its request does.
	turn chan struct{}
	// pub is the public consent log the entries go to, if any (UseLog).
	pub LogReader
	// appended, if set, is called after each committed append (to wake
	// the log appender).
	appended func()
}

// New opens the log on its store.
func New(st Store, logger *slog.Logger) *Log {
	return &Log{store: st, log: logger, now: time.Now, turn: make(chan struct{}, 1)}
}

func (e *Entry) computeHash() string {
	b, _ := json.Marshal([]any{e.Seq, e.At.UTC().Format(time.RFC3339Nano), e.Actor, e.Action, e.Subject, e.Detail, e.Prev})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Append adds an entry at the end of the chain.
// Contention never makes it fail: appends of this process wait their turn
// and the store retries races with other replicas; only the end of ctx or
// a store error does.
func (l *Log) Append(ctx context.Context, actor, action, subject, detail string) error {
	select {
	case l.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("append audit entry: waiting for the other appends: %w", context.Cause(ctx))
	}
	defer func() { <-l.turn }()
	_, err := l.store.Append(ctx, func(head *Entry) Entry {
		e := Entry{Seq: 1, At: l.now().UTC().Truncate(time.Millisecond), Actor: actor, Action: action, Subject: subject, Detail: detail}
		if head != nil {
			e.Seq, e.Prev = head.Seq+1, head.Hash
		}
		e.Hash = e.computeHash()
		return e
	})
	if err != nil {
		return fmt.Errorf("append audit entry: %w", err)
	}
	if l.appended != nil {
		l.appended()
	}
	return nil
}

// OnAppend sets a function called after every committed append; call it
// during start-up.
func (l *Log) OnAppend(fn func()) { l.appended = fn }

// Page returns up to first entries, newest first, older than before
// (0 = from the newest).
func (l *Log) Page(ctx context.Context, first int, before int64) ([]Entry, error) {
	out, err := l.store.Page(ctx, before, first)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}

// errBroken stops a verification pass at the first broken entry.
var errBroken = errors.New("audit chain broken")

// Verify recomputes the whole chain and returns the first broken sequence
// number, or 0 when the chain is intact. With a public log (UseLog) every
// entry must also match its leaf there, and the log may hold no entry the
// chain lacks: the chain alone proves order, not that its end is still
// there.
func (l *Log) Verify(ctx context.Context) (int64, error) {
	var leaves map[int64][]byte
	if l.pub != nil {
		var ok bool
		var err error
		if leaves, ok, err = l.loggedLeaves(ctx); err != nil {
			return 0, err
		} else if !ok {
			return 1, nil
		}
	}
	prev, want := "", int64(1)
	err := l.store.Each(ctx, func(e Entry) error {
		if e.Seq != want || e.Prev != prev || e.Hash != e.computeHash() {
			return errBroken
		}
		if leaves != nil && !matchesLog(&e, leaves) {
			return errBroken
		}
		prev, want = e.Hash, want+1
		return nil
	})
	if errors.Is(err, errBroken) {
		return want, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read audit log: %w", err)
	}
	// An entry the log holds beyond the chain's end was deleted.
	for seq := range leaves {
		if seq >= want {
			return want, nil
		}
	}
	return 0, nil
}
