package contract

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/consentgraph/consentgraph/internal/audit"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/translog"
)

func translogTests() []contractTest {
	return []contractTest{
		{"translog/empty", testLogEmpty},
		{"translog/append-and-read", testLogAppendRead},
		{"translog/append-stops-at-a-taken-index-or-item", testLogAppendClash},
		{"translog/head-only-grows", testLogHeadGrows},
		{"translog/lease", testLogLease},
		{"translog/drain-roots-and-proofs", testLogDrain},
		{"translog/concurrent-appenders-do-not-fork", testLogConcurrentAppenders},
		{"translog/unlogged-marks", testUnloggedMarks},
	}
}

// testLeaf is leaf i of the suite's logs.
func testLeaf(i int64) translog.Leaf {
	data := []byte(fmt.Sprintf(`{"n":%d}`, i))
	return translog.Leaf{Index: i, Item: fmt.Sprintf("test/%08d", i), Data: data, Hash: translog.LeafHash(data), At: at(time.Duration(i) * ms)}
}

// refRoot is MTH over leaf hashes, straight from RFC 9162 §2.1.1.
func refRoot(hashes [][]byte) []byte {
	switch len(hashes) {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		return hashes[0]
	}
	k := 1
	for k*2 < len(hashes) {
		k *= 2
	}
	return translog.NodeHash(refRoot(hashes[:k]), refRoot(hashes[k:]))
}

func testLogEmpty(e *env) {
	s := e.b.Translog()
	h, err := s.Head(e.ctx)
	e.must(err, "Head")
	if h.Size != 0 || len(h.Root) != 0 {
		e.t.Errorf("Head of an empty log = %+v, want the zero head", h)
	}
	ls, err := s.Leaves(e.ctx, 0, 10)
	e.must(err, "Leaves")
	ns, err := s.Nodes(e.ctx, []translog.NodeID{{Level: 0, Index: 0}, {Level: 1, Index: 0}})
	e.must(err, "Nodes")
	if len(ls) != 0 || len(ns) != 0 {
		e.t.Errorf("an empty log has leaves %v, nodes %v", ls, ns)
	}
}

func testLogAppendRead(e *env) {
	s := e.b.Translog()
	l0, l1, l2 := testLeaf(0), testLeaf(1), testLeaf(2)
	n01 := translog.NodeHash(l0.Hash, l1.Hash)
	root := translog.NodeHash(n01, l2.Hash)
	n, err := s.Append(e.ctx, translog.Batch{Leaves: []translog.Leaf{l0, l1, l2},
		Nodes: []translog.Node{{ID: translog.NodeID{Level: 1, Index: 0}, Hash: n01}},
		Head:  translog.Head{Size: 3, Root: root, At: at(time.Second)}})
	e.must(err, "Append")
	if n != 3 {
		e.t.Fatalf("Append stored %d leaves, want 3", n)
	}
	h, err := s.Head(e.ctx)
	e.must(err, "Head")
	e.equal("head", translog.Head{Size: 3, Root: root, At: at(time.Second)}, h)
	ls, err := s.Leaves(e.ctx, 1, 10)
	e.must(err, "Leaves")
	e.equal("leaves from 1", []translog.Leaf{l1, l2}, ls)
	ls, err = s.LeavesByItem(e.ctx, []string{l2.Item, "test/none", l0.Item})
	e.must(err, "LeavesByItem")
	slices.SortFunc(ls, func(a, b translog.Leaf) int { return int(a.Index - b.Index) })
	e.equal("leaves by item", []translog.Leaf{l0, l2}, ls)
	ls, err = s.ItemLeaves(e.ctx, "test/0000000")
	e.must(err, "ItemLeaves")
	e.equal("leaves by prefix", []translog.Leaf{l0, l1, l2}, ls)
	ls, err = s.ItemLeaves(e.ctx, "tes")
	e.must(err, "ItemLeaves")
	e.equal("leaves by a shorter prefix", 3, len(ls))
	ls, err = s.ItemLeaves(e.ctx, "test/1")
	e.must(err, "ItemLeaves")
	e.equal("leaves by another prefix", 0, len(ls))
	ns, err := s.Nodes(e.ctx, []translog.NodeID{{Level: 0, Index: 2}, {Level: 1, Index: 0}, {Level: 1, Index: 1}, {Level: 2, Index: 0}})
	e.must(err, "Nodes")
	slices.SortFunc(ns, func(a, b translog.Node) int { return int(a.ID.Key() - b.ID.Key()) })
	e.equal("nodes", []translog.Node{{ID: translog.NodeID{Level: 0, Index: 2}, Hash: l2.Hash}, {ID: translog.NodeID{Level: 1, Index: 0}, Hash: n01}}, ns)
}

