// Package jws encodes and parses the compact JWS (RFC 7515) this service
// signs: EdDSA only, strict base64url, no header extensions. Which keys
// exist and which are still valid is signing.Keyset's business; this
// package holds only the format, apart from any store, so that it can be
// fuzzed without building the storage adapters.
package jws

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// AlgEdDSA is the only algorithm written and accepted.
const AlgEdDSA = "EdDSA"

// Reasons a JWS is refused. Each is wrapped with details; test with
// errors.Is.
var (
	// ErrMalformed: not a JWS this service could have produced.
	ErrMalformed = errors.New("malformed signature")
	// ErrWrongAlg: the header names an algorithm other than EdDSA.
	ErrWrongAlg = errors.New("unsupported signature algorithm")
	// ErrBadSignature: well-formed, but the content or signature was
	// altered (or another key signed it).
	ErrBadSignature = errors.New("signature does not match the content")
)

// Header is the protected JWS header this package writes and reads.
type Header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ,omitempty"`
}

// wireHeader also catches parameters we must refuse rather than ignore.
type wireHeader struct {
	Header
	Crit json.RawMessage `json:"crit"`
	B64  json.RawMessage `json:"b64"`
}

var b64 = base64.RawURLEncoding

// b64Strict rejects padding and non-canonical trailing bits, so one
// signature has exactly one textual form.
var b64Strict = base64.RawURLEncoding.Strict()

// Parsed is a JWS whose form has been checked but whose signature has not.
type Parsed struct {
	Header  Header
	Payload []byte
	// SigningInput is what the signature covers: header "." payload, both
	// base64url.
	SigningInput string
	Signature    []byte
}

// Sign returns the signing input and the base64url signature of payload
// under header {"alg":"EdDSA","kid":kid,"typ":typ} (typ omitted when empty).
func Sign(key ed25519.PrivateKey, kid, typ string, payload []byte) (input, sig string, err error) {
	hdr, err := json.Marshal(Header{Alg: AlgEdDSA, Kid: kid, Typ: typ})
	if err != nil {
		return "", "", fmt.Errorf("encode JWS header: %w", err)
	}
	input = b64.EncodeToString(hdr) + "." + b64.EncodeToString(payload)
	return input, b64.EncodeToString(ed25519.Sign(key, []byte(input))), nil
}

// Parse checks the form of a compact JWS "header.payload.signature".
func Parse(compact string) (Parsed, error) {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return Parsed{}, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrMalformed, len(parts))
	}
	h, err := parseHeader(parts[0])
	if err != nil {
		return Parsed{}, err
	}
	payload, err := b64Strict.DecodeString(parts[1])
	if err != nil {
		return Parsed{}, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	return withSignature(h, parts[0]+"."+parts[1], parts[2], payload)
}

// ParseDetached checks the form of a JWS with detached content
// "header..signature" (RFC 7515 appendix F) made for payload.
func ParseDetached(jws string, payload []byte) (Parsed, error) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return Parsed{}, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrMalformed, len(parts))
	}
	if parts[1] != "" {
		return Parsed{}, fmt.Errorf("%w: not a detached JWS (payload part is not empty)", ErrMalformed)
	}
	h, err := parseHeader(parts[0])
	if err != nil {
		return Parsed{}, err
	}
	return withSignature(h, parts[0]+"."+b64.EncodeToString(payload), parts[2], payload)
}

func withSignature(h Header, input, sigPart string, payload []byte) (Parsed, error) {
	sig, err := b64Strict.DecodeString(sigPart)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Parsed{}, fmt.Errorf("%w: signature is not %d bytes of base64url", ErrMalformed, ed25519.SignatureSize)
	}
	return Parsed{Header: h, Payload: payload, SigningInput: input, Signature: sig}, nil
}

func parseHeader(part string) (Header, error) {
	raw, err := b64Strict.DecodeString(part)
	if err != nil {
		return Header{}, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var h wireHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return Header{}, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	if h.Alg != AlgEdDSA {
		return Header{}, fmt.Errorf("%w: %q", ErrWrongAlg, h.Alg)
	}
	// Extensions would change what the signature means; we use none.
	if h.Crit != nil || h.B64 != nil {
		return Header{}, fmt.Errorf("%w: unsupported header parameter (crit or b64)", ErrMalformed)
	}
	if h.Kid == "" {
		return Header{}, fmt.Errorf("%w: header has no kid", ErrMalformed)
	}
	return h.Header, nil
}

// Verify checks p's signature with pub.
func (p Parsed) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, []byte(p.SigningInput), p.Signature) {
		return ErrBadSignature
	}
	return nil
}
