package plugintest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/plugins"
)

// MemoryState is the kit's own in-memory implementation of plugins.State
// for tests. The server keeps State in its store instead, shared by every
// replica; the contract (each call atomic by itself) is the same.
type MemoryState struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemoryState returns an empty MemoryState.
func NewMemoryState() *MemoryState { return &MemoryState{m: map[string][]byte{}} }

// Get implements plugins.State.
func (s *MemoryState) Get(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return slices.Clone(v), ok, nil
}

// Put implements plugins.State.
func (s *MemoryState) Put(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = slices.Clone(value)
	return nil
}

// Delete implements plugins.State.
func (s *MemoryState) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// Keys lists the keys held, sorted (for assertions).
func (s *MemoryState) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.m))
}

// Signer is a plugins.Signer with a fresh Ed25519 key, standing in for the
// server's key set.
type Signer struct {
	// KeyID is sent as the kid of every signature.
	KeyID string
	// PublicKey verifies the signatures.
	PublicKey ed25519.PublicKey
	private   ed25519.PrivateKey
}

// NewSigner makes a Signer with a random key.
func NewSigner() *Signer {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return &Signer{KeyID: "plugintest", PublicKey: pub, private: priv}
}

// Sign implements plugins.Signer.
func (s *Signer) Sign(_ context.Context, msg []byte) (string, []byte, error) {
	return s.KeyID, ed25519.Sign(s.private, msg), nil
}

// NewEnv returns an Env for an instance of the registered type typ called
// name, the way the server builds one: Purpose and Fields from the
// manifest, the given settings, a NewSigner, an HTTP client with a 10s
// timeout, a NewMemoryState, PublicURL http://consentgraph.test and a
// logger that discards (a plugin may log from its own goroutines after the
// test ended, where t.Log would panic). The test fails at once when typ is not
// registered (import its package).
func NewEnv(t testing.TB, typ, name string, settings map[string]any) plugins.Env {
	t.Helper()
	m, _, ok := plugins.Lookup(typ)
	if !ok {
		t.Fatalf("plugintest: type %q is not registered (known: %v); import its package", typ, plugins.Types())
	}
	if settings == nil {
		settings = map[string]any{}
	}
	return plugins.Env{
		Name: name, Purpose: m.Purpose, Fields: slices.Clone(m.DataCategories), Settings: settings,
		Signer: NewSigner(), HTTPClient: &http.Client{Timeout: 10 * time.Second}, State: NewMemoryState(),
		PublicURL: "http://consentgraph.test", Logger: slog.New(slog.DiscardHandler),
	}
}
