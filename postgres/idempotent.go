package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
)

// idempotentMarkSQL records that consumer handled an event; it inserts
// nothing when the consumer already did (the handler then has nothing to
// do). A concurrent delivery of the same event waits on the primary key
// until the first transaction ends.
const idempotentMarkSQL = `INSERT INTO chronicle.processed_events (consumer, event_id)
VALUES ($1, $2)
ON CONFLICT (consumer, event_id) DO NOTHING`

// idempotentCheckSQL tells whether consumer handled an event.
const idempotentCheckSQL = `SELECT EXISTS (
    SELECT 1 FROM chronicle.processed_events WHERE consumer = $1 AND event_id = $2
)`

// Idempotent returns a bus handler that runs fn at most once per consumer
// and event ID, whatever the number of deliveries: fn runs in a
// transaction that also records (consumer, event ID) in
// chronicle.processed_events, and commits with it. A message already
// recorded is acknowledged without calling fn. fn's writes must go
// through tx to share that guarantee; effects outside the database (an
// e-mail) are still at least once.
//
// consumer names the effect, usually the consumer group: two groups
// handling the same event record it separately.
func Idempotent(pool *pgxpool.Pool, consumer string, fn func(ctx context.Context, tx pgx.Tx, d eventbus.Delivery) error) eventbus.Handler {
	return &idempotent{pool: pool, consumer: consumer, fn: fn}
}

type idempotent struct {
	pool     *pgxpool.Pool
	consumer string
	fn       func(ctx context.Context, tx pgx.Tx, d eventbus.Delivery) error
}

// Err reports a misconfigured helper; Subscribe calls it.
func (h *idempotent) Err() error {
	switch {
	case h.pool == nil:
		return errors.New("idempotent handler: pool is nil")
	case h.fn == nil:
		return errors.New("idempotent handler: function is nil")
	case h.consumer == "" || len(h.consumer) > 200:
		return fmt.Errorf("idempotent handler: consumer name %q must have 1 to 200 bytes", h.consumer)
	}
	return nil
}

// Handle runs fn once for d's event.
func (h *idempotent) Handle(ctx context.Context, d eventbus.Delivery) error {
	if err := h.Err(); err != nil {
		return eventbus.Permanent(err)
	}
	return pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, idempotentMarkSQL, h.consumer, pgtype.UUID{Bytes: d.EventID, Valid: true})
		if err != nil {
			return wrapError("record processed event", err)
		}
		if tag.RowsAffected() == 0 {
			return nil // handled before: nothing to do
		}
		return h.fn(ctx, tx, d)
	})
}

// Processed reports whether consumer has handled the event, through
// [Idempotent].
func Processed(ctx context.Context, pool *pgxpool.Pool, consumer string, eventID eventstore.EventID) (bool, error) {
	var ok bool
	if err := pool.QueryRow(ctx, idempotentCheckSQL, consumer, pgtype.UUID{Bytes: eventID, Valid: true}).Scan(&ok); err != nil {
		return false, wrapError("check processed event", err)
	}
	return ok, nil
}
