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
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
	"github.com/chronicle-go/chronicle/postgres/internal/rowscan"
)

// ReadStream reads one page of a stream; see
// [eventstore.Store.ReadStream]. It reads a range of the
// (stream_id, stream_version) unique index (eventsql's
// read_stream_forward.sql, read_stream_backward.sql).
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
	q, err := newStreamRead(streamID, opts, payloads)
	if err != nil {
		return nil, err
	}
	var recs []eventstore.Record
	err = readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		if recs, err = q.run(ctx, conn); err == nil && len(recs) == 0 {
			err = closedReadError(ctx, conn, streamID) // lifecycle.go
		}
		return err
	})
	if err != nil {
		return nil, lifecycleError(fmt.Sprintf("read stream %q", streamID), err)
	}
	return recs, nil
}

// streamRead is a validated stream read: its statement, arguments and row
// layout.
type streamRead struct {
	sql      string
	layout   *rowscan.Layout
	streamID string
	from     int64 // the first version read (forward) or the highest (backward)
	limit    int   // 0: none
	backward bool
}

// newStreamRead validates a stream read and picks its statement.
func newStreamRead(streamID string, opts eventstore.ReadStreamOptions, payloads bool) (*streamRead, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, &eventstore.ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is negative", opts.Limit)}
	}
	q := &streamRead{sql: eventsql.ReadStreamForwardSQL, layout: &rowscan.Records, streamID: streamID, limit: opts.Limit}
	switch opts.Direction {
	case eventstore.Forward:
		q.from = max(opts.From, 1)
	case eventstore.Backward:
		q.backward, q.from = true, opts.From
		if q.from <= 0 {
			q.from = math.MaxInt64
		}
	default:
		return nil, &eventstore.ValidationError{Field: "direction", Reason: fmt.Sprintf("%d is neither Forward nor Backward", opts.Direction)}
	}
	switch {
	case payloads && q.backward:
		q.sql, q.layout = eventsql.ReadPayloadsBackwardSQL, &rowscan.Payloads
	case payloads:
		q.sql, q.layout = eventsql.ReadPayloadsForwardSQL, &rowscan.Payloads
	case q.backward:
		q.sql = eventsql.ReadStreamBackwardSQL
	}
	return q, nil
}

// args returns the read's arguments for a statement of the stream reads'
// shape without a cap: stream id, first (or highest) version, limit (nil:
// none).
func (q *streamRead) args() []any {
	var limit *int64
	if q.limit > 0 {
		l := int64(q.limit)
		limit = &l
	}
	return []any{q.streamID, q.from, limit}
}

// run runs the read on db. The statements return at most
// eventsql.ReadStreamMaxPage rows (a literal cap that keeps their generic
// plans cheap at any table size): a longer read is several statements,
// each resuming after the last version of the one before. A stream's
// versions never change once written, so the pages join exactly.
func (q *streamRead) run(ctx context.Context, db dbtx) ([]eventstore.Record, error) {
	var all []eventstore.Record
	from := q.from
	for {
		n := eventsql.ReadStreamMaxPage
		if q.limit > 0 {
			n = min(q.limit-len(all), n)
		}
		rows, err := db.Query(ctx, q.sql, q.streamID, from, int64(n))
		if err != nil {
			return nil, err
		}
		page, err := rowscan.Scan(rows, q.layout, q.streamID, n)
		if err != nil {
			return nil, err
		}
		if all == nil && (len(page) < n || n == q.limit) {
			return page, nil // the usual case: one statement
		}
		all = append(all, page...)
		if len(page) < n || len(all) == q.limit {
			return all, nil
		}
		last := page[len(page)-1].StreamVersion
		switch {
		case !q.backward:
			from = last + 1
		case last <= 1:
			return all, nil
		default:
			from = last - 1
		}
	}
}

// readAll runs a validated ReadAll on db (see readAllStatements).
func readAll(ctx context.Context, db dbtx, after eventstore.Position, limit int) ([]eventstore.Record, error) {
	var all []eventstore.Record
	err := readAllStatements(ctx, db, after, limit, func(rows pgx.Rows, _, n int) (int, eventstore.Position, error) {
		page, err := rowscan.Scan(rows, &rowscan.Records, "", n)
		if err != nil {
			return 0, eventstore.Position{}, err
		}
		if all == nil {
			all = page // the usual case: one statement, no copy
		} else {
			all = append(all, page...)
		}
		if len(page) == 0 {
			return 0, eventstore.Position{}, nil
		}
		return len(page), page[len(page)-1].Position, nil
	})
	if err != nil {
		return nil, err
	}
	return all, nil
}

