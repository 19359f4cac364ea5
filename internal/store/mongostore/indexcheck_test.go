package mongostore

// The index checker behind TestRequestPathLookupsUseIndexes: it records
// every command the adapter sends, attributed to the port operation whose
// context sent it, and decides for each lookup whether one of the
// collection's indexes can drive it. It reasons about the filter's shape
// the way MongoDB's planner can use indexes, rather than asking the server
// (FerretDB's explain says nothing about MongoDB's planner).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// opKey carries the label of the port operation a command belongs to.
type opKey struct{}

// testOwnOp labels the test's own commands (fixtures, listIndexes); they
// are not checked.
const testOwnOp = "(test)"

func withOp(ctx context.Context, label string) context.Context {
	return context.WithValue(ctx, opKey{}, label)
}

// sentCommand is one command the adapter sent to the test's database.
type sentCommand struct {
	op   string // label of the operation whose context sent it
	name string // command name: find, update, ...
	coll string
	cmd  bson.Raw
}

// commandLog records the commands sent to one database.
type commandLog struct {
	db string

	mu        sync.Mutex
	recording bool
	cmds      []sentCommand
	// stray are commands sent, while recording, from a context that names
	// no operation: they could not be attributed, so they fail the test.
	stray []string
	ran   []string // operation labels, in the order run
}

func (l *commandLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(ctx context.Context, e *event.CommandStartedEvent) {
		if e.DatabaseName != l.db {
			return // handshakes, buildInfo, endSessions on admin
		}
		op, _ := ctx.Value(opKey{}).(string)
		coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
		l.mu.Lock()
		defer l.mu.Unlock()
		switch {
		case !l.recording || op == testOwnOp:
		case op == "":
			l.stray = append(l.stray, e.CommandName+" "+coll)
		default:
			l.cmds = append(l.cmds, sentCommand{op: op, name: e.CommandName, coll: coll, cmd: slices.Clone(e.Command)})
		}
	}}
}

func (l *commandLog) start() {
	l.mu.Lock()
	l.recording = true
	l.mu.Unlock()
}

func (l *commandLog) markRan(label string) {
	l.mu.Lock()
	l.ran = append(l.ran, label)
	l.mu.Unlock()
}

func (l *commandLog) snapshot() ([]sentCommand, []string, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.cmds), slices.Clone(l.stray), slices.Clone(l.ran)
}

// lookup is one filter a command evaluates: a find, each statement of an
// update or delete, a findAndModify, a count, an aggregate's leading
// $match.
type lookup struct {
	filter  bson.Raw
	sort    bson.Raw // nil when unsorted
	limited bool     // at most some documents are wanted (limit, findOne, findAndModify)
}

// lookupsOf extracts the lookups of a command; commands that look nothing
// up (insert, createIndexes, listIndexes, getMore, drop ...) have none.
func lookupsOf(c sentCommand) []lookup {
	doc := func(k string) bson.Raw {
		d, _ := c.cmd.Lookup(k).DocumentOK()
		return d
	}
	statements := func(arr, q string) []lookup {
		a, _ := c.cmd.Lookup(arr).ArrayOK()
		vs, _ := a.Values()
		var out []lookup
		for _, v := range vs {
			st, _ := v.DocumentOK()
			f, _ := st.Lookup(q).DocumentOK()
			out = append(out, lookup{filter: f})
		}
		return out
	}
	switch c.name {
	case "find":
		n, _ := c.cmd.Lookup("limit").AsInt64OK()
		return []lookup{{filter: doc("filter"), sort: doc("sort"), limited: n != 0}}
	case "findAndModify":
		return []lookup{{filter: doc("query"), sort: doc("sort"), limited: true}}
	case "update":
		return statements("updates", "q")
	case "delete":
		return statements("deletes", "q")
	case "count":
		if len(docElems(doc("query"))) == 0 {
			return nil // a count of the whole collection reads its metadata
		}
		return []lookup{{filter: doc("query")}}
	case "distinct":
		return []lookup{{filter: doc("query")}}
	case "aggregate":
		a, _ := c.cmd.Lookup("pipeline").ArrayOK()
		stages, _ := a.Values()
		var lk lookup
		for i, s := range stages {
			st, _ := s.DocumentOK()
			switch {
			case i == 0 && len(st.Lookup("$match").Value) > 0:
				lk.filter, _ = st.Lookup("$match").DocumentOK()
			case len(st.Lookup("$sort").Value) > 0 && lk.sort == nil && !lk.limited:
				lk.sort, _ = st.Lookup("$sort").DocumentOK()
			case len(st.Lookup("$limit").Value) > 0:
				lk.limited = true
			}
		}
		return []lookup{lk}
	}
	return nil
}

