package seed

import (
	"slices"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	mine, rest := splitArgs([]string{"--users", "5", "--data-dir", "d", "-seed=7", "--dev", "-users=9"}, "users", "seed")
	if !slices.Equal(mine, []string{"--users", "5", "-seed=7", "-users=9"}) || !slices.Equal(rest, []string{"--data-dir", "d", "--dev"}) {
		t.Fatalf("mine %q, rest %q", mine, rest)
	}
}
