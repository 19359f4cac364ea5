package envelope

import (
	"crypto/cipher"
	"fmt"
)

const sealVersion = 1

// DataKey is a per-user AES-256-GCM key for personal fields. Obtain one from
// Keyring.NewDataKey or Keyring.OpenDataKey. It is safe for concurrent use.
type DataKey struct {
	aead cipher.AEAD
}

func newDataKey(raw []byte) (*DataKey, error) {
	aead, err := newAEAD(raw)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	return &DataKey{aead: aead}, nil
}

// Seal encrypts plaintext bound to aad, which should name the owner and the
// field (e.g. "user:<id>:email") so ciphertexts cannot be swapped between
// users or fields. Layout: version (1) | nonce (12) | ciphertext | tag (16).
func (d *DataKey) Seal(plaintext []byte, aad string) []byte {
	out := make([]byte, 1, 1+len(plaintext)+d.aead.Overhead())
	out[0] = sealVersion
	return d.aead.Seal(out, nil, plaintext, sealAAD(aad))
}

// Open decrypts a ciphertext made by Seal with the same aad. Every failure
// matches ErrDecrypt.
func (d *DataKey) Open(ciphertext []byte, aad string) ([]byte, error) {
	if len(ciphertext) < 1+gcmNonceSize+gcmTagSize || ciphertext[0] != sealVersion {
		return nil, fmt.Errorf("%w: malformed ciphertext", ErrDecrypt)
	}
	plain, err := d.aead.Open(nil, nil, ciphertext[1:], sealAAD(aad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}

// SealString is Seal for a string value.
func (d *DataKey) SealString(plaintext, aad string) []byte {
	return d.Seal([]byte(plaintext), aad)
}

// OpenString is Open for a value sealed with SealString.
func (d *DataKey) OpenString(ciphertext []byte, aad string) (string, error) {
	b, err := d.Open(ciphertext, aad)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// sealAAD authenticates the format version together with the caller's aad.
func sealAAD(aad string) []byte {
	b := make([]byte, 0, 1+len(aad))
	b = append(b, sealVersion)
	return append(b, aad...)
}
