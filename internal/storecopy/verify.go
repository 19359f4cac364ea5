package storecopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/ordered"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store/snapshot"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Keyring holds the master key (and previous ones) the stores are
	// sealed under. With it, receipt signatures are checked against the
	// copy's signing keys, pseudonyms come from the copy's secrets, and
	// the cells are recounted from the copy's members. Without it, only
	// what needs no key is checked: counts, hash chains (with the subject
	// a receipt names), cells against the source.
	Keyring *envelope.Keyring
	// File is the configuration file's content (purposes); the defaults
	// when nil.
	File *config.File
	// Now is the clock; sessions are compared among those live a minute
	// after it.
	Now func() time.Time
	// Progress, if set, learns how many of the copy's records were checked
	// (of ToCheck, which it is told first).
	Progress func(done, total int64)
	Logger   *slog.Logger
}

// ToCheck is how many of the copy's records Verify reads one by one:
// accounts, events, archives and cells.
func ToCheck(counts map[snapshot.Kind][2]int64) int64 {
	var n int64
	for _, k := range []snapshot.Kind{snapshot.Accounts, snapshot.Events, snapshot.Archives, snapshot.Cells} {
		n += counts[k][1]
	}
	return n
}

// VerifyReport says what Verify checked and what it found.
type VerifyReport struct {
	// Counts are the records of each kind in the source and in the copy
	// (sessions: the live ones at SessionCutoff).
	Counts        map[snapshot.Kind][2]int64
	SessionCutoff time.Time
	// Users is how many accounts the copy holds; Ledgers how many consent
	// ledgers (of accounts and archived ones) were recomputed, Events how
	// many events they hold.
	Users, Ledgers int
	Events         int64
	// Signatures says receipt signatures were checked (the master key was
	// at hand); otherwise hash chains only.
	Signatures bool
	// Cells is how many cells were compared with the source's.
	Cells int
	// Recount is the recount of the copy's cells from its members; nil
	// without the master key.
	Recount *demographics.RecountReport
	// Problems are the differences found; the copy is good when there
	// are none.
	Problems []string
	// Notes are findings that are not differences between the stores
	// (something the source had already).
	Notes    []string
	Duration time.Duration
}

// Err reports the problems as one error, or nil.
func (r *VerifyReport) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: the copy differs from the source (%d problems):\n  %s", ErrMismatch, len(r.Problems), joinLines(r.Problems))
}

// ErrMismatch marks the error of a copy that differs from its source.
var ErrMismatch = errors.New("verification failed")

// maxExamples bounds how many instances of one kind of problem are listed.
const maxExamples = 10

// problems collects instances of one kind of problem, keeping the first few.
type problems struct {
	what     string
	examples []string
	n        int
}

func (p *problems) add(format string, args ...any) {
	p.n++
	if len(p.examples) < maxExamples {
		p.examples = append(p.examples, fmt.Sprintf(format, args...))
	}
}

func (p *problems) into(out *[]string) {
	if p.n == 0 {
		return
	}
	*out = append(*out, p.examples...)
	if p.n > len(p.examples) {
		*out = append(*out, fmt.Sprintf("... and %d more %s", p.n-len(p.examples), p.what))
	}
}

// Verify checks that dst is a faithful, working copy of src:
//   - every kind holds as many records on both sides (sessions: those
//     still live a minute from now, which no TTL index can have removed);
//   - every consent ledger of the copy (accounts' and archived ones)
//     recomputes: hash chain, links, head and current state, and with the
//     master key each receipt's signature against the copy's keys and its
//     claims against its event; a ledger that is broken in the source too
//     is noted, not counted against the copy;
//   - the copy's demographic cells equal the source's, and with the master
//     key a recount of the copy's member records (drift the source had
//     already is noted).
//
// It writes nothing to either store: the services it opens on them get
// stores that refuse writes.
func Verify(ctx context.Context, src, dst Store, opts VerifyOptions) (*VerifyReport, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.File == nil {
		f, err := config.LoadFile("")
		if err != nil {
			return nil, err
		}
		opts.File = f
	}
	start := opts.Now()
	rep := &VerifyReport{Counts: map[snapshot.Kind][2]int64{}, SessionCutoff: start.Add(time.Minute).UTC().Truncate(time.Millisecond)}
	if err := verifyCounts(ctx, src, dst, rep); err != nil {
		return nil, err
	}
	v := &verifier{src: src, dst: dst, opts: opts, rep: rep, total: ToCheck(rep.Counts)}
	v.open(ctx)
	if err := v.ledgers(ctx); err != nil {
		return nil, err
	}
	if err := v.cells(ctx); err != nil {
		return nil, err
	}
	rep.Duration = opts.Now().Sub(start)
	return rep, nil
}

