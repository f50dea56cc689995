package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
)

// storeRecordColumns are the columns storeScanRecords reads, in order.
const storeRecordColumns = `global_position, transaction_id, event_id, stream_id, stream_version,
       event_type, schema_version, data, metadata, recorded_at`

// storePayloadColumns are the columns ReadStreamPayloads reads, in order:
// what rehydrating an aggregate uses.
const storePayloadColumns = `stream_version, event_type, schema_version, data`

// storeReadForwardSQL reads a stream page forward. A NULL limit ($3) means
// no limit.
const storeReadForwardSQL = `SELECT ` + storeRecordColumns + storeStreamForwardSQL

const storeReadBackwardSQL = `SELECT ` + storeRecordColumns + storeStreamBackwardSQL

// The payload-only stream reads of ReadStreamPayloads.
const (
	storeReadPayloadsForwardSQL  = `SELECT ` + storePayloadColumns + storeStreamForwardSQL
	storeReadPayloadsBackwardSQL = `SELECT ` + storePayloadColumns + storeStreamBackwardSQL
)

// The FROM, WHERE, ORDER BY and LIMIT of the stream reads: $1 stream, $2
// first version, $3 limit (NULL: none).
const (
	storeStreamForwardSQL = `
FROM chronicle.events
WHERE stream_id = $1 AND stream_version >= $2
ORDER BY stream_version
LIMIT $3`
	storeStreamBackwardSQL = `
FROM chronicle.events
WHERE stream_id = $1 AND stream_version <= $2
ORDER BY stream_version DESC
LIMIT $3`
)

// storeReadAllSQL reads the global order after a position, up to the
// transaction-id horizon: rows written by a transaction that is older than
// every transaction still running. Such a transaction has finished, so no
// row can ever appear below the horizon again, and a reader that resumes
// from its last position never skips one. See docs/postgres.md.
const storeReadAllSQL = `
SELECT ` + storeRecordColumns + `
FROM chronicle.events
WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, global_position
LIMIT $3`

// storeHeadSQL returns the last position ReadAll can return now.
const storeHeadSQL = `
SELECT transaction_id, global_position
FROM chronicle.events
WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id DESC, global_position DESC
LIMIT 1`

// storeStreamVersionSQL reads a stream's head row: its current version.
const storeStreamVersionSQL = `SELECT version FROM chronicle.streams WHERE stream_id = $1`

// storeTailLagSQL measures how long the transaction-id horizon has been
// held back: the age of the running transaction with the oldest
// transaction id (in any database of the cluster), or of the oldest
// prepared transaction.
const storeTailLagSQL = `
SELECT greatest(
    (SELECT extract(epoch FROM clock_timestamp() - xact_start)
     FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
     ORDER BY age(backend_xid) DESC
     LIMIT 1),
    (SELECT extract(epoch FROM clock_timestamp() - prepared)
     FROM pg_prepared_xacts
     ORDER BY age(transaction) DESC
     LIMIT 1),
    0)::float8`

// ReadStream reads one page of a stream; see
// [eventstore.Store.ReadStream]. It uses the (stream_id, stream_version)
// unique index.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	return s.readStream(ctx, streamID, opts, false)
}

// ReadStreamPayloads reads one page of a stream like [Store.ReadStream],
// but only the columns rehydration uses; see [eventstore.PayloadReader].
// It sends less than half of what ReadStream sends for small events.
func (s *Store) ReadStreamPayloads(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	return s.readStream(ctx, streamID, opts, true)
}

func (s *Store) readStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, payloads bool) ([]eventstore.Record, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, &eventstore.ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is negative", opts.Limit)}
	}
	var limit *int64
	if opts.Limit > 0 {
		l := int64(opts.Limit)
		limit = &l
	}
	var (
		backward bool
		from     int64
	)
	switch opts.Direction {
	case eventstore.Forward:
		from = max(opts.From, 1)
	case eventstore.Backward:
		backward, from = true, opts.From
		if from <= 0 {
			from = math.MaxInt64
		}
	default:
		return nil, &eventstore.ValidationError{Field: "direction", Reason: fmt.Sprintf("%d is neither Forward nor Backward", opts.Direction)}
	}
	stmt, layout := storeStmtReadForward, &storeRecordRows
	switch {
	case payloads && backward:
		stmt, layout = storeStmtReadPayloadsBackward, &storePayloadRows
	case payloads:
		stmt, layout = storeStmtReadPayloadsForward, &storePayloadRows
	case backward:
		stmt = storeStmtReadBackward
	}
	var recs []eventstore.Record
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		rows, err := conn.Query(ctx, s.sql(stmt), streamID, from, limit)
		if err != nil {
			return err
		}
		recs, err = storeScanRecords(rows, layout, streamID)
		return err
	})
	if err != nil {
		return nil, wrapError(fmt.Sprintf("read stream %q", streamID), err)
	}
	return recs, nil
}

// ReadAll reads up to limit events after the position after, in global
// order; see [eventstore.Store.ReadAll]. It returns only events below the
// transaction-id horizon, so an event whose transaction is still running,
// and every event written by a younger transaction, waits until that
// transaction ends: a tailer never skips or repeats an event. limit must be
// positive.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Record, error) {
	if limit <= 0 {
		return nil, &eventstore.ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is not positive", limit)}
	}
	if after.Global < 0 {
		return nil, &eventstore.ValidationError{Field: "position", Reason: fmt.Sprintf("global position %d is negative", after.Global)}
	}
	var recs []eventstore.Record
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		rows, err := conn.Query(ctx, storeReadAllSQL, after.Transaction, after.Global, int64(limit))
		if err != nil {
			return err
		}
		recs, err = storeScanRecords(rows, &storeRecordRows, "")
		return err
	})
	if err != nil {
		return nil, wrapError("read all", err)
	}
	return recs, nil
}

// Head returns the position of the last event ReadAll can return now, or
// the zero Position when there is none; see [eventstore.Store.Head].
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	var p eventstore.Position
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, storeHeadSQL).Scan(&p.Transaction, &p.Global)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Position{}, nil
	}
	if err != nil {
		return eventstore.Position{}, wrapError("read head", err)
	}
	return p, nil
}

// StreamVersion returns the stream's current version, or an error matching
// [eventstore.ErrStreamNotFound] when it has no events.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	var v int64
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, s.sql(storeStmtStreamVersion), streamID).Scan(&v)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("stream %q: %w", streamID, eventstore.ErrStreamNotFound)
	}
	if err != nil {
		return 0, wrapError(fmt.Sprintf("read version of stream %q", streamID), err)
	}
	return v, nil
}

// TailLag returns how long the transaction-id horizon of [Store.ReadAll]
// has been held back: the age of the oldest transaction in the cluster that
// holds a transaction id and is still running (or prepared). Events
// committed by younger transactions are invisible to ReadAll until it ends,
// so TailLag bounds how stale a caught-up tailer can be. It is 0 when no
// such transaction runs. Export it as a gauge and alert when it grows; set
// idle_in_transaction_session_timeout so that a forgotten open transaction
// cannot stall tailers for long (see docs/postgres.md).
//
// The role must be able to see other sessions' transactions: grant it
// pg_read_all_stats (or pg_monitor), otherwise sessions of other roles are
// invisible and the lag is underestimated.
func (s *Store) TailLag(ctx context.Context) (time.Duration, error) {
	var secs float64
	if err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, storeTailLagSQL).Scan(&secs)
	}); err != nil {
		return 0, wrapError("read tail lag", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}
