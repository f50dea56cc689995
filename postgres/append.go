package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
	"github.com/chronicle-go/chronicle/postgres/internal/notify"
)

// The savepoint that isolates an append inside the caller's transaction.
const (
	savepointSQL         = `SAVEPOINT chronicle_append`
	releaseSavepointSQL  = `RELEASE SAVEPOINT chronicle_append`
	rollbackSavepointSQL = `ROLLBACK TO SAVEPOINT chronicle_append; RELEASE SAVEPOINT chronicle_append`
)

// Bounds on an append's internal retries.
const (
	// maxUnsentAttempts bounds the retries of an append on the pool whose
	// connection failed before anything was sent.
	maxUnsentAttempts = 8
	// maxTxRaceAttempts bounds the retries of an append inside the caller's
	// transaction that lost a race it can still win (a stream created
	// after the statement's snapshot).
	maxTxRaceAttempts = 8
)

// Append appends events to one stream in one statement; see
// [eventstore.Store.Append] for the contract. Events with a zero ID get a
// new UUIDv7 (the caller's slice is not modified).
//
// Writers to one stream queue on the stream's head row: an append with
// expected version [eventstore.Any] (or [eventstore.StreamExists], once the
// stream exists) waits for the writers before it and never reports a
// concurrency conflict; it returns only when it is stored, when ctx ends,
// or on an error that is not a conflict.
//
// When the connection breaks mid-statement, the error matches
// [eventstore.ErrOutcomeUnknown]: the append may or may not have been
// committed (it is atomic: all events or none). Retrying it with the same
// event IDs is safe: it is stored exactly once. Give events IDs up front
// when you need that.
func (s *Store) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	res, err := s.appendStreams(ctx, nil, []eventstore.StreamAppend{{StreamID: streamID, Expected: expected, Events: events}})
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return res[0], nil
}

// AppendTx is [Store.Append] inside the caller's transaction, so that the
// events commit (or roll back) together with the caller's other writes.
// The events become visible to readers when tx commits.
//
// The append runs under a savepoint sent in the same round trip, so a
// concurrency conflict or a duplicate event leaves tx usable: the caller
// may roll back, or carry on without the events. The savepoint is a
// subtransaction: a transaction that calls AppendTx more than 64 times
// overflows PostgreSQL's per-backend subtransaction cache, which slows
// other sessions down; batch such appends with [Store.AppendStreamsTx].
//
// The stream's head row stays locked until tx ends: other writers to the
// stream wait for it. Keep such transactions short; an open transaction
// that has appended also holds back every [Store.ReadAll] tailer (see
// [Store.TailLag]).
//
// Some failures cannot be mended inside tx, and AppendTx returns them at
// once as an [*eventstore.TransactionConflictError] (matching
// [eventstore.ErrTransactionConflict]): a deadlock with another
// transaction, a serialization failure (REPEATABLE READ or SERIALIZABLE),
// and an append that would break the global order. The order is by
// transaction id, taken at a transaction's first write; if tx wrote
// (business rows, say) before another transaction appended to the same
// stream and committed, appending after that event would put the new
// events before it in [Store.ReadAll]'s order. Roll back and run the whole
// transaction again, which then gets a new id and re-reads what it decided
// on. Appending before the other writes avoids the order case.
//
// A tx that is already committed, rolled back or aborted by an earlier
// error gives a [*eventstore.ValidationError] for field "tx".
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if tx == nil {
		return eventstore.AppendResult{}, &eventstore.ValidationError{Field: "tx", Reason: "must not be nil"}
	}
	res, err := s.appendStreams(ctx, tx, []eventstore.StreamAppend{{StreamID: streamID, Expected: expected, Events: events}})
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return res[0], nil
}

// AppendStreams appends to several streams atomically, in one statement;
// see [eventstore.Store.AppendStreams]. Results are in the order of
// appends, and global positions follow that order. The streams' head rows
// are locked in stream-ID order, so concurrent AppendStreams calls cannot
// deadlock each other.
func (s *Store) AppendStreams(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	return s.appendStreams(ctx, nil, appends)
}

// AppendStreamsTx is [Store.AppendStreams] inside the caller's transaction;
// see [Store.AppendTx] for the savepoint, the errors that end the
// transaction and the ordering check (which applies to each stream).
func (s *Store) AppendStreamsTx(ctx context.Context, tx pgx.Tx, appends ...eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if tx == nil {
		return nil, &eventstore.ValidationError{Field: "tx", Reason: "must not be nil"}
	}
	return s.appendStreams(ctx, tx, appends)
}

// prepareAppend validates appends (eventstore.ValidateAppend with the
// store's size limit, and each stream at most once) and flattens them.
func (s *Store) prepareAppend(appends []eventstore.StreamAppend) (*eventsql.Input, error) {
	if len(appends) == 0 {
		return nil, &eventstore.ValidationError{Field: "appends", Reason: "needs at least one stream"}
	}
	var seen map[string]int // stream IDs of a multi-stream append
	if len(appends) > 1 {
		seen = make(map[string]int, len(appends))
	}
	for i, a := range appends {
		if err := eventstore.ValidateAppend(a.StreamID, a.Expected, a.Events, s.cfg.MaxEventSize); err != nil {
			if len(appends) > 1 {
				return nil, fmt.Errorf("appends[%d]: %w", i, err)
			}
			return nil, err
		}
		if j, dup := seen[a.StreamID]; dup {
			return nil, &eventstore.ValidationError{
				Field:  fmt.Sprintf("appends[%d].stream id", i),
				Reason: fmt.Sprintf("stream %q already appears in appends[%d]", a.StreamID, j),
			}
		}
		if seen != nil {
			seen[a.StreamID] = i
		}
	}
	return eventsql.Flatten(appends)
}

// appendStreams is the common body of the four append methods. tx is nil
// for an append in its own (implicit) transaction on the pool.
//
// An attempt that wrote nothing is examined (resolveConflict): it was an
// idempotent retry, a duplicate event, a concurrency conflict, or a race
// that a new attempt can win. On the pool, races are retried until the
// append succeeds or ctx ends: each lost race means another writer
// committed, so the system made progress. Inside tx, failures that only a
// new transaction can mend end the append at once.
func (s *Store) appendStreams(ctx context.Context, tx pgx.Tx, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in, err := s.prepareAppend(appends)
	if err != nil {
		return nil, err
	}
	var db dbtx = s.pool
	if tx != nil {
		db = tx
	}
	unsent := 0
	for attempt := 1; ; attempt++ {
		res, conflict, err := s.appendOnce(ctx, tx, in)
		if err != nil {
			if tx == nil && pgconn.SafeToRetry(err) && ctx.Err() == nil && unsent < maxUnsentAttempts {
				unsent++ // nothing reached the server
				continue
			}
			return nil, appendError(tx, in, err, unsent)
		}
		if conflict == nil {
			if tx == nil {
				s.watch.AfterCommit()
			}
			return res, nil
		}
		if err := conflict.definite(tx, in); err != nil {
			return nil, err
		}
		res, retry, err := s.resolveConflict(ctx, db, tx, in)
		if err != nil || !retry {
			return res, err
		}
		if tx != nil && attempt >= maxTxRaceAttempts {
			return nil, &eventstore.TransactionConflictError{
				StreamID: in.StreamIDs[0],
				Reason:   fmt.Sprintf("lost the race for the stream %d times", attempt),
			}
		}
		if err := raceBackoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// raceBackoff waits before attempt+1 of an append that lost a race: not
// at all for the first few, then a short random time that grows with the
// attempts, so that a stream hammered by many writers does not spin.
func raceBackoff(ctx context.Context, attempt int) error {
	if attempt <= 3 {
		return ctx.Err()
	}
	limit := time.Millisecond << min(attempt-3, 5) // up to 32ms
	t := time.NewTimer(rand.N(limit))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// conflict describes why an attempt inserted nothing.
type conflict struct {
	// pgErr is the error that aborted the statement: a unique violation,
	// the expectation check of append_streams.sql, a deadlock or a
	// serialization failure. It is nil when a one-stream statement
	// inserted nothing.
	pgErr *pgconn.PgError
}

// definite returns the error that ends the append without looking
// further, or nil when resolveConflict must decide: inside the caller's
// transaction a deadlock or serialization failure (the locks or snapshot
// that caused it stay), anywhere a taken version that the stream's head
// row did not know of.
func (c *conflict) definite(tx pgx.Tx, in *eventsql.Input) error {
	if c.pgErr == nil {
		return nil
	}
	switch {
	case tx != nil && (c.pgErr.Code == eventsql.CodeDeadlock || c.pgErr.Code == eventsql.CodeSerializationFailure):
		reason := "deadlock with another transaction"
		if c.pgErr.Code == eventsql.CodeSerializationFailure {
			reason = "serialization failure"
		}
		return &eventstore.TransactionConflictError{StreamID: in.StreamIDs[0], Reason: reason, Err: c.pgErr}
	case c.pgErr.Code == eventsql.CodeUniqueViolation && c.pgErr.ConstraintName == eventsql.StreamVersionKey:
		// The head rows serialise writers, so a taken version means events
		// were written without updating chronicle.streams (by hand, or by
		// a process running a Chronicle older than migration 4).
		return fmt.Errorf("%s: %w (a version is already taken although the stream's head row in chronicle.streams does not count it: were events written without the store?)",
			in.Op(), &eventstore.ConcurrencyError{StreamID: in.StreamIDs[0], Expected: in.Appends[0].Expected, Actual: -1})
	}
	return nil
}

// appendError turns an attempt's error into the error Append returns.
func appendError(tx pgx.Tx, in *eventsql.Input, err error, unsent int) error {
	if verr := invalidDataError(err); verr != nil {
		return verr
	}
	var acquireErr *acquireError
	if errors.As(err, &acquireErr) {
		return wrapError(in.Op()+": acquire a connection", acquireErr.err)
	}
	if tx != nil {
		if terr := txStateError(err); terr != nil {
			return terr
		}
		if connectionLost(err) {
			// Nothing can have committed: the caller's commit has not
			// happened, and the transaction is gone with its connection.
			return wrapError(in.Op()+": connection lost, the transaction is rolled back", err)
		}
		return wrapError(in.Op(), err)
	}
	if outcomeUnknown(err) {
		return &eventstore.OutcomeUnknownError{Op: in.Op(), Err: err}
	}
	if unsent >= maxUnsentAttempts {
		return wrapError(fmt.Sprintf("%s: nothing was sent after %d attempts", in.Op(), unsent+1), err)
	}
	return wrapError(in.Op(), err)
}

// txStateError returns a validation error when err says the caller's
// transaction cannot take statements: committed or rolled back already,
// or aborted by an earlier error.
func txStateError(err error) error {
	if errors.Is(err, pgx.ErrTxClosed) {
		return &eventstore.ValidationError{Field: "tx", Reason: "is already committed or rolled back"}
	}
	if pgErr := pgError(err); pgErr != nil && pgErr.Code == eventsql.CodeInFailedTransaction {
		return &eventstore.ValidationError{Field: "tx", Reason: "is aborted by an earlier error: roll it back"}
	}
	return nil
}

// connectionLost reports whether err means the connection is gone: it
// broke, or the server shut the session down.
func connectionLost(err error) bool {
	if pgErr := pgError(err); pgErr != nil {
		// 08: connection exception; 57: operator intervention (the backend
		// was terminated, the server is shutting down), except a cancelled
		// statement, which rolled back.
		class := pgErr.Code[:2]
		return (class == "08" || class == "57") && pgErr.Code != "57014"
	}
	return false
}

// outcomeUnknown reports whether err, returned by an append statement on
// an acquired connection, leaves it open whether the append committed: the
// connection broke or the server shut the session down. Ordinary SQL
// errors and errors raised before anything was sent are definite failures;
// anything unrecognised counts as unknown, so that callers retry (safe
// with the same event IDs) rather than assume the append failed.
func outcomeUnknown(err error) bool {
	if pgError(err) != nil {
		return connectionLost(err)
	}
	return !pgconn.SafeToRetry(err)
}

// invalidDataError returns a [*eventstore.ValidationError] when err says
// the server refused the events' JSON (eventstore.ValidateAppend refuses
// what it knows jsonb refuses; this catches the rest). It returns nil for
// other errors. The statement failed as a whole, so nothing was stored.
func invalidDataError(err error) error {
	pgErr := pgError(err)
	if pgErr == nil {
		return nil
	}
	switch pgErr.Code {
	case codeNumericOutOfRange, codeInvalidTextRepresentation,
		codeCharacterNotInRepertoire, codeUntranslatableCharacter:
	default:
		return nil
	}
	reason := pgErr.Message
	if pgErr.Detail != "" {
		reason += " (" + pgErr.Detail + ")"
	}
	return &eventstore.ValidationError{Field: "events data", Reason: "rejected by PostgreSQL: " + reason}
}

// acquireError is a failure to acquire a connection for an append:
// nothing was sent.
type acquireError struct{ err error }

func (e *acquireError) Error() string { return "acquire a connection: " + e.err.Error() }
func (e *acquireError) Unwrap() error { return e.err }

// appendOnce runs the append statement once. It returns the results, or a
// conflict when nothing was inserted because an expectation failed or a
// unique key, deadlock or serialization failure aborted the statement, or
// another error. Inside tx the statement runs under a savepoint, pipelined
// with it, and the savepoint is rolled back after a failure so tx stays
// usable.
func (s *Store) appendOnce(ctx context.Context, tx pgx.Tx, in *eventsql.Input) ([]eventstore.AppendResult, *conflict, error) {
	sql, args := in.Statement()
	if tx == nil {
		// Acquire explicitly, so that a failure to get a connection (nothing
		// was sent) is told apart from a failure of the statement.
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return nil, nil, &acquireError{err: err}
		}
		defer conn.Release()
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return classifyAppendError(err)
		}
		res, ok, err := in.ScanResult(rows)
		if err != nil {
			return classifyAppendError(err)
		}
		if !ok {
			return nil, &conflict{}, nil
		}
		return res, nil, nil
	}

	b := &pgx.Batch{}
	b.Queue(savepointSQL)
	b.Queue(sql, args...)
	// The notification is delivered when tx commits, and dropped if it
	// rolls back; the store cannot see that commit to notify after it.
	b.Queue(notify.SQL)
	b.Queue(releaseSavepointSQL)
	br := tx.SendBatch(ctx, b)
	var (
		res       []eventstore.AppendResult
		ok        bool
		savepoint bool
	)
	_, err := br.Exec()
	if err == nil {
		savepoint = true
		var rows pgx.Rows
		rows, err = br.Query()
		if err == nil {
			res, ok, err = in.ScanResult(rows)
		}
	}
	if err == nil {
		_, err = br.Exec() // notify
	}
	if err == nil {
		_, err = br.Exec() // release
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if !ok {
			return nil, &conflict{}, nil
		}
		return res, nil, nil
	}
	if savepoint && pgError(err) != nil && !connectionLost(err) {
		// The statement failed on the server: undo it so tx stays usable.
		if _, rerr := tx.Exec(ctx, rollbackSavepointSQL); rerr != nil {
			return nil, nil, fmt.Errorf("roll back to savepoint after %w: %w", err, rerr)
		}
	}
	return classifyAppendError(err)
}

// classifyAppendError turns the errors an append examines further
// (unique violations on the events' two keys, the deliberate check
// violation of append_streams.sql, deadlocks and serialization failures)
// into a conflict and passes every other error through.
func classifyAppendError(err error) ([]eventstore.AppendResult, *conflict, error) {
	if pgErr := pgError(err); pgErr != nil {
		switch {
		case pgErr.Code == eventsql.CodeUniqueViolation &&
			(pgErr.ConstraintName == eventsql.StreamVersionKey || pgErr.ConstraintName == eventsql.EventIDKey),
			pgErr.Code == eventsql.CodeCheckViolation && pgErr.ConstraintName == eventsql.StreamVersionCheck,
			pgErr.Code == eventsql.CodeDeadlock,
			pgErr.Code == eventsql.CodeSerializationFailure:
			return nil, &conflict{pgErr: pgErr}, nil
		}
	}
	return nil, nil, err
}

// resolveConflict decides what an attempt that inserted nothing means (see
// eventsql.Decide): it reads the streams' current versions and, when the
// caller supplied event IDs, how they are stored.
func (s *Store) resolveConflict(ctx context.Context, db dbtx, tx pgx.Tx, in *eventsql.Input) ([]eventstore.AppendResult, bool, error) {
	b := &pgx.Batch{}
	b.Queue(eventsql.CurrentVersionsSQL, in.StreamIDs)
	if in.CallerIDs {
		b.Queue(eventsql.LookupEventsSQL, in.IDs, in.Data)
	}
	current := make([]int64, len(in.StreamIDs))
	ordered := make([]bool, len(in.StreamIDs))
	status := make([]string, len(in.StreamIDs))
	stored := make([]eventsql.StoredEvent, len(in.IDs))
	err := func() error {
		br := db.SendBatch(ctx, b)
		defer br.Close()
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var (
			idx, v int64
			ok     bool
			st     string
		)
		if _, err := pgx.ForEachRow(rows, []any{&idx, &v, &ok, &st}, func() error {
			current[idx-1], ordered[idx-1], status[idx-1] = v, ok, st
			return nil
		}); err != nil {
			return err
		}
		if !in.CallerIDs {
			return nil
		}
		if rows, err = br.Query(); err != nil {
			return err
		}
		var e eventsql.StoredEvent
		_, err = pgx.ForEachRow(rows, []any{&idx, &e.StreamID, &e.Version, &e.Type, &e.SchemaVersion, &e.SameData, &e.Position.Global, &e.Position.Transaction}, func() error {
			e.Found = true
			stored[idx-1] = e
			return nil
		})
		return err
	}()
	if err != nil {
		switch {
		case tx != nil && txStateError(err) != nil:
			return nil, false, txStateError(err)
		case tx == nil && outcomeUnknown(err):
			return nil, false, &eventstore.OutcomeUnknownError{Op: in.Op() + " (checking a conflict)", Err: err}
		}
		return nil, false, wrapError(in.Op()+": check conflict", err)
	}
	for i, st := range status {
		if err := closedStreamError(in.StreamIDs[i], st, current[i], 0); err != nil {
			return nil, false, err // a closed stream refuses every append (lifecycle.go)
		}
	}
	return eventsql.Decide(in, stored, current, ordered)
}
