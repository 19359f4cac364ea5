package signing_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

var quiet = slog.New(slog.DiscardHandler)

func newKeyring(t *testing.T, previous ...[]byte) (*envelope.Keyring, []byte) {
	t.Helper()
	key := make([]byte, envelope.KeySize)
	_, _ = rand.Read(key)
	kr, err := envelope.NewKeyring(key, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return kr, key
}

func open(t *testing.T, be store.Backend, kr *envelope.Keyring) *signing.Keyset {
	t.Helper()
	ks, err := signing.Open(context.Background(), be.Signing(), kr, quiet)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return ks
}

// fetchJWKS reads the key set the way an outside verifier would: over HTTP,
// parsed by go-jose, knowing nothing else about this package.
func fetchJWKS(t *testing.T, ks *signing.Keyset) jose.JSONWebKeySet {
	t.Helper()
	srv := httptest.NewServer(ks.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("Cache-Control %q", cc)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range raw.Keys {
		if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" || k["kid"] == "" || k["x"] == "" {
			t.Errorf("unexpected JWK %v", k)
		}
		if _, ok := k["d"]; ok {
			t.Fatal("JWKS leaks a private key")
		}
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("go-jose cannot parse JWKS: %v", err)
	}
	return set
}

// joseVerify verifies a compact JWS with go-jose and the JWKS only.
func joseVerify(set jose.JSONWebKeySet, compact string) ([]byte, error) {
	obj, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, err
	}
	keys := set.Key(obj.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return nil, errors.New("kid not in JWKS")
	}
	return obj.Verify(keys[0].Key)
}

func TestSignCompactVerifiesWithIndependentVerifier(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		ks := open(t, be, kr)

		payload := []byte(`{"receiptId":"r1","purpose":"newsletter","action":"GRANT"}`)
		jws, err := ks.SignCompact(ctx, payload, "consent-receipt+jws")
		if err != nil {
			t.Fatal(err)
		}
		set := fetchJWKS(t, ks)
		if len(set.Keys) != 1 || set.Keys[0].KeyID != ks.ActiveKid() {
			t.Fatalf("JWKS has %d keys, want the active one", len(set.Keys))
		}
		got, err := joseVerify(set, jws)
		if err != nil || string(got) != string(payload) {
			t.Fatalf("go-jose verify: %q, %v", got, err)
		}

		got, hdr, err := ks.Verify(ctx, jws)
		if err != nil || string(got) != string(payload) {
			t.Fatalf("Verify: %q, %v", got, err)
		}
		if hdr != (signing.Header{Alg: "EdDSA", Kid: ks.ActiveKid(), Typ: "consent-receipt+jws"}) {
			t.Fatalf("header %+v", hdr)
		}
		// The header is exactly the documented one.
		rawHdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(jws, ".")[0])
		if want := `{"alg":"EdDSA","kid":"` + ks.ActiveKid() + `","typ":"consent-receipt+jws"}`; string(rawHdr) != want {
			t.Fatalf("header %s, want %s", rawHdr, want)
		}
	})
}

func TestTamperingDetected(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		ks := open(t, be, kr)
		set := fetchJWKS(t, ks)
		jws, _ := ks.SignCompact(ctx, []byte(`{"action":"GRANT","purpose":"surveys"}`), "")

		// Flip one bit of a byte in the payload and in the signature, re-encoded
		// properly, so that the only thing wrong is the content.
		parts := strings.Split(jws, ".")
		for i := 1; i <= 2; i++ {
			raw, _ := base64.RawURLEncoding.DecodeString(parts[i])
			raw[len(raw)/2] ^= 0x01
			bad := append([]string(nil), parts...)
			bad[i] = base64.RawURLEncoding.EncodeToString(raw)
			forged := strings.Join(bad, ".")
			if _, _, err := ks.Verify(ctx, forged); !errors.Is(err, signing.ErrBadSignature) {
				t.Errorf("part %d flipped: err = %v, want ErrBadSignature", i, err)
			}
			if _, err := joseVerify(set, forged); err == nil {
				t.Errorf("part %d flipped: go-jose accepted it", i)
			}
		}
		// Any single character change is rejected one way or another.
		for i := range len(jws) {
			if jws[i] == '.' {
				continue
			}
			c := byte('A')
			if jws[i] == 'A' {
				c = 'B'
			}
			forged := jws[:i] + string(c) + jws[i+1:]
			if _, _, err := ks.Verify(ctx, forged); err == nil {
				t.Fatalf("changed char %d accepted", i)
			}
		}
	})
}

