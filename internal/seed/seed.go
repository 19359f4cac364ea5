// Package seed fills a store with plausible synthetic users, so that the
// demographics and the Privacy Center have something to show:
//
//	go run . seed --users 10000
//
// Seeded accounts are real accounts: personal data sealed under a data key
// of their own, consent state with a signed ledger, and demographic cells
// built by the same code as for sign-ups. To stay fast (100,000 users in
// well under a minute on the embedded store) it writes in bulk: all seeded
// accounts share one password (DemoPassword, hashed once), accounts and
// cells are inserted, not updated one by one, and the cells are rebuilt
// from scratch at the end. So run it while no server uses the store.
package seed

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/app"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/progress"
)

// DemoPassword is the password of every seeded account.
const DemoPassword = "consentgraph-demo"

// Options say what to seed.
type Options struct {
	Users int
	// Grants is how many seeded users also grant the newsletter through the
	// regular consent path (slow on the embedded store: each is a
	// read-modify-write of one account). Negative means a default.
	Grants int
	// RandSeed makes the data reproducible; 0 picks one at random.
	RandSeed uint64
	// Now is the clock; zero means time.Now.
	Now func() time.Time
	// OnUser, when set, sees every seeded user (the benchmark keeps a
	// plaintext copy of the dimensions to compare against); calls come
	// from several goroutines, one at a time, in no particular order.
	OnUser func(User)
	// Progress, when set, learns how many users are written so far.
	Progress func(done, total int)
	Logger   *slog.Logger
}

// User is one seeded account as generated.
type User struct {
	ID        string
	Username  string
	Profile   accounts.Profile
	CreatedAt time.Time
	// Counts is whether the user is in the aggregates (aggregate_statistics
	// in force: not withdrawn through Global Privacy Control at sign-up).
	Counts bool
}

// Result sums up a run.
type Result struct {
	Users    int
	Counting int
	Granted  int
	Duration time.Duration
}

const batchSize = 5000

// batch is one batch of generated users, with whether each sent Global
// Privacy Control at sign-up.
type batch struct {
	users []accounts.ImportUser
	gpc   []bool
}

// importBatch writes one batch: accounts with their consent, then their
// demographic records.
func importBatch(ctx context.Context, a *app.App, b *batch, passwordHash string) ([]User, error) {
	rules := a.Consent.Rules()
	users := make([]User, 0, len(b.users))
	entries := make([]demographics.Entry, 0, len(b.users))
	for i := range b.users {
		in := &b.users[i]
		initial, err := a.Consent.SignUp(ctx, in.ID, b.gpc[i])
		if err != nil {
			return nil, fmt.Errorf("seed consent: %w", err)
		}
		in.Consent = initial
		u := User{ID: in.ID, Username: in.Username, Profile: in.Profile, CreatedAt: in.CreatedAt,
			Counts: rules.InForce(&initial.State, demographics.Purpose)}
		users = append(users, u)
		if u.Counts {
			p := in.Profile
			entries = append(entries, demographics.Entry{UserID: u.ID, Subject: &demographics.Subject{
				BirthYear: p.BirthYear, Country: p.Country, Gender: p.Gender, Language: p.Language, SignedUp: u.CreatedAt,
			}})
		}
	}
	if _, err := a.Accounts.ImportUsers(ctx, b.users, passwordHash); err != nil {
		return nil, err
	}
	if err := a.Demographics.Import(ctx, entries); err != nil {
		return nil, err
	}
	return users, nil
}

