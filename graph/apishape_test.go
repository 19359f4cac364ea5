package graph

import (
	"strings"
	"testing"
)

// TestOnePageInfo: every connection of the API pages the same way, with
// the one Relay PageInfo (four fields), so clients write one pager.
func TestOnePageInfo(t *testing.T) {
	s := NewExecutableSchema(Config{}).Schema()
	pi := s.Types["PageInfo"]
	if pi == nil {
		t.Fatal("no PageInfo type")
	}
	var fields []string
	for _, f := range pi.Fields {
		if !strings.HasPrefix(f.Name, "__") {
			fields = append(fields, f.Name+": "+f.Type.String())
		}
	}
	if got := strings.Join(fields, ", "); got != "hasNextPage: Boolean!, hasPreviousPage: Boolean!, startCursor: String, endCursor: String" {
		t.Errorf("PageInfo is %s", got)
	}
	n := 0
	for name, def := range s.Types {
		if strings.HasSuffix(name, "PageInfo") && name != "PageInfo" {
			t.Errorf("%s: a second page info type", name)
		}
		if !strings.HasSuffix(name, "Connection") {
			continue
		}
		n++
		if f := def.Fields.ForName("pageInfo"); f == nil || f.Type.String() != "PageInfo!" {
			t.Errorf("%s.pageInfo is not PageInfo!", name)
		}
	}
	if n < 4 {
		t.Errorf("only %d connections found", n)
	}
}

// TestTotalCountOnEveryConnection: every connection says how many nodes it
// holds.
func TestTotalCountOnEveryConnection(t *testing.T) {
	for name, def := range NewExecutableSchema(Config{}).Schema().Types {
		if !strings.HasSuffix(name, "Connection") {
			continue
		}
		if f := def.Fields.ForName("totalCount"); f == nil || f.Type.String() != "Int!" {
			t.Errorf("%s has no totalCount: Int!", name)
		}
	}
}
