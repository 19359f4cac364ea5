package contract

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/signing"
)

func signingTests() []contractTest {
	return []contractTest{
		{"signing/insert-and-keys", testSigningKeys},
		{"signing/retire-below", testRetireBelow},
		{"signing/set-expiry-and-swap", testSigningExpirySwap},
		{"signing/generation-unique-under-50-writers", testSigningConcurrent},
	}
}

func secretsTests() []contractTest {
	return []contractTest{
		{"secrets/insert-read-swap", testSecrets},
		{"secrets/name-unique-under-50-writers", testSecretsConcurrent},
	}
}

func signingKey(gen int64) signing.KeyRecord {
	return signing.KeyRecord{
		Kid: fmt.Sprintf("kid-%d", gen), Generation: gen, Alg: "EdDSA",
		PublicKey:  fmt.Appendf(nil, "pub\x00%d", gen),
		PrivateKey: fmt.Appendf(nil, "wrapped-seed\x00%d", gen), MasterKeyID: "mk-1",
		CreatedAt: at(time.Duration(gen) * time.Hour),
	}
}

func (e *env) keys() []signing.KeyRecord {
	e.t.Helper()
	ks, err := e.b.Signing().Keys(e.ctx)
	e.must(err, "Keys")
	slices.SortFunc(ks, func(a, b signing.KeyRecord) int { return int(a.Generation - b.Generation) })
	return ks
}

func (e *env) insertKey(k signing.KeyRecord) {
	e.t.Helper()
	ok, err := e.b.Signing().InsertKey(e.ctx, k)
	e.must(err, "InsertKey(%s)", k.Kid)
	e.wantBool("InsertKey("+k.Kid+")", true, ok)
}

func testSigningKeys(e *env) {
	s := e.b.Signing()
	if ks := e.keys(); len(ks) != 0 {
		e.t.Errorf("Keys of a new store = %v", ks)
	}
	k1, k2 := signingKey(1), signingKey(2)
	exp := at(90 * 24 * time.Hour)
	k2.ExpiresAt = &exp
	e.insertKey(k1)
	e.insertKey(k2)
	dup := signingKey(2)
	dup.Kid = "kid-other"
	ok, err := s.InsertKey(e.ctx, dup)
	e.must(err, "InsertKey(existing generation)")
	e.wantBool("InsertKey of an existing generation", false, ok)
	e.equal("Keys", []signing.KeyRecord{k1, k2}, e.keys())
}

func testRetireBelow(e *env) {
	s := e.b.Signing()
	k1, k2, k3 := signingKey(1), signingKey(2), signingKey(3)
	for _, k := range []signing.KeyRecord{k1, k2, k3} {
		e.insertKey(k)
	}
	r1 := at(10 * time.Hour)
	e.must(s.RetireBelow(e.ctx, 2, r1), "RetireBelow(2)")
	k1.RetiredAt, k1.PrivateKey, k1.MasterKeyID = &r1, nil, ""
	e.equal("Keys after RetireBelow(2)", []signing.KeyRecord{k1, k2, k3}, e.keys())

	// A key retired earlier keeps its retirement time.
	r2 := at(20 * time.Hour)
	e.must(s.RetireBelow(e.ctx, 3, r2), "RetireBelow(3)")
	k2.RetiredAt, k2.PrivateKey, k2.MasterKeyID = &r2, nil, ""
	e.equal("Keys after RetireBelow(3)", []signing.KeyRecord{k1, k2, k3}, e.keys())
	e.must(s.RetireBelow(e.ctx, 3, at(30*time.Hour)), "RetireBelow(3) again")
	e.equal("Keys after RetireBelow(3) again", []signing.KeyRecord{k1, k2, k3}, e.keys())
}

func testSigningExpirySwap(e *env) {
	s := e.b.Signing()
	k1, k2 := signingKey(1), signingKey(2)
	e.insertKey(k1)
	e.insertKey(k2)
	exp := at(48 * time.Hour)
	e.must(s.SetExpiry(e.ctx, "kid-1", exp), "SetExpiry")
	k1.ExpiresAt = &exp
	e.equal("Keys after SetExpiry", []signing.KeyRecord{k1, k2}, e.keys())
	exp2 := at(72 * time.Hour)
	e.must(s.SetExpiry(e.ctx, "kid-1", exp2), "SetExpiry again")
	k1.ExpiresAt = &exp2
	e.equal("Keys after a second SetExpiry", []signing.KeyRecord{k1, k2}, e.keys())

	ok, err := s.SwapPrivateKey(e.ctx, "kid-2", []byte("stale"), []byte("rewrapped"), "mk-2")
	e.must(err, "SwapPrivateKey(stale)")
	e.wantBool("SwapPrivateKey with a stale old key", false, ok)
	e.equal("Keys after a refused swap", []signing.KeyRecord{k1, k2}, e.keys())
	ok, err = s.SwapPrivateKey(e.ctx, "kid-2", k2.PrivateKey, []byte("rewrapped"), "mk-2")
	e.must(err, "SwapPrivateKey")
	e.wantBool("SwapPrivateKey", true, ok)
	k2.PrivateKey, k2.MasterKeyID = []byte("rewrapped"), "mk-2"
	e.equal("Keys after SwapPrivateKey", []signing.KeyRecord{k1, k2}, e.keys())
	ok, err = s.SwapPrivateKey(e.ctx, "kid-none", nil, []byte("x"), "mk-2")
	e.must(err, "SwapPrivateKey(absent)")
	e.wantBool("SwapPrivateKey of an absent key", false, ok)

	// A retired key's private key is gone for good.
	e.must(s.RetireBelow(e.ctx, 2, at(time.Hour)), "RetireBelow")
	ok, err = s.SwapPrivateKey(e.ctx, "kid-1", k1.PrivateKey, []byte("back"), "mk-2")
	e.must(err, "SwapPrivateKey(retired)")
	e.wantBool("SwapPrivateKey of a retired key with its former private key", false, ok)
	if ks := e.keys(); ks[0].PrivateKey != nil {
		e.t.Errorf("a retired key got a private key back: %q", ks[0].PrivateKey)
	}
}

