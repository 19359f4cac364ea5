// Package storecopy is the copy-store command: it copies everything the
// configured store holds into another, empty store, then verifies the copy.
//
//	consentgraph copy-store --data-dir data --to 'mongodb://db1,db2,db3/?replicaSet=rs0'
//	consentgraph --mongodb-uri ... copy-store --to ./local-data
//	consentgraph copy-store --data-dir old-data --to new-data   (the previous, FerretDB-based version's data)
//
// Records are copied verbatim through each adapter's snapshot.Source and
// snapshot.Sink: sealed personal data stays sealed under the same master
// key, ids, hashes and signed receipts are unchanged, so the copy verifies
// exactly as the original did. Verify then checks the copy against the
// source: counts per kind, every consent ledger (hash chains, and receipt
// signatures when the master key is at hand) and the demographic cells.
package storecopy

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/snapshot"
)

// Store is a store copy-store reads or writes: every port, and the
// whole-store stream. Both adapters' *DB are one.
type Store interface {
	store.Backend
	snapshot.Source
	snapshot.Sink
}

// DefaultBatch is how many records one Load writes: large enough that a
// transaction (SQLite) or an InsertMany (MongoDB) carries many rows, small
// enough that a batch of ledger events (a signed receipt each, about a
// kilobyte) stays a few megabytes.
const DefaultBatch = 2000

// Options tune Copy.
type Options struct {
	// Batch is the number of records per Load; DefaultBatch when 0.
	Batch int
	// Progress, if set, learns how many records are copied so far.
	Progress func(done int64)
	// Now is the clock (sessions expired by the start are not copied).
	Now    func() time.Time
	Logger *slog.Logger
}

// CopyReport says what Copy copied.
type CopyReport struct {
	// Records is how many records of each kind were copied.
	Records map[snapshot.Kind]int64
	// ExpiredSessions were left behind: a session expired by the start of
	// the copy is dead (the server refuses it and sweeps it; MongoDB's TTL
	// index would remove it from the copy at any moment).
	ExpiredSessions int64
	Duration        time.Duration
}

// Total is the number of records copied.
func (r *CopyReport) Total() int64 {
	var n int64
	for _, c := range r.Records {
		n += c
	}
	return n
}

// Holdings counts the records of every kind s holds and returns the kinds
// with any.
func Holdings(ctx context.Context, s snapshot.Source) (map[snapshot.Kind]int64, error) {
	out := map[snapshot.Kind]int64{}
	for _, kind := range snapshot.Kinds {
		n, err := s.Count(ctx, kind)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out[kind] = n
		}
	}
	return out, nil
}

// Copy streams every kind from src into dst, which must hold none of it,
// in snapshot.Kinds order (keys before what they open, accounts before
// what refers to them). Reading the next batch overlaps writing the last.
func Copy(ctx context.Context, src snapshot.Source, dst snapshot.Sink, opts Options) (*CopyReport, error) {
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	start := opts.Now()
	rep := &CopyReport{Records: map[snapshot.Kind]int64{}}
	var done int64
	for _, kind := range snapshot.Kinds {
		kindStart := time.Now()
		batches := make(chan []snapshot.Record, 2)
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			defer close(batches)
			batch := make([]snapshot.Record, 0, opts.Batch)
			send := func() error {
				select {
				case batches <- batch:
					batch = make([]snapshot.Record, 0, opts.Batch)
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			err := src.Dump(gctx, kind, func(r snapshot.Record) error {
				if kind == snapshot.Sessions && !r.Session.ExpiresAt.After(start) {
					rep.ExpiredSessions++
					return nil
				}
				if batch = append(batch, r); len(batch) == opts.Batch {
					return send()
				}
				return nil
			})
			if err == nil && len(batch) > 0 {
				err = send()
			}
			return err
		})
		g.Go(func() error {
			for b := range batches {
				if err := dst.Load(gctx, kind, b); err != nil {
					return err
				}
				rep.Records[kind] += int64(len(b))
				done += int64(len(b))
				if opts.Progress != nil {
					opts.Progress(done)
				}
			}
			return nil
		})
		if err := g.Wait(); err != nil {
			return rep, fmt.Errorf("copy %s: %w", kind, err)
		}
		opts.Logger.DebugContext(ctx, "copied", "kind", kind, "records", rep.Records[kind], "took", time.Since(kindStart).Round(time.Millisecond))
	}
	rep.Duration = opts.Now().Sub(start)
	return rep, nil
}
