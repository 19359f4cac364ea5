package signing_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/fuzzcorpus"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// TestVerifyAcceptsOnlyTheSignedToken runs the seeds of jws.FuzzVerify (a
// real token, mutations of it, and jws/testdata/fuzz/FuzzVerify) through
// key sets on both storage adapters: verification reads keys through the
// store (an unknown kid triggers a reload), so both must refuse alike. The
// fuzzing itself runs on the jws package, which builds without the store.
func TestVerifyAcceptsOnlyTheSignedToken(t *testing.T) {
	key := make([]byte, envelope.KeySize)
	_, _ = rand.Read(key)
	kr, err := envelope.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	var sets []*signing.Keyset
	for _, kind := range storetest.Kinds {
		ks, err := signing.Open(context.Background(), storetest.Open(t, kind).Signing(), kr, quiet)
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, ks)
	}
	ks := sets[0]
	payload := []byte(`{"receiptId":"r1","purpose":"newsletter","action":"GRANT"}`)
	genuine, err := ks.SignCompact(context.Background(), payload, "consent-receipt+jwt")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(genuine, ".")
	inputs := []string{
		genuine,
		parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		parts[0] + "." + parts[1] + "x." + parts[2],
		parts[0] + "." + parts[1] + "." + parts[2] + "=",
		"eyJhbGciOiJub25lIn0." + parts[1] + ".",
		genuine + ".extra",
	}
	corpus, err := fuzzcorpus.Read("jws/testdata/fuzz/FuzzVerify")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range corpus {
		inputs = append(inputs, in[0].(string))
	}
	accepted := 0
	for _, compact := range inputs {
		for i, ks := range sets {
			got, _, err := ks.Verify(context.Background(), compact)
			if err != nil {
				continue
			}
			if compact != genuine || !bytes.Equal(got, payload) {
				t.Fatalf("%s: accepted a token that was never signed: %q (payload %q)", storetest.Kinds[i], compact, got)
			}
			accepted++
		}
	}
	// Only the key set that signed it (the first adapter's) accepts the
	// genuine token; the other holds keys of its own.
	if accepted != 1 {
		t.Fatalf("%d verifications succeeded, want 1 (the genuine token, by the key set that signed it)", accepted)
	}
}
