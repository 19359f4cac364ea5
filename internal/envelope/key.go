// Package envelope implements Consentgraph's envelope encryption: a master
// key from configuration wraps per-user data keys and named service secrets,
// and the per-user data keys encrypt personal fields at rest. Deleting a
// user's wrapped data key makes every copy of that user's ciphertext
// unreadable (crypto-shredding), including copies in backups.
package envelope

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size in bytes of master keys, data keys and secrets.
const KeySize = 32

// ParseKey decodes a base64 (standard or URL alphabet, padded or not)
// encoding of exactly KeySize bytes. The error never echoes the input,
// since it is secret.
func ParseKey(b64 string) ([]byte, error) {
	s := strings.TrimSpace(b64)
	if s == "" {
		return nil, errors.New("master key is empty: want base64 of 32 random bytes")
	}
	var lastErr error
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		key, err := enc.DecodeString(s)
		if err != nil {
			lastErr = err
			continue
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("master key decodes to %d bytes, want %d (generate one with: openssl rand -base64 32)", len(key), KeySize)
		}
		return key, nil
	}
	return nil, fmt.Errorf("master key is not valid base64: %w", lastErr)
}

// LoadOrCreateKeyFile reads a base64 key from path, or creates the file with
// a fresh random key if it does not exist. The file is created with mode 0600
// (its directory 0700) because whoever reads it can decrypt all personal data.
func LoadOrCreateKeyFile(path string) (key []byte, created bool, err error) {
	key, err = readKeyFile(path)
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("create key directory: %w", err)
	}
	key = make([]byte, KeySize)
	_, _ = rand.Read(key) // never fails (Go ≥1.24 aborts the process instead)

	// Write the key to a temporary file first and link it into place: the
	// link fails if the key file exists, so two processes starting together
	// cannot overwrite each other's key, and a key file that exists is always
	// complete — a reader never sees it half-written, and a crash leaves no
	// truncated key behind.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".master-key-*")
	if err != nil {
		return nil, false, fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if werr == nil {
		werr = tmp.Chmod(0o600)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, false, fmt.Errorf("write key file: %w", werr)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		key, err = readKeyFile(path) // another process won: use its key
		return key, false, err
	} else if err != nil {
		return nil, false, fmt.Errorf("create key file: %w", err)
	}
	return key, true, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	key, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}
