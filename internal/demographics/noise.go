package demographics

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"io"
	"math"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// EpsilonUnit is the resolution of epsilon: a millionth. Working in whole
// millionths makes the epsilon charged to a budget and the epsilon the noise
// is drawn with the very same rational number, and lets the sampler below use
// exact integer arithmetic only.
const EpsilonUnit = 1_000_000

// Bounds of the epsilon one report may use.
const (
	MinEpsilon     = 0.01
	MaxEpsilon     = 10.0
	DefaultEpsilon = 1.0
)

// Epsilon is a privacy-loss parameter in millionths.
type Epsilon int64

// ParseEpsilon validates a requested epsilon and rounds it to a millionth.
func ParseEpsilon(field string, f float64) (Epsilon, error) {
	if math.IsNaN(f) || f < MinEpsilon || f > MaxEpsilon {
		return 0, apperr.Invalid(field, "epsilon must be between %g and %g", MinEpsilon, MaxEpsilon)
	}
	return Epsilon(math.Round(f * EpsilonUnit)), nil
}

// Float returns the epsilon as a number.
func (e Epsilon) Float() float64 { return float64(e) / EpsilonUnit }

// LaplaceVariance is the variance of the two-sided geometric distribution
// with parameter alpha = exp(-epsilon): 2·alpha / (1-alpha)².
func LaplaceVariance(eps float64) float64 {
	a := math.Exp(-eps)
	return 2 * a / ((1 - a) * (1 - a))
}

// noise draws two-sided geometric (discrete Laplace) noise from crypto/rand:
// P(Z = z) ∝ exp(-epsilon·|z|), the geometric mechanism for counts, where
// one person changes any count by at most one. It uses the exact sampler of
// Canonne, Kamath and Steinke ("The Discrete Gaussian for Differential
// Privacy", 2020, algorithms 1 and 2): only integer comparisons of uniform
// random integers, so there is no floating-point rounding for an observer to
// exploit (as there is with naive inversion of a continuous Laplace).
// A noise value is not safe for concurrent use; make one per report.
type noise struct {
	r io.Reader
}

func newNoise() *noise {
	// Buffering only batches the reads; every bit still comes from crypto/rand.
	return &noise{r: bufio.NewReaderSize(rand.Reader, 4096)}
}

func (n *noise) uint64() uint64 {
	var b [8]byte
	if _, err := io.ReadFull(n.r, b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; never draw
		// predictable noise if it somehow did.
		panic("crypto/rand failed: " + err.Error())
	}
	return binary.LittleEndian.Uint64(b[:])
}

// uniform returns an integer uniformly distributed in [0, bound), bound > 0,
// by rejection (no modulo bias).
func (n *noise) uniform(bound uint64) uint64 {
	limit := math.MaxUint64 - math.MaxUint64%bound
	for {
		v := n.uint64()
		if v < limit {
			return v % bound
		}
	}
}

// bernoulli returns true with probability num/den (0 <= num <= den).
func (n *noise) bernoulli(num, den uint64) bool {
	return n.uniform(den) < num
}

// bernoulliExp returns true with probability exp(-num/den).
func (n *noise) bernoulliExp(num, den uint64) bool {
	for num > den {
		if !n.bernoulliExp(1, 1) {
			return false
		}
		num -= den
	}
	// Algorithm 1 for gamma = num/den in [0, 1].
	k := uint64(1)
	for n.bernoulli(num, den*k) {
		k++
	}
	return k%2 == 1
}

// discreteLaplace returns a draw with P(Z = z) ∝ exp(-|z|·s/t) (algorithm 2).
func (n *noise) discreteLaplace(s, t uint64) int64 {
	for {
		u := n.uniform(t)
		if !n.bernoulliExp(u, t) {
			continue
		}
		v := uint64(0)
		for n.bernoulliExp(1, 1) {
			v++
		}
		y := (u + t*v) / s
		negative := n.bernoulli(1, 2)
		if negative && y == 0 {
			continue
		}
		if negative {
			return -int64(y)
		}
		return int64(y)
	}
}

// laplace returns a draw with P(Z = z) ∝ exp(-eps·|z|).
func (n *noise) laplace(eps Epsilon) int64 {
	s, t := uint64(eps), uint64(EpsilonUnit) // scale 1/eps = t/s
	g := gcd(s, t)
	return n.discreteLaplace(s/g, t/g)
}

// laplaceHalf returns a draw with P(Z = z) ∝ exp(-eps·|z|/2), the noise of
// a report at eps (whose answer may change in two counts; see Mechanism).
// The scale 2/eps is the exact rational 2·EpsilonUnit/eps.
func (n *noise) laplaceHalf(eps Epsilon) int64 {
	s, t := uint64(eps), uint64(2*EpsilonUnit)
	g := gcd(s, t)
	return n.discreteLaplace(s/g, t/g)
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
