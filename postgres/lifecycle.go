package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
	"github.com/chronicle-go/chronicle/postgres/internal/rowscan"
)

// The stream lifecycle ([eventstore.Lifecycle]) on PostgreSQL. Each
// operation is one transaction that first locks the stream's head row in
// chronicle.streams (eventsql's lifecycle_lock.sql): every append to the
// stream updates that row, so appends wait for the operation and then see
// its result. Archiving and soft deletion move the events into
// chronicle.events_archive; truncation and hard deletion delete them.
// A stream that is not live is closed to appends by its head row (see
// lifecycle_set.sql), at no cost to the append statements.

var _ eventstore.Lifecycle = (*Store)(nil)

// DeleteStream soft-deletes a stream: its events move to
// chronicle.events_archive and its head row is closed to appends; see
// [eventstore.Lifecycle].
func (s *Store) DeleteStream(ctx context.Context, streamID string, expected eventstore.ExpectedVersion) (eventstore.StreamState, error) {
	if err := eventstore.ValidateLifecycleExpected(expected); err != nil {
		return eventstore.StreamState{}, err
	}
	return s.lifecycle(ctx, "delete stream", streamID, func(ctx context.Context, tx pgx.Tx, st eventstore.StreamState) (eventstore.StreamState, error) {
		switch st.Status {
		case eventstore.StreamHardDeleted:
			return st, st.ClosedError()
		case eventstore.StreamDeleted:
			return st, checkExpected(st, expected)
		}
		if err := checkExpected(st, expected); err != nil {
			return st, err
		}
		if st.Status == eventstore.StreamLive {
			if _, err := tx.Exec(ctx, eventsql.LifecycleArchiveSQL, pgx.QueryExecModeExec, st.StreamID); err != nil {
				return st, err
			}
		}
		st.Status = eventstore.StreamDeleted
		return st, setState(ctx, tx, st)
	})
}

// HardDeleteStream deletes a stream's events from chronicle.events and
// chronicle.events_archive, and its snapshot from chronicle.snapshots, in
// one transaction, and keeps its head row as a tombstone; see
// [eventstore.Lifecycle].
func (s *Store) HardDeleteStream(ctx context.Context, streamID string, expected eventstore.ExpectedVersion) (eventstore.StreamState, error) {
	if err := eventstore.ValidateLifecycleExpected(expected); err != nil {
		return eventstore.StreamState{}, err
	}
	return s.lifecycle(ctx, "hard-delete stream", streamID, func(ctx context.Context, tx pgx.Tx, st eventstore.StreamState) (eventstore.StreamState, error) {
		if st.Status == eventstore.StreamHardDeleted {
			return st, nil
		}
		if err := checkExpected(st, expected); err != nil {
			return st, err
		}
		if _, err := tx.Exec(ctx, eventsql.LifecyclePurgeSQL, pgx.QueryExecModeExec, st.StreamID); err != nil {
			return st, err
		}
		st.Status, st.FirstVersion = eventstore.StreamHardDeleted, st.Version+1
		return st, setState(ctx, tx, st)
	})
}

// TruncateStream deletes a live stream's events before version before
// and records the truncation point in its head row; see
// [eventstore.Lifecycle].
func (s *Store) TruncateStream(ctx context.Context, streamID string, before int64) (eventstore.StreamState, error) {
	return s.lifecycle(ctx, "truncate stream", streamID, func(ctx context.Context, tx pgx.Tx, st eventstore.StreamState) (eventstore.StreamState, error) {
		if err := st.ClosedError(); err != nil {
			return st, err
		}
		if err := eventstore.ValidateTruncate(st.StreamID, before, st.Version); err != nil {
			return st, err
		}
		if before <= st.FirstVersion {
			return st, nil
		}
		if _, err := tx.Exec(ctx, eventsql.LifecycleTruncateSQL, pgx.QueryExecModeExec, st.StreamID, before); err != nil {
			return st, err
		}
		st.FirstVersion = before
		return st, setState(ctx, tx, st)
	})
}

// ArchiveStream moves a stream's events to chronicle.events_archive and
// closes its head row to appends; see [eventstore.Lifecycle].
func (s *Store) ArchiveStream(ctx context.Context, streamID string, expected eventstore.ExpectedVersion) (eventstore.StreamState, error) {
	if err := eventstore.ValidateLifecycleExpected(expected); err != nil {
		return eventstore.StreamState{}, err
	}
	return s.lifecycle(ctx, "archive stream", streamID, func(ctx context.Context, tx pgx.Tx, st eventstore.StreamState) (eventstore.StreamState, error) {
		if st.Status == eventstore.StreamHardDeleted {
			return st, st.ClosedError()
		}
		if err := checkExpected(st, expected); err != nil {
			return st, err
		}
		switch st.Status {
		case eventstore.StreamArchived:
			return st, nil
		case eventstore.StreamLive:
			if _, err := tx.Exec(ctx, eventsql.LifecycleArchiveSQL, pgx.QueryExecModeExec, st.StreamID); err != nil {
				return st, err
			}
		}
		st.Status = eventstore.StreamArchived
		return st, setState(ctx, tx, st)
	})
}