func testLogAppendClash(e *env) {
	s := e.b.Translog()
	l0, l1 := testLeaf(0), testLeaf(1)
	n, err := s.Append(e.ctx, translog.Batch{Leaves: []translog.Leaf{l0}, Head: translog.Head{Size: 1, Root: l0.Hash, At: t0}})
	e.must(err, "Append")
	e.equal("stored", 1, n)
	// Index 0 is taken: nothing goes in, the head stays.
	other := testLeaf(5)
	other.Index = 0
	n, err = s.Append(e.ctx, translog.Batch{Leaves: []translog.Leaf{other, l1}, Head: translog.Head{Size: 2, Root: []byte("x"), At: t0}})
	e.must(err, "Append (index taken)")
	e.equal("stored with the index taken", 0, n)
	// l1 goes in, then a leaf logging l0's item again stops the batch.
	dup := testLeaf(2)
	dup.Item = l0.Item
	n, err = s.Append(e.ctx, translog.Batch{Leaves: []translog.Leaf{l1, dup}, Head: translog.Head{Size: 3, Root: []byte("y"), At: t0}})
	e.must(err, "Append (item taken)")
	e.equal("stored before the taken item", 1, n)
	h, err := s.Head(e.ctx)
	e.must(err, "Head")
	e.equal("head after refused appends", int64(1), h.Size)
	ls, err := s.Leaves(e.ctx, 0, 10)
	e.must(err, "Leaves")
	e.equal("leaves", []translog.Leaf{l0, l1}, ls)
}

func testLogHeadGrows(e *env) {
	s := e.b.Translog()
	_, err := s.Append(e.ctx, translog.Batch{Head: translog.Head{Size: 5, Root: []byte("five"), At: t0}})
	e.must(err, "Append")
	_, err = s.Append(e.ctx, translog.Batch{Head: translog.Head{Size: 3, Root: []byte("three"), At: t0}})
	e.must(err, "Append")
	h, err := s.Head(e.ctx)
	e.must(err, "Head")
	e.equal("head", translog.Head{Size: 5, Root: []byte("five"), At: t0}, h)
}

func testLogLease(e *env) {
	s := e.b.Translog()
	take := func(owner string, now time.Time) bool {
		ok, err := s.Lease(e.ctx, owner, now, now.Add(10*time.Second))
		e.must(err, "Lease(%s)", owner)
		return ok
	}
	e.wantBool("a takes the free lease", true, take("a", t0))
	e.wantBool("b takes a's live lease", false, take("b", at(time.Second)))
	e.wantBool("a renews", true, take("a", at(2*time.Second)))
	e.wantBool("b takes it before a's renewal ends", false, take("b", at(11*time.Second)))
	e.wantBool("b takes the expired lease", true, take("b", at(12*time.Second)))
	e.wantBool("a takes b's live lease", false, take("a", at(13*time.Second)))
}

// edSigner signs checkpoints with a key of its own (what *signing.Keyset
// does with the server's keys).
type edSigner struct{ key ed25519.PrivateKey }

func newEdSigner() edSigner {
	_, k, _ := ed25519.GenerateKey(nil)
	return edSigner{k}
}

func (s edSigner) SignCompact(_ context.Context, payload []byte, typ string) (string, error) {
	h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": typ, "kid": "test"})
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(payload)
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.key, []byte(in))), nil
}

// memSource is a Source of n records kept in memory.
type memSource struct {
	mu     sync.Mutex
	items  []translog.Item
	logged map[string]int
}

