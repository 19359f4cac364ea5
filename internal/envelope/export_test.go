package envelope

import "context"

// CreateSecret runs the creation step of Secrets.Get on its own, so a test
// can drive the losing side of the creation race deterministically.
func CreateSecret(ctx context.Context, s *Secrets, name string) ([]byte, error) {
	return s.create(ctx, name)
}
