package app_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/seed"
	"github.com/consentgraph/consentgraph/internal/store/mongostore"
)

// BenchmarkDemographicsScaling measures a partner's
// `demographics(groupBy: [AGE_BAND, COUNTRY])` end to end (HTTP, key check,
// budget charge, cell read, noise) at 1,000, 10,000 and 100,000 seeded users,
// beside a plain GROUP BY computing the same counts on the same engine (a
// SQL GROUP BY in SQLite on the embedded store, a `$group` on MongoDB), and
// prints a table with the ratio at 100,000. The query reads the cells of
// one dimension subset (birth year × country here), so its cost follows the
// number of value combinations that occur, which stops growing once the
// population covers them, not the number of users. Run it alone:
//
//	go test -run '^$' -bench DemographicsScaling -timeout 30m ./internal/app/
//
// The baseline needs something groupable: the users' dimensions are sealed
// under per-user keys, so no aggregation over the users collection can see
// them. The benchmark therefore keeps a plaintext copy of exactly the values
// the cells count (birth year and country of every counting user, written by
// the benchmark only: in its own collection bench_plain_demographics on
// MongoDB; in a SQLite file of its own beside the embedded store's, so that
// the store's schema stays the adapter's) and groups that: the cheapest the
// naive approach can possibly be, since it skips decryption entirely.
// Before timing, it checks that both give the same true counts.
func BenchmarkDemographicsScaling(b *testing.B) {
	if testing.Short() {
		b.Skip("seeds 100,000 users")
	}
	ctx := context.Background()
	s := apptest.Start(b)
	_, key, err := s.App.Partners.Create(ctx, "benchmark", 1000, 1)
	if err != nil {
		b.Fatal(err)
	}
	plain := openPlain(b, s)
	dims := []demographics.Dimension{demographics.AgeBand, demographics.Country}
	body := []byte(`{"query":"{ demographics(groupBy: [AGE_BAND, COUNTRY], epsilon: 0.01) { cells { ageBand country count } threshold } }"}`)
	client := &http.Client{}
	type row struct {
		users                int
		seed                 time.Duration
		cells, groups        int
		consentgraph, mgroup float64 // ns per query
	}
	var rows []row
	seeded := 0
	for _, size := range []int{1000, 10000, 100000} {
		var docs []plainRow
		res, err := seed.Run(ctx, s.App, seed.Options{Users: size - seeded, Grants: 0, RandSeed: uint64(size), OnUser: func(u seed.User) {
			if !u.Counts {
				return
			}
			docs = append(docs, plainRow{birthYear: u.Profile.BirthYear, country: u.Profile.Country})
		}})
		if err != nil {
			b.Fatal(err)
		}
		for len(docs) > 0 {
			n := min(len(docs), 5000)
			if err := plain.insert(ctx, docs[:n]); err != nil {
				b.Fatal(err)
			}
			docs = docs[n:]
		}
		seeded = size
		r := row{users: size, seed: res.Duration}

		groups, err := s.App.Demographics.Groups(ctx, dims, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		cells := map[string]int64{}
		for _, g := range groups {
			cells[g.Values[0]+"|"+g.Values[1]] = g.Count
		}
		grouped, err := plain.group(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if !maps.Equal(cells, grouped) {
			b.Fatalf("at %d users the cells and the plain group-by disagree:\n cells    %v\n group-by %v", size, cells, grouped)
		}
		r.groups = len(cells)
		const maskAC = 3 // age band × country
		stored, err := s.Store().Demographics().CellCounts(ctx, maskAC)
		if err != nil {
			b.Fatal(err)
		}
		r.cells = len(stored)

		b.Run("users="+strconv.Itoa(size)+"/consentgraph", func(b *testing.B) {
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+key)
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				out, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || bytes.Contains(out, []byte(`"errors"`)) {
					b.Fatalf("status %d: %s", res.StatusCode, out)
				}
			}
			r.consentgraph = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
		b.Run("users="+strconv.Itoa(size)+"/plain-group", func(b *testing.B) {
			for b.Loop() {
				if _, err := plain.group(ctx); err != nil {
					b.Fatal(err)
				}
			}
			r.mgroup = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
		rows = append(rows, r)
	}
	fmt.Fprintf(os.Stdout, "\ndemographics(groupBy: [AGE_BAND, COUNTRY]) vs %s on the same engine (%s)\n", plain.name(), storeKind(s))
	fmt.Fprintf(os.Stdout, "%9s %10s %11s %7s %16s %16s %8s\n", "users", "seeded in", "cells read", "groups", "consentgraph", plain.name(), "ratio")
	for _, r := range rows {
		fmt.Fprintf(os.Stdout, "%9d %10s %11d %7d %13.2f ms %13.2f ms %7.1fx\n", r.users, r.seed.Round(time.Second/10), r.cells, r.groups,
			r.consentgraph/1e6, r.mgroup/1e6, r.mgroup/r.consentgraph)
	}
	last := rows[len(rows)-1]
	fmt.Fprintf(os.Stdout, "at %d users %s takes %.1fx as long as the demographics query; the query grew %.2fx from %d users\n",
		last.users, plain.name(), last.mgroup/last.consentgraph, last.consentgraph/rows[0].consentgraph, rows[0].users)
}

// plainRow is one counting user's birth year and country, in clear.
type plainRow struct {
	birthYear *int
	country   *string
}

// plainCopy is the baseline's plaintext copy and its one grouping query.
type plainCopy interface {
	insert(ctx context.Context, rows []plainRow) error
	// group counts the rows per birth year and country, with the years
	// folded into age bands afterwards (a few hundred groups).
	group(ctx context.Context) (map[string]int64, error)
	name() string
}

// openPlain creates the plaintext copy next to the server's store.
func openPlain(b *testing.B, s *apptest.Server) plainCopy {
	b.Helper()
	ctx := context.Background()
	if db, ok := s.Store().(*mongostore.DB); ok {
		return mongoPlain{db.Database().Collection("bench_plain_demographics")}
	}
	db, err := sql.Open("sqlite", filepath.Join(s.Cfg.DataDir, "bench_plain.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1)
	for _, q := range []string{`PRAGMA journal_mode = WAL`, `PRAGMA synchronous = NORMAL`,
		`CREATE TABLE bench_plain_demographics (birth_year INTEGER, country TEXT)`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	return sqlPlain{db}
}

type mongoPlain struct{ c *mongo.Collection }

func (mongoPlain) name() string { return "$group" }

func (p mongoPlain) insert(ctx context.Context, rows []plainRow) error {
	docs := make([]any, 0, len(rows))
	for _, r := range rows {
		d := bson.D{}
		if r.birthYear != nil {
			d = append(d, bson.E{Key: "by", Value: *r.birthYear})
		}
		if r.country != nil {
			d = append(d, bson.E{Key: "c", Value: *r.country})
		}
		docs = append(docs, d)
	}
	_, err := p.c.InsertMany(ctx, docs)
	return err
}

func (p mongoPlain) group(ctx context.Context) (map[string]int64, error) {
	cur, err := p.c.Aggregate(ctx, mongo.Pipeline{{{Key: "$group", Value: bson.D{
		{Key: "_id", Value: bson.D{{Key: "by", Value: "$by"}, {Key: "c", Value: "$c"}}},
		{Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}},
	}}}})
	if err != nil {
		return nil, fmt.Errorf("$group: %w", err)
	}
	var res []struct {
		ID struct {
			BY *int    `bson:"by"`
			C  *string `bson:"c"`
		} `bson:"_id"`
		N int64 `bson:"n"`
	}
	if err := cur.All(ctx, &res); err != nil {
		return nil, fmt.Errorf("$group: %w", err)
	}
	out := map[string]int64{}
	for _, r := range res {
		addGroup(out, r.ID.BY, r.ID.C, r.N)
	}
	return out, nil
}

type sqlPlain struct{ db *sql.DB }

func (sqlPlain) name() string { return "GROUP BY" }

func (p sqlPlain) insert(ctx context.Context, rows []plainRow) error {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	st, err := tx.PrepareContext(ctx, `INSERT INTO bench_plain_demographics (birth_year, country) VALUES (?, ?)`)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if _, err := st.ExecContext(ctx, r.birthYear, r.country); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (p sqlPlain) group(ctx context.Context) (map[string]int64, error) {
	rows, err := p.db.QueryContext(ctx, `SELECT birth_year, country, count(*) FROM bench_plain_demographics GROUP BY birth_year, country`)
	if err != nil {
		return nil, fmt.Errorf("GROUP BY: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var by sql.NullInt64
		var c sql.NullString
		var n int64
		if err := rows.Scan(&by, &c, &n); err != nil {
			return nil, fmt.Errorf("GROUP BY: %w", err)
		}
		var year *int
		var country *string
		if by.Valid {
			y := int(by.Int64)
			year = &y
		}
		if c.Valid {
			country = &c.String
		}
		addGroup(out, year, country, n)
	}
	return out, rows.Err()
}

// addGroup folds one (birth year, country) group into its age band.
func addGroup(out map[string]int64, birthYear *int, country *string, n int64) {
	band, c := demographics.Unknown, demographics.Unknown
	if birthYear != nil {
		band = demographics.AgeBandOf(strconv.Itoa(*birthYear), time.Now())
	}
	if country != nil {
		c = *country
	}
	out[band+"|"+c] += n
}

func storeKind(s *apptest.Server) string {
	if s.App.Store.Kind() == "embedded" {
		return "embedded SQLite store"
	}
	return "MongoDB"
}
