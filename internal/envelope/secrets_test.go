package envelope_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

func TestSecretsCreatedOnceUnderRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		st := b.Secrets()
		kr := mustKeyring(t, randKey(t))

		// Ten "replicas", each with its own Secrets (and cache), racing on first use.
		const n = 10
		got := make([][]byte, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				v, err := envelope.OpenSecrets(st, kr).Get(ctx, "email-index")
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
				}
				got[i] = v
			})
		}
		wg.Wait()
		for i := range n {
			if len(got[i]) != envelope.KeySize || !bytes.Equal(got[i], got[0]) {
				t.Fatalf("replica %d got a different secret", i)
			}
		}
		all, err := st.Secrets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 {
			t.Fatalf("%d stored secrets, want 1", len(all))
		}

		// The stored value is wrapped, not in clear.
		raw := all[0]
		if raw.Name != "email-index" || raw.CreatedAt.IsZero() || raw.KeyID != kr.CurrentKeyID() {
			t.Fatalf("unexpected record %+v", raw)
		}
		if len(raw.Value) == 0 || bytes.Contains(raw.Value, got[0]) {
			t.Fatalf("value is not wrapped: %x", raw.Value)
		}

		// Caching and copies: a caller mutating its slice does not affect others.
		s := envelope.OpenSecrets(st, kr)
		a, _ := s.Get(ctx, "email-index")
		a[0] ^= 0xff
		again, _ := s.Get(ctx, "email-index")
		if !bytes.Equal(again, got[0]) {
			t.Fatal("cached secret was mutated through a returned slice")
		}
		other, err := s.Get(ctx, "pseudonym:newsletter")
		if err != nil || bytes.Equal(other, got[0]) {
			t.Fatalf("distinct names must give distinct secrets (err %v)", err)
		}
	})
}

// TestSecretCreateLosesRace drives the losing side of the creation race
// deterministically: the insert hits the existing name, and the loser must
// adopt the stored secret rather than fail or use its own.
func TestSecretCreateLosesRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		master := make([]byte, envelope.KeySize)
		_, _ = rand.Read(master)
		kr, err := envelope.NewKeyring(master)
		if err != nil {
			t.Fatal(err)
		}
		winner, err := envelope.OpenSecrets(b.Secrets(), kr).Get(ctx, "s")
		if err != nil {
			t.Fatal(err)
		}
		got, err := envelope.CreateSecret(ctx, envelope.OpenSecrets(b.Secrets(), kr), "s")
		if err != nil {
			t.Fatalf("losing create: %v", err)
		}
		if !bytes.Equal(got, winner) {
			t.Fatal("loser did not adopt the winner's secret")
		}
	})
}

func TestSecretsRewrapAll(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b store.Backend) {
		ctx := context.Background()
		st := b.Secrets()
		oldKey, newKey := randKey(t), randKey(t)
		oldKR := mustKeyring(t, oldKey)

		s := envelope.OpenSecrets(st, oldKR)
		want := map[string][]byte{}
		for _, name := range []string{"a", "b", "c"} {
			v, err := s.Get(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			want[name] = v
		}

		// Without the old key, secrets are unreadable and must not be replaced.
		wrongKR := mustKeyring(t, newKey)
		if _, err := envelope.OpenSecrets(st, wrongKR).Get(ctx, "a"); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("Get with wrong master key: %v, want ErrDecrypt", err)
		}

		rotated := mustKeyring(t, newKey, oldKey)
		rs := envelope.OpenSecrets(st, rotated)
		if v, err := rs.Get(ctx, "a"); err != nil || !bytes.Equal(v, want["a"]) {
			t.Fatalf("read under previous key: %v", err)
		}
		n, err := rs.RewrapAll(ctx)
		if err != nil || n != 3 {
			t.Fatalf("RewrapAll = %d, %v; want 3", n, err)
		}
		if n, err := rs.RewrapAll(ctx); err != nil || n != 0 {
			t.Fatalf("second RewrapAll = %d, %v; want 0", n, err)
		}
		// The old key can now be dropped; values are unchanged.
		fresh := envelope.OpenSecrets(st, mustKeyring(t, newKey))
		for name, w := range want {
			v, err := fresh.Get(ctx, name)
			if err != nil || !bytes.Equal(v, w) {
				t.Fatalf("secret %q after rewrap: %v", name, err)
			}
		}
		doc, err := st.Secret(ctx, "b")
		if err != nil || doc == nil {
			t.Fatalf("secret b: %v, %v", doc, err)
		}
		if doc.KeyID != rotated.CurrentKeyID() {
			t.Fatalf("keyId %q, want %q", doc.KeyID, rotated.CurrentKeyID())
		}
	})
}