func verifyCounts(ctx context.Context, src, dst Store, rep *VerifyReport) error {
	for _, kind := range snapshot.Kinds {
		var n [2]int64
		for i, s := range []Store{src, dst} {
			var err error
			if kind == snapshot.Sessions {
				n[i], err = s.Accounts().CountSessions(ctx, rep.SessionCutoff)
			} else {
				n[i], err = s.Count(ctx, kind)
			}
			if err != nil {
				return fmt.Errorf("count %s in the %s: %w", kind, [2]string{"source", "copy"}[i], err)
			}
		}
		rep.Counts[kind] = n
		if n[0] != n[1] {
			what := string(kind)
			if kind == snapshot.Sessions {
				what = "sessions live at " + rep.SessionCutoff.Format(time.RFC3339)
			}
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: the source holds %d, the copy %d", what, n[0], n[1]))
		}
	}
	return nil
}

// verifier holds what the checks share: services opened on the copy (and,
// for second opinions, on the source) when the master key is at hand.
type verifier struct {
	src, dst Store
	opts     VerifyOptions
	rep      *VerifyReport

	dstConsent, srcConsent *consent.Service
	// done of total records checked, for Progress.
	done, total int64
}

// checked counts n more records checked.
func (v *verifier) checked(n int64) {
	v.done += n
	if v.opts.Progress != nil {
		v.opts.Progress(v.done, v.total)
	}
}

// quiet keeps the services' start-up chatter (a configured policy that
// differs from the stored one...) out of the command's output.
func (v *verifier) quiet() *slog.Logger {
	return slog.New(levelAtLeast{h: v.opts.Logger.Handler(), min: slog.LevelError})
}

// open starts the consent services on both stores, when there is a key
// and a ledger to check. A key that does not open the copy is a problem:
// servers given it would not open the copy either.
func (v *verifier) open(ctx context.Context) {
	if v.opts.Keyring == nil || v.rep.Counts[snapshot.Events][1]+v.rep.Counts[snapshot.Archives][1] == 0 {
		return
	}
	var err error
	if v.dstConsent, err = v.consentOn(ctx, v.dst); err != nil {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("receipts cannot be checked on the copy: %v", err))
		return
	}
	v.rep.Signatures = true
	if v.srcConsent, err = v.consentOn(ctx, v.src); err != nil {
		v.opts.Logger.WarnContext(ctx, "the source's consent service does not open; ledgers broken on the copy get no second opinion", "err", err)
	}
}

// consentOn opens the consent service on s, read-only, with s's signing
// keys and secrets, and checks that the key opens the subject secret.
func (v *verifier) consentOn(ctx context.Context, s Store) (*consent.Service, error) {
	secrets := envelope.OpenSecrets(readOnlySecrets{s.Secrets()}, v.opts.Keyring)
	keys, err := signing.Open(ctx, readOnlySigning{s.Signing()}, v.opts.Keyring, v.quiet())
	if err != nil {
		return nil, fmt.Errorf("open the signing keys: %w", err)
	}
	svc, err := consent.New(ctx, consent.Options{Store: readOnlyConsent{s.Consent()}, Purposes: v.opts.File.Catalog,
		Controller: v.opts.File.Controller, InitialPolicy: v.opts.File.Policy, Signer: keys, Secrets: secrets, Logger: v.quiet()})
	if err != nil {
		return nil, err
	}
	if _, err := secrets.Get(ctx, consent.SubjectSecret); err != nil {
		return nil, err
	}
	return svc, nil
}

// receipts is a receipt checker of svc for VerifyLedger.
func receipts(svc *consent.Service) consent.ReceiptVerifier {
	return func(ctx context.Context, receipt string) (*consent.Claims, error) {
		c := svc.VerifyReceipt(ctx, receipt)
		if !c.Valid {
			return nil, errors.New(c.Reason)
		}
		return c.Claims, nil
	}
}

