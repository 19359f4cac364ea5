package envelope

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// TestSecretCreateLosesRace drives the losing side of the creation race
// deterministically: the insert hits the existing _id, and the loser must
// adopt the stored secret rather than fail or use its own.
func TestSecretCreateLosesRace(t *testing.T) {
	ctx := context.Background()
	db := storetest.NewDB(t)
	master := make([]byte, KeySize)
	_, _ = rand.Read(master)
	kr, err := NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	winner, err := OpenSecrets(ctx, db, kr).Get(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenSecrets(ctx, db, kr).create(ctx, "s")
	if err != nil {
		t.Fatalf("losing create: %v", err)
	}
	if !bytes.Equal(got, winner) {
		t.Fatal("loser did not adopt the winner's secret")
	}
}
