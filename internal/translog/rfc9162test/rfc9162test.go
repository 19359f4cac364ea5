// Package rfc9162test is an independent verifier of the consent log for
// tests: RFC 9162 §2.1.3.2 inclusion and §2.1.4.2 consistency verification
// written from the RFC's own algorithms (bit operations over the tree
// sizes), and checkpoint signatures checked with crypto/ed25519 against a
// JWKS. It shares no code with package translog on purpose: a test that
// verifies the server's proofs with the server's own verifier would pass
// whatever both got wrong together.
package rfc9162test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// LeafHash is SHA-256(0x00 ‖ data).
func LeafHash(data []byte) []byte {
	s := sha256.Sum256(append([]byte{0}, data...))
	return s[:]
}

func node(l, r []byte) []byte {
	b := make([]byte, 0, 1+len(l)+len(r))
	b = append(append(append(b, 1), l...), r...)
	s := sha256.Sum256(b)
	return s[:]
}

// Root is MTH(D[n]) of RFC 9162 §2.1.1 over leaf hashes, by its recursive
// definition.
func Root(leafHashes [][]byte) []byte {
	n := len(leafHashes)
	switch n {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		return leafHashes[0]
	}
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return node(Root(leafHashes[:k]), Root(leafHashes[k:]))
}

// VerifyInclusion is RFC 9162 §2.1.3.2.
func VerifyInclusion(leafIndex, treeSize uint64, leafHash []byte, path [][]byte, root []byte) error {
	if leafIndex >= treeSize {
		return errors.New("leaf index not below tree size")
	}
	fn, sn := leafIndex, treeSize-1
	r := leafHash
	for _, p := range path {
		if sn == 0 {
			return errors.New("inclusion path too long")
		}
		if fn&1 == 1 || fn == sn {
			r = node(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = node(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return errors.New("inclusion path too short")
	}
	if !bytes.Equal(r, root) {
		return errors.New("inclusion path does not lead to the root")
	}
	return nil
}

// VerifyConsistency is RFC 9162 §2.1.4.2, for 0 < first ≤ second.
func VerifyConsistency(first, second uint64, firstHash, secondHash []byte, path [][]byte) error {
	if first == 0 || first > second {
		return fmt.Errorf("bad sizes %d, %d", first, second)
	}
	if first == second {
		if len(path) != 0 {
			return errors.New("non-empty proof between equal sizes")
		}
		if !bytes.Equal(firstHash, secondHash) {
			return errors.New("equal sizes, different roots")
		}
		return nil
	}
	if first&(first-1) == 0 {
		path = append([][]byte{firstHash}, path...)
	}
	if len(path) == 0 {
		return errors.New("empty consistency proof")
	}
	fn, sn := first-1, second-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := path[0], path[0]
	for _, c := range path[1:] {
		if sn == 0 {
			return errors.New("consistency proof too long")
		}
		if fn&1 == 1 || fn == sn {
			fr = node(c, fr)
			sr = node(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = node(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return errors.New("consistency proof too short")
	}
	if !bytes.Equal(fr, firstHash) || !bytes.Equal(sr, secondHash) {
		return errors.New("consistency proof does not lead to both roots")
	}
	return nil
}

// Checkpoint is a checkpoint's verified payload.
type Checkpoint struct {
	TreeSize uint64 `json:"treeSize"`
	RootHash []byte `json:"rootHash"`
	IssuedAt string `json:"issuedAt"`
	Kid      string `json:"-"`
}

// VerifyCheckpoint checks a compact JWS's EdDSA signature with the key its
// kid names in jwks (a JSON Web Key Set), and decodes the payload.
func VerifyCheckpoint(jws string, jwks []byte) (*Checkpoint, error) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var h struct {
		Alg, Kid string
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if h.Alg != "EdDSA" {
		return nil, fmt.Errorf("alg %q", h.Alg)
	}
	var set struct {
		Keys []struct{ Kty, Crv, Kid, X string }
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	var pub ed25519.PublicKey
	for _, k := range set.Keys {
		if k.Kid == h.Kid && k.Kty == "OKP" && k.Crv == "Ed25519" {
			if pub, err = base64.RawURLEncoding.DecodeString(k.X); err != nil {
				return nil, fmt.Errorf("jwks key: %w", err)
			}
		}
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("no Ed25519 key %q in the JWKS", h.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, errors.New("bad signature")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	var c Checkpoint
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	c.Kid = h.Kid
	return &c, nil
}
