package contract

import "fmt"

func rateLimitTests() []contractTest {
	return []contractTest{
		{"ratelimits/add-counts-and-totals", testAddCounts},
		{"ratelimits/delete-before", testDeleteCountsBefore},
		{"ratelimits/add-counts-under-50-writers", testAddCountsConcurrent},
	}
}

func testAddCounts(e *env) {
	s := e.b.RateLimits()
	got, err := s.AddCounts(e.ctx, 100, map[string]int64{"ip:198.51.100.7": 3, "account:u1": 1, "odd|key:with|bars": 2})
	e.must(err, "AddCounts")
	e.equal("first totals", map[string]int64{"ip:198.51.100.7": 3, "account:u1": 1, "odd|key:with|bars": 2}, got)
	got, err = s.AddCounts(e.ctx, 100, map[string]int64{"ip:198.51.100.7": 4, "account:u2": 0})
	e.must(err, "AddCounts")
	e.equal("totals add up; a zero delta reads the total", map[string]int64{"ip:198.51.100.7": 7, "account:u2": 0}, got)
	got, err = s.AddCounts(e.ctx, 101, map[string]int64{"ip:198.51.100.7": 1})
	e.must(err, "AddCounts")
	e.equal("a new minute counts from zero", map[string]int64{"ip:198.51.100.7": 1}, got)
	got, err = s.AddCounts(e.ctx, 100, map[string]int64{"odd|key:with|bars": 0, "account:u1": 0})
	e.must(err, "AddCounts")
	e.equal("the old minute kept its counts", map[string]int64{"odd|key:with|bars": 2, "account:u1": 1}, got)
	got, err = s.AddCounts(e.ctx, 100, map[string]int64{})
	e.must(err, "AddCounts of nothing")
	if len(got) != 0 {
		e.t.Errorf("AddCounts of nothing = %v", got)
	}
}

func testDeleteCountsBefore(e *env) {
	s := e.b.RateLimits()
	for w := int64(10); w < 14; w++ {
		_, err := s.AddCounts(e.ctx, w, map[string]int64{"k": w, "j": 1})
		e.must(err, "AddCounts(%d)", w)
	}
	n, err := s.DeleteCountsBefore(e.ctx, 12)
	e.must(err, "DeleteCountsBefore")
	if n != 4 {
		e.t.Errorf("DeleteCountsBefore(12) deleted %d counters, want 4", n)
	}
	for w, want := range map[int64]int64{10: 0, 11: 0, 12: 12, 13: 13} {
		got, err := s.AddCounts(e.ctx, w, map[string]int64{"k": 0})
		e.must(err, "AddCounts(%d)", w)
		e.equal(fmt.Sprintf("minute %d after the deletion", w), map[string]int64{"k": want}, got)
	}
}

func testAddCountsConcurrent(e *env) {
	s := e.b.RateLimits()
	errs := e.parallel(concurrency, func(i int) error {
		_, err := s.AddCounts(e.ctx, 7, map[string]int64{"hot": 2, fmt.Sprintf("own-%d", i): 1})
		return err
	})
	for i, err := range errs {
		if err != nil {
			e.t.Errorf("AddCounts #%d: %v", i, err)
		}
	}
	got, err := s.AddCounts(e.ctx, 7, map[string]int64{"hot": 0})
	e.must(err, "AddCounts")
	e.equal("hot counter after concurrent adds", map[string]int64{"hot": int64(2 * concurrency)}, got)
}
