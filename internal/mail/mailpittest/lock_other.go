//go:build !unix

package mailpittest

// lockFile is a no-op where flock is unavailable; the sync.Once in Binary
// still prevents concurrent installs within one test binary.
func lockFile(string) (func(), error) { return func() {}, nil }
