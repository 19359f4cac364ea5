package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrDecrypt is returned (possibly wrapped) whenever a blob or ciphertext
// cannot be decrypted: it was tampered with, is malformed, was bound to a
// different aad, or was encrypted under a key that is not available.
var ErrDecrypt = errors.New("envelope: decryption failed")

// ErrUnknownKey is returned together with ErrDecrypt when a wrapped blob
// names a master key the keyring does not hold (typically: a previous master
// key was dropped from configuration before everything was re-wrapped).
var ErrUnknownKey = errors.New("envelope: blob was wrapped under a master key that is not configured")

const (
	wrapVersion  = 1
	keyIDLen     = 8
	wrapHeader   = 1 + keyIDLen
	gcmNonceSize = 12
	gcmTagSize   = 16
)

// Keyring holds the current master key and any previous ones. New blobs are
// always wrapped under the current key; blobs carry the id of the key that
// wrapped them, so that reads keep working across a master-key rotation
// until everything has been re-wrapped.
type Keyring struct {
	current keyID
	aeads   map[keyID]cipher.AEAD
}

type keyID [keyIDLen]byte

func (id keyID) String() string { return hex.EncodeToString(id[:]) }

// KeyID returns the id of a master key: the first 8 bytes of its SHA-256,
// in hex. It identifies the key in logs and blobs without revealing it.
func KeyID(key []byte) string {
	id := computeKeyID(key)
	return id.String()
}

func computeKeyID(key []byte) keyID {
	sum := sha256.Sum256(key)
	var id keyID
	copy(id[:], sum[:keyIDLen])
	return id
}

// NewKeyring returns a keyring that wraps under current and can still unwrap
// blobs made under any of previous. Every key must be KeySize bytes.
func NewKeyring(current []byte, previous ...[]byte) (*Keyring, error) {
	k := &Keyring{aeads: make(map[keyID]cipher.AEAD, 1+len(previous))}
	var err error
	if k.current, err = k.add(current); err != nil {
		return nil, fmt.Errorf("current master key: %w", err)
	}
	for i, p := range previous {
		if _, err := k.add(p); err != nil {
			return nil, fmt.Errorf("previous master key #%d: %w", i+1, err)
		}
	}
	return k, nil
}

func (k *Keyring) add(key []byte) (keyID, error) {
	if len(key) != KeySize {
		return keyID{}, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize)
	}
	id := computeKeyID(key)
	if _, dup := k.aeads[id]; dup {
		// The same key listed twice (e.g. current also kept as previous) is harmless.
		return id, nil
	}
	aead, err := newAEAD(key)
	if err != nil {
		return keyID{}, err
	}
	k.aeads[id] = aead
	return id, nil
}

// newAEAD builds AES-256-GCM with random 96-bit nonces prepended to the
// ciphertext. The key bytes are copied by aes.NewCipher, so callers may
// zero theirs afterwards.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// CurrentKeyID returns the id of the master key new blobs are wrapped under.
func (k *Keyring) CurrentKeyID() string { return k.current.String() }

// Wrap encrypts plain under the current master key, bound to aad.
//
// Blob layout: version (1) | key id (8) | nonce (12) | ciphertext | tag (16).
// The version and key id are authenticated together with aad.
func (k *Keyring) Wrap(plain []byte, aad string) ([]byte, error) {
	aead := k.aeads[k.current]
	out := make([]byte, wrapHeader, wrapHeader+len(plain)+aead.Overhead())
	out[0] = wrapVersion
	copy(out[1:], k.current[:])
	return aead.Seal(out, nil, plain, wrapAAD(out[:wrapHeader], aad)), nil
}

// Unwrap decrypts a blob made by Wrap with the master key it names. Any
// failure matches ErrDecrypt; an unconfigured key also matches ErrUnknownKey.
func (k *Keyring) Unwrap(blob []byte, aad string) ([]byte, error) {
	id, ok := parseWrapHeader(blob)
	if !ok {
		return nil, fmt.Errorf("%w: malformed wrapped blob", ErrDecrypt)
	}
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w: %w (key id %s)", ErrDecrypt, ErrUnknownKey, id)
	}
	plain, err := aead.Open(nil, nil, blob[wrapHeader:], wrapAAD(blob[:wrapHeader], aad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}

// NeedsRewrap reports whether blob is a well-formed wrapped blob made under
// a master key other than the current one. It does not authenticate the blob.
func (k *Keyring) NeedsRewrap(blob []byte) bool {
	id, ok := parseWrapHeader(blob)
	return ok && id != k.current
}

// Rewrap re-encrypts blob under the current master key if it was wrapped
// under an older one; otherwise it returns blob unchanged and changed=false.
func (k *Keyring) Rewrap(blob []byte, aad string) (out []byte, changed bool, err error) {
	if !k.NeedsRewrap(blob) {
		// Still authenticate, so callers cannot mistake garbage for "up to date".
		if _, err := k.Unwrap(blob, aad); err != nil {
			return nil, false, err
		}
		return blob, false, nil
	}
	plain, err := k.Unwrap(blob, aad)
	if err != nil {
		return nil, false, err
	}
	defer clear(plain)
	out, err = k.Wrap(plain, aad)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

func parseWrapHeader(blob []byte) (keyID, bool) {
	if len(blob) < wrapHeader+gcmNonceSize+gcmTagSize || blob[0] != wrapVersion {
		return keyID{}, false
	}
	var id keyID
	copy(id[:], blob[1:wrapHeader])
	return id, true
}

// wrapAAD returns a fresh buffer (GCM forbids aad overlapping dst).
func wrapAAD(header []byte, aad string) []byte {
	return append(bytes.Clone(header), aad...)
}

// dataKeyAAD separates data-key blobs from anything else wrapped under the
// same aad, so that an arbitrary wrapped secret can never be opened as a key.
func dataKeyAAD(aad string) string { return "datakey\x00" + aad }

// NewDataKey creates a random per-user data key and returns it with its
// wrapped form, to be stored next to the data it protects. aad names the
// owner (e.g. "user:<id>") so a wrapped key cannot be moved to another user.
func (k *Keyring) NewDataKey(aad string) (*DataKey, []byte, error) {
	raw := make([]byte, KeySize)
	_, _ = rand.Read(raw)
	defer clear(raw)
	dk, err := newDataKey(raw)
	if err != nil {
		return nil, nil, err
	}
	wrapped, err := k.Wrap(raw, dataKeyAAD(aad))
	if err != nil {
		return nil, nil, fmt.Errorf("wrap data key: %w", err)
	}
	return dk, wrapped, nil
}

// OpenDataKey unwraps a data key made by NewDataKey with the same aad.
func (k *Keyring) OpenDataKey(wrapped []byte, aad string) (*DataKey, error) {
	raw, err := k.Unwrap(wrapped, dataKeyAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("open data key: %w", err)
	}
	defer clear(raw)
	if len(raw) != KeySize {
		return nil, fmt.Errorf("open data key: %w: unwrapped key has %d bytes", ErrDecrypt, len(raw))
	}
	return newDataKey(raw)
}

// RewrapDataKey re-wraps a data key under the current master key; it is
// Rewrap with the aad NewDataKey used.
func (k *Keyring) RewrapDataKey(wrapped []byte, aad string) (out []byte, changed bool, err error) {
	return k.Rewrap(wrapped, dataKeyAAD(aad))
}
