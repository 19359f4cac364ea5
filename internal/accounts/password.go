package accounts

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
)

// HashParams are argon2id parameters. The defaults are OWASP's recommended
// minimum (19 MiB, 2 passes, 1 lane); operators may raise them.
type HashParams struct {
	MemoryKiB   uint32
	Iterations  uint32
	Parallelism uint8
	// Concurrency bounds how many hashes run at once: each holds MemoryKiB,
	// so a burst of logins waits instead of exhausting memory.
	Concurrency int
}

// DefaultHashParams follows the OWASP password storage cheat sheet.
func DefaultHashParams() HashParams {
	return HashParams{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 1, Concurrency: runtime.NumCPU()}
}

// Validate rejects parameters below the OWASP minimum.
func (p HashParams) Validate() error {
	switch {
	case p.MemoryKiB < 19*1024:
		return fmt.Errorf("argon2 memory %d KiB is below the 19456 KiB minimum", p.MemoryKiB)
	case p.Iterations < 2:
		return fmt.Errorf("argon2 iterations %d is below the minimum of 2", p.Iterations)
	case p.Parallelism < 1:
		return errors.New("argon2 parallelism must be at least 1")
	case p.Concurrency < 1:
		return errors.New("argon2 concurrency must be at least 1")
	}
	return nil
}

// Hasher hashes and verifies passwords with bounded concurrency.
type Hasher struct {
	params HashParams
	slots  chan struct{}
	// dummy is verified against for unknown usernames so that a miss costs
	// the same as a wrong password.
	dummy string
}

// NewHasher returns a hasher; params must be valid.
func NewHasher(params HashParams) (*Hasher, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	h := &Hasher{params: params, slots: make(chan struct{}, params.Concurrency)}
	d, err := h.Hash(context.Background(), "consentgraph-timing-equaliser")
	if err != nil {
		return nil, err
	}
	h.dummy = d
	return h, nil
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for a password hashing slot: %w", ctx.Err())
	}
}

func (h *Hasher) release() { <-h.slots }

// Hash returns a PHC-format argon2id hash of password.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	p := h.params
	key := argon2.IDKey([]byte(password), salt, p.Iterations, p.MemoryKiB, p.Parallelism, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Iterations, p.Parallelism,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

var b64 = base64.RawStdEncoding

// Verify reports whether password matches encoded. An empty encoded hash
// (unknown user) is checked against a dummy so the timing is the same.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (bool, error) {
	known := encoded != ""
	if !known {
		encoded = h.dummy
	}
	var version int
	var mem, iter uint32
	var par uint8
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("unsupported password hash format")
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errors.New("unsupported argon2 version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &iter, &par); err != nil {
		return false, fmt.Errorf("argon2 parameters: %w", err)
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("argon2 salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil {
		return false, fmt.Errorf("argon2 hash: %w", err)
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(password), salt, iter, mem, par, uint32(len(want)))
	return known && subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether encoded was made with weaker parameters than
// the current ones, so a successful login can upgrade it.
func (h *Hasher) NeedsRehash(encoded string) bool {
	var mem, iter uint32
	var par uint8
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 {
		return true
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &iter, &par); err != nil {
		return true
	}
	p := h.params
	return mem < p.MemoryKiB || iter < p.Iterations || par < p.Parallelism
}