// readAllInto is readAll into the caller's records (see
// [Store.ReadAllInto]).
func readAllInto(ctx context.Context, db dbtx, after eventstore.Position, limit int, next func(i int) *eventstore.Record) (int, error) {
	var last *eventstore.Record // the record written last, for the next statement
	slot := func(i int) *eventstore.Record {
		last = next(i)
		return last
	}
	total := 0
	err := readAllStatements(ctx, db, after, limit, func(rows pgx.Rows, before, _ int) (int, eventstore.Position, error) {
		got, err := rowscan.ScanInto(rows, &rowscan.Records, "", before, slot)
		if err != nil || got == 0 {
			return 0, eventstore.Position{}, err
		}
		total += got
		return got, last.Position, nil
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}

// readAllStatements reads up to limit events after the position after
// with read_all.sql, which returns at most eventsql.ReadAllMaxPage rows (a
// literal cap that keeps its generic plan cheap at any table size, see
// the statement): a larger limit is read as consecutive statements, each
// resuming after the last row of the one before. Every statement stops at
// the horizon of its own snapshot, so the pages join without a gap. scan
// reads a statement's rows, given the number read before it and the
// statement's limit, and returns how many it read and the position of
// the last.
func readAllStatements(ctx context.Context, db dbtx, after eventstore.Position, limit int,
	scan func(rows pgx.Rows, before, n int) (int, eventstore.Position, error)) error {
	total := 0
	for {
		n := min(limit-total, eventsql.ReadAllMaxPage)
		rows, err := db.Query(ctx, eventsql.ReadAllSQL, after.Transaction, after.Global, int64(n))
		if err != nil {
			return err
		}
		got, last, err := scan(rows, total, n)
		if err != nil {
			return err
		}
		total += got
		if got < n || total == limit {
			return nil
		}
		after = last
	}
}

// validateReadAll checks ReadAll's arguments.
func validateReadAll(after eventstore.Position, limit int) error {
	if limit <= 0 {
		return &eventstore.ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is not positive", limit)}
	}
	if after.Global < 0 {
		return &eventstore.ValidationError{Field: "position", Reason: fmt.Sprintf("global position %d is negative", after.Global)}
	}
	return nil
}

// ReadAll reads up to limit events after the position after, in global
// order; see [eventstore.Store.ReadAll]. It returns only events below the
// transaction-id horizon, so an event whose transaction is still running,
// and every event written by a younger transaction, waits until that
// transaction ends: a tailer never skips or repeats an event. limit must be
// positive.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Record, error) {
	if err := validateReadAll(after, limit); err != nil {
		return nil, err
	}
	var recs []eventstore.Record
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		var err error
		recs, err = readAll(ctx, conn, after, limit)
		return err
	})
	if err != nil {
		return nil, wrapError("read all", err)
	}
	return recs, nil
}

// ReadAllInto reads as [Store.ReadAll] does into records the caller
// provides; see [eventstore.RecordReader].
func (s *Store) ReadAllInto(ctx context.Context, after eventstore.Position, limit int, next func(i int) *eventstore.Record) (int, error) {
	if err := validateReadAll(after, limit); err != nil {
		return 0, err
	}
	if next == nil {
		return 0, &eventstore.ValidationError{Field: "next", Reason: "must not be nil"}
	}
	var n int
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		var err error
		n, err = readAllInto(ctx, conn, after, limit, next)
		return err
	})
	if err != nil {
		return 0, wrapError("read all", err)
	}
	return n, nil
}

// Head returns the position of the last event ReadAll can return now, or
// the zero Position when there is none; see [eventstore.Store.Head].
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	var p eventstore.Position
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, eventsql.HeadSQL).Scan(&p.Transaction, &p.Global)
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
		err := conn.QueryRow(ctx, eventsql.StreamVersionSQL, streamID).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			v, err = missingStreamVersion(ctx, conn, streamID) // lifecycle.go
		}
		return err
	})
	if err != nil {
		return 0, lifecycleError(fmt.Sprintf("read version of stream %q", streamID), err)
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
		return conn.QueryRow(ctx, eventsql.TailLagSQL).Scan(&secs)
	}); err != nil {
		return 0, wrapError("read tail lag", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}
