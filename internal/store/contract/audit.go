package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/consentgraph/consentgraph/internal/audit"
)

func auditTests() []contractTest {
	return []contractTest{
		{"audit/empty-log", testAuditEmpty},
		{"audit/append-page-each", testAuditPageEach},
		{"audit/append-under-50-writers", testAuditConcurrent},
	}
}

// auditHash chains entries the way the audit log does: it covers every
// field but the hash, the previous hash included.
func auditHash(e audit.Entry) string {
	sum := sha256.Sum256([]byte(strconv.FormatInt(e.Seq, 10) + "|" + e.At.UTC().Format(time.RFC3339Nano) + "|" +
		e.Actor + "|" + e.Action + "|" + e.Subject + "|" + e.Detail + "|" + e.Prev))
	return hex.EncodeToString(sum[:])
}

// nextEntry returns an Append callback that builds the entry after head.
// It has no side effects but counting its calls.
func nextEntry(actor, action, subject string, when time.Time, calls *atomic.Int64) func(*audit.Entry) audit.Entry {
	return func(head *audit.Entry) audit.Entry {
		if calls != nil {
			calls.Add(1)
		}
		e := audit.Entry{Seq: 1, At: when, Actor: actor, Action: action, Subject: subject, Detail: "detail of " + action}
		if head != nil {
			e.Seq, e.Prev = head.Seq+1, head.Hash
		}
		e.Hash = auditHash(e)
		return e
	}
}

func (e *env) auditAll() []audit.Entry {
	e.t.Helper()
	var out []audit.Entry
	e.must(e.b.Audit().Each(e.ctx, func(x audit.Entry) error { out = append(out, x); return nil }), "Each")
	return out
}

// checkChain verifies seqs 1..n without gaps and the hash chain.
func (e *env) checkChain(entries []audit.Entry, n int) {
	e.t.Helper()
	if len(entries) != n {
		e.t.Errorf("audit log has %d entries, want %d", len(entries), n)
	}
	prev := ""
	for i, x := range entries {
		if x.Seq != int64(i+1) {
			e.t.Errorf("entry %d has seq %d: the log has a gap or a duplicate", i, x.Seq)
		}
		if x.Prev != prev {
			e.t.Errorf("entry %d: Prev %.12s… is not the previous entry's hash %.12s…", x.Seq, x.Prev, prev)
		}
		if auditHash(x) != x.Hash {
			e.t.Errorf("entry %d: hash does not match its content (a field did not round-trip)", x.Seq)
		}
		prev = x.Hash
	}
}

func testAuditEmpty(e *env) {
	s := e.b.Audit()
	page, err := s.Page(e.ctx, 0, 10)
	e.must(err, "Page")
	if len(page) != 0 {
		e.t.Errorf("Page of an empty log = %v", page)
	}
	if all := e.auditAll(); len(all) != 0 {
		e.t.Errorf("Each of an empty log gave %v", all)
	}
	var sawHead *audit.Entry
	first, err := s.Append(e.ctx, func(head *audit.Entry) audit.Entry {
		sawHead = head
		return nextEntry("admin", "first", "", at(0), nil)(head)
	})
	e.must(err, "Append")
	if sawHead != nil {
		e.t.Errorf("Append to an empty log passed head %+v, want nil", sawHead)
	}
	e.equal("the first entry", nextEntry("admin", "first", "", at(0), nil)(nil), first)
}

func testAuditPageEach(e *env) {
	s := e.b.Audit()
	var want []audit.Entry
	for i := range 12 {
		subject := ""
		if i%2 == 0 {
			subject = fmt.Sprintf("u-%d", i)
		}
		got, err := s.Append(e.ctx, nextEntry("admin:u-root", fmt.Sprintf("action-%d", i), subject, at(time.Duration(i)*time.Second), nil))
		e.must(err, "Append #%d", i)
		want = append(want, got)
		if got.Seq != int64(i+1) {
			e.t.Errorf("Append #%d returned seq %d", i, got.Seq)
		}
	}
	all := e.auditAll()
	e.equal("Each (in order)", want, all)
	e.checkChain(all, 12)

	rev := func(from, to int) []audit.Entry { // want[from-1] down to want[to-1]
		var out []audit.Entry
		for s := from; s >= to; s-- {
			out = append(out, want[s-1])
		}
		return out
	}
	for _, tc := range []struct {
		before int64
		limit  int
		want   []audit.Entry
	}{
		{0, 5, rev(12, 8)},
		{8, 5, rev(7, 3)},
		{3, 5, rev(2, 1)},
		{1, 5, nil},
		{0, 100, rev(12, 1)},
		{100, 2, rev(12, 11)},
	} {
		page, err := s.Page(e.ctx, tc.before, tc.limit)
		e.must(err, "Page(before %d, limit %d)", tc.before, tc.limit)
		e.equal(fmt.Sprintf("Page(before %d, limit %d) (newest first)", tc.before, tc.limit), tc.want, page)
	}

	stop := errors.New("stop")
	n := 0
	if err := s.Each(e.ctx, func(audit.Entry) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		e.t.Errorf("Each with fn failing: %v after %d calls; want fn's error after 1 call", err, n)
	}
}

func testAuditConcurrent(e *env) {
	s := e.b.Audit()
	var calls atomic.Int64
	returned := make([]audit.Entry, concurrency)
	errs := e.parallel(concurrency, func(i int) error {
		x, err := s.Append(e.ctx, nextEntry(fmt.Sprintf("admin-%02d", i), "concurrent", "", at(time.Duration(i)*ms), &calls))
		returned[i] = x
		return err
	})
	for i, err := range errs {
		if err != nil {
			e.t.Errorf("Append #%d: %v", i, err)
		}
	}
	e.t.Logf("%d appends called next %d times", concurrency, calls.Load())
	all := e.auditAll()
	e.checkChain(all, concurrency)
	// Each writer's entry is in the log, at the place Append reported.
	for i, x := range returned {
		if x.Seq < 1 || int(x.Seq) > len(all) {
			e.t.Errorf("Append #%d returned seq %d", i, x.Seq)
			continue
		}
		e.equal(fmt.Sprintf("entry %d as Append #%d returned it", x.Seq, i), all[x.Seq-1], x)
		if x.Actor != fmt.Sprintf("admin-%02d", i) {
			e.t.Errorf("Append #%d returned entry of %s", i, x.Actor)
		}
	}
}
