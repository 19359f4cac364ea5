package envelope_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/consentgraph/consentgraph/internal/envelope"
)

func randKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, envelope.KeySize)
	_, _ = rand.Read(k)
	return k
}

func mustKeyring(t *testing.T, current []byte, previous ...[]byte) *envelope.Keyring {
	t.Helper()
	kr, err := envelope.NewKeyring(current, previous...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

func TestParseKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb, 0xff, 0x3e}, 11)[:32] // bytes that differ between alphabets
	for name, enc := range map[string]*base64.Encoding{
		"std": base64.StdEncoding, "rawstd": base64.RawStdEncoding,
		"url": base64.URLEncoding, "rawurl": base64.RawURLEncoding,
	} {
		got, err := envelope.ParseKey(" " + enc.EncodeToString(raw) + "\n")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, raw) {
			t.Errorf("%s: decoded key differs", name)
		}
	}
	secret := "not*base64*at*all"
	for _, bad := range []string{"", secret, base64.StdEncoding.EncodeToString(make([]byte, 16)), base64.StdEncoding.EncodeToString(make([]byte, 33))} {
		_, err := envelope.ParseKey(bad)
		if err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks the key: %v", err)
		}
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "master.key")
	k1, created, err := envelope.LoadOrCreateKeyFile(path)
	if err != nil || !created || len(k1) != envelope.KeySize {
		t.Fatalf("create: key %d bytes, created=%v, err=%v", len(k1), created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %o, want 600", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("key dir mode %o, want 700", perm)
	}
	k2, created, err := envelope.LoadOrCreateKeyFile(path)
	if err != nil || created {
		t.Fatalf("reuse: created=%v err=%v", created, err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("reopened key differs")
	}

	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := envelope.LoadOrCreateKeyFile(path); err == nil {
		t.Fatal("corrupt key file accepted (it must never be silently replaced)")
	}
}

func TestLoadOrCreateKeyFileRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	const n = 8
	keys := make([][]byte, n)
	var created, wg = make([]bool, n), sync.WaitGroup{}
	for i := range n {
		wg.Go(func() {
			k, c, err := envelope.LoadOrCreateKeyFile(path)
			if err != nil {
				t.Error(err)
			}
			keys[i], created[i] = k, c
		})
	}
	wg.Wait()
	nCreated := 0
	for i := range n {
		if created[i] {
			nCreated++
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatal("racing creators got different keys")
		}
	}
	if nCreated != 1 {
		t.Fatalf("%d creators reported created, want 1", nCreated)
	}
}

func TestNewKeyringRejectsBadKeys(t *testing.T) {
	if _, err := envelope.NewKeyring(make([]byte, 16)); err == nil {
		t.Error("16-byte current key accepted")
	}
	if _, err := envelope.NewKeyring(randKey(t), []byte("short")); err == nil {
		t.Error("short previous key accepted")
	}
}

func TestWrapUnwrap(t *testing.T) {
	key := randKey(t)
	kr := mustKeyring(t, key)
	if got, want := kr.CurrentKeyID(), envelope.KeyID(key); got != want || len(got) != 16 {
		t.Fatalf("CurrentKeyID %q, want %q (16 hex chars)", got, want)
	}
	plain := []byte("the quick brown fox")
	blob, err := kr.Wrap(plain, "user:1:dek")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, plain) {
		t.Fatal("blob contains plaintext")
	}
	got, err := kr.Unwrap(blob, "user:1:dek")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Unwrap = %q, %v", got, err)
	}
	blob2, _ := kr.Wrap(plain, "user:1:dek")
	if bytes.Equal(blob, blob2) {
		t.Fatal("two wraps of the same plaintext are identical: nonce reuse")
	}
	empty, _ := kr.Wrap(nil, "x")
	if got, err := kr.Unwrap(empty, "x"); err != nil || len(got) != 0 {
		t.Fatalf("empty round trip: %q, %v", got, err)
	}

	if _, err := kr.Unwrap(blob, "user:2:dek"); !errors.Is(err, envelope.ErrDecrypt) {
		t.Errorf("wrong aad: err = %v, want ErrDecrypt", err)
	}
	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 0x01
		if _, err := kr.Unwrap(bad, "user:1:dek"); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("flipped byte %d: err = %v, want ErrDecrypt", i, err)
		}
	}
	for _, bad := range [][]byte{nil, blob[:10], blob[:len(blob)-1]} {
		if _, err := kr.Unwrap(bad, "user:1:dek"); !errors.Is(err, envelope.ErrDecrypt) {
			t.Errorf("truncated blob (%d bytes): err = %v", len(bad), err)
		}
	}
	other := mustKeyring(t, randKey(t))
	_, err = other.Unwrap(blob, "user:1:dek")
	if !errors.Is(err, envelope.ErrDecrypt) || !errors.Is(err, envelope.ErrUnknownKey) {
		t.Errorf("unknown master key: err = %v, want ErrDecrypt and ErrUnknownKey", err)
	}
}

