package envelope

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Secrets are named random 32-byte secrets (blind-index keys, pseudonym
// keys, ...) shared by every server replica through the database, each
// wrapped under the master key. A secret never changes once created: data
// derived from it (indexes, pseudonyms) would otherwise stop matching.
type Secrets struct {
	store SecretStore
	kr    *Keyring

	mu    sync.RWMutex
	cache map[string][]byte
}

// OpenSecrets returns the secrets kept in st. It does not touch the store;
// secrets are created on first use by Get.
func OpenSecrets(st SecretStore, kr *Keyring) *Secrets {
	return &Secrets{
		store: st,
		kr:    kr,
		cache: make(map[string][]byte),
	}
}

func secretAAD(name string) string { return "secret:" + name }

// Get returns the secret called name, creating it on first use. Replicas
// racing to create the same secret all end up with the one that was inserted
// first: the name is the document _id, so only one insert can succeed.
// The returned slice is the caller's to keep.
func (s *Secrets) Get(ctx context.Context, name string) ([]byte, error) {
	if name == "" {
		return nil, errors.New("secret name is empty")
	}
	s.mu.RLock()
	v, ok := s.cache[name]
	s.mu.RUnlock()
	if ok {
		return bytes.Clone(v), nil
	}

	v, err := s.load(ctx, name)
	if errors.Is(err, errNoSecret) {
		v, err = s.create(ctx, name)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cache[name] = v
	s.mu.Unlock()
	return bytes.Clone(v), nil
}

var errNoSecret = errors.New("no such secret")

func (s *Secrets) load(ctx context.Context, name string) ([]byte, error) {
	doc, err := s.store.Secret(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("load secret %q: %w", name, err)
	}
	if doc == nil {
		return nil, errNoSecret
	}
	v, err := s.kr.Unwrap(doc.Value, secretAAD(name))
	if err != nil {
		// Never fall back to creating a new secret here: that would silently
		// invalidate every blind index and pseudonym derived from the old one.
		return nil, fmt.Errorf("unwrap secret %q (is the right master key configured?): %w", name, err)
	}
	if len(v) != KeySize {
		return nil, fmt.Errorf("secret %q has %d bytes, want %d", name, len(v), KeySize)
	}
	return v, nil
}

func (s *Secrets) create(ctx context.Context, name string) ([]byte, error) {
	v := make([]byte, KeySize)
	_, _ = rand.Read(v)
	wrapped, err := s.kr.Wrap(v, secretAAD(name))
	if err != nil {
		return nil, fmt.Errorf("wrap secret %q: %w", name, err)
	}
	ok, err := s.store.InsertSecret(ctx, SecretRecord{
		Name:      name,
		Value:     wrapped,
		KeyID:     s.kr.CurrentKeyID(),
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
	})
	if err == nil && !ok {
		// Another replica (or goroutine) won the race; use its secret.
		v, err := s.load(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("load secret %q after losing creation race: %w", name, err)
		}
		return v, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store secret %q: %w", name, err)
	}
	return v, nil
}

// RewrapAll re-wraps every stored secret that is not yet under the current
// master key and returns how many it changed. It keeps going past secrets it
// cannot re-wrap and reports them all in err. Safe to run on several
// replicas at once: each update is conditional on the blob read.
func (s *Secrets) RewrapAll(ctx context.Context) (n int, err error) {
	docs, err := s.store.Secrets(ctx)
	if err != nil {
		return 0, fmt.Errorf("list secrets: %w", err)
	}
	var errs []error
	for _, d := range docs {
		if !s.kr.NeedsRewrap(d.Value) {
			continue
		}
		out, changed, err := s.kr.Rewrap(d.Value, secretAAD(d.Name))
		if err != nil {
			errs = append(errs, fmt.Errorf("rewrap secret %q: %w", d.Name, err))
			continue
		}
		if !changed {
			continue
		}
		ok, err := s.store.SwapSecret(ctx, d.Name, d.Value, out, s.kr.CurrentKeyID())
		if err != nil {
			errs = append(errs, fmt.Errorf("store rewrapped secret %q: %w", d.Name, err))
			continue
		}
		if ok {
			n++
		}
	}
	return n, errors.Join(errs...)
}