func testSigningConcurrent(e *env) {
	s := e.b.Signing()
	e.insertKey(signingKey(1))
	won := make([]bool, concurrency)
	errs := e.parallel(concurrency, func(i int) error {
		k := signingKey(2)
		k.Kid = fmt.Sprintf("kid-2-%02d", i)
		ok, err := s.InsertKey(e.ctx, k)
		won[i] = ok
		return err
	})
	winner := -1
	for i := range concurrency {
		if errs[i] != nil {
			e.t.Errorf("InsertKey #%d: %v", i, errs[i])
		}
		if won[i] {
			if winner >= 0 {
				e.t.Errorf("InsertKey of generation 2 #%d and #%d both succeeded", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		e.t.Fatalf("none of %d concurrent InsertKey calls succeeded", concurrency)
	}
	want := signingKey(2)
	want.Kid = fmt.Sprintf("kid-2-%02d", winner)
	e.equal("Keys after the race", []signing.KeyRecord{signingKey(1), want}, e.keys())
}

func secret(name string) envelope.SecretRecord {
	return envelope.SecretRecord{Name: name, Value: []byte("wrapped\x00" + name), KeyID: "mk-1", CreatedAt: at(5 * ms)}
}

func (e *env) secret(name string) *envelope.SecretRecord {
	e.t.Helper()
	r, err := e.b.Secrets().Secret(e.ctx, name)
	e.must(err, "Secret(%s)", name)
	return r
}

func testSecrets(e *env) {
	s := e.b.Secrets()
	if r := e.secret("pseudonym-key"); r != nil {
		e.t.Errorf("Secret of an absent name = %+v", r)
	}
	all, err := s.Secrets(e.ctx)
	e.must(err, "Secrets")
	if len(all) != 0 {
		e.t.Errorf("Secrets of a new store = %v", all)
	}
	a, b := secret("pseudonym-key"), secret("cell-key")
	for _, x := range []envelope.SecretRecord{a, b} {
		ok, err := s.InsertSecret(e.ctx, x)
		e.must(err, "InsertSecret(%s)", x.Name)
		e.wantBool("InsertSecret("+x.Name+")", true, ok)
	}
	dup := secret("pseudonym-key")
	dup.Value = []byte("other")
	ok, err := s.InsertSecret(e.ctx, dup)
	e.must(err, "InsertSecret(existing)")
	e.wantBool("InsertSecret of an existing name", false, ok)
	e.equal("Secret(pseudonym-key)", &a, e.secret("pseudonym-key"))

	all, err = s.Secrets(e.ctx)
	e.must(err, "Secrets")
	slices.SortFunc(all, func(x, y envelope.SecretRecord) int { return strings.Compare(x.Name, y.Name) })
	e.equal("Secrets", []envelope.SecretRecord{b, a}, all)

	ok, err = s.SwapSecret(e.ctx, "cell-key", []byte("stale"), []byte("rewrapped"), "mk-2")
	e.must(err, "SwapSecret(stale)")
	e.wantBool("SwapSecret with a stale old value", false, ok)
	e.equal("Secret after a refused swap", &b, e.secret("cell-key"))
	ok, err = s.SwapSecret(e.ctx, "cell-key", b.Value, []byte("rewrapped"), "mk-2")
	e.must(err, "SwapSecret")
	e.wantBool("SwapSecret", true, ok)
	b.Value, b.KeyID = []byte("rewrapped"), "mk-2"
	e.equal("Secret after SwapSecret", &b, e.secret("cell-key"))
	e.equal("another secret after SwapSecret", &a, e.secret("pseudonym-key"))
	ok, err = s.SwapSecret(e.ctx, "absent", nil, []byte("x"), "mk-2")
	e.must(err, "SwapSecret(absent)")
	e.wantBool("SwapSecret of an absent name", false, ok)
	if r := e.secret("absent"); r != nil {
		e.t.Errorf("SwapSecret created a secret: %+v", r)
	}
}

func testSecretsConcurrent(e *env) {
	s := e.b.Secrets()
	won := make([]bool, concurrency)
	errs := e.parallel(concurrency, func(i int) error {
		x := secret("contested")
		x.Value = fmt.Appendf(nil, "value-%02d", i)
		ok, err := s.InsertSecret(e.ctx, x)
		won[i] = ok
		return err
	})
	winner := -1
	for i := range concurrency {
		if errs[i] != nil {
			e.t.Errorf("InsertSecret #%d: %v", i, errs[i])
		}
		if won[i] {
			if winner >= 0 {
				e.t.Errorf("InsertSecret #%d and #%d both succeeded", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		e.t.Fatalf("none of %d concurrent InsertSecret calls succeeded", concurrency)
	}
	want := secret("contested")
	want.Value = fmt.Appendf(nil, "value-%02d", winner)
	e.equal("Secret after the race (the winner's value)", &want, e.secret("contested"))
	all, err := s.Secrets(e.ctx)
	e.must(err, "Secrets")
	if len(all) != 1 {
		e.t.Errorf("Secrets after the race: %d records, want 1", len(all))
	}
}