// RestoreStream moves an archived or soft-deleted stream's events back
// into chronicle.events with their positions and reopens it; see
// [eventstore.Lifecycle]. When another stream took one of its event IDs
// meanwhile, it fails with a [*eventstore.DuplicateEventError] and changes
// nothing.
func (s *Store) RestoreStream(ctx context.Context, streamID string) (eventstore.StreamState, error) {
	restored := false
	st, err := s.lifecycle(ctx, "restore stream", streamID, func(ctx context.Context, tx pgx.Tx, st eventstore.StreamState) (eventstore.StreamState, error) {
		switch st.Status {
		case eventstore.StreamLive:
			return st, nil
		case eventstore.StreamHardDeleted:
			return st, st.ClosedError()
		}
		if _, err := tx.Exec(ctx, eventsql.LifecycleRestoreSQL, pgx.QueryExecModeExec, st.StreamID); err != nil {
			if pgErr := pgError(err); pgErr != nil && pgErr.Code == eventsql.CodeUniqueViolation {
				return st, fmt.Errorf("restore stream %q: another stream took one of its event ids while it was out of the log: %w",
					st.StreamID, &eventstore.DuplicateEventError{EventID: takenEventID(pgErr.Detail), StreamID: st.StreamID})
			}
			return st, err
		}
		st.Status, restored = eventstore.StreamLive, true
		return st, setState(ctx, tx, st)
	})
	if restored && err == nil {
		s.watch.AfterCommit()
	}
	return st, err
}

// ReadArchivedStream reads a page of an archived or soft-deleted stream's
// events from chronicle.events_archive; see [eventstore.Lifecycle].
func (s *Store) ReadArchivedStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	q, err := newStreamRead(streamID, opts, false)
	if err != nil {
		return nil, err
	}
	q.sql = eventsql.LifecycleReadArchivedForwardSQL
	if opts.Direction == eventstore.Backward {
		q.sql = eventsql.LifecycleReadArchivedBackwardSQL
	}
	var recs []eventstore.Record
	err = readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		st, found, err := streamState(ctx, conn, streamID)
		switch {
		case err != nil:
			return err
		case !found || st.Status == eventstore.StreamLive:
			return nil
		case st.Status == eventstore.StreamHardDeleted:
			return st.ClosedError()
		}
		rows, err := conn.Query(ctx, q.sql, q.args()...)
		if err != nil {
			return err
		}
		recs, err = rowscan.Scan(rows, &rowscan.Records, streamID, q.limit)
		return err
	})
	if err != nil {
		return nil, lifecycleError(fmt.Sprintf("read archived stream %q", streamID), err)
	}
	return recs, nil
}

// StreamState reads a stream's lifecycle state from its head row; see
// [eventstore.Lifecycle].
func (s *Store) StreamState(ctx context.Context, streamID string) (eventstore.StreamState, error) {
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return eventstore.StreamState{}, err
	}
	var (
		st    eventstore.StreamState
		found bool
	)
	err := readOnPool(ctx, s.pool, func(conn *pgxpool.Conn) error {
		var err error
		st, found, err = streamState(ctx, conn, streamID)
		return err
	})
	if err != nil {
		return eventstore.StreamState{}, lifecycleError(fmt.Sprintf("read state of stream %q", streamID), err)
	}
	if !found {
		return eventstore.StreamState{}, fmt.Errorf("stream %q: %w", streamID, eventstore.ErrStreamNotFound)
	}
	return st, nil
}

// lifecycle runs op in a transaction after locking the stream's head row
// (lifecycle_lock.sql) and reading its state. op returns the new state;
// its errors (typed ones, and database errors, which are wrapped here)
// roll the transaction back.
func (s *Store) lifecycle(ctx context.Context, what, streamID string,
	op func(ctx context.Context, tx pgx.Tx, st eventstore.StreamState) (eventstore.StreamState, error)) (eventstore.StreamState, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.StreamState{}, err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return eventstore.StreamState{}, err
	}
	var st eventstore.StreamState
	// READ COMMITTED whatever the server's default: each statement after
	// the lock then sees every append committed before it was granted.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		var (
			status string
			err    error
		)
		st.StreamID = streamID
		err = tx.QueryRow(ctx, eventsql.LifecycleLockSQL, pgx.QueryExecModeExec, streamID).Scan(&st.Version, &status, &st.FirstVersion)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("stream %q: %w", streamID, eventstore.ErrStreamNotFound)
		}
		if err != nil {
			return err
		}
		if st.Status, err = parseStatus(streamID, status); err != nil {
			return err
		}
		st, err = op(ctx, tx, st)
		return err
	})
	if err != nil {
		return eventstore.StreamState{}, lifecycleError(fmt.Sprintf("%s %q", what, streamID), err)
	}
	return st, nil
}

