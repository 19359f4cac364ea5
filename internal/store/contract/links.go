package contract

import (
	"slices"
	"strings"

	"github.com/consentgraph/consentgraph/internal/outbox"
)

func linkTests() []contractTest {
	return []contractTest{
		{"links/put-read-replace-delete", testLinks},
	}
}

// testLinks: a link is stored whole under (processor, subject), replaced
// by a later put, separate per processor, and deleted by key.
func testLinks(e *env) {
	o := e.b.Outbox()
	read := func(what string, keys ...outbox.LinkKey) []outbox.Link {
		e.t.Helper()
		ls, err := o.Links(e.ctx, keys)
		e.must(err, "Links(%s)", what)
		slices.SortFunc(ls, func(a, b outbox.Link) int { return strings.Compare(a.Processor, b.Processor) })
		return ls
	}
	news := outbox.LinkKey{Processor: "news", Subject: "sub-1"}
	survey := outbox.LinkKey{Processor: "survey", Subject: "sub-1"}
	other := outbox.LinkKey{Processor: "news", Subject: "sub-2"}
	if ls := read("empty", news, survey); len(ls) != 0 {
		e.t.Errorf("Links on an empty store = %+v", ls)
	}
	if ls := read("no keys"); len(ls) != 0 {
		e.t.Errorf("Links() = %+v", ls)
	}
	a := outbox.Link{Processor: "news", Subject: "sub-1", State: "PENDING_CONFIRMATION", Data: []byte(`{"actions":["resend"]}`), UpdatedAt: at(ms)}
	b := outbox.Link{Processor: "survey", Subject: "sub-1", State: "ACTIVE", Data: []byte(`{"items":[{"kind":"survey"}]}`), UpdatedAt: at(2 * ms)}
	c := outbox.Link{Processor: "news", Subject: "sub-2", State: "ACTIVE", Data: []byte{}, UpdatedAt: at(3 * ms)}
	for _, l := range []outbox.Link{a, b, c} {
		e.must(o.PutLink(e.ctx, l), "PutLink(%s/%s)", l.Processor, l.Subject)
	}
	e.equal("Links(news, survey)", []outbox.Link{a, b}, read("both", news, survey, outbox.LinkKey{Processor: "gone", Subject: "sub-1"}))
	a2 := a
	a2.State, a2.Data, a2.UpdatedAt = "ACTIVE", []byte(`{}`), at(4*ms)
	e.must(o.PutLink(e.ctx, a2), "PutLink again")
	e.equal("Links after a replace", []outbox.Link{a2}, read("news", news))
	e.must(o.DeleteLinks(e.ctx, []outbox.LinkKey{news, survey, {Processor: "absent", Subject: "x"}}), "DeleteLinks")
	if ls := read("deleted", news, survey); len(ls) != 0 {
		e.t.Errorf("Links after DeleteLinks = %+v", ls)
	}
	e.equal("another subject's link stays", []outbox.Link{c}, read("other", other))
	e.must(o.DeleteLinks(e.ctx, nil), "DeleteLinks(nil)")
}
