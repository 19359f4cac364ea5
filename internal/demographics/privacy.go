package demographics

import (
	"fmt"
	"math"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// DefaultDelta is the default δ of one report: the probability with which
// a group that exists only because of one person may be shown.
const DefaultDelta = 1e-9

// MaxDelta bounds the configurable δ. A δ of this size already means that
// one in a thousand answers may expose a group of one; nobody should go
// near it.
const MaxDelta = 1e-3

// Mechanism is the release rule of one report: partition selection and
// counts from one draw of discrete Laplace noise per group.
//
// One user is in exactly one group of a subset, so adding or removing a
// user changes one count by 1 and changing their data moves them between
// two groups (L1 sensitivity 2). Every count therefore gets noise with
// P(Z = z) ∝ exp(-ε·|z|/2): each of the (at most two) changed groups costs
// ε/2, the answer ε. A group is a candidate only when its true count n is at
// least 1 (groups of nobody are not known to the cells), and it is shown
// only when n + Z ≥ Threshold, which makes a group that exists only because
// of one person appear with probability at most δ/2. See docs/privacy.md for
// the proof.
type Mechanism struct {
	Epsilon   Epsilon
	Delta     float64
	Threshold int64
}

// NewMechanism derives the mechanism for epsilon, delta and the floor k.
func NewMechanism(eps Epsilon, delta float64, k int) (Mechanism, error) {
	if eps <= 0 {
		return Mechanism{}, fmt.Errorf("mechanism: epsilon %d millionths, want > 0", eps)
	}
	if !(delta > 0 && delta < 1) {
		return Mechanism{}, fmt.Errorf("mechanism: delta %g, want 0 < delta < 1", delta)
	}
	return Mechanism{Epsilon: eps, Delta: delta, Threshold: max(int64(k), ThresholdForDelta(eps.Float(), delta))}, nil
}

// NoiseAlpha is α = exp(-ε/2), the ratio of successive probabilities of the
// noise a report at epsilon draws.
func NoiseAlpha(eps float64) float64 { return math.Exp(-eps / 2) }

// NoiseTail is P(Z ≥ m) = α^m / (1+α) for m ≥ 1 (and by symmetry P(Z ≤ -m)),
// for the noise of a report at epsilon.
func NoiseTail(eps float64, m int64) float64 {
	if m <= 0 {
		return 1 - NoiseTail(eps, 1-m)
	}
	a := NoiseAlpha(eps)
	return math.Exp(float64(m)*math.Log(a)) / (1 + a)
}

// NoiseVariance is the variance of a released count at epsilon:
// 2α/(1-α)² with α = exp(-ε/2).
func NoiseVariance(eps float64) float64 { return LaplaceVariance(eps / 2) }

// AppearProbability is the probability that a group of true count n ≥ 1 is
// shown by mech: P(n + Z ≥ τ).
func AppearProbability(mech Mechanism, n int64) float64 {
	return NoiseTail(mech.Epsilon.Float(), mech.Threshold-n)
}

// ThresholdForDelta is τ_δ, the smallest integer τ ≥ 2 with
// P(1 + Z ≥ τ) ≤ δ/2, where Z is the noise of a report at epsilon.
// With α = exp(-ε/2), P(Z ≥ m) = α^m/(1+α) for m ≥ 1, so we need the
// smallest m = τ-1 ≥ 1 with m·ε/2 ≥ ln(2/(δ(1+α))).
func ThresholdForDelta(eps, delta float64) int64 {
	a := NoiseAlpha(eps)
	need := math.Log(2/(delta*(1+a))) / (eps / 2)
	m := max(int64(math.Ceil(need)), 1)
	// Guard against rounding in the logarithms: step until the tail
	// condition itself holds, and never stop above the smallest m that does.
	for NoiseTail(eps, m) > delta/2 {
		m++
	}
	for m > 1 && NoiseTail(eps, m-1) <= delta/2 {
		m--
	}
	return m + 1
}

// ParseDelta validates a configured δ.
func ParseDelta(delta float64) error {
	if !(delta > 0 && delta <= MaxDelta) {
		return fmt.Errorf("delta %g: want 0 < delta ≤ %g", delta, MaxDelta)
	}
	return nil
}

// Released is a group the mechanism shows: its index among the input
// groups and its noisy count.
type Released struct {
	Index int
	Count int64
}

// Release runs the mechanism on true counts: every group with a count of at
// least 1 draws n + Z once; it is shown, with that noisy count, only when
// n + Z reaches the threshold. Nothing else about the input leaves here, so
// the answer is a function of the noisy counts alone. Release is what
// reports use, and what the statistical test of the guarantee runs.
func (m Mechanism) Release(counts []int64) []Released {
	return m.release(counts, newNoise())
}

func (m Mechanism) release(counts []int64, nz *noise) []Released {
	var out []Released
	for i, n := range counts {
		if n < 1 {
			continue
		}
		noisy := n + nz.laplaceHalf(m.Epsilon)
		if noisy < m.Threshold {
			continue
		}
		// The threshold is at least 2, so the clamp never bites; it keeps
		// the promise "never below 0" whatever the threshold becomes.
		out = append(out, Released{Index: i, Count: max(0, noisy)})
	}
	return out
}

// checkCap refuses an epsilon above the configured per-report cap.
func checkCap(field string, eps Epsilon, capEps Epsilon) error {
	if eps > capEps {
		return apperr.Invalid(field, "epsilon must be between %g and %g (the cap of one report)", MinEpsilon, capEps.Float())
	}
	return nil
}
