package ordered

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func produce(keys ...string) func(context.Context, func(string) error) error {
	return func(_ context.Context, yield func(string) error) error {
		for _, k := range keys {
			if err := yield(k); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestSeekSkipsAndRest(t *testing.T) {
	f := Follow(context.Background(), func(s string) string { return s }, produce("a", "b", "d", "e", "g"))
	var skipped, rest []string
	skip := func(s string) { skipped = append(skipped, s) }
	if v, ok := f.SeekSkipping("b", skip); !ok || v != "b" {
		t.Fatalf("seek b: %q %v", v, ok)
	}
	if _, ok := f.SeekSkipping("c", skip); ok {
		t.Fatal("found c")
	}
	if v, ok := f.SeekSkipping("d", skip); !ok || v != "d" {
		t.Fatalf("seek d: %q %v", v, ok)
	}
	if v, ok := f.SeekSkipping("d", skip); !ok || v != "d" {
		t.Fatalf("seek d again: %q %v", v, ok)
	}
	if err := f.Rest(func(s string) { rest = append(rest, s) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(skipped, []string{"a"}) || !slices.Equal(rest, []string{"e", "g"}) {
		t.Fatalf("skipped %v, rest %v", skipped, rest)
	}
}

func TestCloseEarlyAndProducerError(t *testing.T) {
	f := Follow(context.Background(), func(s string) string { return s }, produce("a", "b", "c"))
	if _, ok := f.Seek("a"); !ok {
		t.Fatal("a not found")
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close early: %v", err)
	}
	boom := errors.New("boom")
	g := Follow(context.Background(), func(s string) string { return s }, func(_ context.Context, yield func(string) error) error {
		_ = yield("a")
		return boom
	})
	if _, ok := g.Seek("z"); ok {
		t.Fatal("found z")
	}
	if err := g.Close(); !errors.Is(err, boom) {
		t.Fatalf("producer error: %v", err)
	}
}
