package postgres_test

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/postgres"
)

// A points service awarding points once per registration, however often
// the bus delivers it.
func ExampleIdempotent() {
	ctx := context.Background()
	var pool *pgxpool.Pool // pgxpool.New(ctx, dsn), migrated
	var bus eventbus.Subscriber

	award := postgres.Idempotent(pool, "points", func(ctx context.Context, tx pgx.Tx, d eventbus.Delivery) error {
		_, err := tx.Exec(ctx, `UPDATE points SET total = total + 100 WHERE user_id = $1`, d.StreamID)
		return err
	})
	if bus != nil {
		sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "points", Handler: award})
		if err == nil {
			defer sub.Close(ctx)
		}
	}
}
