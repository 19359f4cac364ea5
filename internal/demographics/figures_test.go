package demographics

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// The figures of docs/privacy.md, computed by the code the server uses:
// `go test ./internal/demographics -run TestPrivacyFigures -v` prints them.
// The worked example is asserted so that the document cannot drift from
// the code.
func TestPrivacyFigures(t *testing.T) {
	if got := ThresholdForDelta(1, 1e-9); got != 43 {
		t.Fatalf("τ_δ at ε = 1, δ = 1e-9 is %d; docs/privacy.md says 43", got)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| ε | α = e^(-ε/2) | τ_δ (δ = 1e-9) | τ (k = 10) | P(group of 1 shown) | sd of a count |\n|---|---|---|---|---|---|\n")
	for _, e := range []float64{0.01, 0.1, 0.5, 1, 2, 5, 10} {
		eps, err := ParseEpsilon("epsilon", e)
		if err != nil {
			t.Fatal(err)
		}
		m, err := NewMechanism(eps, 1e-9, DefaultK)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "| %g | %.4f | %d | %d | %.2e | %.2f |\n", e, NoiseAlpha(e), ThresholdForDelta(e, 1e-9), m.Threshold,
			AppearProbability(m, 1), math.Sqrt(NoiseVariance(e)))
		if p := AppearProbability(Mechanism{Epsilon: eps, Threshold: ThresholdForDelta(e, 1e-9)}, 1); p > 1e-9/2 {
			t.Fatalf("ε %g: a group of one appears with probability %g > δ/2", e, p)
		}
	}
	fmt.Fprintf(&b, "\nProbability that a group of n people is shown (δ = 1e-9, k = 10):\n\n| n |")
	ns := []int64{1, 5, 10, 20, 30, 40, 43, 50, 60, 100}
	for _, n := range ns {
		fmt.Fprintf(&b, " %d |", n)
	}
	fmt.Fprintf(&b, "\n|---|%s\n", strings.Repeat("---|", len(ns)))
	for _, e := range []float64{0.1, 0.5, 1, 2, 10} {
		eps, _ := ParseEpsilon("epsilon", e)
		m, _ := NewMechanism(eps, 1e-9, DefaultK)
		fmt.Fprintf(&b, "| ε = %g (τ = %d) |", e, m.Threshold)
		for _, n := range ns {
			fmt.Fprintf(&b, " %.3g |", AppearProbability(m, n))
		}
		b.WriteString("\n")
	}
	t.Log(b.String())
}