// lifecycleError returns the typed errors of the lifecycle as they are
// and wraps the others (database errors) with op. A lifecycle operation
// whose commit was cut off may or may not have happened; retrying it is
// safe, since every operation is idempotent.
func lifecycleError(op string, err error) error {
	for _, typed := range []error{
		eventstore.ErrStreamNotFound, eventstore.ErrStreamArchived, eventstore.ErrInvalidInput,
		eventstore.ErrConcurrencyConflict, eventstore.ErrDuplicateEvent,
	} {
		if errors.Is(err, typed) {
			return err
		}
	}
	return wrapError(op, err)
}

// setState writes st into the locked head row (lifecycle_set.sql).
func setState(ctx context.Context, tx pgx.Tx, st eventstore.StreamState) error {
	_, err := tx.Exec(ctx, eventsql.LifecycleSetSQL, pgx.QueryExecModeExec, st.StreamID, st.Status.String(), st.FirstVersion)
	return err
}

// checkExpected applies a lifecycle operation's expected version.
func checkExpected(st eventstore.StreamState, expected eventstore.ExpectedVersion) error {
	if !expected.Check(st.Version) {
		return &eventstore.ConcurrencyError{StreamID: st.StreamID, Expected: expected, Actual: st.Version}
	}
	return nil
}

// parseStatus parses a head row's status column.
func parseStatus(streamID, status string) (eventstore.StreamStatus, error) {
	st, err := eventstore.ParseStreamStatus(status)
	if err != nil {
		return 0, fmt.Errorf("stream %q: head row in chronicle.streams: %w", streamID, err)
	}
	return st, nil
}

// closedStreamError returns the typed error of appending to or reading a
// stream whose head row has this status, or nil when it is live.
func closedStreamError(streamID, status string, version, first int64) error {
	if status == "live" {
		return nil
	}
	st, err := parseStatus(streamID, status)
	if err != nil {
		return err
	}
	return eventstore.StreamState{StreamID: streamID, Status: st, Version: version, FirstVersion: first}.ClosedError()
}

// streamState reads a stream's state without a lock (lifecycle_state.sql);
// found is false when the stream does not exist.
func streamState(ctx context.Context, db dbtx, streamID string) (st eventstore.StreamState, found bool, err error) {
	var status string
	st.StreamID = streamID
	err = db.QueryRow(ctx, eventsql.LifecycleStateSQL, pgx.QueryExecModeExec, streamID).Scan(&st.Version, &status, &st.FirstVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	st.Status, err = parseStatus(streamID, status)
	return st, err == nil, err
}

// closedReadError says why a stream read found no event: a
// [*eventstore.StreamArchivedError] or a hard-deleted stream's
// [*eventstore.StreamDeletedError]; nil when the stream is live, soft-
// deleted (which reads as not found) or does not exist. Reads call it
// only for empty pages, so reading a live stream costs nothing more.
func closedReadError(ctx context.Context, db dbtx, streamID string) error {
	st, found, err := streamState(ctx, db, streamID)
	if err != nil || !found || st.Status == eventstore.StreamDeleted {
		return err
	}
	return st.ClosedError()
}

// missingStreamVersion says why stream_version.sql found no live head
// row: the stream's closed-stream error, or one matching
// [eventstore.ErrStreamNotFound] when it does not exist. A stream restored
// between the two reads is live: its version is returned.
func missingStreamVersion(ctx context.Context, db dbtx, streamID string) (int64, error) {
	st, found, err := streamState(ctx, db, streamID)
	switch {
	case err != nil:
		return 0, err
	case !found:
		return 0, fmt.Errorf("stream %q: %w", streamID, eventstore.ErrStreamNotFound)
	}
	return st.Version, st.ClosedError()
}

// takenEventID reads the event id from the detail of a unique violation
// on events_event_id_key ("Key (event_id)=(…) already exists."), or
// returns the zero ID.
func takenEventID(detail string) eventstore.EventID {
	_, rest, ok := strings.Cut(detail, "=(")
	if !ok {
		return eventstore.EventID{}
	}
	id, _, _ := strings.Cut(rest, ")")
	parsed, err := eventstore.ParseEventID(id)
	if err != nil {
		return eventstore.EventID{}
	}
	return parsed
}
