package jws_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/signing/jws"
)

// FuzzVerify feeds the JWS parser arbitrary compact strings (seeded with a
// real token and mutations of it, plus testdata/fuzz): it must never
// panic, every refusal is one of the package's errors, and with the
// signer's public key it accepts nothing but the one token actually signed.
// It lives here, apart from signing.Keyset and its store, so that the fuzz
// build instruments only this small package (signing's key sets over both
// adapters run the same seeds in TestVerifyAcceptsOnlyTheSignedToken).
func FuzzVerify(f *testing.F) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	payload := []byte(`{"receiptId":"r1","purpose":"newsletter","action":"GRANT"}`)
	input, sig, err := jws.Sign(priv, "k1", "consent-receipt+jwt", payload)
	if err != nil {
		f.Fatal(err)
	}
	token := input + "." + sig
	parts := strings.Split(token, ".")
	for _, s := range []string{
		token,
		parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		parts[0] + "." + parts[1] + "x." + parts[2],
		token + "=",
		"eyJhbGciOiJub25lIn0." + parts[1] + ".",
		token + ".extra",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, compact string) {
		p, err := jws.Parse(compact)
		if err != nil {
			if !isKnown(err) {
				t.Fatalf("refusal of %q is not ErrMalformed or ErrWrongAlg: %v", compact, err)
			}
			return
		}
		if p.Header.Alg != jws.AlgEdDSA || p.Header.Kid == "" || len(p.Signature) != ed25519.SignatureSize {
			t.Fatalf("accepted the form of %q with header %+v and a %d-byte signature", compact, p.Header, len(p.Signature))
		}
		if err := p.Verify(pub); err == nil && (compact != token || !bytes.Equal(p.Payload, payload)) {
			t.Fatalf("accepted a token that was never signed: %q (payload %q)", compact, p.Payload)
		}
	})
}

func isKnown(err error) bool {
	return errors.Is(err, jws.ErrMalformed) || errors.Is(err, jws.ErrWrongAlg)
}