func newMemSource(from, n int) *memSource {
	s := &memSource{logged: map[string]int{}}
	for i := from; i < from+n; i++ {
		data := []byte(fmt.Sprintf(`{"rec":%d}`, i))
		s.items = append(s.items, translog.Item{ID: fmt.Sprintf("rec/%08d", i), Data: data, At: at(time.Duration(i) * ms)})
	}
	return s
}

func (s *memSource) Unlogged(_ context.Context, limit int) ([]translog.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []translog.Item
	for _, it := range s.items {
		if s.logged[it.ID] == 0 && len(out) < limit {
			out = append(out, it)
		}
	}
	return out, nil
}

func (s *memSource) MarkLogged(_ context.Context, items []translog.Item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		s.logged[it.ID]++
	}
	return nil
}

func (e *env) newLog(batch int) *translog.Log {
	e.t.Helper()
	l, err := translog.New(translog.Options{Store: e.b.Translog(), Signer: newEdSigner(), Batch: batch, Now: func() time.Time { return t0 }})
	e.must(err, "translog.New")
	return l
}

// checkLog reads every leaf and checks them against want (item ids in
// order), and the head's root against the leaves.
func (e *env) checkLog(want []string) {
	e.t.Helper()
	ls, err := e.b.Translog().Leaves(e.ctx, 0, len(want)+10)
	e.must(err, "Leaves")
	var items []string
	var hashes [][]byte
	for i, l := range ls {
		if l.Index != int64(i) {
			e.t.Fatalf("leaf %d is stored at index %d", i, l.Index)
		}
		items, hashes = append(items, l.Item), append(hashes, l.Hash)
	}
	e.equal("logged items", want, items)
	h, err := e.b.Translog().Head(e.ctx)
	e.must(err, "Head")
	if h.Size != int64(len(ls)) || !bytes.Equal(h.Root, refRoot(hashes)) {
		e.t.Errorf("head %d/%x, want %d/%x", h.Size, h.Root, len(ls), refRoot(hashes))
	}
}

func testLogDrain(e *env) {
	src := newMemSource(0, 70)
	l := e.newLog(16) // several batches
	l.AddSource(src)
	roots := map[int64][]byte{}
	for _, n := range []int{1, 6, 25, 38} { // grow in steps to keep old roots
		src.mu.Lock()
		all := src.items
		src.items = all[:n]
		src.mu.Unlock()
		_, err := l.Drain(e.ctx)
		e.must(err, "Drain")
		h, err := l.Head(e.ctx)
		e.must(err, "Head")
		roots[h.Size] = h.Root
		src.mu.Lock()
		src.items = all
		src.mu.Unlock()
	}
	got, err := l.Drain(e.ctx)
	e.must(err, "Drain")
	e.equal("logged by the last drain", 70-38, got)
	want := make([]string, 70)
	for i := range want {
		want[i] = fmt.Sprintf("rec/%08d", i)
	}
	e.checkLog(want)
	for id, n := range src.logged {
		if n != 1 {
			e.t.Errorf("%s marked logged %d times", id, n)
		}
	}
	h, err := l.Head(e.ctx)
	e.must(err, "Head")
	for size, root := range roots {
		p, err := l.ConsistencyProof(e.ctx, size, h.Size)
		e.must(err, "ConsistencyProof(%d, %d)", size, h.Size)
		if err := translog.VerifyConsistency(size, h.Size, p, root, h.Root); err != nil {
			e.t.Errorf("consistency %d→%d: %v", size, h.Size, err)
		}
	}
	proofs, err := l.InclusionProofs(e.ctx, []string{"rec/00000000", "rec/00000069", "rec/00000033", "nope"})
	e.must(err, "InclusionProofs")
	e.equal("proofs", 3, len(proofs))
	for id, p := range proofs {
		if err := translog.VerifyInclusion(p.LeafHash, p.LeafIndex, p.TreeSize, p.Hashes, h.Root); err != nil {
			e.t.Errorf("inclusion of %s: %v", id, err)
		}
	}
	// Draining again with nothing new adds nothing.
	got, err = l.Drain(e.ctx)
	e.must(err, "Drain")
	e.equal("logged by an idle drain", 0, got)
}