func TestMasterKeyRotation(t *testing.T) {
	oldKey, newKey := randKey(t), randKey(t)
	oldKR := mustKeyring(t, oldKey)
	blob, _ := oldKR.Wrap([]byte("secret"), "aad")

	rotated := mustKeyring(t, newKey, oldKey)
	if rotated.CurrentKeyID() != envelope.KeyID(newKey) {
		t.Fatal("current key is not the new key")
	}
	if !rotated.NeedsRewrap(blob) {
		t.Fatal("blob under old key does not need rewrap")
	}
	if got, err := rotated.Unwrap(blob, "aad"); err != nil || string(got) != "secret" {
		t.Fatalf("unwrap with previous key: %q, %v", got, err)
	}
	out, changed, err := rotated.Rewrap(blob, "aad")
	if err != nil || !changed {
		t.Fatalf("Rewrap: changed=%v err=%v", changed, err)
	}
	if rotated.NeedsRewrap(out) {
		t.Fatal("rewrapped blob still needs rewrap")
	}
	// After rewrapping, the old key can be dropped from configuration.
	onlyNew := mustKeyring(t, newKey)
	if got, err := onlyNew.Unwrap(out, "aad"); err != nil || string(got) != "secret" {
		t.Fatalf("unwrap rewrapped blob with new key only: %q, %v", got, err)
	}
	if _, err := onlyNew.Unwrap(blob, "aad"); !errors.Is(err, envelope.ErrUnknownKey) {
		t.Fatalf("old blob without old key: %v", err)
	}
	again, changed, err := rotated.Rewrap(out, "aad")
	if err != nil || changed || !bytes.Equal(again, out) {
		t.Fatalf("second Rewrap: changed=%v err=%v", changed, err)
	}
	if _, _, err := rotated.Rewrap(out, "other aad"); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("Rewrap with wrong aad: %v", err)
	}
}

func TestDataKey(t *testing.T) {
	master := randKey(t)
	kr := mustKeyring(t, master)
	dk, wrapped, err := kr.NewDataKey("user:42")
	if err != nil {
		t.Fatal(err)
	}
	ct := dk.SealString("alice@example.org", "user:42:email")
	if bytes.Contains(ct, []byte("alice")) {
		t.Fatal("ciphertext contains plaintext")
	}

	reopened, err := kr.OpenDataKey(wrapped, "user:42")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := reopened.OpenString(ct, "user:42:email"); err != nil || got != "alice@example.org" {
		t.Fatalf("OpenString = %q, %v", got, err)
	}
	// A ciphertext cannot be moved to another field or user.
	for _, aad := range []string{"user:42:name", "user:43:email", ""} {
		if _, err := reopened.Open(ct, aad); !errors.Is(err, envelope.ErrDecrypt) {
			t.Errorf("aad %q: err = %v, want ErrDecrypt", aad, err)
		}
	}
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x80
		if _, err := reopened.Open(bad, "user:42:email"); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("flipped byte %d: err = %v, want ErrDecrypt", i, err)
		}
	}
	if _, err := reopened.Open(nil, "user:42:email"); !errors.Is(err, envelope.ErrDecrypt) {
		t.Errorf("nil ciphertext: %v", err)
	}
	// A wrapped data key is bound to its owner.
	if _, err := kr.OpenDataKey(wrapped, "user:43"); !errors.Is(err, envelope.ErrDecrypt) {
		t.Errorf("data key under other owner: %v", err)
	}
	// Another user's key cannot read this user's data.
	dk2, _, _ := kr.NewDataKey("user:43")
	if _, err := dk2.Open(ct, "user:42:email"); !errors.Is(err, envelope.ErrDecrypt) {
		t.Errorf("other user's key: %v", err)
	}
	// Something wrapped with the same aad is not a data key.
	notKey, _ := kr.Wrap(make([]byte, 32), "user:42")
	if _, err := kr.OpenDataKey(notKey, "user:42"); !errors.Is(err, envelope.ErrDecrypt) {
		t.Errorf("plain wrapped blob opened as data key: %v", err)
	}

	// Data keys survive a master-key rotation and can be rewrapped.
	rotated := mustKeyring(t, randKey(t), master)
	out, changed, err := rotated.RewrapDataKey(wrapped, "user:42")
	if err != nil || !changed {
		t.Fatalf("RewrapDataKey: changed=%v err=%v", changed, err)
	}
	dk3, err := rotated.OpenDataKey(out, "user:42")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dk3.OpenString(ct, "user:42:email"); err != nil || got != "alice@example.org" {
		t.Fatalf("after rewrap: %q, %v", got, err)
	}
}

func TestBlindIndex(t *testing.T) {
	k1, k2 := randKey(t), randKey(t)
	a := envelope.BlindIndex(k1, "alice@example.org")
	if a != envelope.BlindIndex(k1, "alice@example.org") {
		t.Fatal("not deterministic")
	}
	if a == envelope.BlindIndex(k1, "bob@example.org") || a == envelope.BlindIndex(k2, "alice@example.org") {
		t.Fatal("collision across values or keys")
	}
	if len(a) != 43 || strings.ContainsAny(a, "+/=") {
		t.Fatalf("index %q is not 43 chars of unpadded base64url", a)
	}
}