func TestVerifyErrorReasons(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		ks := open(t, be, kr)
		enc := base64.RawURLEncoding.EncodeToString

		_, foreign, _ := ed25519.GenerateKey(rand.Reader)
		forge := func(header string, key ed25519.PrivateKey) string {
			input := enc([]byte(header)) + "." + enc([]byte("{}"))
			return input + "." + enc(ed25519.Sign(key, []byte(input)))
		}
		kid := ks.ActiveKid()
		cases := []struct {
			name string
			jws  string
			want error
		}{
			{"empty", "", signing.ErrMalformed},
			{"two parts", "a.b", signing.ErrMalformed},
			{"four parts", "a.b.c.d", signing.ErrMalformed},
			{"header not base64", "!!!.e30." + enc(make([]byte, 64)), signing.ErrMalformed},
			{"header not json", enc([]byte("nope")) + ".e30." + enc(make([]byte, 64)), signing.ErrMalformed},
			{"short signature", enc([]byte(`{"alg":"EdDSA","kid":"`+kid+`"}`)) + ".e30." + enc(make([]byte, 10)), signing.ErrMalformed},
			{"no kid", forge(`{"alg":"EdDSA"}`, foreign), signing.ErrMalformed},
			{"crit", forge(`{"alg":"EdDSA","kid":"`+kid+`","crit":["exp"],"exp":1}`, foreign), signing.ErrMalformed},
			{"alg none", enc([]byte(`{"alg":"none","kid":"`+kid+`"}`)) + ".e30.", signing.ErrWrongAlg},
			{"alg HS256", forge(`{"alg":"HS256","kid":"`+kid+`"}`, foreign), signing.ErrWrongAlg},
			{"unknown kid", forge(`{"alg":"EdDSA","kid":"nobody"}`, foreign), signing.ErrUnknownKey},
			{"right kid, wrong key", forge(`{"alg":"EdDSA","kid":"`+kid+`"}`, foreign), signing.ErrBadSignature},
		}
		for _, c := range cases {
			_, _, err := ks.Verify(ctx, c.jws)
			if !errors.Is(err, c.want) {
				t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
			}
		}
	})
}

func TestDetached(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		ks := open(t, be, kr)
		export := []byte(`{"profile":{"country":"DE"},"consents":[]}`)

		jws, err := ks.SignDetached(ctx, export)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(jws, ".")
		if len(parts) != 3 || parts[1] != "" {
			t.Fatalf("not a detached JWS: %q", jws)
		}
		if err := ks.VerifyDetached(ctx, jws, export); err != nil {
			t.Fatalf("VerifyDetached: %v", err)
		}
		altered := []byte(strings.Replace(string(export), "DE", "FR", 1))
		if err := ks.VerifyDetached(ctx, jws, altered); !errors.Is(err, signing.ErrBadSignature) {
			t.Fatalf("altered payload: %v", err)
		}
		compact, _ := ks.SignCompact(ctx, export, "")
		if err := ks.VerifyDetached(ctx, compact, export); !errors.Is(err, signing.ErrMalformed) {
			t.Fatalf("attached JWS passed as detached: %v", err)
		}

		// Independent check with go-jose.
		set := fetchJWKS(t, ks)
		obj, err := jose.ParseDetached(jws, export, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := obj.Verify(set.Key(ks.ActiveKid())[0].Key); err != nil {
			t.Fatalf("go-jose detached verify: %v", err)
		}
	})
}

func TestRawSign(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		ks := open(t, be, kr)
		msg := []byte("msg_1.1700000000.{\"type\":\"consent.granted\"}")
		kid, sig, err := ks.Sign(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		pks := ks.PublicKeys()
		if len(pks) != 1 || pks[0].Kid != kid || !pks[0].Active {
			t.Fatalf("PublicKeys = %+v", pks)
		}
		if !ed25519.Verify(pks[0].Key, msg, sig) {
			t.Fatal("raw signature does not verify")
		}
	})
}

