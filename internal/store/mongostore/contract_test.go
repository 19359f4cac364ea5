package mongostore

import (
	"testing"

	"github.com/consentgraph/consentgraph/internal/store/contract"
)

// TestContract runs the shared storage suite against the adapter: on the
// embedded FerretDB, or on the MongoDB named by
// CONSENTGRAPH_TEST_MONGODB_URI. Each case gets a fresh database, dropped
// when it ends.
func TestContract(t *testing.T) {
	contract.Run(t, func(t *testing.T) contract.Backend {
		return openTest(t, Options{})
	})
}