// Run seeds opts.Users users into a's store.
func Run(ctx context.Context, a *app.App, opts Options) (*Result, error) {
	if opts.Users < 0 {
		return nil, errors.New("seed: the number of users cannot be negative")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RandSeed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.RandSeed = binary.LittleEndian.Uint64(b[:])
	}
	if opts.Grants < 0 {
		opts.Grants = min(opts.Users/10, 50)
	}
	start := time.Now()
	g := &generator{r: mrand.New(mrand.NewPCG(opts.RandSeed, opts.RandSeed^0x5eed)), now: opts.Now()}
	var run [2]byte
	_, _ = rand.Read(run[:])
	prefix := "demo-" + hex.EncodeToString(run[:]) + "-"
	hash, err := a.Accounts.HashPassword(ctx, DemoPassword)
	if err != nil {
		return nil, err
	}
	// The random draws happen here, in order, so a seed value always gives
	// the same data; sealing, keys and writes run on every core.
	batches := make(chan *batch, 2)
	var granted []string
	go func() {
		defer close(batches)
		for done := 0; done < opts.Users; {
			n := min(batchSize, opts.Users-done)
			b := &batch{users: make([]accounts.ImportUser, 0, n), gpc: make([]bool, 0, n)}
			for i := range n {
				in := g.user(prefix + strconv.Itoa(done+i))
				in.ID = accounts.NewID()
				b.users = append(b.users, in)
				b.gpc = append(b.gpc, g.r.IntN(100) < 8) // 8% send Global Privacy Control
				if len(granted) < opts.Grants && g.r.IntN(3) == 0 {
					granted = append(granted, in.ID)
				}
			}
			done += n
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	res := &Result{}
	var mu sync.Mutex // guards res and opts.OnUser
	work := errgroup.Group{}
	for range max(1, runtime.GOMAXPROCS(0)) {
		work.Go(func() error {
			for b := range batches {
				users, err := importBatch(ctx, a, b, hash)
				if err != nil {
					return err
				}
				mu.Lock()
				for _, u := range users {
					if u.Counts {
						res.Counting++
					}
					if opts.OnUser != nil {
						opts.OnUser(u)
					}
				}
				res.Users += len(users)
				done := res.Users
				mu.Unlock()
				if opts.Progress != nil {
					opts.Progress(done, opts.Users)
				}
				opts.Logger.DebugContext(ctx, "seeded users", "done", done, "of", opts.Users)
			}
			return nil
		})
	}
	if err := work.Wait(); err != nil {
		for range batches { // let the generator finish
		}
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rebuild := time.Now()
	if err := a.Demographics.Rebuild(ctx); err != nil {
		return nil, err
	}
	opts.Logger.InfoContext(ctx, "rebuilt the aggregates", "took", time.Since(rebuild).Round(time.Millisecond))
	for _, id := range granted {
		if _, err := a.Consent.Grant(ctx, id, "newsletter"); err != nil {
			return nil, fmt.Errorf("seed newsletter consent: %w", err)
		}
		res.Granted++
	}
	res.Duration = time.Since(start)
	return res, nil
}

// generator draws plausible demographics.
type generator struct {
	r   *mrand.Rand
	now time.Time
}

type weighted[T any] struct {
	v T
	w int
}

func pick[T any](r *mrand.Rand, choices []weighted[T]) T {
	total := 0
	for _, c := range choices {
		total += c.w
	}
	n := r.IntN(total)
	for _, c := range choices {
		if n < c.w {
			return c.v
		}
		n -= c.w
	}
	return choices[len(choices)-1].v
}

// Age ranges (inclusive) by share of users.
var ages = []weighted[[2]int]{
	{[2]int{13, 17}, 2}, {[2]int{18, 24}, 14}, {[2]int{25, 34}, 22}, {[2]int{35, 44}, 20},
	{[2]int{45, 54}, 17}, {[2]int{55, 64}, 14}, {[2]int{65, 90}, 11},
}

// Countries by share, each with its usual language.
var countries = []weighted[[2]string]{
	{[2]string{"US", "en"}, 20}, {[2]string{"DE", "de"}, 12}, {[2]string{"GB", "en"}, 10}, {[2]string{"FR", "fr"}, 8},
	{[2]string{"IN", "hi"}, 8}, {[2]string{"BR", "pt"}, 6}, {[2]string{"CA", "en"}, 5}, {[2]string{"ES", "es"}, 5},
	{[2]string{"IT", "it"}, 5}, {[2]string{"NL", "nl"}, 4}, {[2]string{"JP", "ja"}, 4}, {[2]string{"MX", "es"}, 3},
	{[2]string{"AU", "en"}, 3}, {[2]string{"SE", "sv"}, 2}, {[2]string{"PL", "pl"}, 2}, {[2]string{"NZ", "en"}, 1},
	{[2]string{"ZA", "en"}, 1}, {[2]string{"KR", "ko"}, 1},
}

var genders = []weighted[string]{{"FEMALE", 47}, {"MALE", 47}, {"NON_BINARY", 4}, {"OTHER", 2}}

func (g *generator) user(username string) accounts.ImportUser {
	r := g.r
	u := accounts.ImportUser{Username: username}
	// Signed up some time in the last three years.
	u.CreatedAt = g.now.Add(-time.Duration(r.Int64N(int64(3 * 365 * 24 * time.Hour))))
	if r.IntN(100) < 85 {
		span := pick(r, ages)
		y := g.now.Year() - (span[0] + r.IntN(span[1]-span[0]+1))
		u.Profile.BirthYear = &y
	}
	c := pick(r, countries)
	if r.IntN(100) < 80 {
		u.Profile.Country = &c[0]
	}
	if r.IntN(100) < 70 {
		gender := pick(r, genders)
		u.Profile.Gender = &gender
	}
	if r.IntN(100) < 65 {
		lang := c[1]
		if r.IntN(100) < 20 {
			lang = "en"
		}
		u.Profile.Language = &lang
	}
	if r.IntN(100) < 40 {
		email := strings.ReplaceAll(username, "-", ".") + "@example.org"
		u.Email = &email
	}
	return u
}

// Main runs `seed [--users N] [--seed S] [server flags]`: it opens the
// store the server would use (same flags and variables) and seeds it.
func Main(args []string, getenv func(string) string, stderr, stdout io.Writer) error {
	fs := flag.NewFlagSet("consentgraph seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	users := fs.Int("users", 1000, "how many synthetic users to add")
	randSeed := fs.Uint64("seed", 0, "random seed for reproducible data (0: random)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: consentgraph seed [--users N] [--seed S] [server flags]")
		fmt.Fprintln(stderr, "Adds synthetic users to the store the server flags name (consentgraph -h lists those).")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--h" || a == "--help" {
			fs.Usage()
			return flag.ErrHelp
		}
	}
	ownArgs, serverArgs := splitArgs(args, "users", "seed")
	if err := fs.Parse(ownArgs); err != nil {
		return err
	}
	cfg, err := config.Load(serverArgs, getenv, stderr)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close(context.Background())
	bar := progress.New(stderr, int64(*users), "users")
	res, err := Run(ctx, a, Options{Users: *users, RandSeed: *randSeed, Grants: -1, Logger: log,
		Progress: func(done, _ int) { bar.Set(int64(done)) }})
	bar.Finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seeded %d users (%d in the aggregates, %d newsletter grants) in %s; every seeded account's password is %q\n",
		res.Users, res.Counting, res.Granted, res.Duration.Round(time.Millisecond), DemoPassword)
	return nil
}

// splitArgs separates the flags named own (as -name, --name, with the
// value attached by = or following) from the rest.
func splitArgs(args []string, own ...string) (mine, rest []string) {
	isOwn := func(a string) (bool, bool) {
		name := strings.TrimLeft(a, "-")
		if name == a {
			return false, false
		}
		name, _, hasValue := strings.Cut(name, "=")
		for _, o := range own {
			if name == o {
				return true, hasValue
			}
		}
		return false, false
	}
	for i := 0; i < len(args); i++ {
		ok, hasValue := isOwn(args[i])
		if !ok {
			rest = append(rest, args[i])
			continue
		}
		mine = append(mine, args[i])
		if !hasValue && i+1 < len(args) {
			i++
			mine = append(mine, args[i])
		}
	}
	return mine, rest
}