func docElems(d bson.Raw) []bson.RawElement {
	if len(d) == 0 {
		return nil
	}
	es, _ := d.Elements()
	return es
}

// predKind is how far a predicate on a field can bound an index scan on
// it. Larger is better.
type predKind int

const (
	// predNone cannot bound a scan: $exists:false, $ne, $nin, $not, $size,
	// $type, equality with null (which also matches a missing field).
	predNone predKind = iota
	// predExists is $exists:true: it bounds a sparse index only (on any
	// other index it is a scan of the whole index).
	predExists
	predRange // $gt, $gte, $lt, $lte
	predEq    // a value, $eq, $in
)

func kindOf(v bson.RawValue) predKind {
	if v.Type == bson.TypeNull {
		return predNone
	}
	d, ok := v.DocumentOK()
	if !ok {
		return predEq
	}
	es := docElems(d)
	if len(es) == 0 || !strings.HasPrefix(es[0].Key(), "$") {
		return predEq // equality with a whole document
	}
	best := predNone
	for _, e := range es {
		switch e.Key() {
		case "$eq", "$in":
			if e.Value().Type != bson.TypeNull {
				best = max(best, predEq)
			}
		case "$gt", "$gte", "$lt", "$lte":
			best = max(best, predRange)
		case "$exists":
			if truthy(e.Value()) {
				best = max(best, predExists)
			}
		}
	}
	return best
}

func truthy(v bson.RawValue) bool {
	if b, ok := v.BooleanOK(); ok {
		return b
	}
	if f, ok := v.AsFloat64OK(); ok {
		return f != 0
	}
	return v.Type != bson.TypeNull
}

// conj is a filter read as a conjunction: the best predicate per field
// ($and flattened), and its $or clauses (each a list of branches).
type conj struct {
	preds map[string]predKind
	ors   [][]bson.Raw
}

func parseFilter(f bson.Raw) conj {
	c := conj{preds: map[string]predKind{}}
	c.add(f)
	return c
}

func (c *conj) add(f bson.Raw) {
	for _, e := range docElems(f) {
		switch k := e.Key(); k {
		case "$and":
			a, _ := e.Value().ArrayOK()
			vs, _ := a.Values()
			for _, v := range vs {
				sub, _ := v.DocumentOK()
				c.add(sub)
			}
		case "$or":
			a, _ := e.Value().ArrayOK()
			vs, _ := a.Values()
			var branches []bson.Raw
			for _, v := range vs {
				b, _ := v.DocumentOK()
				branches = append(branches, b)
			}
			c.ors = append(c.ors, branches)
		default:
			if strings.HasPrefix(k, "$") {
				continue // $nor, $expr, $comment ...: drive no index
			}
			c.preds[k] = max(c.preds[k], kindOf(e.Value()))
		}
	}
}

func (c conj) empty() bool { return len(c.preds) == 0 && len(c.ors) == 0 }

func (c conj) hasEq() bool {
	for _, k := range c.preds {
		if k == predEq {
			return true
		}
	}
	return false
}

// indexKey is one key of an index; dir is 1 or -1, 0 for a special key
// (hashed, text ...), which serves no sort.
type indexKey struct {
	field string
	dir   int
}

