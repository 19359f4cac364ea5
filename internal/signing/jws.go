package signing

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"

	"github.com/consentgraph/consentgraph/internal/signing/jws"
)

const algEdDSA = jws.AlgEdDSA

// Reasons a signature does not verify. Each is wrapped with details; test
// with errors.Is to tell a user why a receipt was rejected. The format
// errors are jws's own, so errors.Is works with either name.
var (
	// ErrMalformed: not a JWS this service could have produced.
	ErrMalformed = jws.ErrMalformed
	// ErrUnknownKey: the kid is not (or no longer) in the published key set.
	ErrUnknownKey = errors.New("signed by an unknown key")
	// ErrBadSignature: well-formed and by a known key, but the content or
	// signature was altered.
	ErrBadSignature = jws.ErrBadSignature
	// ErrWrongAlg: the header names an algorithm other than EdDSA.
	ErrWrongAlg = jws.ErrWrongAlg
)

// Header is the protected JWS header this package writes and reads.
type Header = jws.Header

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
	return jws.Sign(st.signer, st.active, typ, payload)
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
	p, err := jws.Parse(compact)
	if err != nil {
		return nil, Header{}, err
	}
	if err := ks.verify(ctx, p); err != nil {
		return nil, Header{}, err
	}
	return p.Payload, p.Header, nil
}

// VerifyDetached checks a JWS made by SignDetached against payload.
func (ks *Keyset) VerifyDetached(ctx context.Context, detached string, payload []byte) error {
	p, err := jws.ParseDetached(detached, payload)
	if err != nil {
		return err
	}
	return ks.verify(ctx, p)
}

func (ks *Keyset) verify(ctx context.Context, p jws.Parsed) error {
	pub, err := ks.publicKey(ctx, p.Header.Kid)
	if err != nil {
		return err
	}
	return p.Verify(pub)
}