func TestRotation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		ks := open(t, be, kr)
		oldKid := ks.ActiveKid()
		oldJWS, _ := ks.SignCompact(ctx, []byte("before"), "")
		oldDetached, _ := ks.SignDetached(ctx, []byte("export"))

		newKid, err := ks.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if newKid == oldKid || ks.ActiveKid() != newKid {
			t.Fatalf("active %q after rotate returned %q (old %q)", ks.ActiveKid(), newKid, oldKid)
		}
		newJWS, _ := ks.SignCompact(ctx, []byte("after"), "")
		if _, h, err := ks.Verify(ctx, newJWS); err != nil || h.Kid != newKid {
			t.Fatalf("new signature: kid %q, %v", h.Kid, err)
		}
		if p, h, err := ks.Verify(ctx, oldJWS); err != nil || h.Kid != oldKid || string(p) != "before" {
			t.Fatalf("old signature after rotation: %v", err)
		}
		if err := ks.VerifyDetached(ctx, oldDetached, []byte("export")); err != nil {
			t.Fatalf("old detached signature after rotation: %v", err)
		}

		set := fetchJWKS(t, ks)
		if len(set.Keys) != 2 || set.Keys[0].KeyID != newKid || set.Keys[1].KeyID != oldKid {
			t.Fatalf("JWKS keys %v, want [%s %s]", kids(set), newKid, oldKid)
		}
		for _, jws := range []string{oldJWS, newJWS} {
			if _, err := joseVerify(set, jws); err != nil {
				t.Fatalf("go-jose after rotation: %v", err)
			}
		}

		pks := ks.PublicKeys()
		if !pks[0].Active || pks[0].Kid != newKid || pks[1].Active || pks[1].RetiredAt.IsZero() {
			t.Fatalf("PublicKeys after rotation: %+v", pks)
		}
		// The retired key's private half is gone from the store.
		recs, err := be.Signing().Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var retired *signing.KeyRecord
		for i := range recs {
			if recs[i].Kid == oldKid {
				retired = &recs[i]
			}
		}
		if retired == nil {
			t.Fatalf("retired key %s is gone from the store", oldKid)
		}
		if retired.PrivateKey != nil || retired.MasterKeyID != "" || retired.RetiredAt == nil {
			t.Fatalf("retired key still stores its private key: %+v", retired)
		}

		// Expiry stops publishing and accepting the old key, never the active one.
		if err := ks.Expire(ctx, newKid, time.Now()); err == nil {
			t.Fatal("expired the active key")
		}
		if err := ks.Expire(ctx, oldKid, time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if set := fetchJWKS(t, ks); len(set.Keys) != 1 || set.Keys[0].KeyID != newKid {
			t.Fatalf("JWKS after expiry: %v", kids(set))
		}
		if _, _, err := ks.Verify(ctx, oldJWS); !errors.Is(err, signing.ErrUnknownKey) {
			t.Fatalf("signature by expired key: %v", err)
		}
	})
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

func TestConcurrentOpenYieldsOneActiveKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)

		const n = 6
		sets := make([]*signing.Keyset, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ks, err := signing.Open(ctx, be.Signing(), kr, quiet)
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
					return
				}
				sets[i] = ks
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for i, ks := range sets {
			if ks.ActiveKid() != sets[0].ActiveKid() {
				t.Fatalf("replica %d active %q, replica 0 active %q", i, ks.ActiveKid(), sets[0].ActiveKid())
			}
		}
		// Losers left no unused keys behind: one key is stored.
		recs, err := be.Signing().Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 {
			t.Fatalf("%d stored keys, want 1", len(recs))
		}
		// Any replica verifies what any other signed.
		jws, _ := sets[1].SignCompact(ctx, []byte("x"), "")
		if _, _, err := sets[n-1].Verify(ctx, jws); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConcurrentRotate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		a, b := open(t, be, kr), open(t, be, kr)
		first := a.ActiveKid()

		var wg sync.WaitGroup
		for _, ks := range []*signing.Keyset{a, b} {
			wg.Go(func() {
				if _, err := ks.Rotate(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if err := a.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if a.ActiveKid() != b.ActiveKid() || a.ActiveKid() == first {
			t.Fatalf("active keys %q and %q (first %q)", a.ActiveKid(), b.ActiveKid(), first)
		}
		for _, pk := range a.PublicKeys() {
			if !pk.Active && pk.RetiredAt.IsZero() {
				t.Errorf("key %s is neither active nor retired", pk.Kid)
			}
		}
	})
}

func TestReopenLoadsSameKeys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		ks1 := open(t, be, kr)
		if _, err := ks1.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		jws, _ := ks1.SignCompact(ctx, []byte("persisted"), "")
		jwks1, _ := ks1.JWKS()

		ks2 := open(t, be, kr)
		if ks2.ActiveKid() != ks1.ActiveKid() {
			t.Fatalf("reopened active %q, want %q", ks2.ActiveKid(), ks1.ActiveKid())
		}
		jwks2, _ := ks2.JWKS()
		if string(jwks1) != string(jwks2) {
			t.Fatalf("JWKS differs after reopen:\n%s\n%s", jwks1, jwks2)
		}
		if _, _, err := ks2.Verify(ctx, jws); err != nil {
			t.Fatal(err)
		}
		// Same private key too: the reopened set's signatures verify with the old instance.
		jws2, _ := ks2.SignCompact(ctx, []byte("again"), "")
		if _, _, err := ks1.Verify(ctx, jws2); err != nil {
			t.Fatal(err)
		}
	})
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		a, b := open(t, be, kr), open(t, be, kr)

		// b opened just now, so a kid it has never seen does not reload yet.
		if _, err := a.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		jws, _ := a.SignCompact(ctx, []byte("from a"), "")
		if _, _, err := b.Verify(ctx, jws); !errors.Is(err, signing.ErrUnknownKey) {
			t.Fatalf("verify right after open: %v, want ErrUnknownKey (rate-limited)", err)
		}
		// An explicit refresh (as Run does periodically) picks the rotation up.
		if err := b.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.Verify(ctx, jws); err != nil {
			t.Fatalf("after refresh: %v", err)
		}
		if b.ActiveKid() != a.ActiveKid() {
			t.Fatal("refresh did not switch the signer")
		}
	})
}

func TestMasterKeyRotationAndWrongKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr1, key1 := newKeyring(t)
		ks := open(t, be, kr1)
		kid := ks.ActiveKid()

		// A wrong master key must fail loudly, never create a replacement key.
		wrong, _ := newKeyring(t)
		if _, err := signing.Open(ctx, be.Signing(), wrong, quiet); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("Open with wrong master key: %v, want ErrDecrypt", err)
		}

		kr2, key2 := newKeyring(t, key1)
		ks2 := open(t, be, kr2)
		if ks2.ActiveKid() != kid {
			t.Fatal("active key changed with the master key")
		}
		n, err := ks2.RewrapAll(ctx)
		if err != nil || n != 1 {
			t.Fatalf("RewrapAll = %d, %v; want 1", n, err)
		}
		onlyNew, err := envelope.NewKeyring(key2)
		if err != nil {
			t.Fatal(err)
		}
		ks3 := open(t, be, onlyNew)
		jws, _ := ks3.SignCompact(ctx, []byte("x"), "")
		if _, _, err := ks.Verify(ctx, jws); err != nil {
			t.Fatal(err)
		}
	})
}

func TestHandlerMethods(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		kr, _ := newKeyring(t)
		ks := open(t, be, kr)
		rec := httptest.NewRecorder()
		ks.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/.well-known/jwks.json", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("POST status %d", rec.Code)
		}
	})
}

// TestGenerationIsUnique checks the store enforces the invariant every
// creation and rotation race relies on.
func TestGenerationIsUnique(t *testing.T) {
	storetest.Each(t, func(t *testing.T, be store.Backend) {
		ctx := context.Background()
		kr, _ := newKeyring(t)
		ks := open(t, be, kr)
		gen := ks.PublicKeys()[0].Generation
		intruder := signing.KeyRecord{Kid: "intruder", Generation: gen, Alg: "EdDSA", PublicKey: make([]byte, ed25519.PublicKeySize),
			PrivateKey: []byte("x"), MasterKeyID: "m", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
		ok, err := be.Signing().InsertKey(ctx, intruder)
		if err != nil || ok {
			t.Fatalf("second key with generation %d: stored %v, err %v; want refused", gen, ok, err)
		}
		recs, err := be.Signing().Keys(ctx)
		if err != nil || len(recs) != 1 || recs[0].Kid != ks.ActiveKid() {
			t.Fatalf("keys after the refused insert: %+v, %v", recs, err)
		}
	})
}
