package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/consentgraph/consentgraph/internal/store/contract"
)

// TestContract runs the shared storage suite against a fresh embedded
// database per case.
func TestContract(t *testing.T) {
	contract.Run(t, func(t *testing.T) contract.Backend {
		d, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "consentgraph.db"), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := d.Close(context.Background()); err != nil {
				t.Error(err)
			}
		})
		return d
	})
}
