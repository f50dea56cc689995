package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/rowscan"
)

// This file holds the read-only queries that inspection tools (the web
// console of package console, dashboards) need beside the event store's
// own reads: an event count that stays cheap on large tables, the global
// order newest first, the recent append rate and a bounded event count.
// Each is one statement that uses an index or the catalog, so that it
// answers in milliseconds on millions of events.

// inspectEventCountExactBelow is the planner's row estimate under which
// [Store.EventCount] counts exactly.
const inspectEventCountExactBelow = 100_000

// inspectEventCountSQL returns the number of events: the planner's
// estimate (pg_class.reltuples, kept by ANALYZE and autovacuum) when it is
// at least $1, otherwise an exact count. reltuples is -1 for a table never
// analyzed, which counts exactly. The count(*) sub-select is an InitPlan
// that runs only when the CASE reaches it.
const inspectEventCountSQL = `
SELECT CASE
         WHEN c.reltuples >= $1 THEN c.reltuples::bigint
         ELSE (SELECT count(*) FROM chronicle.events)
       END,
       c.reltuples < $1
FROM pg_class c
WHERE c.oid = 'chronicle.events'::regclass`

// EventCount returns the number of events in the store. On a small table
// (fewer than 100,000 events by the planner's statistics) it counts them
// and exact is true; on a larger one it returns the planner's estimate,
// which ANALYZE and autovacuum keep within a few percent, and exact is
// false: counting millions of rows takes longer than a status page may.
func (s *Store) EventCount(ctx context.Context) (n int64, exact bool, err error) {
	err = readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, inspectEventCountSQL, float64(inspectEventCountExactBelow)).Scan(&n, &exact)
	})
	if err != nil {
		return 0, false, wrapError("count events", err)
	}
	return n, exact, nil
}

// inspectReadAllBackwardSQL reads the global order newest first, before
// the position ($1, $2), below the transaction-id horizon (the same
// horizon as eventsql.ReadAllSQL, so that every event it shows is one
// ReadAll returns too), with the columns of rowscan.Records. It scans the
// primary key backward.
const inspectReadAllBackwardSQL = `
SELECT global_position, transaction_id, event_id, stream_id, stream_version,
       event_type, schema_version, data, metadata, recorded_at
FROM chronicle.events
WHERE (transaction_id, global_position) < ($1::xid8, $2::bigint)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id DESC, global_position DESC
LIMIT $3`

// inspectMaxPosition is the position after every event: ReadAllBackward
// starts there when before is the zero Position.
var inspectMaxPosition = eventstore.Position{Transaction: 1<<63 - 1, Global: 1<<63 - 1}

// ReadAllBackward reads up to limit events of the global order, newest
// first, strictly before the position before, or from the head when before
// is the zero Position. Like [Store.ReadAll] it returns only events below
// the transaction-id horizon, so the newest event it returns is the
// [Store.Head]. To page back, pass the last position returned. limit must
// be positive.
func (s *Store) ReadAllBackward(ctx context.Context, before eventstore.Position, limit int) ([]eventstore.Record, error) {
	if limit <= 0 {
		return nil, &eventstore.ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is not positive", limit)}
	}
	if before.Global < 0 {
		return nil, &eventstore.ValidationError{Field: "position", Reason: fmt.Sprintf("global position %d is negative", before.Global)}
	}
	if before.IsZero() {
		before = inspectMaxPosition
	}
	// xid8 is unsigned but the bind parameter is a bigint: the largest
	// transaction id PostgreSQL hands out is far below 2^63.
	tx := min(before.Transaction, uint64(inspectMaxPosition.Transaction))
	var recs []eventstore.Record
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		rows, err := conn.Query(ctx, inspectReadAllBackwardSQL, tx, before.Global, int64(limit))
		if err != nil {
			return err
		}
		recs, err = rowscan.Scan(rows, &rowscan.Records, "", limit)
		return err
	})
	if err != nil {
		return nil, wrapError("read all backward", err)
	}
	return recs, nil
}

// inspectAppendRateSample caps the events AppendRate looks at.
const inspectAppendRateSample = 10_000

// inspectAppendRateSQL counts the newest events (at most $2, by the primary
// key scanned backward, without the horizon: a rate counts what was
// written) recorded within the last $1 seconds, and returns the oldest
// recorded_at among them.
const inspectAppendRateSQL = `
SELECT count(*), min(recorded_at)
FROM (
    SELECT recorded_at
    FROM chronicle.events
    ORDER BY transaction_id DESC, global_position DESC
    LIMIT $2
) newest
WHERE recorded_at >= clock_timestamp() - make_interval(secs => $1)`

// AppendRate returns the number of events appended per second over the
// last window (for example a minute). It looks at the newest 10,000 events
// at most, so its cost does not grow with the store: above 10,000 events
// per window, the rate is measured over the time those 10,000 took.
// window must be positive.
func (s *Store) AppendRate(ctx context.Context, window time.Duration) (float64, error) {
	if window <= 0 {
		return 0, &eventstore.ValidationError{Field: "window", Reason: fmt.Sprintf("%s is not positive", window)}
	}
	var (
		n      int64
		oldest *time.Time
	)
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, inspectAppendRateSQL, window.Seconds(), int64(inspectAppendRateSample)).Scan(&n, &oldest)
	})
	if err != nil {
		return 0, wrapError("read append rate", err)
	}
	if n < inspectAppendRateSample || oldest == nil {
		return float64(n) / window.Seconds(), nil
	}
	span := time.Since(*oldest)
	if span <= 0 {
		return float64(n) / window.Seconds(), nil
	}
	return float64(n) / span.Seconds(), nil
}

// inspectCountEventsSQL counts the events in ((($1, $2), ($3, $4)]], at
// most $5 of them, by a range scan of the primary key.
const inspectCountEventsSQL = `
SELECT count(*) FROM (
    SELECT 1
    FROM chronicle.events
    WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
      AND (transaction_id, global_position) <= ($3::xid8, $4::bigint)
    LIMIT $5
) counted`

// CountEventsUpTo counts the events after the position after and up to
// upTo (included), like [ProjectionStore.CountEvents], but stops at limit:
// a result equal to limit means "limit or more". A status page uses it to
// show a projection's lag without counting millions of rows. limit must be
// positive.
func (s *Store) CountEventsUpTo(ctx context.Context, after, upTo eventstore.Position, limit int64) (int64, error) {
	if limit <= 0 {
		return 0, &eventstore.ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is not positive", limit)}
	}
	if after.Global < 0 || upTo.Global < 0 {
		return 0, &eventstore.ValidationError{Field: "position", Reason: "global position is negative"}
	}
	var n int64
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, inspectCountEventsSQL, after.Transaction, after.Global, upTo.Transaction, upTo.Global, limit).Scan(&n)
	})
	if err != nil {
		return 0, wrapError("count events", err)
	}
	return n, nil
}