// testLogConcurrentAppenders runs appenders that share no memory (as
// replicas on one database would) over one store and the same records:
// every record is logged once, at consecutive indexes, and the head's root
// is that of the stored leaves.
func testLogConcurrentAppenders(e *env) {
	const n, appenders = 120, 4
	src := newMemSource(0, n)
	var logs []*translog.Log
	for range appenders {
		l := e.newLog(7)
		l.AddSource(src)
		logs = append(logs, l)
	}
	// The lease would keep all but one idle; items Ensure appends bypass it.
	errs := e.parallel(appenders, func(i int) error {
		var items []translog.Item
		for j := i; j < n; j += appenders {
			items = append(items, src.items[j])
		}
		if err := logs[i].Ensure(e.ctx, items); err != nil {
			return err
		}
		_, err := logs[i].Drain(e.ctx)
		return err
	})
	for _, err := range errs {
		e.must(err, "appender")
	}
	_, err := logs[0].Drain(e.ctx)
	e.must(err, "Drain")
	ls, err := e.b.Translog().Leaves(e.ctx, 0, 2*n)
	e.must(err, "Leaves")
	var items []string
	for _, l := range ls {
		items = append(items, l.Item)
	}
	if len(ls) != n {
		e.t.Fatalf("%d leaves for %d records", len(ls), n)
	}
	e.checkLog(items)
	slices.Sort(items)
	e.equal("distinct items", n, len(slices.Compact(items)))
}

// testUnloggedMarks checks the "not yet logged" marks of consent events
// and audit entries: written with the record, listed oldest first, cleared
// by MarkLogged.
func testUnloggedMarks(e *env) {
	e.createAccount("u-log1")
	e.createAccount("u-log2")
	c1, c2 := newChain("u-log1"), newChain("u-log2")
	e.record(c1, "u-log1", "newsletter", true, at(2*time.Second))
	e.record(c2, "u-log2", "newsletter", true, at(time.Second))
	e.record(c1, "u-log1", "newsletter", false, at(3*time.Second))
	e.relay("")
	ev, err := e.b.Consent().Unlogged(e.ctx, 10)
	e.must(err, "consent Unlogged")
	var got []string
	for _, u := range ev {
		got = append(got, fmt.Sprintf("%s/%d", u.UserID, u.Event.Seq))
		if u.Event.Hash == "" || u.Event.ReceiptID == "" {
			e.t.Errorf("unlogged event %s/%d lacks its hash or receipt id", u.UserID, u.Event.Seq)
		}
	}
	e.equal("unlogged events, oldest first", []string{"u-log2/1", "u-log1/1", "u-log1/2"}, got)
	e.must(e.b.Consent().MarkLogged(e.ctx, []consent.EventRef{{UserID: "u-log1", Seq: 1}, {UserID: "u-gone", Seq: 1}}), "consent MarkLogged")
	ev, err = e.b.Consent().Unlogged(e.ctx, 10)
	e.must(err, "consent Unlogged")
	e.equal("unlogged events after marking", 2, len(ev))
	evs := e.events("u-log1")
	e.wantBool("event 1 logged", true, evs[0].Logged)
	e.wantBool("event 2 logged", false, evs[1].Logged)

	for i := range 3 {
		_, err := e.b.Audit().Append(e.ctx, nextEntry("admin", fmt.Sprintf("act%d", i), "", at(time.Duration(i)*time.Second), nil))
		e.must(err, "audit Append")
	}
	es, err := e.b.Audit().Unlogged(e.ctx, 2)
	e.must(err, "audit Unlogged")
	e.equal("unlogged audit entries", []int64{1, 2}, seqs(es))
	e.must(e.b.Audit().MarkLogged(e.ctx, []int64{1, 3}), "audit MarkLogged")
	es, err = e.b.Audit().Unlogged(e.ctx, 10)
	e.must(err, "audit Unlogged")
	e.equal("unlogged audit entries after marking", []int64{2}, seqs(es))
}

func seqs(es []audit.Entry) []int64 {
	var out []int64
	for _, x := range es {
		out = append(out, x.Seq)
	}
	return out
}
