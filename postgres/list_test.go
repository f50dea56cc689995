package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// TestListStreamsPrefixPages lists streams by prefix, page after page, on
// more streams than the statement's window of newest rows (1,000), with
// IDs that grow with time, and compares each listing with the one computed
// here: both branches of list_streams.sql (the newest rows, and the prefix
// index for rare prefixes) must give the same newest-first pages.
func TestListStreamsPrefixPages(t *testing.T) {
	t.Parallel()
	store, pool := setupStore(t, nil)
	ctx := t.Context()

	// Head rows only: ListStreams reads nothing else. In creation order.
	var ids []string
	for i := 1; i <= 2400; i++ {
		ids = append(ids, fmt.Sprintf("order-%d", i))
		if i%500 == 0 {
			// LIKE's wildcards and non-ASCII must match as themselves.
			ids = append(ids, fmt.Sprintf("we%%rd_%d", i), fmt.Sprintf("weXrdY%d", i), fmt.Sprintf("é-%d", i))
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO chronicle.streams (stream_id, version, last_transaction_id)
		SELECT id, 1, '1'::xid8 FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n) ORDER BY n`, ids); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE chronicle.streams`); err != nil {
		t.Fatal(err)
	}

	for _, prefix := range []string{"", "order-", "order-2", "order-24", "order-1", "order-100", "order-1000", "we%rd_", "we%", "weX", "é", "nomatch", "order-2400"} {
		t.Run(prefix, func(t *testing.T) {
			t.Parallel()
			// A hang bound of its own: a parallel subtest may wait minutes
			// for a free slot after its parent returned, on a loaded machine.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var want []string
			for _, id := range slices.Backward(ids) {
				if strings.HasPrefix(id, prefix) {
					want = append(want, id)
				}
			}
			for _, limit := range []int{7, 50, 500} {
				var got []string
				var before int64
				for page := 0; ; page++ {
					if page > len(ids) {
						t.Fatalf("limit %d: more pages than streams", limit)
					}
					infos, err := store.ListStreams(ctx, eventstore.ListStreamsOptions{Prefix: prefix, Before: before, Limit: limit})
					if err != nil {
						t.Fatalf("ListStreams(%q, before %d, limit %d): %v", prefix, before, limit, err)
					}
					if len(infos) > limit {
						t.Fatalf("limit %d: got %d streams", limit, len(infos))
					}
					for i, info := range infos {
						got = append(got, info.StreamID)
						if i > 0 && info.Seq >= infos[i-1].Seq {
							t.Fatalf("limit %d: page not newest first: %d after %d", limit, info.Seq, infos[i-1].Seq)
						}
					}
					if len(infos) < limit {
						break
					}
					before = infos[len(infos)-1].Seq
				}
				if !slices.Equal(got, want) {
					t.Errorf("prefix %q, limit %d: listed %d streams, want %d (first differences: %q vs %q)",
						prefix, limit, len(got), len(want), head(got), head(want))
				}
			}
		})
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }
