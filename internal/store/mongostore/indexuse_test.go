package mongostore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/partners"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store/storectx"
	"github.com/consentgraph/consentgraph/internal/translog"
	"github.com/consentgraph/consentgraph/internal/work"
	"github.com/consentgraph/consentgraph/plugins"
)

// The ports whose every method is either exercised by
// TestRequestPathLookupsUseIndexes or exempt from it, by the label prefix
// the test uses for them.
var indexCheckPorts = map[string]reflect.Type{
	"accounts":     reflect.TypeFor[accounts.Store](),
	"consent":      reflect.TypeFor[consent.Store](),
	"outbox":       reflect.TypeFor[outbox.Store](),
	"pluginstate":  reflect.TypeFor[plugins.State](),
	"demographics": reflect.TypeFor[demographics.Store](),
	"partners":     reflect.TypeFor[partners.Store](),
	"audit":        reflect.TypeFor[audit.Store](),
	"signing":      reflect.TypeFor[signing.Store](),
	"secrets":      reflect.TypeFor[envelope.SecretStore](),
	"translog":     reflect.TypeFor[translog.Store](),
}

// indexCheckExempt are the operations that are not run by the check:
// whole-store passes of background jobs and admin tools, which read every
// document by nature. Every other port operation is run and checked,
// keyed admin and background ones included (they are held to their
// indexes too). A label may name a variant: `outbox.Relay("")`.
var indexCheckExempt = map[string]string{
	"accounts.EachAccount":    "whole-store pass (accounts.EachUser for copy-store and bulk jobs): every account in _id order",
	"accounts.EachDataKey":    "whole-store pass (merged with EachAccount by EachUser; master-key rewrap): every data key",
	"consent.EachState":       "whole-store pass (copy-store, reconciliation): every user's consent",
	"consent.GrantedBefore":   "re-consent once per admin policy publication: users granting a purpose named at run time, a scan",
	`outbox.Relay("")`:        "background recovery sweep: a relay_sparse lookup, then (until one sweep finds the previous version's layout gone) a scan",
	"outbox.CountByState":     "admin and metrics: a $group over every item",
	"outbox.ProcessorFlags":   "read at start and refresh: the whole processors collection, one document per processor an admin switched",
	"demographics.EachMember": "reconciliation (background): every member",
	"partners.List":           "admin: every partner",
	"partners.Count":          "admin listing's totalCount: counts the partners collection, one document per partner an admin created",
	"audit.Each":              "chain verification (admin/background): the whole log",
	"secrets.Secrets":         "master-key rewrap (admin): every secret",
}

// indexCheckWholeReads are the operations allowed to read a whole
// collection (an empty filter, no limit) among those that are checked.
var indexCheckWholeReads = map[string]wholeRead{
	"demographics.CellCounts": {cellsCollPrefix, "a report needs every cell of its mask; one document per combination of values, no index narrows that"},
	"signing.Keys":            {signingKeysColl, "the key set, one document per key generation, is read whole at start and on refresh, then served from memory"},
}

// indexesNotForLookups are indexes that no checked operation needs to look
// anything up; every other index must be needed by some checked lookup (a
// stale or unused index fails the test). An index listed here may still
// be used.
var indexesNotForLookups = map[string]string{
	usersColl + ".relay_sparse": `serves the background relay sweep, outbox.Relay(""), which is exempt`,
}

// TestRequestPathLookupsUseIndexes runs every port operation that is not
// exempt against small data, captures every command it sends, and fails
// for any lookup that none of the collection's indexes (as listIndexes
// reports them after Open, plus _id) can drive: a find, each statement of
// an update or delete, a findAndModify, a count, an aggregate's leading
// $match. A lookup is served when some index's first key carries an
// equality or range predicate of the filter ($exists:true only on a sparse
// index; for an $or, each branch by some index); one that sorts and limits
// must also find an index giving that order after the filter's equality
// fields, or it sorts every match in memory. Every port method must be
// run or exempt, so a new operation cannot go unchecked.
func TestRequestPathLookupsUseIndexes(t *testing.T) {
	log := &commandLog{db: freshName()}
	d := openTest(t, Options{Database: log.db, Monitor: log.monitor()})
	log.start()
	exerciseEveryPortOperation(t, d, log)

	cmds, stray, ran := log.snapshot()
	if len(stray) > 0 {
		t.Errorf("commands sent from a context naming no operation (the adapter dropped the caller's context values?): %v", stray)
	}
	ixs, err := listIndexes(context.Background(), d, collectionsOf(cmds))
	if err != nil {
		t.Fatal(err)
	}
	findings := checkCommands(cmds, ixs, indexCheckWholeReads)
	for _, f := range findings {
		t.Errorf("lookup without an index: %s", f)
	}
	labels := slices.Compact(slices.Sorted(slices.Values(ran)))
	t.Logf("%d commands of %d runs of %d operation labels checked against the indexes of %d collections; %d lookups unserved",
		len(cmds), len(ran), len(labels), len(ixs), len(findings))

	t.Run("every port method is run or exempt", func(t *testing.T) {
		checkPortMethodsClassified(t, ran)
	})

	t.Run("every index serves some checked lookup", func(t *testing.T) {
		// Without each index in turn, the lookups it alone served must be
		// reported (the check can fail); an index that another one could
		// replace must still drive some checked lookup; one that drives
		// none must be listed in indexesNotForLookups.
		before := map[string]bool{}
		for _, f := range findings {
			before[f.String()] = true
		}
		for _, coll := range slices.Sorted(maps.Keys(ixs)) {
			for n, ix := range ixs[coll] {
				if ix.name == "_id_" {
					continue
				}
				without := cloneIndexes(ixs)
				without[coll] = slices.Delete(without[coll], n, n+1)
				var lost []string
				for _, f := range checkCommands(cmds, without, indexCheckWholeReads) {
					if !before[f.String()] {
						lost = append(lost, f.String())
					}
				}
				key := coll + "." + ix.name
				uses := indexUses(cmds, coll, ix, ixs[coll])
				_, listed := indexesNotForLookups[key]
				switch {
				case len(lost) > 0:
					t.Logf("without %s, reported: %s", key, strings.Join(lost, "; "))
				case len(uses) > 0:
					t.Logf("without %s, another index still drives %s", key, strings.Join(uses, ", "))
				case !listed:
					t.Errorf("index %s serves no checked lookup: make an operation use it, or list it in indexesNotForLookups with a reason", key)
				}
			}
		}
		for key := range indexesNotForLookups {
			coll, name, _ := strings.Cut(key, ".")
			if !slices.ContainsFunc(ixs[coll], func(i indexInfo) bool { return i.name == name }) {
				t.Errorf("indexesNotForLookups names %s, which does not exist", key)
			}
		}
	})
}

