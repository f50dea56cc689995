package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func setupIdempotent(t *testing.T) (context.Context, *pgxpool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	pool := postgrestest.Pool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE points (user_id text NOT NULL, points int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return ctx, pool
}

func countPoints(t *testing.T, ctx context.Context, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM points`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func idemDelivery() eventbus.Delivery {
	return eventbus.Delivery{Group: "points", Attempt: 1, Message: eventbus.Message{
		EventID: eventstore.NewEventID(), Type: "UserRegistered", SchemaVersion: 1, StreamID: "user-1", StreamVersion: 1,
	}}
}

func TestIdempotentRunsOncePerEvent(t *testing.T) {
	t.Parallel()
	ctx, pool := setupIdempotent(t)
	calls := 0
	h := postgres.Idempotent(pool, "points", func(ctx context.Context, tx pgx.Tx, d eventbus.Delivery) error {
		calls++
		_, err := tx.Exec(ctx, `INSERT INTO points VALUES ($1, 10)`, d.StreamID)
		return err
	})
	d := idemDelivery()
	for range 3 {
		if err := h.Handle(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 || countPoints(t, ctx, pool) != 1 {
		t.Fatalf("%d calls, %d rows; want 1 and 1", calls, countPoints(t, ctx, pool))
	}
	if ok, err := postgres.Processed(ctx, pool, "points", d.EventID); err != nil || !ok {
		t.Fatalf("Processed = %v, %v; want true", ok, err)
	}
	// Another consumer handles the same event for itself.
	other := postgres.Idempotent(pool, "other", func(ctx context.Context, tx pgx.Tx, d eventbus.Delivery) error {
		calls++
		return nil
	})
	if err := other.Handle(ctx, d); err != nil || calls != 2 {
		t.Fatalf("other consumer: %v, %d calls; want its own call", err, calls)
	}
}

func TestIdempotentFailureRollsBack(t *testing.T) {
	t.Parallel()
	ctx, pool := setupIdempotent(t)
	fail := true
	h := postgres.Idempotent(pool, "points", func(ctx context.Context, tx pgx.Tx, d eventbus.Delivery) error {
		if _, err := tx.Exec(ctx, `INSERT INTO points VALUES ($1, 10)`, d.StreamID); err != nil {
			return err
		}
		if fail {
			return errors.New("crash after the write")
		}
		return nil
	})
	d := idemDelivery()
	if err := h.Handle(ctx, d); err == nil {
		t.Fatal("want the handler's error")
	}
	if ok, _ := postgres.Processed(ctx, pool, "points", d.EventID); ok || countPoints(t, ctx, pool) != 0 {
		t.Fatal("a failed handler left its mark or its write")
	}
	fail = false
	if err := h.Handle(ctx, d); err != nil {
		t.Fatal(err)
	}
	if countPoints(t, ctx, pool) != 1 {
		t.Fatalf("%d rows after the retry, want 1", countPoints(t, ctx, pool))
	}
}

func TestIdempotentConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	ctx, pool := setupIdempotent(t)
	h := postgres.Idempotent(pool, "points", func(ctx context.Context, tx pgx.Tx, d eventbus.Delivery) error {
		time.Sleep(20 * time.Millisecond)
		_, err := tx.Exec(ctx, `INSERT INTO points VALUES ($1, 10)`, d.StreamID)
		return err
	})
	d := idemDelivery()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- h.Handle(ctx, d) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countPoints(t, ctx, pool); n != 1 {
		t.Fatalf("%d rows after 8 concurrent deliveries, want 1", n)
	}
}

func TestIdempotentMisconfigured(t *testing.T) {
	t.Parallel()
	bus := eventbus.NewMemoryBus(nil)
	fn := func(context.Context, pgx.Tx, eventbus.Delivery) error { return nil }
	for name, h := range map[string]eventbus.Handler{
		"nil pool":       postgres.Idempotent(nil, "c", fn),
		"nil function":   postgres.Idempotent(&pgxpool.Pool{}, "c", nil),
		"empty consumer": postgres.Idempotent(&pgxpool.Pool{}, "", fn),
	} {
		if _, err := bus.Subscribe(context.Background(), eventbus.Consumer{Group: "g", Handler: h}); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("%s: %v, want ErrInvalidInput", name, err)
		}
	}
}
