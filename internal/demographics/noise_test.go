package demographics

import (
	"math"
	"testing"
)

// Over many draws the noise has mean 0 and the variance of the two-sided
// geometric distribution, 2a/(1-a)² with a = exp(-epsilon), and the ratio
// P(0)/P(1) is exp(epsilon): the mechanism's privacy guarantee itself.
func TestLaplaceNoiseDistribution(t *testing.T) {
	for _, eps := range []float64{1.0, 0.5, 0.123457, 2.0} {
		e, err := ParseEpsilon("epsilon", eps)
		if err != nil {
			t.Fatal(err)
		}
		const n = 200_000
		nz := newNoise()
		var sum, sumSq float64
		hist := map[int64]int{}
		for range n {
			z := nz.laplace(e)
			sum += float64(z)
			sumSq += float64(z) * float64(z)
			hist[z]++
		}
		mean := sum / n
		variance := sumSq/n - mean*mean
		want := LaplaceVariance(e.Float())
		// Standard error of the mean is sqrt(var/n); of the variance about
		// var·sqrt((kurtosis-1)/n), kurtosis ≈ 6 here.
		if se := math.Sqrt(want / n); math.Abs(mean) > 5*se {
			t.Errorf("epsilon %g: mean %.4f, want 0 ± %.4f", eps, mean, 5*se)
		}
		if se := want * math.Sqrt(6.0/n); math.Abs(variance-want) > 5*se {
			t.Errorf("epsilon %g: variance %.4f, want %.4f ± %.4f", eps, variance, want, 5*se)
		}
		ratio := float64(hist[0]) / float64(hist[1])
		if r := math.Exp(e.Float()); math.Abs(ratio-r)/r > 0.05 {
			t.Errorf("epsilon %g: P(0)/P(1) = %.3f, want exp(epsilon) = %.3f", eps, ratio, r)
		}
		if math.Abs(float64(hist[2]-hist[-2]))/float64(hist[2]+hist[-2]) > 0.05 {
			t.Errorf("epsilon %g: not symmetric: %d draws of 2, %d of -2", eps, hist[2], hist[-2])
		}
	}
}

func TestParseEpsilon(t *testing.T) {
	for _, bad := range []float64{0, -1, 0.009, 10.5, math.NaN(), math.Inf(1)} {
		if _, err := ParseEpsilon("epsilon", bad); err == nil {
			t.Errorf("epsilon %g accepted", bad)
		}
	}
	e, err := ParseEpsilon("epsilon", 0.1234567)
	if err != nil || e != 123457 || e.Float() != 0.123457 {
		t.Fatalf("ParseEpsilon(0.1234567) = %d (%g), %v; want 123457 millionths", e, e.Float(), err)
	}
}