// indexUses lists the operations with a lookup on coll that ix drives or
// orders, leaving out lookups another unique index finds directly (by _id).
func indexUses(cmds []sentCommand, coll string, ix indexInfo, all []indexInfo) []string {
	var out []string
	for _, c := range cmds {
		if c.coll != coll {
			continue
		}
		for _, lk := range lookupsOf(c) {
			cj := parseFilter(lk.filter)
			if slices.ContainsFunc(all, func(o indexInfo) bool { return o.name != ix.name && pointLookup(o, cj) }) {
				continue
			}
			if (ix.drives(cj) || len(docElems(lk.sort)) > 0 && servesSort(ix, cj, lk.sort)) && !slices.Contains(out, c.op) {
				out = append(out, c.op)
			}
		}
	}
	return out
}

// TestIndexCheckReportsADroppedIndex drops an index a request path needs,
// on a database of its own, and expects the check to report the lookups
// that used it, with their operation, collection and filter.
func TestIndexCheckReportsADroppedIndex(t *testing.T) {
	log := &commandLog{db: freshName()}
	d := openTest(t, Options{Database: log.db, Monitor: log.monitor()})
	ctx := context.Background()
	own := withOp(ctx, testOwnOp)
	if err := d.Accounts().CreateAccount(own, newAccount("ann")); err != nil {
		t.Fatal(err)
	}
	if err := d.Accounts().InsertSession(own, accounts.SessionRecord{ID: "s1", UserID: "ann", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := d.coll(sessionsColl).Indexes().DropOne(own, "userId"); err != nil {
		t.Fatalf("drop index: %v", err)
	}
	log.start()
	run := opRunner(t, ctx, log)
	run("accounts.UserSessions", func(ctx context.Context) error {
		_, err := d.Accounts().UserSessions(ctx, "ann")
		return err
	})
	run("accounts.Session", func(ctx context.Context) error {
		_, err := d.Accounts().Session(ctx, "s1")
		return err
	})
	run("accounts.DeleteUserSessions", func(ctx context.Context) error {
		return d.Accounts().DeleteUserSessions(ctx, "ann")
	})
	cmds, _, _ := log.snapshot()
	ixs, err := listIndexes(ctx, d, collectionsOf(cmds))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range checkCommands(cmds, ixs, nil) {
		got = append(got, f.op+" "+f.cmd+" "+f.coll+" "+rawJSON(f.filter))
		t.Logf("reported, as it should be: %s", f)
	}
	want := []string{
		`accounts.UserSessions find sessions {"userId": "ann"}`,
		`accounts.DeleteUserSessions delete sessions {"userId": "ann"}`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("with sessions.userId dropped the check reported\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// opRunner returns a function that runs one labelled operation, failing
// the test on an error.
func opRunner(t *testing.T, ctx context.Context, log *commandLog) func(label string, fn func(ctx context.Context) error) {
	return func(label string, fn func(ctx context.Context) error) {
		t.Helper()
		log.markRan(label)
		if err := fn(withOp(ctx, label)); err != nil {
			t.Fatalf("%s: %v", label, err)
		}
	}
}

// methodOf strips a variant from a label: `outbox.Relay("")` → outbox.Relay.
func methodOf(label string) string {
	m, _, _ := strings.Cut(label, "(")
	return m
}

func checkPortMethodsClassified(t *testing.T, ran []string) {
	methods := map[string]bool{}
	for port, typ := range indexCheckPorts {
		for i := range typ.NumMethod() {
			methods[port+"."+typ.Method(i).Name] = true
		}
	}
	covered := map[string]bool{}
	for _, l := range ran {
		covered[methodOf(l)] = true
	}
	for l, reason := range indexCheckExempt {
		if !methods[methodOf(l)] {
			t.Errorf("exempt operation %s is no port method", l)
		}
		if reason == "" {
			t.Errorf("exempt operation %s has no reason", l)
		}
		if !strings.Contains(l, "(") {
			if covered[l] {
				t.Errorf("%s is both exempt and run", l)
			}
			covered[l] = true
		}
	}
	for l := range indexCheckWholeReads {
		if !methods[l] {
			t.Errorf("indexCheckWholeReads names %s, which is no port method", l)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(methods)) {
		if !covered[m] {
			t.Errorf("port method %s is neither run by the index check (exerciseEveryPortOperation) nor listed in indexCheckExempt with a reason", m)
		}
	}
}

func cloneIndexes(m map[string][]indexInfo) map[string][]indexInfo {
	out := make(map[string][]indexInfo, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// exerciseEveryPortOperation runs each operation that is not exempt, on
// a few documents, each under its label; variants in parentheses take
// other paths of the same method (an $or filter, a clash, a lock held).
func exerciseEveryPortOperation(t *testing.T, d *DB, log *commandLog) {
	ctx := context.Background()
	run := opRunner(t, ctx, log)
	want := func(cond bool, format string, args ...any) error {
		if !cond {
			return fmt.Errorf(format, args...)
		}
		return nil
	}
	a, c, o, dm := d.Accounts(), d.Consent(), d.Outbox(), d.Demographics()

	// Accounts.
	ann := newAccount("ann")
	ann.Account.Email, ann.Account.EmailIndex = []byte("sealed-ann"), "idx-ann"
	ann.Account.Verification = &accounts.Verification{TokenHash: "tok-ann", ExpiresAt: t0.Add(time.Hour)}
	ann.Consent = consent.Initial{
		State: consent.Stored{Head: 1, HeadHash: "h1", State: map[string]consent.Entry{
			"newsletter": {Granted: false, Seq: 1, At: t0, PolicyVersion: "v1", PolicyN: 1, Method: consent.Explicit}}},
		Events: []consent.Event{ev(1, "newsletter", false)},
	}
	ann.Work = []work.Item{item("w0", "ann")}
	run("accounts.CreateAccount", func(ctx context.Context) error { return a.CreateAccount(ctx, ann) })
	for _, id := range []string{"bob", "cat"} {
		run("accounts.CreateAccount", func(ctx context.Context) error { return a.CreateAccount(ctx, newAccount(id)) })
	}
	run("accounts.CreateAccount(username taken)", func(ctx context.Context) error {
		x := newAccount("ann2")
		x.Account.UsernameKey = ann.Account.UsernameKey
		err := a.CreateAccount(ctx, x)
		return want(errors.Is(err, accounts.ErrUsernameTaken), "got %v", err)
	})
	run("accounts.CreateAccount(verified email taken)", func(ctx context.Context) error {
		x := newAccount("ann3")
		x.Account.Email, x.Account.EmailIndex, x.Account.EmailVerified = []byte("sealed"), "idx-verified", true
		if err := a.CreateAccount(ctx, x); err != nil {
			return err
		}
		y := newAccount("ann4")
		y.Account.Email, y.Account.EmailIndex, y.Account.EmailVerified = []byte("sealed"), "idx-verified", true
		err := a.CreateAccount(ctx, y)
		return want(errors.Is(err, accounts.ErrEmailTaken), "got %v", err)
	})
	run("accounts.ImportAccounts", func(ctx context.Context) error {
		return a.ImportAccounts(ctx, []accounts.NewAccount{newAccount("dan"), newAccount("eve")})
	})
	run("accounts.ImportAccounts(clash undone)", func(ctx context.Context) error {
		x := newAccount("fay2")
		x.Account.UsernameKey = ann.Account.UsernameKey
		err := a.ImportAccounts(ctx, []accounts.NewAccount{newAccount("fay"), x})
		return want(errors.Is(err, accounts.ErrUsernameTaken), "got %v", err)
	})
	run("accounts.Account", func(ctx context.Context) error {
		r, err := a.Account(ctx, "ann")
		return errors.Join(err, want(r != nil, "no ann"))
	})
	run("accounts.AccountByUsername", func(ctx context.Context) error {
		r, err := a.AccountByUsername(ctx, ann.Account.UsernameKey)
		return errors.Join(err, want(r != nil && r.ID == "ann", "got %+v", r))
	})
	run("accounts.SetPasswordHash", func(ctx context.Context) error { return a.SetPasswordHash(ctx, "ann", "hash2") })
	run("accounts.UpdateAccount(profile)", func(ctx context.Context) error {
		ok, err := a.UpdateAccount(ctx, "ann", accounts.Update{Profile: map[string][]byte{"country": []byte("x"), "gender": nil}})
		return errors.Join(err, want(ok, "not updated"))
	})
	run("accounts.UpdateAccount(email)", func(ctx context.Context) error {
		ok, err := a.UpdateAccount(ctx, "bob", accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("sealed-bob"), Index: "idx-bob",
			Verification: &accounts.Verification{TokenHash: "tok-bob", ExpiresAt: t0.Add(time.Hour)}}})
		return errors.Join(err, want(ok, "not updated"))
	})
	run("accounts.UpdateAccount(email held unverified by another)", func(ctx context.Context) error {
		ok, err := a.UpdateAccount(ctx, "bob", accounts.Update{Email: &accounts.EmailUpdate{Sealed: []byte("s"), Index: "idx-ann",
			Verification: &accounts.Verification{TokenHash: "tok-bob2", ExpiresAt: t0.Add(time.Hour)}}})
		return errors.Join(err, want(ok, "not updated"))
	})
	run("accounts.UpdateAccount(nothing)", func(ctx context.Context) error {
		ok, err := a.UpdateAccount(ctx, "bob", accounts.Update{})
		return errors.Join(err, want(ok, "bob not found"))
	})
	run("accounts.VerifyEmail", func(ctx context.Context) error {
		res, err := a.VerifyEmail(ctx, "tok-ann", t0, accounts.Notice{Kind: accounts.NoticeEmailClaimed, At: t0})
		return errors.Join(err, want(res.UserID == "ann" && slices.Equal(res.Evicted, []string{"bob"}), "verified %+v", res))
	})
	run("accounts.AccountByVerifiedEmail", func(ctx context.Context) error {
		r, err := a.AccountByVerifiedEmail(ctx, "idx-ann")
		return errors.Join(err, want(r != nil && r.ID == "ann", "got %+v", r))
	})
	run("accounts.SetPasswordReset", func(ctx context.Context) error {
		ok, err := a.SetPasswordReset(ctx, "ann", accounts.Verification{TokenHash: "reset-ann", ExpiresAt: t0.Add(time.Hour)})
		return errors.Join(err, want(ok, "not set"))
	})
	run("accounts.PasswordFailed", func(ctx context.Context) error {
		n, err := a.PasswordFailed(ctx, "ann", t0)
		return errors.Join(err, want(n == 1, "count %d", n))
	})
	run("accounts.ClearPasswordFailures", func(ctx context.Context) error { return a.ClearPasswordFailures(ctx, "ann") })
	run("accounts.ResetPassword", func(ctx context.Context) error {
		id, err := a.ResetPassword(ctx, "reset-ann", t0, "hash3")
		return errors.Join(err, want(id == "ann", "reset %q", id))
	})
	run("accounts.ClearNotices", func(ctx context.Context) error { return a.ClearNotices(ctx, "bob") })
	run("accounts.UpdateAccount(email removed)", func(ctx context.Context) error {
		ok, err := a.UpdateAccount(ctx, "bob", accounts.Update{Email: &accounts.EmailUpdate{}})
		return errors.Join(err, want(ok, "not updated"))
	})
	run("accounts.MarkErasing", func(ctx context.Context) error {
		ok, err := a.MarkErasing(ctx, "cat", t0)
		return errors.Join(err, want(ok, "not marked"))
	})
	run("accounts.Erasing", func(ctx context.Context) error {
		ids, err := a.Erasing(ctx)
		return errors.Join(err, want(slices.Equal(ids, []string{"cat"}), "erasing %v", ids))
	})
	run("accounts.DeleteAccount", func(ctx context.Context) error { return a.DeleteAccount(ctx, "cat") })

	// Sessions and data keys.
	for _, s := range []accounts.SessionRecord{
		{ID: "s1", UserID: "ann", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{ID: "s2", UserID: "ann", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)},
		{ID: "s3", UserID: "bob", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
	} {
		run("accounts.InsertSession", func(ctx context.Context) error { return a.InsertSession(ctx, s) })
	}
	run("accounts.Session", func(ctx context.Context) error {
		s, err := a.Session(ctx, "s1")
		return errors.Join(err, want(s != nil, "no session"))
	})
	run("accounts.UserSessions", func(ctx context.Context) error {
		ss, err := a.UserSessions(ctx, "ann")
		return errors.Join(err, want(len(ss) == 2, "sessions %v", ss))
	})
	run("accounts.CountSessions", func(ctx context.Context) error {
		_, err := a.CountSessions(ctx, t0.Add(30*time.Minute))
		return err
	})
	run("accounts.DeleteExpiredSessions", func(ctx context.Context) error {
		_, err := a.DeleteExpiredSessions(ctx, t0.Add(30*time.Minute))
		return err
	})
	run("accounts.DeleteSession", func(ctx context.Context) error { return a.DeleteSession(ctx, "s3") })
	run("accounts.DeleteUserSessions", func(ctx context.Context) error { return a.DeleteUserSessions(ctx, "ann") })
	run("accounts.InsertDataKey", func(ctx context.Context) error {
		return a.InsertDataKey(ctx, accounts.DataKey{UserID: "ann", Wrapped: []byte("k1"), CreatedAt: t0})
	})
	run("accounts.ImportDataKeys", func(ctx context.Context) error {
		return a.ImportDataKeys(ctx, []accounts.DataKey{{UserID: "bob", Wrapped: []byte("k"), CreatedAt: t0}})
	})
	run("accounts.DataKey", func(ctx context.Context) error {
		k, err := a.DataKey(ctx, "ann")
		return errors.Join(err, want(string(k) == "k1", "key %q", k))
	})
	run("accounts.SwapDataKey", func(ctx context.Context) error {
		ok, err := a.SwapDataKey(ctx, "ann", []byte("k1"), []byte("k2"))
		return errors.Join(err, want(ok, "not swapped"))
	})
	run("accounts.DeleteDataKey", func(ctx context.Context) error { return a.DeleteDataKey(ctx, "bob") })

	// Consent: a change with its relay, the $or head condition of a first
	// change, a stale head, the ledger read by pages and by event.
	run("consent.State", func(ctx context.Context) error {
		st, err := c.State(ctx, "ann")
		return errors.Join(err, want(st != nil && st.Head == 1, "state %+v", st))
	})
	run("consent.RecordChange", func(ctx context.Context) error {
		ok, err := c.RecordChange(ctx, "ann", ev(2, "newsletter", true), []work.Item{item("i1", "ann")})
		return errors.Join(err, want(ok, "not recorded"))
	})
	run("consent.RecordChange(first change, head 0)", func(ctx context.Context) error {
		ok, err := c.RecordChange(ctx, "bob", ev(1, "newsletter", true), []work.Item{item("b1", "bob")})
		return errors.Join(err, want(ok, "not recorded"))
	})
	run("consent.RecordChange(stale head)", func(ctx context.Context) error {
		ok, err := c.RecordChange(ctx, "ann", ev(2, "newsletter", false), nil)
		return errors.Join(err, want(!ok, "recorded on a stale head"))
	})
	for _, page := range []struct{ after, limit int64 }{{0, 1}, {1, 1}, {0, 0}} {
		run("consent.Events", func(ctx context.Context) error {
			es, err := c.Events(ctx, "ann", page.after, int(page.limit))
			return errors.Join(err, want(len(es) > 0, "no events after %d", page.after))
		})
	}
	run("consent.Event", func(ctx context.Context) error {
		e, err := c.Event(ctx, "ann", 2)
		return errors.Join(err, want(e != nil, "no event 2"))
	})
	run("consent.Event(absent)", func(ctx context.Context) error {
		e, err := c.Event(ctx, "ann", 99)
		return errors.Join(err, want(e == nil, "event 99 %+v", e))
	})
	run("consent.Archive", func(ctx context.Context) error {
		return c.Archive(ctx, consent.Archived{Subject: "subj", State: consent.Stored{Head: 1, HeadHash: "h1"}, Events: []consent.Event{ev(1, "newsletter", true)}, ArchivedAt: t0})
	})
	run("consent.Archived", func(ctx context.Context) error {
		ar, err := c.Archived(ctx, "subj")
		return errors.Join(err, want(ar != nil, "no archive"))
	})
	run("consent.AddFirstPolicy", func(ctx context.Context) error {
		return c.AddFirstPolicy(ctx, consent.PolicyVersion{N: 1, Version: "v1", PublishedAt: t0})
	})
	run("consent.AppendPolicy", func(ctx context.Context) error {
		ok, err := c.AppendPolicy(ctx, consent.PolicyVersion{N: 2, Version: "v2", PublishedAt: t0})
		return errors.Join(err, want(ok, "not appended"))
	})
	run("consent.PolicyVersions", func(ctx context.Context) error {
		vs, err := c.PolicyVersions(ctx)
		return errors.Join(err, want(len(vs) == 2, "versions %v", vs))
	})

	// One query's reads sharing a memo.
	memo := storectx.WithReadMemo(ctx)
	run("accounts.Account(read memo)", func(context.Context) error {
		_, err := a.Account(withOp(memo, "accounts.Account(read memo)"), "bob")
		return err
	})
	run("consent.State(read memo)", func(context.Context) error {
		_, err := c.State(withOp(memo, "consent.State(read memo)"), "bob")
		return err
	})

	// Outbox: relay, claim (and a lock taken over after its lease
	// expired), finish into each state, retry, wake, disclosures by page.
	run("outbox.Relay", func(ctx context.Context) error {
		_, err := o.Relay(ctx, "ann")
		return err
	})
	run("outbox.Enqueue", func(ctx context.Context) error {
		ok, err := o.Enqueue(ctx, item("e1", "bob"))
		return errors.Join(err, want(ok, "not enqueued"))
	})
	claim := func(now time.Time, limit int) []work.Item {
		var got []work.Item
		run("outbox.Claim", func(ctx context.Context) error {
			var err error
			got, err = o.Claim(ctx, "worker", []string{"hook"}, now, now.Add(time.Minute), limit)
			return errors.Join(err, want(len(got) > 0, "nothing claimed at %v", now))
		})
		return got
	}
	finish := func(label string, it work.Item, state work.State, dl bool) {
		run(label, func(ctx context.Context) error {
			f := outbox.Finish{Item: it, State: state, At: it.UpdatedAt, Proc: &outbox.ProcUpdate{Delivered: state == work.Done, Ref: "ref"}}
			if dl {
				f.Disclosure = &outbox.Disclosure{ID: it.ID, UserID: it.UserID, Processor: it.Processor, Purpose: it.Purpose, Action: "DELIVER", Cause: "test", At: t0}
			}
			ok, err := o.Finish(ctx, f)
			return errors.Join(err, want(ok, "%s not finished", it.ID))
		})
	}
	now := t0.Add(time.Minute)
	first := claim(now, 10) // one item per user and processor: w0 or i1 of ann, b1 or e1 of bob
	for _, it := range first {
		finish("outbox.Finish", it, work.Done, true)
	}
	second := claim(now, 10)
	finish("outbox.Finish(dead)", second[0], work.Dead, false)
	for _, it := range second[1:] {
		finish("outbox.Finish", it, work.Done, true)
	}
	run("outbox.Retry", func(ctx context.Context) error {
		ok, err := o.Retry(ctx, second[0].ID, now)
		return errors.Join(err, want(ok, "not retried"))
	})
	held := claim(now, 1)                     // leased, its lock held
	taken := claim(now.Add(5*time.Minute), 1) // the lease expired: the lock is taken over
	if held[0].ID != taken[0].ID {
		t.Fatalf("claimed %s, then %s after its lease expired", held[0].ID, taken[0].ID)
	}
	finish("outbox.Finish(waiting)", taken[0], work.Waiting, false)
	run("outbox.WakeWaiting", func(ctx context.Context) error { return o.WakeWaiting(ctx, taken[0].UserID, now) })
	run("outbox.Items", func(ctx context.Context) error {
		items, err := o.Items(ctx, work.Done, "", 2)
		return errors.Join(err, want(len(items) == 2, "items %v", items))
	})
	run("outbox.Items(next page)", func(ctx context.Context) error {
		_, err := o.Items(ctx, work.Done, taken[0].ID, 2)
		return err
	})
	run("outbox.Items(all states)", func(ctx context.Context) error {
		_, err := o.Items(ctx, "", "", 2)
		return err
	})
	run("outbox.Item", func(ctx context.Context) error {
		it, err := o.Item(ctx, taken[0].ID)
		return errors.Join(err, want(it != nil && it.State == work.Pending, "item %+v", it))
	})
	run("outbox.Recipient", func(ctx context.Context) error {
		r, err := o.Recipient(ctx, "ann")
		return errors.Join(err, want(r != nil, "no recipient"))
	})
	run("outbox.MarkAttempted", func(ctx context.Context) error {
		ok, err := o.MarkAttempted(ctx, "ann", "hook")
		return errors.Join(err, want(ok, "not marked"))
	})
	var newest string
	run("outbox.Disclosures", func(ctx context.Context) error {
		ds, err := o.Disclosures(ctx, "ann", "", 1)
		if len(ds) == 1 {
			newest = ds[0].ID
		}
		return errors.Join(err, want(len(ds) == 1, "disclosures %v", ds))
	})
	run("outbox.Disclosures(next page)", func(ctx context.Context) error {
		_, err := o.Disclosures(ctx, "ann", newest, 1)
		return err
	})
	run("outbox.CountDisclosures", func(ctx context.Context) error {
		n, err := o.CountDisclosures(ctx, "ann")
		return errors.Join(err, want(n > 0, "no disclosures counted"))
	})
	run("outbox.Disclosures(all)", func(ctx context.Context) error {
		_, err := o.Disclosures(ctx, "ann", "", 0)
		return err
	})
	run("outbox.SetProcessorFlag", func(ctx context.Context) error { return o.SetProcessorFlag(ctx, "hook", false) })
	var ps plugins.State
	run("outbox.PluginState", func(context.Context) error { ps = o.PluginState("hook"); return nil })
	run("pluginstate.Put", func(ctx context.Context) error { return ps.Put(ctx, "cursor", []byte("1")) })
	run("pluginstate.Get", func(ctx context.Context) error {
		v, ok, err := ps.Get(ctx, "cursor")
		return errors.Join(err, want(ok && string(v) == "1", "got %q %v", v, ok))
	})
	run("pluginstate.Delete", func(ctx context.Context) error { return ps.Delete(ctx, "cursor") })
	lk := outbox.LinkKey{Processor: "hook", Subject: "sub-ann"}
	run("outbox.PutLink", func(ctx context.Context) error {
		return o.PutLink(ctx, outbox.Link{Processor: lk.Processor, Subject: lk.Subject, State: "ACTIVE", Data: []byte("{}"), UpdatedAt: t0})
	})
	run("outbox.Links", func(ctx context.Context) error {
		ls, err := o.Links(ctx, []outbox.LinkKey{lk, {Processor: "other", Subject: "sub-ann"}})
		return errors.Join(err, want(len(ls) == 1, "links %v", ls))
	})
	run("outbox.DeleteLinks", func(ctx context.Context) error { return o.DeleteLinks(ctx, []outbox.LinkKey{lk}) })

	// Partners.
	p := d.Partners()
	run("partners.Insert", func(ctx context.Context) error {
		return p.Insert(ctx, partners.Record{ID: "p1", Name: "P", KeyHash: "kh", Budget: 100, PeriodDays: 30, CreatedAt: t0, Period: 1})
	})
	run("partners.Get", func(ctx context.Context) error {
		r, err := p.Get(ctx, "p1")
		return errors.Join(err, want(r != nil, "no partner"))
	})
	run("partners.SpendInPeriod", func(ctx context.Context) error {
		r, err := p.SpendInPeriod(ctx, "p1", 1, 10, 100)
		return errors.Join(err, want(r != nil, "not charged"))
	})
	run("partners.StartPeriod", func(ctx context.Context) error {
		r, err := p.StartPeriod(ctx, "p1", 1, 2, 5)
		return errors.Join(err, want(r != nil, "not started"))
	})
	run("partners.Refund", func(ctx context.Context) error {
		ok, err := p.Refund(ctx, "p1", 2, 3)
		return errors.Join(err, want(ok, "not refunded"))
	})
	run("partners.Revoke", func(ctx context.Context) error { return p.Revoke(ctx, "p1", t0) })
	run("partners.Page", func(ctx context.Context) error {
		rs, err := p.Page(ctx, "", 1)
		return errors.Join(err, want(len(rs) == 1, "first page %v", rs))
	})
	run("partners.Page(after)", func(ctx context.Context) error {
		rs, err := p.Page(ctx, "p1", 1)
		return errors.Join(err, want(len(rs) == 0, "second page %v", rs))
	})

	// Audit: the first append (empty log) and one on a head; pages.
	for range 2 {
		run("audit.Append", func(ctx context.Context) error {
			_, err := d.Audit().Append(ctx, func(head *audit.Entry) audit.Entry {
				e := audit.Entry{Seq: 1, At: t0, Actor: "admin", Action: "test", Hash: "x"}
				if head != nil {
					e.Seq, e.Prev = head.Seq+1, head.Hash
				}
				return e
			})
			return err
		})
	}
	run("audit.Unlogged", func(ctx context.Context) error {
		es, err := d.Audit().Unlogged(ctx, 10)
		return errors.Join(err, want(len(es) == 2, "unlogged %v", es))
	})
	run("audit.MarkLogged", func(ctx context.Context) error { return d.Audit().MarkLogged(ctx, []int64{1, 2}) })
	run("consent.Unlogged", func(ctx context.Context) error {
		_, err := c.Unlogged(ctx, 10)
		return err
	})
	run("consent.MarkLogged", func(ctx context.Context) error {
		return c.MarkLogged(ctx, []consent.EventRef{{UserID: "ann", Seq: 1}, {UserID: "ann", Seq: 2}})
	})

	// The consent log: an append, its reads, the lease.
	tl := d.Translog()
	leaf := func(i int64) translog.Leaf {
		data := []byte(fmt.Sprintf("leaf %d", i))
		return translog.Leaf{Index: i, Item: fmt.Sprintf("test/%d", i), Data: data, Hash: translog.LeafHash(data), At: t0}
	}
	run("translog.Append", func(ctx context.Context) error {
		l0, l1 := leaf(0), leaf(1)
		n, err := tl.Append(ctx, translog.Batch{Leaves: []translog.Leaf{l0, l1},
			Nodes: []translog.Node{{ID: translog.NodeID{Level: 1}, Hash: translog.NodeHash(l0.Hash, l1.Hash)}},
			Head:  translog.Head{Size: 2, Root: translog.NodeHash(l0.Hash, l1.Hash), At: t0}})
		return errors.Join(err, want(n == 2, "appended %d", n))
	})
	run("translog.Head", func(ctx context.Context) error {
		h, err := tl.Head(ctx)
		return errors.Join(err, want(h.Size == 2, "head %+v", h))
	})
	run("translog.Leaves", func(ctx context.Context) error {
		ls, err := tl.Leaves(ctx, 1, 10)
		return errors.Join(err, want(len(ls) == 1, "leaves %v", ls))
	})
	run("translog.LeavesByItem", func(ctx context.Context) error {
		ls, err := tl.LeavesByItem(ctx, []string{"test/0", "test/9"})
		return errors.Join(err, want(len(ls) == 1, "leaves %v", ls))
	})
	run("translog.ItemLeaves", func(ctx context.Context) error {
		ls, err := tl.ItemLeaves(ctx, "test/")
		return errors.Join(err, want(len(ls) == 2, "leaves %v", ls))
	})
	run("translog.Nodes", func(ctx context.Context) error {
		ns, err := tl.Nodes(ctx, []translog.NodeID{{Level: 0, Index: 1}, {Level: 1, Index: 0}})
		return errors.Join(err, want(len(ns) == 2, "nodes %v", ns))
	})
	run("translog.Lease", func(ctx context.Context) error {
		ok, err := tl.Lease(ctx, "me", t0, t0.Add(time.Minute))
		return errors.Join(err, want(ok, "no lease"))
	})
	run("audit.Page", func(ctx context.Context) error {
		es, err := d.Audit().Page(ctx, 0, 1)
		return errors.Join(err, want(len(es) == 1, "page %v", es))
	})
	run("audit.Page(older)", func(ctx context.Context) error {
		_, err := d.Audit().Page(ctx, 2, 1)
		return err
	})

	// Signing keys and secrets.
	sk := d.Signing()
	for g := range int64(2) {
		run("signing.InsertKey", func(ctx context.Context) error {
			ok, err := sk.InsertKey(ctx, signing.KeyRecord{Kid: fmt.Sprintf("k%d", g+1), Generation: g + 1, Alg: "EdDSA", PublicKey: []byte("pub"), PrivateKey: []byte("priv"), CreatedAt: t0})
			return errors.Join(err, want(ok, "not inserted"))
		})
	}
	run("signing.Keys", func(ctx context.Context) error {
		ks, err := sk.Keys(ctx)
		return errors.Join(err, want(len(ks) == 2, "keys %v", ks))
	})
	run("signing.RetireBelow", func(ctx context.Context) error { return sk.RetireBelow(ctx, 2, t0) })
	run("signing.SetExpiry", func(ctx context.Context) error { return sk.SetExpiry(ctx, "k1", t0.Add(time.Hour)) })
	run("signing.SwapPrivateKey", func(ctx context.Context) error {
		ok, err := sk.SwapPrivateKey(ctx, "k2", []byte("priv"), []byte("priv2"), "mk2")
		return errors.Join(err, want(ok, "not swapped"))
	})
	sec := d.Secrets()
	run("secrets.InsertSecret", func(ctx context.Context) error {
		ok, err := sec.InsertSecret(ctx, envelope.SecretRecord{Name: "hmac", Value: []byte("v1"), KeyID: "mk1", CreatedAt: t0})
		return errors.Join(err, want(ok, "not inserted"))
	})
	run("secrets.Secret", func(ctx context.Context) error {
		r, err := sec.Secret(ctx, "hmac")
		return errors.Join(err, want(r != nil, "no secret"))
	})
	run("secrets.SwapSecret", func(ctx context.Context) error {
		ok, err := sec.SwapSecret(ctx, "hmac", []byte("v1"), []byte("v2"), "mk2")
		return errors.Join(err, want(ok, "not swapped"))
	})

	// Demographics: a member moved in, moved, moved out; cells.
	move := func(label, user string, ver int64, op string) {
		run(label, func(ctx context.Context) error {
			ok, err := dm.BeginMove(ctx, user, ver, demographics.Pending{Op: op, Since: t0, To: []byte("t")})
			return errors.Join(err, want(ok, "move %s not begun", op))
		})
	}
	settle := func(user, op string, to []byte) {
		run("demographics.SettleMove", func(ctx context.Context) error {
			ok, err := dm.SettleMove(ctx, user, op, to)
			return errors.Join(err, want(ok, "move %s not settled", op))
		})
	}
	move("demographics.BeginMove(new member)", "ann", 0, "op1")
	run("demographics.Member", func(ctx context.Context) error {
		m, err := dm.Member(ctx, "ann")
		return errors.Join(err, want(m != nil, "no member"))
	})
	settle("ann", "op1", []byte("t"))
	move("demographics.BeginMove", "ann", 2, "op2")
	settle("ann", "op2", nil)
	move("demographics.BeginMove(new member)", "bob", 0, "op3")
	settle("bob", "op3", []byte("t"))
	run("demographics.DeleteMember", func(ctx context.Context) error {
		ok, err := dm.DeleteMember(ctx, "bob", 2)
		return errors.Join(err, want(ok, "not deleted"))
	})
	run("demographics.ImportMembers", func(ctx context.Context) error {
		return dm.ImportMembers(ctx, []demographics.Member{{UserID: "dan", Ver: 1, Tuple: []byte("t")}})
	})
	run("demographics.AddToCells", func(ctx context.Context) error {
		return dm.AddToCells(ctx, []demographics.CellDelta{{Mask: 3, ID: "c1", Values: []byte("v"), Delta: 1}, {Mask: 0, ID: "all", Values: []byte("v"), Delta: 1}})
	})
	run("demographics.CellCounts", func(ctx context.Context) error {
		cs, err := dm.CellCounts(ctx, 3)
		return errors.Join(err, want(len(cs) == 1, "cells %v", cs))
	})
	run("demographics.CellValues", func(ctx context.Context) error {
		vs, err := dm.CellValues(ctx, 3, []string{"c1", "c2"})
		return errors.Join(err, want(len(vs) == 1, "values %v", vs))
	})
	run("demographics.SetCellIfUnchanged", func(ctx context.Context) error {
		ok, err := dm.SetCellIfUnchanged(ctx, 3, "c1", 1, 5)
		return errors.Join(err, want(ok, "not set"))
	})
	run("demographics.CreateCell", func(ctx context.Context) error {
		ok, err := dm.CreateCell(ctx, 5, demographics.CellRecord{ID: "c5", N: 1, Ver: 1, Values: []byte("v")})
		return errors.Join(err, want(ok, "not created"))
	})
	run("demographics.ReplaceCells", func(ctx context.Context) error {
		return dm.ReplaceCells(ctx, 6, []demographics.CellRecord{{ID: "c6", N: 1, Ver: 1, Values: []byte("v")}})
	})
	run("demographics.MarkDirty", func(ctx context.Context) error { return dm.MarkDirty(ctx, t0) })
	run("demographics.DirtySince", func(ctx context.Context) error {
		at, err := dm.DirtySince(ctx)
		return errors.Join(err, want(at.Equal(t0), "dirty since %v", at))
	})
	run("demographics.ClearDirty", func(ctx context.Context) error { return dm.ClearDirty(ctx, t0) })
}
