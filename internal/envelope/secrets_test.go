package envelope_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

func TestSecretsCreatedOnceUnderRace(t *testing.T) {
	ctx := context.Background()
	db := storetest.NewDB(t)
	kr := mustKeyring(t, randKey(t))

	// Ten "replicas", each with its own Secrets (and cache), racing on first use.
	const n = 10
	got := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := envelope.OpenSecrets(ctx, db, kr).Get(ctx, "email-index")
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
	count, err := db.Collection(envelope.SecretsCollection).CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if count != 1 {
		t.Fatalf("%d secret documents, want 1", count)
	}

	// The stored value is wrapped, not in clear.
	var raw bson.M
	if err := db.Collection(envelope.SecretsCollection).FindOne(ctx, bson.D{}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if raw["_id"] != "email-index" || raw["createdAt"] == nil {
		t.Fatalf("unexpected document %v", raw)
	}
	if b, ok := raw["value"].(bson.Binary); !ok || bytes.Contains(b.Data, got[0]) {
		t.Fatalf("value is not a wrapped binary: %T", raw["value"])
	}

	// Caching and copies: a caller mutating its slice does not affect others.
	s := envelope.OpenSecrets(ctx, db, kr)
	a, _ := s.Get(ctx, "email-index")
	a[0] ^= 0xff
	b, _ := s.Get(ctx, "email-index")
	if !bytes.Equal(b, got[0]) {
		t.Fatal("cached secret was mutated through a returned slice")
	}
	other, err := s.Get(ctx, "pseudonym:newsletter")
	if err != nil || bytes.Equal(other, got[0]) {
		t.Fatalf("distinct names must give distinct secrets (err %v)", err)
	}
}

func TestSecretsRewrapAll(t *testing.T) {
	ctx := context.Background()
	db := storetest.NewDB(t)
	oldKey, newKey := randKey(t), randKey(t)
	oldKR := mustKeyring(t, oldKey)

	s := envelope.OpenSecrets(ctx, db, oldKR)
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
	if _, err := envelope.OpenSecrets(ctx, db, wrongKR).Get(ctx, "a"); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("Get with wrong master key: %v, want ErrDecrypt", err)
	}

	rotated := mustKeyring(t, newKey, oldKey)
	rs := envelope.OpenSecrets(ctx, db, rotated)
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
	fresh := envelope.OpenSecrets(ctx, db, mustKeyring(t, newKey))
	for name, w := range want {
		v, err := fresh.Get(ctx, name)
		if err != nil || !bytes.Equal(v, w) {
			t.Fatalf("secret %q after rewrap: %v", name, err)
		}
	}
	var doc struct {
		KeyID string `bson:"keyId"`
	}
	if err := db.Collection(envelope.SecretsCollection).FindOne(ctx, bson.D{{Key: "_id", Value: "b"}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.KeyID != rotated.CurrentKeyID() {
		t.Fatalf("keyId %q, want %q", doc.KeyID, rotated.CurrentKeyID())
	}
}
