package sqlite

import (
	"context"
	"fmt"
)

// ExecRaw runs one SQL statement on the writer, outside every port. It is
// for tests that tamper with stored records behind the services' back (to
// prove tampering is detected) and for an operator's one-off repairs; the
// server never calls it.
func (d *DB) ExecRaw(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := d.w.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("raw statement: %w", err)
	}
	return res.RowsAffected()
}
