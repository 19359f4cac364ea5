package translog_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/store/storetest"
	"github.com/consentgraph/consentgraph/internal/translog"
	"github.com/consentgraph/consentgraph/internal/translog/rfc9162test"
)

type signer struct{ key ed25519.PrivateKey }

func (s signer) SignCompact(_ context.Context, payload []byte, typ string) (string, error) {
	h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": typ, "kid": "k"})
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(payload)
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.key, []byte(in))), nil
}

// oneByOne is a source that hands out its items up to upTo, so a test
// can make every tree size from 1 up the head once.
type oneByOne struct {
	items []translog.Item
	next  int
	upTo  int
}

func (s *oneByOne) Unlogged(context.Context, int) ([]translog.Item, error) {
	if s.next >= s.upTo {
		return nil, nil
	}
	return s.items[s.next:s.upTo], nil
}

func (s *oneByOne) MarkLogged(_ context.Context, items []translog.Item) error {
	s.next += len(items)
	return nil
}

// TestProofsAgainstIndependentVerifier grows a log on the embedded store
// one leaf at a time to 70 leaves, keeping every root, and checks the
// log's roots, inclusion proofs and consistency proofs with the
// independent RFC 9162 verifier for every size and pair of sizes; then
// that it rejects altered proofs.
func TestProofsAgainstIndependentVerifier(t *testing.T) {
	ctx := context.Background()
	b := storetest.Open(t, "embedded")
	_, key, _ := ed25519.GenerateKey(nil)
	l, err := translog.New(translog.Options{Store: b.Translog(), Signer: signer{key}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 70
	src := &oneByOne{}
	var leafHashes [][]byte
	for i := range n {
		data := translog.Commitment(translog.KindAudit, fmt.Sprint(i+1), fmt.Sprintf("%064x", i), time.Unix(int64(i), 0))
		src.items = append(src.items, translog.Item{ID: fmt.Sprintf("audit/%020d", i+1), Data: data, At: time.Unix(int64(i), 0)})
		leafHashes = append(leafHashes, rfc9162test.LeafHash(data))
	}
	l.AddSource(src)
	roots := map[int64][]byte{}
	for size := int64(1); size <= n; size++ {
		src.upTo = int(size)
		if _, err := l.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		h, err := l.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.Size != size {
			t.Fatalf("head size %d, want %d", h.Size, size)
		}
		if want := rfc9162test.Root(leafHashes[:size]); string(want) != string(h.Root) {
			t.Fatalf("root of %d leaves %x, want %x", size, h.Root, want)
		}
		roots[size] = h.Root
	}
	for first := int64(1); first <= n; first++ {
		for second := first; second <= n; second++ {
			p, err := l.ConsistencyProof(ctx, first, second)
			if err != nil {
				t.Fatal(err)
			}
			if err := rfc9162test.VerifyConsistency(uint64(first), uint64(second), roots[first], roots[second], p); err != nil {
				t.Fatalf("consistency %d→%d: %v", first, second, err)
			}
			if len(p) > 0 {
				bad := clone(p)
				bad[rand.IntN(len(bad))][rand.IntN(32)] ^= 1
				if rfc9162test.VerifyConsistency(uint64(first), uint64(second), roots[first], roots[second], bad) == nil {
					t.Fatalf("a tampered consistency proof %d→%d verified", first, second)
				}
				if rfc9162test.VerifyConsistency(uint64(first), uint64(second), roots[first], roots[second], p[:len(p)-1]) == nil {
					t.Fatalf("a shortened consistency proof %d→%d verified", first, second)
				}
			}
			// The server's own verifier agrees.
			if err := translog.VerifyConsistency(first, second, p, roots[first], roots[second]); err != nil {
				t.Fatalf("translog.VerifyConsistency %d→%d: %v", first, second, err)
			}
		}
	}
	var items []string
	for _, it := range src.items {
		items = append(items, it.ID)
	}
	proofs, err := l.InclusionProofs(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(proofs) != n {
		t.Fatalf("%d inclusion proofs for %d items", len(proofs), n)
	}
	for i, it := range src.items {
		p := proofs[it.ID]
		if p.LeafIndex != int64(i) || string(p.LeafHash) != string(leafHashes[i]) {
			t.Fatalf("proof of %s: leaf %d %x", it.ID, p.LeafIndex, p.LeafHash)
		}
		if err := rfc9162test.VerifyInclusion(uint64(p.LeafIndex), uint64(p.TreeSize), p.LeafHash, p.Hashes, roots[n]); err != nil {
			t.Fatalf("inclusion of leaf %d: %v", i, err)
		}
		if err := rfc9162test.VerifyInclusion(uint64(p.LeafIndex), uint64(p.TreeSize), rfc9162test.LeafHash([]byte("other")), p.Hashes, roots[n]); err == nil {
			t.Fatalf("another leaf verified at %d", i)
		}
		if len(p.Hashes) > 0 {
			bad := clone(p.Hashes)
			bad[rand.IntN(len(bad))][0] ^= 0x80
			if rfc9162test.VerifyInclusion(uint64(p.LeafIndex), uint64(p.TreeSize), p.LeafHash, bad, roots[n]) == nil {
				t.Fatalf("a tampered inclusion proof of %d verified", i)
			}
		}
	}
}

// TestLargeRandomSizes checks consistency proofs between random sizes of
// a bigger log (appended in batches), where trees are many levels deep.
func TestLargeRandomSizes(t *testing.T) {
	ctx := context.Background()
	b := storetest.Open(t, "embedded")
	_, key, _ := ed25519.GenerateKey(nil)
	l, err := translog.New(translog.Options{Store: b.Translog(), Signer: signer{key}, Batch: 97})
	if err != nil {
		t.Fatal(err)
	}
	var leafHashes [][]byte
	var items []translog.Item
	for i := range 3000 {
		data := []byte(fmt.Sprint(i))
		items = append(items, translog.Item{ID: fmt.Sprintf("x/%08d", i), Data: data, At: time.Unix(int64(i), 0)})
		leafHashes = append(leafHashes, rfc9162test.LeafHash(data))
	}
	if err := l.Ensure(ctx, items); err != nil {
		t.Fatal(err)
	}
	root := func(n int64) []byte { return rfc9162test.Root(leafHashes[:n]) }
	for range 300 {
		second := 1 + rand.Int64N(3000)
		first := 1 + rand.Int64N(second)
		p, err := l.ConsistencyProof(ctx, first, second)
		if err != nil {
			t.Fatal(err)
		}
		if err := rfc9162test.VerifyConsistency(uint64(first), uint64(second), root(first), root(second), p); err != nil {
			t.Fatalf("consistency %d→%d: %v", first, second, err)
		}
	}
}

func clone(hs [][]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = append([]byte(nil), h...)
	}
	return out
}
