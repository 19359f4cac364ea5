package snapshottest_test

import (
	"context"
	"testing"

	"github.com/consentgraph/consentgraph/internal/store/snapshot"
	"github.com/consentgraph/consentgraph/internal/store/snapshot/snapshottest"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

func open(t *testing.T, kind string) snapshottest.Store {
	t.Helper()
	s, ok := storetest.Open(t, kind).(snapshottest.Store)
	if !ok {
		t.Fatalf("the %s store cannot be dumped and loaded", kind)
	}
	return s
}

// TestCopyBetweenAdapters copies a store holding every kind of record from
// each adapter to each, in small batches, and compares the copy record by
// record; loading the same records again is refused.
func TestCopyBetweenAdapters(t *testing.T) {
	for _, from := range storetest.Kinds {
		for _, to := range storetest.Kinds {
			t.Run(from+"_to_"+to, func(t *testing.T) {
				src := open(t, from)
				snapshottest.Fill(t, src, 9)
				want := snapshottest.DumpAll(t, src)
				for _, kind := range snapshot.Kinds {
					if len(want[kind]) == 0 {
						t.Errorf("the filled store holds no %s: the test would not check them", kind)
					}
				}
				dst := open(t, to)
				copied := snapshottest.Copy(t, src, dst, 4)
				for kind, recs := range want {
					if copied[kind] != len(recs) {
						t.Errorf("%s: copied %d of %d", kind, copied[kind], len(recs))
					}
				}
				snapshottest.Equal(t, want, snapshottest.DumpAll(t, dst))
				for _, kind := range snapshot.Kinds {
					if err := dst.Load(context.Background(), kind, want[kind][:1]); err == nil {
						t.Errorf("%s: loading a record the store holds succeeded", kind)
					}
				}
			})
		}
	}
}