type indexInfo struct {
	name    string
	keys    []indexKey
	sparse  bool
	unique  bool
	partial bool
}

func (i indexInfo) String() string {
	var b strings.Builder
	for n, k := range i.keys {
		if n > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s:%d", k.field, k.dir)
	}
	return i.name + "{" + b.String() + "}"
}

// drives reports whether a scan of i can be bounded by the conjunction:
// its first key carries an equality or range predicate ($exists:true for a
// sparse index). A partial index is never counted: whether a query implies
// its filter is beyond this check.
func (i indexInfo) drives(c conj) bool {
	if i.partial || len(i.keys) == 0 {
		return false
	}
	switch c.preds[i.keys[0].field] {
	case predEq, predRange:
		return true
	case predExists:
		return i.sparse
	}
	return false
}

// covered reports whether some index drives the filter: one of the
// conjunction's predicates, or every branch of one of its $or clauses.
func covered(c conj, ixs []indexInfo) bool {
	for _, i := range ixs {
		if i.drives(c) {
			return true
		}
	}
	for _, branches := range c.ors {
		all := len(branches) > 0
		for _, b := range branches {
			all = all && covered(parseFilter(b), ixs)
		}
		if all {
			return true
		}
	}
	return false
}

// pointLookup reports whether i, a unique index all of whose keys have
// equality predicates, finds the filter's document directly (an _id
// lookup), so that no other index matters to it.
func pointLookup(i indexInfo, c conj) bool {
	if !i.unique || i.partial || len(i.keys) == 0 {
		return false
	}
	for _, k := range i.keys {
		if c.preds[k.field] != predEq {
			return false
		}
	}
	return true
}

// servesSort reports whether walking i returns the filter's matches in
// sort order, so a limit stops the walk early: i's keys are some of the
// filter's equality fields, then the sort's fields in its order (all in
// the same direction as the sort, or all reversed). When the filter has
// equality predicates the walk must start with one of them, and it must
// be bounded by the filter (drives) unless the filter is empty.
func servesSort(i indexInfo, c conj, sort bson.Raw) bool {
	if i.partial {
		return false
	}
	ss := docElems(sort)
	for j := 0; j+len(ss) <= len(i.keys); j++ {
		if j > 0 && c.preds[i.keys[j-1].field] != predEq {
			return false // the prefix before the sort keys must be equalities
		}
		if j == 0 && c.hasEq() {
			continue
		}
		if j == 0 && !c.empty() && !i.drives(c) {
			continue
		}
		sign, ok := 0, true
		for n, s := range ss {
			k := i.keys[j+n]
			d, _ := s.Value().AsFloat64OK()
			if k.field != s.Key() || k.dir == 0 || d == 0 {
				ok = false
				break
			}
			r := k.dir
			if d < 0 {
				r = -r
			}
			if sign == 0 {
				sign = r
			}
			ok = ok && r == sign
		}
		if ok {
			return true
		}
	}
	return false
}

// finding is a lookup no index serves.
type finding struct {
	op, cmd, coll string
	filter, sort  bson.Raw
	why           string
}

func (f finding) String() string {
	s := fmt.Sprintf("%s: %s on %s, filter %s", f.op, f.cmd, f.coll, rawJSON(f.filter))
	if len(docElems(f.sort)) > 0 {
		s += ", sort " + rawJSON(f.sort)
	}
	return s + ": " + f.why
}

func rawJSON(d bson.Raw) string {
	if len(d) == 0 {
		return "{}"
	}
	return d.String()
}

// wholeRead allows one operation to read every document of a collection
// (an empty filter, no limit): not a lookup, a deliberate full read.
type wholeRead struct {
	collPrefix string
	reason     string
}

