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
	// head is the last event appended, not store.Head: another
	// transaction open on the server may hold the read horizon below it.
	var head eventstore.Position
	for i := range events / len(batch) {
		res, err := store.Append(ctx, fmt.Sprintf("acc-%d", i), eventstore.NoStream, batch...)
		if err != nil {
			b.Fatal(err)
		}
		head = res.Position
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

// BenchmarkProjectionPartitions measures the catch-up of a slow handler
// (1ms per event, as a call to another service would take) over 4,000
// events of 50 streams: one runner with one partition, one runner with
// four, and two runners sharing four.
func BenchmarkProjectionPartitions(b *testing.B) {
	const events = 4000
	ctx := context.Background()
	url := postgrestest.DatabaseURL(b)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	batch := make([]eventstore.Event, events/50)
	for i := range batch {
		batch[i] = eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":1}`)}
	}
	var head eventstore.Position // the last event appended (see above)
	for i := range 50 {
		res, err := store.Append(ctx, fmt.Sprintf("acc-%d", i), eventstore.NoStream, batch...)
		if err != nil {
			b.Fatal(err)
		}
		head = res.Position
	}
	for _, c := range []struct{ runners, partitions int }{{1, 1}, {1, 4}, {2, 4}} {
		b.Run(fmt.Sprintf("runners=%d/partitions=%d", c.runners, c.partitions), func(b *testing.B) {
			var elapsed time.Duration
			for i := range b.N {
				name := fmt.Sprintf("bench-%d-%d-%d", c.runners, c.partitions, i)
				h := projection.HandlerFunc(func(context.Context, projection.Event) error { time.Sleep(time.Millisecond); return nil })
				rctx, cancel := context.WithCancel(ctx)
				var runners []*projection.Runner
				done := make(chan error, c.runners)
				t0 := time.Now()
				for j := range c.runners {
					// Each runner on its own pool and store, as its own process.
					rpool, err := pgxpool.New(ctx, url)
					if err != nil {
						b.Fatal(err)
					}
					defer rpool.Close()
					rstore, err := postgres.New(rpool, &postgres.Config{Logger: slog.New(slog.DiscardHandler)})
					if err != nil {
						b.Fatal(err)
					}
					defer rstore.Close()
					ps, err := postgres.NewProjectionStore(rpool, nil)
					if err != nil {
						b.Fatal(err)
					}
					r, err := projection.New(rstore, ps, &projection.Config{Logger: slog.New(slog.DiscardHandler),
						Holder: fmt.Sprintf("r%d", j), AcquireInterval: 100 * time.Millisecond})
					if err != nil {
						b.Fatal(err)
					}
					if err := r.Add(projection.Projection{Name: name, Handler: h, Partitions: c.partitions, BatchSize: 100}); err != nil {
						b.Fatal(err)
					}
					runners = append(runners, r)
					go func() { done <- r.Run(rctx) }()
				}
				err := runners[0].WaitFor(ctx, name, head)
				elapsed += time.Since(t0)
				cancel()
				for range runners {
					<-done
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(events*b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
