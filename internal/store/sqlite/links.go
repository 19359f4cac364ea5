package sqlite

import (
	"context"
	"fmt"

	"github.com/consentgraph/consentgraph/internal/outbox"
)

var (
	qPutLink = sqlq(`INSERT INTO processor_links (processor, subject, state, data, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (processor, subject) DO UPDATE SET state = excluded.state, data = excluded.data, updated_at = excluded.updated_at`)
	qLink       = sqlq(`SELECT state, data, updated_at FROM processor_links WHERE processor = ? AND subject = ?`)
	qDeleteLink = sqlq(`DELETE FROM processor_links WHERE processor = ? AND subject = ?`)
)

func (s outboxStore) PutLink(ctx context.Context, l outbox.Link) error {
	if l.Data == nil {
		l.Data = []byte{}
	}
	if _, err := s.d.exec(ctx, qPutLink, l.Processor, l.Subject, l.State, l.Data, ms(l.UpdatedAt)); err != nil {
		return fmt.Errorf("store link of %s: %w", l.Processor, err)
	}
	return nil
}

// Links reads one primary-key row per key: a user's keys are one per
// configured processor, a handful.
func (s outboxStore) Links(ctx context.Context, keys []outbox.LinkKey) ([]outbox.Link, error) {
	var out []outbox.Link
	for _, k := range keys {
		l := outbox.Link{Processor: k.Processor, Subject: k.Subject}
		var at int64
		found, err := s.d.readRow(ctx, qLink, []any{k.Processor, k.Subject}, &l.State, &l.Data, &at)
		if err != nil {
			return nil, fmt.Errorf("read link of %s: %w", k.Processor, err)
		}
		if found {
			if l.Data == nil {
				l.Data = []byte{} // stored empty
			}
			l.UpdatedAt = fromMS(at)
			out = append(out, l)
		}
	}
	return out, nil
}

// DeleteLinks removes the keys in one transaction, so an erasure never
// leaves some behind when it reports success.
func (s outboxStore) DeleteLinks(ctx context.Context, keys []outbox.LinkKey) error {
	err := s.d.write(ctx, func(t *tx) error {
		for _, k := range keys {
			if _, err := t.exec(qDeleteLink, k.Processor, k.Subject); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete links: %w", err)
	}
	return nil
}
