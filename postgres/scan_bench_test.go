package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
	"github.com/chronicle-go/chronicle/postgres/internal/rowscan"
)

// BenchmarkScan justifies internal/rowscan: it reads the same pages with
// the wire-format decoder (fast) and with pgx's own per-column scanning
// (generic), interleaved in one run, for the two reads it serves: catch-up
// pages of the global order (1000 records) and rehydration pages of one
// stream (100 payloads). The ratios fast/generic are the gain.
func BenchmarkScan(b *testing.B) {
	pool := benchDB(b, 2)
	s := newStoreOn(b, pool, &Config{PollOnly: true})
	ctx := b.Context()
	const streams, perStream = 100, 100
	for i := range streams {
		evs := make([]eventstore.Event, perStream)
		for j := range evs {
			evs[j] = eventstore.Event{Type: "Deposited", Data: benchPayload(i), Metadata: eventstore.Metadata{CorrelationID: fmt.Sprintf("req-%d", j)}}
		}
		if _, err := s.Append(ctx, fmt.Sprintf("acc-%03d", i), eventstore.NoStream, evs...); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, "ANALYZE chronicle.events"); err != nil {
		b.Fatal(err)
	}
	readAllWith := func(scan func(ctx context.Context) (int, error)) func(context.Context, int) (int, error) {
		return func(ctx context.Context, _ int) (int, error) { return scan(ctx) }
	}
	catchUp := func(fast bool) func(ctx context.Context) (int, error) {
		return func(ctx context.Context) (int, error) {
			var after eventstore.Position
			n := 0
			for {
				rows, err := pool.Query(ctx, eventsql.ReadAllSQL, after.Transaction, after.Global, int64(1000))
				if err != nil {
					return n, err
				}
				var recs []eventstore.Record
				if fast {
					recs, err = rowscan.Scan(rows, &rowscan.Records, "", 1000)
				} else {
					recs, err = rowscan.ScanGeneric(rows, &rowscan.Records, "", 1000)
				}
				if err != nil {
					return n, err
				}
				n += len(recs)
				if len(recs) < 1000 {
					return n, nil
				}
				after = recs[len(recs)-1].Position
			}
		}
	}
	load := func(fast bool) func(ctx context.Context, i int) (int, error) {
		return func(ctx context.Context, i int) (int, error) {
			id := fmt.Sprintf("acc-%03d", i%streams)
			rows, err := pool.Query(ctx, eventsql.ReadPayloadsForwardSQL, id, int64(1), nil)
			if err != nil {
				return 0, err
			}
			var recs []eventstore.Record
			if fast {
				recs, err = rowscan.Scan(rows, &rowscan.Payloads, id, 0)
			} else {
				recs, err = rowscan.ScanGeneric(rows, &rowscan.Payloads, id, 0)
			}
			if err == nil && len(recs) != perStream {
				err = fmt.Errorf("%s: %d events, want %d", id, len(recs), perStream)
			}
			return len(recs), err
		}
	}
	b.Run("catch-up", func(b *testing.B) {
		benchInterleaved(b, "ev/s",
			benchVariant{"generic", readAllWith(catchUp(false))},
			benchVariant{"fast", readAllWith(catchUp(true))},
		)
	})
	b.Run("load-100", func(b *testing.B) {
		benchInterleaved(b, "ev/s",
			benchVariant{"generic", load(false)},
			benchVariant{"fast", load(true)},
		)
	})
}
