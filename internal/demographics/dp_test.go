package demographics

import (
	"fmt"
	"math"
	"testing"
)

// The statistical test of the release, in the manner of the stochastic
// testers of DP libraries (e.g. Google's differential-privacy
// StochasticTester): run the release many times on two neighbouring inputs
// D and D', histogram the outputs into events, and check for every event S,
// in both directions,
//
//	P_D(S) ≤ e^ε · P_D'(S) + δ
//
// allowing only for sampling error: a violation is reported only when a
// lower confidence bound of P_D(S) exceeds e^ε times an upper confidence
// bound of P_D'(S), plus δ. The bounds are Chernoff (binomial KL) bounds,
// valid for any sample size, at a level split (Bonferroni) over every event
// and direction tested, so the test of a correct release fails with
// probability below 1e-6 in all. Besides the single outcomes, the union of
// the outcomes that look most favourable to D is tested (chosen on a first
// sample, tested on a fresh one): δ bounds the excess over all events at
// once, which single outcomes cannot show.
//
// The test has teeth: the same check run on deliberately broken releases
// (threshold on the true count, noise for sensitivity 1, threshold without
// δ) must report a violation.

const (
	dpEpsilon = 1.0
	// A large δ makes the threshold small (8 at ε = 1), so that the events
	// near it have enough mass to be measured.
	dpDelta   = 0.05
	dpK       = 2
	dpSamples = 120_000
	// dpFalseAlarm is the total probability of reporting a violation of a
	// correct release, over every check of one case.
	dpFalseAlarm = 1e-7
	// dpWindow is how many single counts each watched group's histogram has.
	dpWindow = 8
)

// releaseFunc releases counts; the tested one is Mechanism.Release.
type releaseFunc func(counts []int64) []Released

// neighbours are two inputs that differ in one user; watch are the groups
// the user touches (the others are identically distributed in both
// outputs, so events on them carry no signal) and lo the first count of
// each watched group's window.
type neighbours struct {
	name  string
	d, d2 []int64
	watch []int
}

// bucketOf maps the watched part of an output to an event index: for each
// watched group, absent, below the window, one count of the window, or
// above it.
func bucketOf(out []Released, watch []int, lo []int64) int {
	per := dpWindow + 3
	idx := 0
	for w, g := range watch {
		cat := 0 // absent
		for _, r := range out {
			if r.Index != g {
				continue
			}
			switch c := r.Count - lo[w]; {
			case c < 0:
				cat = 1
			case c < dpWindow:
				cat = 2 + int(c)
			default:
				cat = dpWindow + 2
			}
		}
		idx = idx*per + cat
	}
	return idx
}

func histogram(release releaseFunc, counts []int64, n neighbours, lo []int64, samples int) []int {
	size := 1
	for range n.watch {
		size *= dpWindow + 3
	}
	h := make([]int, size)
	for range samples {
		h[bucketOf(release(counts), n.watch, lo)]++
	}
	return h
}

// klBernoulli is KL(p || q) for Bernoulli distributions.
func klBernoulli(p, q float64) float64 {
	term := func(a, b float64) float64 {
		if a == 0 {
			return 0
		}
		return a * math.Log(a/b)
	}
	return term(p, q) + term(1-p, 1-q)
}

// upperBound is the Chernoff upper confidence bound at level beta of a
// probability observed k times in n: the largest q with
// n·KL(k/n || q) ≤ ln(1/beta). P(true q above it) ≤ beta.
func upperBound(k, n int, beta float64) float64 {
	p := float64(k) / float64(n)
	lo, hi := p, 1.0
	for range 100 {
		mid := (lo + hi) / 2
		if float64(n)*klBernoulli(p, mid) > math.Log(1/beta) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// lowerBound is the matching lower confidence bound.
func lowerBound(k, n int, beta float64) float64 {
	return 1 - upperBound(n-k, n, beta)
}

// dpViolations checks one pair of neighbours against a release and returns
// the events on which it is not (ε, δ)-DP beyond sampling error.
func dpViolations(release releaseFunc, n neighbours, eps, delta float64) []string {
	// Windows start at the smaller of the watched group's two counts, less
	// a little, so that the counts near both true values are single events.
	lo := make([]int64, len(n.watch))
	for w, g := range n.watch {
		lo[w] = min(n.d[g], n.d2[g]) - dpWindow/2 + 1
	}
	// First a sample to pick the most D-favouring union of outcomes (and
	// the most D'-favouring), then fresh samples for the checks.
	selD := histogram(release, n.d, n, lo, dpSamples/4)
	selD2 := histogram(release, n.d2, n, lo, dpSamples/4)
	hD := histogram(release, n.d, n, lo, dpSamples)
	hD2 := histogram(release, n.d2, n, lo, dpSamples)
	type event struct {
		name    string
		buckets []int
	}
	var events []event
	unionFavouring := func(a, b []int) []int {
		var out []int
		for i := range a {
			if float64(a[i]) > math.Exp(eps)*float64(b[i]) {
				out = append(out, i)
			}
		}
		return out
	}
	for i := range hD {
		events = append(events, event{fmt.Sprintf("outcome %d", i), []int{i}})
	}
	events = append(events, event{"union favouring D", unionFavouring(selD, selD2)},
		event{"union favouring D'", unionFavouring(selD2, selD)})
	beta := dpFalseAlarm / float64(2*len(events))
	var out []string
	check := func(name string, a, b []int, ev []int, dir string) {
		ka, kb := 0, 0
		for _, i := range ev {
			ka, kb = ka+a[i], kb+b[i]
		}
		pa, pb := lowerBound(ka, dpSamples, beta), upperBound(kb, dpSamples, beta)
		if pa > math.Exp(eps)*pb+delta {
			out = append(out, fmt.Sprintf("%s: %s: P ≥ %.5f vs e^ε·%.5f + δ = %.5f (counts %d, %d of %d)",
				name, dir, pa, pb, math.Exp(eps)*pb+delta, ka, kb, dpSamples))
		}
	}
	for _, ev := range events {
		if len(ev.buckets) == 0 {
			continue
		}
		check(ev.name, hD, hD2, ev.buckets, "P_D(S) ≤ e^ε P_D'(S) + δ")
		check(ev.name, hD2, hD, ev.buckets, "P_D'(S) ≤ e^ε P_D(S) + δ")
	}
	return out
}

// dpCases are the neighbouring inputs: a user joining a group just below
// the threshold, a user forming a group of their own, a user moving
// between groups at the threshold, between two groups of one, and between
// two large groups. Index 0 is a large bystander group.
func dpCases(tau int64) []neighbours {
	return []neighbours{
		{"joins a group just below the threshold", []int64{40, tau - 1}, []int64{40, tau}, []int{1}},
		{"joins a group at the threshold", []int64{40, tau}, []int64{40, tau + 1}, []int{1}},
		{"forms a group of one", []int64{40, 0}, []int64{40, 1}, []int{1}},
		{"moves between groups at the threshold", []int64{40, tau, tau - 1}, []int64{40, tau - 1, tau}, []int{1, 2}},
		{"moves between two groups of one", []int64{40, 1, 0}, []int64{40, 0, 1}, []int{1, 2}},
		{"moves between large groups", []int64{40, 20, 20}, []int64{40, 19, 21}, []int{1, 2}},
	}
}

func TestReleaseIsDifferentiallyPrivate(t *testing.T) {
	eps, err := ParseEpsilon("epsilon", dpEpsilon)
	if err != nil {
		t.Fatal(err)
	}
	mech, err := NewMechanism(eps, dpDelta, dpK)
	if err != nil {
		t.Fatal(err)
	}
	if mech.Threshold != 8 {
		t.Fatalf("threshold %d at ε = 1, δ = 0.05, want 8", mech.Threshold)
	}
	for _, c := range dpCases(mech.Threshold) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			// The server's release, with one noise source for the whole
			// run rather than one per report (which only saves buffers).
			nz := newNoise()
			release := func(counts []int64) []Released { return mech.release(counts, nz) }
			for _, v := range dpViolations(release, c, dpEpsilon, dpDelta) {
				t.Error(v)
			}
		})
	}
}

// The checker finds the leaks a future change could introduce.
func TestDPCheckerCatchesBrokenReleases(t *testing.T) {
	eps, err := ParseEpsilon("epsilon", dpEpsilon)
	if err != nil {
		t.Fatal(err)
	}
	mech, err := NewMechanism(eps, dpDelta, dpK)
	if err != nil {
		t.Fatal(err)
	}
	cases := dpCases(mech.Threshold)
	// The broken releases run one after another (not in parallel): they
	// share a noise source, which is not safe for concurrent use.
	nz := newNoise()
	broken := []struct {
		name    string
		release releaseFunc
		on      neighbours
	}{
		{"threshold on the true count", func(counts []int64) []Released {
			var out []Released
			for i, n := range counts {
				if n >= mech.Threshold {
					out = append(out, Released{i, max(0, n+nz.laplaceHalf(eps))})
				}
			}
			return out
		}, cases[0]},
		{"noise for sensitivity 1 (ε instead of ε/2)", func(counts []int64) []Released {
			var out []Released
			for i, n := range counts {
				if noisy := n + nz.laplace(eps); n > 0 && noisy >= mech.Threshold {
					out = append(out, Released{i, noisy})
				}
			}
			return out
		}, cases[5]},
		{"threshold without δ (k alone)", func(counts []int64) []Released {
			return Mechanism{Epsilon: eps, Delta: dpDelta, Threshold: dpK}.release(counts, nz)
		}, cases[2]},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			if v := dpViolations(b.release, b.on, dpEpsilon, dpDelta); len(v) == 0 {
				t.Errorf("no violation found on %q", b.on.name)
			} else {
				t.Logf("found: %s", v[0])
			}
		})
	}
}
