package signing_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// FuzzVerify feeds receipt verification arbitrary compact JWS strings
// (seeded with a real one and mutations of it, plus testdata/fuzz): it must
// never panic, and it must accept nothing but the one token actually signed.
func FuzzVerify(f *testing.F) {
	key := make([]byte, envelope.KeySize)
	_, _ = rand.Read(key)
	kr, err := envelope.NewKeyring(key)
	if err != nil {
		f.Fatal(err)
	}
	// One key set per adapter: verification reads keys through the store
	// (an unknown kid triggers a reload), so both must refuse alike.
	var sets []*signing.Keyset
	for _, kind := range storetest.Kinds {
		ks, err := signing.Open(context.Background(), storetest.Open(f, kind).Signing(), kr, quiet)
		if err != nil {
			f.Fatal(err)
		}
		sets = append(sets, ks)
	}
	ks := sets[0]
	payload := []byte(`{"receiptId":"r1","purpose":"newsletter","action":"GRANT"}`)
	genuine, err := ks.SignCompact(context.Background(), payload, "consent-receipt+jwt")
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(genuine, ".")
	f.Add(genuine)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".." + parts[2])
	f.Add(parts[0] + "." + parts[1] + "x." + parts[2])
	f.Add(parts[0] + "." + parts[1] + "." + parts[2] + "=")
	f.Add("eyJhbGciOiJub25lIn0." + parts[1] + ".")
	f.Add(genuine + ".extra")
	f.Fuzz(func(t *testing.T, compact string) {
		for i, ks := range sets {
			got, _, err := ks.Verify(context.Background(), compact)
			if err != nil {
				continue
			}
			if compact != genuine || !bytes.Equal(got, payload) {
				t.Fatalf("%s: accepted a token that was never signed: %q (payload %q)", storetest.Kinds[i], compact, got)
			}
		}
	})
}
