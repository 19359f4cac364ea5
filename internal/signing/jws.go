package signing

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

const algEdDSA = "EdDSA"

// Reasons a signature does not verify. Each is wrapped with details; test
// with errors.Is to tell a user why a receipt was rejected.
var (
	// ErrMalformed: not a JWS this service could have produced.
	ErrMalformed = errors.New("malformed signature")
	// ErrUnknownKey: the kid is not (or no longer) in the published key set.
	ErrUnknownKey = errors.New("signed by an unknown key")
	// ErrBadSignature: well-formed and by a known key, but the content or
	// signature was altered.
	ErrBadSignature = errors.New("signature does not match the content")
	// ErrWrongAlg: the header names an algorithm other than EdDSA.
	ErrWrongAlg = errors.New("unsupported signature algorithm")
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

// SignCompact returns payload as a compact JWS (RFC 7515) signed by the
// active key, with header {"alg":"EdDSA","kid":...,"typ":typ}. An empty typ
// is omitted.
func (ks *Keyset) SignCompact(ctx context.Context, payload []byte, typ string) (string, error) {
	input, sig, err := ks.signJWS(ctx, payload, typ)
	if err != nil {
		return "", err
	}
	return input + "." + sig, nil
}

// SignDetached returns a JWS with detached content (RFC 7515 appendix F),
// "header..signature": the payload travels separately, e.g. as the body of
// an export download, and is passed to VerifyDetached.
func (ks *Keyset) SignDetached(ctx context.Context, payload []byte) (string, error) {
	input, sig, err := ks.signJWS(ctx, payload, "")
	if err != nil {
		return "", err
	}
	hdr, _, _ := strings.Cut(input, ".")
	return hdr + ".." + sig, nil
}

func (ks *Keyset) signJWS(_ context.Context, payload []byte, typ string) (input, sig string, err error) {
	st := ks.state.Load()
	hdr, err := json.Marshal(Header{Alg: algEdDSA, Kid: st.active, Typ: typ})
	if err != nil {
		return "", "", fmt.Errorf("encode JWS header: %w", err)
	}
	input = b64.EncodeToString(hdr) + "." + b64.EncodeToString(payload)
	return input, b64.EncodeToString(ed25519.Sign(st.signer, []byte(input))), nil
}

// Sign returns a raw Ed25519 signature of msg by the active key and that
// key's kid, for Standard Webhooks "v1a" signatures.
func (ks *Keyset) Sign(_ context.Context, msg []byte) (kid string, sig []byte, err error) {
	st := ks.state.Load()
	return st.active, ed25519.Sign(st.signer, msg), nil
}

// Verify checks a compact JWS made by SignCompact (by this or any replica,
// with the active or a retired key) and returns its payload and header.
func (ks *Keyset) Verify(ctx context.Context, compact string) (payload []byte, header Header, err error) {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return nil, Header{}, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrMalformed, len(parts))
	}
	header, err = parseHeader(parts[0])
	if err != nil {
		return nil, Header{}, err
	}
	payload, err = b64Strict.DecodeString(parts[1])
	if err != nil {
		return nil, Header{}, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	if err := ks.verifySig(ctx, header, parts[0]+"."+parts[1], parts[2]); err != nil {
		return nil, Header{}, err
	}
	return payload, header, nil
}

// VerifyDetached checks a JWS made by SignDetached against payload.
func (ks *Keyset) VerifyDetached(ctx context.Context, jws string, payload []byte) error {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrMalformed, len(parts))
	}
	if parts[1] != "" {
		return fmt.Errorf("%w: not a detached JWS (payload part is not empty)", ErrMalformed)
	}
	header, err := parseHeader(parts[0])
	if err != nil {
		return err
	}
	return ks.verifySig(ctx, header, parts[0]+"."+b64.EncodeToString(payload), parts[2])
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
	if h.Alg != algEdDSA {
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

func (ks *Keyset) verifySig(ctx context.Context, h Header, input, sigPart string) error {
	sig, err := b64Strict.DecodeString(sigPart)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature is not %d bytes of base64url", ErrMalformed, ed25519.SignatureSize)
	}
	pub, err := ks.publicKey(ctx, h.Kid)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, []byte(input), sig) {
		return ErrBadSignature
	}
	return nil
}
