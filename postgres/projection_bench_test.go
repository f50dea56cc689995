package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/projection"
)

// BenchmarkProjectionCatchUp measures a transactional projection whose
// handler does not touch the database catching up from the start, with
// large batches (catch-up) and small ones (close to tailing, where the
// per-batch cost of the transaction dominates). It is the workload a lazy
// transaction (begun at the handler's first statement) would speed up.
func BenchmarkProjectionCatchUp(b *testing.B) {
	const events = 30_000
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, postgrestest.DatabaseURL(b))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	batch := make([]eventstore.Event, 100)
	for i := range batch {
		batch[i] = eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":1}`)}
	}
	for i := range events / len(batch) {
		if _, err := store.Append(ctx, fmt.Sprintf("acc-%d", i), eventstore.NoStream, batch...); err != nil {
			b.Fatal(err)
		}
	}
	head, err := store.Head(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ps, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1000, 10} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			var elapsed time.Duration
			for i := range b.N {
				name := fmt.Sprintf("bench-%d-%d", size, i)
				var n int
				h := projection.HandlerFunc(func(context.Context, projection.Event) error { n++; return nil })
				r, err := projection.New(store, ps, &projection.Config{Logger: slog.New(slog.DiscardHandler), AcquireInterval: 10 * time.Millisecond})
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Add(projection.Projection{Name: name, Handler: h, BatchSize: size}); err != nil {
					b.Fatal(err)
				}
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				t0 := time.Now()
				go func() { done <- r.Run(rctx) }()
				err = r.WaitFor(ctx, name, head)
				elapsed += time.Since(t0)
				cancel()
				<-done
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(events*b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