// checkCommands returns the lookups of cmds that no index of their
// collection serves. ixs maps a collection to its indexes (_id included).
func checkCommands(cmds []sentCommand, ixs map[string][]indexInfo, whole map[string]wholeRead) []finding {
	var out []finding
	for _, c := range cmds {
		for _, lk := range lookupsOf(c) {
			f := finding{op: c.op, cmd: c.name, coll: c.coll, filter: lk.filter, sort: lk.sort}
			cj := parseFilter(lk.filter)
			sorted := len(docElems(lk.sort)) > 0
			servedSort := func() bool {
				for _, i := range ixs[c.coll] {
					if servesSort(i, cj, lk.sort) {
						return true
					}
				}
				return false
			}
			switch {
			case cj.empty():
				if sorted && lk.limited && servedSort() {
					continue // e.g. the newest entry: one step down the _id index
				}
				if w, ok := whole[c.op]; ok && strings.HasPrefix(c.coll, w.collPrefix) {
					continue
				}
				f.why = "reads the whole collection (no filter, and no limit on an index-ordered walk)"
			case !covered(cj, ixs[c.coll]):
				f.why = "no index can drive it (no index's first key has an equality or range predicate in the filter)"
			case sorted && lk.limited && !servedSort():
				f.why = "no index gives the sort after the filter's equality fields: every match is sorted in memory before the limit"
			default:
				continue
			}
			out = append(out, f)
		}
	}
	return out
}

// listIndexes reads the indexes of the collections cmds touched, as the
// server reports them; _id is implied where a collection does not exist.
// FerretDB drops the sparse option from what it reports; there, an
// index's declared sparse option (indexes()) is taken for the same name
// and keys.
func listIndexes(ctx context.Context, d *DB, colls []string) (map[string][]indexInfo, error) {
	ctx = withOp(ctx, testOwnOp)
	out := map[string][]indexInfo{}
	for _, coll := range colls {
		cur, err := d.coll(coll).Indexes().List(ctx)
		var specs []bson.Raw
		if err == nil {
			err = cur.All(ctx, &specs)
		}
		var ce mongo.CommandError
		if errors.As(err, &ce) && ce.Code == 26 { // NamespaceNotFound
			err = nil
		}
		if err != nil {
			return nil, fmt.Errorf("list indexes of %s: %w", coll, err)
		}
		hasID := false
		for _, s := range specs {
			name, _ := s.Lookup("name").StringValueOK()
			sparse := s.Lookup("sparse")
			unique := s.Lookup("unique")
			i := indexInfo{name: name, sparse: len(sparse.Value) > 0 && truthy(sparse), unique: name == "_id_" || len(unique.Value) > 0 && truthy(unique),
				partial: len(s.Lookup("partialFilterExpression").Value) > 0}
			key, _ := s.Lookup("key").DocumentOK()
			for _, k := range docElems(key) {
				dir := 0
				if f, ok := k.Value().AsFloat64OK(); ok {
					dir = 1
					if f < 0 {
						dir = -1
					}
				}
				i.keys = append(i.keys, indexKey{field: k.Key(), dir: dir})
			}
			if d.ferret && !i.sparse {
				i.sparse = declaredSparse(coll, i)
			}
			hasID = hasID || name == "_id_"
			out[coll] = append(out[coll], i)
		}
		if !hasID {
			out[coll] = append(out[coll], indexInfo{name: "_id_", keys: []indexKey{{"_id", 1}}, unique: true})
		}
	}
	return out, nil
}

// declaredSparse reports whether indexes() declares i (same collection,
// name and keys) sparse.
func declaredSparse(coll string, i indexInfo) bool {
	for _, ix := range indexes() {
		if ix.coll != coll {
			continue
		}
		var o options.IndexOptions
		for _, set := range ix.model.Options.List() {
			_ = set(&o)
		}
		keys, _ := ix.model.Keys.(bson.D)
		if o.Name == nil || *o.Name != i.name || len(keys) != len(i.keys) {
			continue
		}
		same := true
		for n, k := range keys {
			same = same && k.Key == i.keys[n].field
		}
		return same && o.Sparse != nil && *o.Sparse
	}
	return false
}

// collectionsOf lists the collections cmds touched, sorted.
func collectionsOf(cmds []sentCommand) []string {
	set := map[string]bool{}
	for _, c := range cmds {
		if c.coll != "" {
			set[c.coll] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// TestIndexCheckRules pins down what the checker accepts and reports, on
// hand-made commands, including shapes the adapter does not send today.
func TestIndexCheckRules(t *testing.T) {
	k := func(fields ...string) []indexKey {
		var out []indexKey
		for _, f := range fields {
			dir := 1
			if name, ok := strings.CutPrefix(f, "-"); ok {
				f, dir = name, -1
			}
			out = append(out, indexKey{field: f, dir: dir})
		}
		return out
	}
	id := indexInfo{name: "_id_", keys: k("_id"), unique: true}
	ixs := map[string][]indexInfo{
		"users": {id, {name: "usernameKey", keys: k("usernameKey"), unique: true},
			{name: "e_sparse", keys: k("e"), sparse: true}, {name: "f", keys: k("f")}},
		"events": {id, {name: "userId_seq", keys: k("userId", "seq"), unique: true}},
		"items":  {id, {name: "state_nextAt", keys: k("state", "nextAt")}, {name: "p", keys: k("p"), partial: true}},
	}
	type D = bson.D
	type A = bson.A
	find := func(coll string, filter D, extra ...bson.E) sentCommand {
		cmd := append(D{{Key: "find", Value: coll}, {Key: "filter", Value: filter}}, extra...)
		raw, err := bson.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return sentCommand{op: "op", name: "find", coll: coll, cmd: raw}
	}
	raw := func(name, coll string, cmd D) sentCommand {
		b, err := bson.Marshal(append(D{{Key: name, Value: coll}}, cmd...))
		if err != nil {
			t.Fatal(err)
		}
		return sentCommand{op: "op", name: name, coll: coll, cmd: b}
	}
	limit := func(n int) bson.E { return bson.E{Key: "limit", Value: n} }
	sort := func(s D) bson.E { return bson.E{Key: "sort", Value: s} }
	exists := func(b bool) D { return D{{Key: "$exists", Value: b}} }
	for _, tc := range []struct {
		name     string
		cmd      sentCommand
		reported int
	}{
		{"equality on an index's first key", find("users", D{{Key: "usernameKey", Value: "a"}}), 0},
		{"equality on _id with other conditions", find("users", D{{Key: "_id", Value: "a"}, {Key: "x", Value: exists(false)}}), 0},
		{"$in on _id", find("users", D{{Key: "_id", Value: D{{Key: "$in", Value: A{"a", "b"}}}}}), 0},
		{"$exists:false bounds no index", find("users", D{{Key: "e", Value: exists(false)}}), 1},
		{"$exists:true on a sparse index", find("users", D{{Key: "e", Value: exists(true)}}), 0},
		{"$exists:true on a full index", find("users", D{{Key: "f", Value: exists(true)}}), 1},
		{"$ne bounds no index", find("users", D{{Key: "usernameKey", Value: D{{Key: "$ne", Value: "a"}}}}), 1},
		{"equality with null", find("users", D{{Key: "usernameKey", Value: nil}}), 1},
		{"unindexed field", find("users", D{{Key: "x", Value: 1}}), 1},
		{"$or, every branch indexed", find("users", D{{Key: "$or", Value: A{D{{Key: "usernameKey", Value: "a"}}, D{{Key: "_id", Value: "b"}}}}}), 0},
		{"$or, one branch unindexed", find("users", D{{Key: "$or", Value: A{D{{Key: "usernameKey", Value: "a"}}, D{{Key: "x", Value: 1}}}}}), 1},
		{"$or beside an indexed equality", find("users", D{{Key: "_id", Value: "a"}, {Key: "$or", Value: A{D{{Key: "h", Value: 0}}, D{{Key: "h", Value: exists(false)}}}}}), 0},
		{"$and with one indexed member", find("users", D{{Key: "$and", Value: A{D{{Key: "x", Value: 1}}, D{{Key: "usernameKey", Value: "a"}}}}}), 0},
		{"second key of a compound index only", find("events", D{{Key: "seq", Value: D{{Key: "$gt", Value: 1}}}}), 1},
		{"partial index is not counted", find("items", D{{Key: "p", Value: 1}}), 1},
		{"equality then range, sorted and limited by the index", find("events", D{{Key: "userId", Value: "u"}, {Key: "seq", Value: D{{Key: "$gt", Value: 1}}}}, sort(D{{Key: "seq", Value: 1}}), limit(5)), 0},
		{"sort reversed on the index", find("events", D{{Key: "userId", Value: "u"}}, sort(D{{Key: "seq", Value: -1}}), limit(5)), 0},
		{"limited sort no index gives", find("events", D{{Key: "userId", Value: "u"}}, sort(D{{Key: "at", Value: 1}}), limit(5)), 1},
		{"unlimited sort is done in memory", find("events", D{{Key: "userId", Value: "u"}}, sort(D{{Key: "at", Value: 1}})), 0},
		{"equality on one index, limited sort on _id", find("items", D{{Key: "state", Value: "DEAD"}}, sort(D{{Key: "_id", Value: 1}}), limit(5)), 1},
		{"range on _id, sort on _id", find("items", D{{Key: "_id", Value: D{{Key: "$lt", Value: "x"}}}}, sort(D{{Key: "_id", Value: -1}}), limit(5)), 0},
		{"no filter, newest by _id", find("items", D{}, sort(D{{Key: "_id", Value: -1}}), limit(1)), 0},
		{"no filter, no limit", find("items", D{}), 1},
		{"no filter, sorted, no limit", find("items", D{}, sort(D{{Key: "_id", Value: 1}})), 1},
		{"update statements each checked", raw("update", "users", D{{Key: "updates", Value: A{
			D{{Key: "q", Value: D{{Key: "_id", Value: "a"}}}, {Key: "u", Value: D{}}},
			D{{Key: "q", Value: D{{Key: "x", Value: 1}}}, {Key: "u", Value: D{}}}}}}), 1},
		{"delete statements each checked", raw("delete", "users", D{{Key: "deletes", Value: A{
			D{{Key: "q", Value: D{{Key: "x", Value: 1}}}, {Key: "limit", Value: 0}}}}}), 1},
		{"findAndModify", raw("findAndModify", "users", D{{Key: "query", Value: D{{Key: "x", Value: 1}}}}), 1},
		{"count with a query", raw("count", "users", D{{Key: "query", Value: D{{Key: "x", Value: 1}}}}), 1},
		{"aggregate led by an indexed $match", raw("aggregate", "users", D{{Key: "pipeline", Value: A{
			D{{Key: "$match", Value: D{{Key: "usernameKey", Value: "a"}}}}, D{{Key: "$group", Value: D{{Key: "_id", Value: 1}}}}}}}), 0},
		{"aggregate without $match", raw("aggregate", "users", D{{Key: "pipeline", Value: A{
			D{{Key: "$group", Value: D{{Key: "_id", Value: "$state"}}}}}}}), 1},
		{"insert looks nothing up", raw("insert", "users", D{{Key: "documents", Value: A{D{{Key: "_id", Value: "a"}}}}}), 0},
	} {
		got := checkCommands([]sentCommand{tc.cmd}, ixs, nil)
		if len(got) != tc.reported {
			t.Errorf("%s: %d reported, want %d: %v", tc.name, len(got), tc.reported, got)
		}
	}
	// A whole read allowed for its operation and collection only.
	whole := map[string]wholeRead{"op": {collPrefix: "ite", reason: "test"}}
	if got := checkCommands([]sentCommand{find("items", D{})}, ixs, whole); len(got) != 0 {
		t.Errorf("allowed whole read reported: %v", got)
	}
	if got := checkCommands([]sentCommand{find("users", D{})}, ixs, whole); len(got) != 1 {
		t.Errorf("whole read of another collection: %v", got)
	}
}