// ledgerOf is one user's events, as a dump of the copy streams them.
type ledgerOf struct {
	userID string
	events []consent.Event
}

// ledgers recomputes every ledger of the copy: accounts' (a pass over the
// accounts joined with one over the events, both in user id order) and
// archived ones.
func (v *verifier) ledgers(ctx context.Context) error {
	ledgers := ordered.Follow(ctx, func(l ledgerOf) string { return l.userID }, func(ctx context.Context, yield func(ledgerOf) error) error {
		var cur ledgerOf
		err := v.dst.Dump(ctx, snapshot.Events, func(r snapshot.Record) error {
			if r.Event.UserID != cur.userID && cur.userID != "" {
				if err := yield(cur); err != nil {
					return err
				}
				cur = ledgerOf{}
			}
			cur.userID = r.Event.UserID
			cur.events = append(cur.events, r.Event.Event)
			return nil
		})
		if err == nil && cur.userID != "" {
			err = yield(cur)
		}
		return err
	})
	broken := &problems{what: "broken ledgers"}
	orphans := &problems{what: "ledgers without an account"}
	orphan := func(l ledgerOf) { orphans.add("consent events of %s, which has no account on the copy", l.userID) }
	var notes []string
	err := v.dst.Dump(ctx, snapshot.Accounts, func(r snapshot.Record) error {
		v.rep.Users++
		a := r.Account
		l, _ := ledgers.SeekSkipping(a.Account.ID, orphan)
		v.checked(1 + int64(len(l.events)))
		if a.Consent.Head == 0 && len(l.events) == 0 {
			return nil // never chose anything: no ledger
		}
		v.rep.Ledgers++
		v.rep.Events += int64(len(l.events))
		st := a.Consent
		if err := v.check(ctx, a.Account.ID, "", &st, l.events); err != nil {
			if note := v.secondOpinion(ctx, a.Account.ID, err); note != "" {
				notes = append(notes, note)
				return nil
			}
			broken.add("consent ledger of account %s: %v", a.Account.ID, err)
		}
		return nil
	})
	if rerr := ledgers.Rest(orphan); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("read the copy's ledgers: %w", err)
	}
	err = v.dst.Dump(ctx, snapshot.Archives, func(r snapshot.Record) error {
		a := r.Archive
		v.checked(1)
		v.rep.Ledgers++
		v.rep.Events += int64(len(a.Events))
		st := a.State
		if err := v.check(ctx, "", a.Subject, &st, a.Events); err != nil {
			broken.add("archived consent ledger of subject %s: %v", a.Subject, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the copy's archived ledgers: %w", err)
	}
	broken.into(&v.rep.Problems)
	orphans.into(&v.rep.Problems)
	if len(notes) > maxExamples {
		notes = append(notes[:maxExamples], fmt.Sprintf("... and %d more ledgers broken in the source already", len(notes)-maxExamples))
	}
	v.rep.Notes = append(v.rep.Notes, notes...)
	return nil
}

// check recomputes one ledger on the copy. The subject is the archive's,
// or the account's pseudonym; without the master key it is the one the
// first receipt names (then the chain is checked, not that it is this
// account's).
func (v *verifier) check(ctx context.Context, userID, subject string, st *consent.Stored, events []consent.Event) error {
	var verify consent.ReceiptVerifier
	if v.dstConsent != nil {
		verify = receipts(v.dstConsent)
		if subject == "" {
			s, err := v.dstConsent.Pseudonym(ctx, userID)
			if err != nil {
				return err
			}
			subject = s
		}
	}
	if subject == "" && len(events) > 0 {
		c, err := consent.ParseClaims(events[0].Receipt)
		if err != nil {
			return fmt.Errorf("event 1: %w", err)
		}
		subject = c.Subject
	}
	return consent.VerifyLedger(ctx, subject, st, events, verify)
}

// secondOpinion recomputes a ledger broken on the copy from the source: if
// it is broken there the same way, the copy is faithful and a note says
// so ("" otherwise).
func (v *verifier) secondOpinion(ctx context.Context, userID string, copyErr error) string {
	st, err := v.src.Consent().State(ctx, userID)
	if err != nil || st == nil {
		return ""
	}
	events, err := v.src.Consent().Events(ctx, userID, 0, 0)
	if err != nil {
		return ""
	}
	var verify consent.ReceiptVerifier
	subject := ""
	if v.dstConsent != nil {
		if v.srcConsent == nil {
			return ""
		}
		verify = receipts(v.srcConsent)
		if subject, err = v.srcConsent.Pseudonym(ctx, userID); err != nil {
			return ""
		}
	} else if len(events) > 0 {
		c, err := consent.ParseClaims(events[0].Receipt)
		if err != nil {
			return ""
		}
		subject = c.Subject
	}
	srcErr := consent.VerifyLedger(ctx, subject, st, events, verify)
	if srcErr == nil || srcErr.Error() != copyErr.Error() {
		return ""
	}
	return fmt.Sprintf("the consent ledger of account %s is broken in the source already, and copied as it is: %v", userID, srcErr)
}

type cellKey struct {
	mask int
	id   string
}

// cells compares the copy's cells with the source's, then (with the master
// key) with a recount of the copy's members.
func (v *verifier) cells(ctx context.Context) error {
	want := map[cellKey]demographics.CellRecord{}
	if err := v.src.Dump(ctx, snapshot.Cells, func(r snapshot.Record) error {
		want[cellKey{r.Cell.Mask, r.Cell.Cell.ID}] = r.Cell.Cell
		return nil
	}); err != nil {
		return fmt.Errorf("read the source's cells: %w", err)
	}
	differ := &problems{what: "cells that differ from the source"}
	err := v.dst.Dump(ctx, snapshot.Cells, func(r snapshot.Record) error {
		k := cellKey{r.Cell.Mask, r.Cell.Cell.ID}
		v.checked(1)
		v.rep.Cells++
		w, ok := want[k]
		got := r.Cell.Cell
		switch {
		case !ok:
			differ.add("cell %s of subset %d is not in the source", k.id, k.mask)
		case w.N != got.N || w.Ver != got.Ver:
			differ.add("cell %s of subset %d: the source counts %d (version %d), the copy %d (version %d)", k.id, k.mask, w.N, w.Ver, got.N, got.Ver)
		case !bytes.Equal(w.Values, got.Values):
			differ.add("cell %s of subset %d holds other values than in the source", k.id, k.mask)
		}
		delete(want, k)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the copy's cells: %w", err)
	}
	for k, w := range want {
		differ.add("cell %s of subset %d (count %d) is missing from the copy", k.id, k.mask, w.N)
	}
	differ.into(&v.rep.Problems)
	if v.opts.Keyring == nil {
		return nil
	}
	if v.rep.Counts[snapshot.Cells][1]+v.rep.Counts[snapshot.Members][1] == 0 {
		return nil // no aggregates yet
	}
	rec, err := v.recount(ctx, v.dst)
	if err != nil {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("the copy's cells cannot be recounted: %v", err))
		return nil
	}
	v.rep.Recount = rec
	if len(rec.Wrong) == 0 {
		return nil
	}
	// Drift the source had already (a sync interrupted there, which the
	// server's reconciliation repairs) is copied faithfully.
	wrong := rec.Wrong
	if srcRec, err := v.recount(ctx, v.src); err == nil && sameMismatches(srcRec.Wrong, rec.Wrong) {
		v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("%d demographic cells differ from a recount of the members in the source already, "+
			"and are copied as they are; the server's reconciliation repairs them (or an admin's reconcileDemographics)", len(wrong)))
		return nil
	}
	p := &problems{what: "cells that differ from a recount of the copy's members"}
	for _, c := range wrong {
		p.add("cell %s of subset %s counts %d, the copy's members %d", c.ID, c.Subset, c.Stored, c.Recounted)
	}
	p.into(&v.rep.Problems)
	return nil
}

// recount runs a dry recount on s.
func (v *verifier) recount(ctx context.Context, s Store) (*demographics.RecountReport, error) {
	secrets := envelope.OpenSecrets(readOnlySecrets{s.Secrets()}, v.opts.Keyring)
	svc, err := demographics.New(ctx, demographics.Options{Store: s.Demographics(), Keyring: v.opts.Keyring, Secrets: secrets,
		Source: recountOnly{}, Logger: v.quiet()})
	if err != nil {
		return nil, err
	}
	return svc.Recount(ctx)
}

func sameMismatches(a, b []demographics.CellMismatch) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
