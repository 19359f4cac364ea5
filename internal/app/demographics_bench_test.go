package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/seed"
)

// BenchmarkDemographicsScaling measures a partner's
// `demographics(groupBy: [AGE_BAND, COUNTRY])` end to end (HTTP, key check,
// budget charge, cell read, noise) at 1,000, 10,000 and 100,000 seeded users,
// beside a plain MongoDB `$group` computing the same counts on the same store,
// and prints a table with the ratio at 100,000. The query reads the cells of
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
// the benchmark only, in its own collection bench_plain_demographics) and
// groups that: the cheapest the naive approach can possibly be, since it
// skips decryption entirely. Before timing, it checks that both give the
// same true counts.
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
	plain := s.DB().Collection("bench_plain_demographics")
	dims := []demographics.Dimension{demographics.AgeBand, demographics.Country}
	body := []byte(`{"query":"{ demographics(groupBy: [AGE_BAND, COUNTRY], epsilon: 0.01) { cells { ageBand country count } suppressed } }"}`)
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
		var docs []any
		res, err := seed.Run(ctx, s.App, seed.Options{Users: size - seeded, Grants: 0, RandSeed: uint64(size), OnUser: func(u seed.User) {
			if !u.Counts {
				return
			}
			d := bson.D{}
			if u.Profile.BirthYear != nil {
				d = append(d, bson.E{Key: "by", Value: *u.Profile.BirthYear})
			}
			if u.Profile.Country != nil {
				d = append(d, bson.E{Key: "c", Value: *u.Profile.Country})
			}
			docs = append(docs, d)
		}})
		if err != nil {
			b.Fatal(err)
		}
		for len(docs) > 0 {
			n := min(len(docs), 5000)
			if _, err := plain.InsertMany(ctx, docs[:n]); err != nil {
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
		grouped, err := groupPlain(ctx, plain)
		if err != nil {
			b.Fatal(err)
		}
		if !maps.Equal(cells, grouped) {
			b.Fatalf("at %d users the cells and $group disagree:\n cells  %v\n $group %v", size, cells, grouped)
		}
		r.groups = len(cells)
		stored, err := s.DB().Collection(demographics.CellsCollectionPrefix+"AC").CountDocuments(ctx, bson.D{})
		if err != nil {
			b.Fatal(err)
		}
		r.cells = int(stored)

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
		b.Run("users="+strconv.Itoa(size)+"/mongo-group", func(b *testing.B) {
			for b.Loop() {
				if _, err := groupPlain(ctx, plain); err != nil {
					b.Fatal(err)
				}
			}
			r.mgroup = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
		rows = append(rows, r)
	}
	fmt.Fprintf(os.Stdout, "\ndemographics(groupBy: [AGE_BAND, COUNTRY]) vs $group on the same store (%s)\n", storeKind(s))
	fmt.Fprintf(os.Stdout, "%9s %10s %11s %7s %16s %16s %8s\n", "users", "seeded in", "cells read", "groups", "consentgraph", "$group", "ratio")
	for _, r := range rows {
		fmt.Fprintf(os.Stdout, "%9d %10s %11d %7d %13.2f ms %13.2f ms %7.1fx\n", r.users, r.seed.Round(time.Second/10), r.cells, r.groups,
			r.consentgraph/1e6, r.mgroup/1e6, r.mgroup/r.consentgraph)
	}
	last := rows[len(rows)-1]
	fmt.Fprintf(os.Stdout, "at %d users $group takes %.1fx as long as the demographics query; the query grew %.2fx from %d users\n",
		last.users, last.mgroup/last.consentgraph, last.consentgraph/rows[0].consentgraph, rows[0].users)
}

// groupPlain is the baseline: one $group over the plaintext copy, with the
// birth years folded into age bands afterwards (a few hundred groups).
func groupPlain(ctx context.Context, plain *mongo.Collection) (map[string]int64, error) {
	cur, err := plain.Aggregate(ctx, mongo.Pipeline{{{Key: "$group", Value: bson.D{
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
	now := time.Now()
	out := map[string]int64{}
	for _, r := range res {
		band, country := demographics.Unknown, demographics.Unknown
		if r.ID.BY != nil {
			band = demographics.AgeBandOf(strconv.Itoa(*r.ID.BY), now)
		}
		if r.ID.C != nil {
			country = *r.ID.C
		}
		out[band+"|"+country] += r.N
	}
	return out, nil
}

func storeKind(s *apptest.Server) string {
	if s.App.Store.Serialized {
		return "embedded FerretDB/SQLite, one connection"
	}
	return "MongoDB"
}
