package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chronicle-go/chronicle/eventstore"
)

// storeAppendSQL appends to one or more streams in one statement, from
// arrays. For each stream it reads the current version and the transaction
// id of the stream's last event (one probe of events_stream_version_key
// plus that row) and checks the expectation; if every stream passes, it
// inserts all events, numbering them from the expected version (Exact,
// NoStream) or from the current one (Any, StreamExists). The unique key
// (stream_id, stream_version) catches a writer that commits between the
// probe and the insert. If a stream fails its check nothing is inserted and
// the result holds one row per stream with a NULL version.
//
// The check also requires the stream's last event to sort before the
// events being appended in the global order (transaction_id,
// global_position): its transaction id must not be larger than this
// transaction's. Only a transaction that got its id before that event's
// writer did, and then saw it commit, fails this (see storeOrderedSQL).
//
// Parameters: $1 stream ids, $2 expected versions, then one element per
// event: $3 the stream's 1-based index in $1, $4 the event's 1-based offset
// in its stream's append, $5 event id, $6 type, $7 schema version, $8 data,
// $9 metadata (NULL when empty). Events are inserted in array order, so
// global positions follow the caller's order.
const storeAppendSQL = `
WITH streams AS MATERIALIZED (
    SELECT s.idx, s.stream_id, s.expected,
           coalesce(l.stream_version, 0) AS current,
           ` + storeOrderedSQL + ` AS ordered
    FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS s(stream_id, expected, idx)
    LEFT JOIN LATERAL ` + storeLastEventLateralSQL + ` l ON true
), inserted AS (
    INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
    SELECT n.event_id, s.stream_id,
           CASE WHEN s.expected >= 0 THEN s.expected ELSE s.current END + n.pos,
           n.event_type, n.schema_version, n.data, n.metadata
    FROM unnest($3::int[], $4::bigint[], $5::uuid[], $6::text[], $7::int[], $8::text[]::jsonb[], $9::text[]::jsonb[])
         WITH ORDINALITY AS n(stream_idx, pos, event_id, event_type, schema_version, data, metadata, ord)
    JOIN streams s ON s.idx = n.stream_idx
    WHERE NOT EXISTS (
        SELECT 1 FROM streams f
        WHERE NOT (f.ordered AND CASE WHEN f.expected = -1 THEN true
                                      WHEN f.expected = -2 THEN f.current > 0
                                      ELSE f.current = f.expected END))
    ORDER BY n.ord
    RETURNING stream_id, stream_version, global_position, transaction_id
)
SELECT s.idx, s.current, i.stream_version, i.global_position, i.transaction_id
FROM streams s LEFT JOIN inserted i ON i.stream_id = s.stream_id`

// storeLastEventLateralSQL and storeLastEventParamSQL are a subquery
// returning the stream_version and transaction_id of the last event of a
// stream (s.stream_id in a lateral join, or $1), or no row when the stream
// is empty. The statements above are written with them; they are the form
// for a small table (see store_plans.go), and storeProbeEquality rewrites
// them for a large one.
//
// They read the last entry of events_stream_version_key at or before
// (stream, max bigint) and keep it if it belongs to the stream (else it is
// the last event of the stream before it, or there is none). Written the
// obvious way (WHERE stream_id = stream ORDER BY stream_version DESC LIMIT
// 1), the planner estimates that a sequential scan and a sort beat the
// index while the table holds a few pages; the prepared statement keeps
// that plan while the table grows, and every append then scans the whole
// table, until the next ANALYZE (up to half the append throughput lost in
// the benchmark, which starts from 50 analyzed rows). With the row
// comparison, the index scan's first row is all the LIMIT needs, and the
// planner prefers it at every size. PostgreSQL does not push the outer
// filter below the LIMIT. The row comparison costs 3–5µs per append more
// than the equality (a collation-aware comparison per probe), which is why
// large tables, where the planner picks the index for the equality too,
// get the equality.
const (
	storeLastEventLateralSQL = storeLastEventHead + `s.stream_id` + storeLastEventMid + `s.stream_id` + storeLastEventTail
	storeLastEventParamSQL   = storeLastEventHead + `$1` + storeLastEventMid + `$1` + storeLastEventTail

	storeLastEventHead = `(
        SELECT e.stream_version, e.transaction_id FROM (
            SELECT e.stream_id, e.stream_version, e.transaction_id FROM chronicle.events e
            WHERE (e.stream_id, e.stream_version) <= (`
	storeLastEventMid = `, 9223372036854775807)
            ORDER BY e.stream_id DESC, e.stream_version DESC LIMIT 1
        ) e WHERE e.stream_id = `
	storeLastEventTail = `
    )`
)

// storeLastEventEqualitySQL is the obvious form of storeLastEventHead …
// storeLastEventTail for the stream expression stream, used once the table
// is large.
func storeLastEventEqualitySQL(stream string) string {
	return `(
        SELECT e.stream_version, e.transaction_id FROM chronicle.events e
        WHERE e.stream_id = ` + stream + ` ORDER BY e.stream_version DESC LIMIT 1
    )`
}

// storeProbeEquality rewrites an append statement's current-version probes
// into their equality form.
func storeProbeEquality(sql string) string {
	sql = strings.ReplaceAll(sql, storeLastEventParamSQL, storeLastEventEqualitySQL("$1"))
	return strings.ReplaceAll(sql, storeLastEventLateralSQL, storeLastEventEqualitySQL("s.stream_id"))
}

// storeOrderedSQL is true when the stream's last event (l, NULL when the
// stream is empty) sorts before anything this transaction inserts. The
// global order is (transaction_id, global_position), and a transaction's
// id is taken at its first write. A transaction that already has an id
// (a caller's transaction that wrote business rows before AppendTx) may
// see an event committed by a transaction with a larger id; appending the
// next version would put it before that event in the global order, so
// projections would see the stream out of order. When this transaction has
// no id yet, it gets one during this statement, after the statement's
// snapshot was taken, so it is larger than the id of every event the
// snapshot sees: pg_current_xact_id_if_assigned() is NULL and the check
// passes without assigning an id to an append that may fail. It reads the
// top-level id, also inside the append's savepoint. Events this transaction
// inserted itself have its own id and pass.
const storeOrderedSQL = `coalesce(l.transaction_id <= pg_current_xact_id_if_assigned(), l.transaction_id IS NULL OR pg_current_xact_id_if_assigned() IS NULL)`

// storeAppendOneSQL is storeAppendSQL for the common case of one stream,
// written so that PostgreSQL plans it once and reuses the generic plan:
// the multi-stream statement's joins make the planner re-plan it on every
// execution (custom plans), which costs more than executing it.
//
// Parameters: $1 stream id, $2 expected version, then per event: $3 id, $4
// type, $5 schema version, $6 data, $7 metadata (NULL when empty). It
// returns no row when the expectation or the order check failed.
const storeAppendOneSQL = `
` + storeOneStreamCurSQL + `
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT n.event_id, $1, CASE WHEN $2::bigint >= 0 THEN $2::bigint ELSE cur.v END + n.ord,
       n.event_type, n.schema_version, n.data::jsonb, n.metadata::jsonb
FROM cur, unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[])
     WITH ORDINALITY AS n(event_id, event_type, schema_version, data, metadata, ord)
` + storeOneStreamCheckSQL

// storeAppendOneEventSQL is storeAppendOneSQL for one event, with scalar
// parameters instead of arrays: the most common append (one command, one
// event) then skips encoding, sending and unnesting five arrays, which
// measurably shortens its round trip.
//
// Parameters: $1 stream id, $2 expected version, $3 event id, $4 type, $5
// schema version, $6 data, $7 metadata (NULL when empty). It returns no row
// when the expectation or the order check failed.
const storeAppendOneEventSQL = `
` + storeOneStreamCurSQL + `
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT $3::uuid, $1, CASE WHEN $2::bigint >= 0 THEN $2::bigint ELSE cur.v END + 1,
       $4::text, $5::int, $6::text::jsonb, $7::text::jsonb
FROM cur
` + storeOneStreamCheckSQL

// storeOneStreamCurSQL is the CTE the one-stream statements share: the
// stream's current version (v, 0 when empty) and whether its last event
// passes the order check. $1 is the stream id.
const storeOneStreamCurSQL = `WITH cur AS (
    SELECT coalesce(l.stream_version, 0) AS v, ` + storeOrderedSQL + ` AS ordered
    FROM (SELECT 1) one LEFT JOIN ` + storeLastEventParamSQL + ` l ON true
)`

// storeOneStreamCheckSQL ends the one-stream statements: the order check,
// the expectation ($2: -1 any, -2 stream exists, else the exact version)
// and what they return.
const storeOneStreamCheckSQL = `
WHERE cur.ordered
  AND CASE WHEN $2::bigint = -1 THEN true
           WHEN $2::bigint = -2 THEN cur.v > 0
           ELSE cur.v = $2::bigint END
RETURNING stream_version, global_position, transaction_id`

// storeLookupEventsSQL finds already stored events by id, for the
// idempotent-retry check. Parameters: $1 event ids, $2 their data.
const storeLookupEventsSQL = `
SELECT n.ord, e.stream_id, e.stream_version, e.event_type, e.schema_version, e.data = n.data,
       e.global_position, e.transaction_id
FROM unnest($1::uuid[], $2::text[]::jsonb[]) WITH ORDINALITY AS n(event_id, data, ord)
JOIN chronicle.events e ON e.event_id = n.event_id`

// storeCurrentVersionsSQL reads the current version of streams ($1), and
// whether their last event passes the order check of storeOrderedSQL.
const storeCurrentVersionsSQL = `
SELECT s.idx, coalesce(l.stream_version, 0), ` + storeOrderedSQL + `
FROM unnest($1::text[]) WITH ORDINALITY AS s(stream_id, idx)
LEFT JOIN LATERAL ` + storeLastEventLateralSQL + ` l ON true`

// The savepoint that isolates an append inside the caller's transaction.
const (
	storeSavepointSQL = `SAVEPOINT chronicle_append`
	storeReleaseSQL   = `RELEASE SAVEPOINT chronicle_append`
	storeRollbackSQL  = `ROLLBACK TO SAVEPOINT chronicle_append; RELEASE SAVEPOINT chronicle_append`
)

// storeLinearIDCheck is the number of events up to which an append checks
// its event IDs for duplicates by linear search instead of a map.
const storeLinearIDCheck = 16

// storeMaxAppendAttempts bounds the internal retries of an append that lost
// a race it did not ask to win: Any or StreamExists appends that hit the
// stream-version unique key, deadlocks, and connections that failed before
// anything was sent.
const storeMaxAppendAttempts = 8

// Append appends events to one stream in one statement; see
// [eventstore.Store.Append] for the contract. Events with a zero ID get a
// new UUIDv7 (the caller's slice is not modified).
//
// When the connection breaks mid-statement, the error says the outcome is
// unknown: the append may or may not have been committed (it is atomic:
// all events or none). Retrying it with the same event IDs is safe: it is
// stored exactly once. Give events IDs up front when you need that.
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
// In a REPEATABLE READ or SERIALIZABLE transaction the concurrency check
// sees the transaction's snapshot, so a conflict with a writer that
// committed after the snapshot is reported with Actual -1; retry the whole
// transaction.
//
// The global order is by transaction id, taken at a transaction's first
// write. If tx already wrote (business rows, say) before another
// transaction appended to the same stream and committed, appending after
// that event would put the new events before it in [Store.ReadAll]'s order.
// AppendTx refuses that with an [*eventstore.ConcurrencyError] (its Actual
// may equal Expected), whatever the expected version: roll back and retry
// the whole transaction, which gets a new id. Appending before the other
// writes, or in a transaction that has not written yet, avoids it.
//
// Keep transactions short: an open transaction that has appended holds
// back every [Store.ReadAll] tailer (see [Store.TailLag]).
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
// appends, and global positions follow that order. Two AppendStreams calls
// that write the same streams in opposite orders can deadlock in
// PostgreSQL; the store retries the loser, but ordering appends
// consistently (for example by stream ID) avoids the wasted work.
func (s *Store) AppendStreams(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	return s.appendStreams(ctx, nil, appends)
}

// AppendStreamsTx is [Store.AppendStreams] inside the caller's transaction;
// see [Store.AppendTx] for the savepoint, isolation and ordering notes (the
// ordering check applies to each stream).
func (s *Store) AppendStreamsTx(ctx context.Context, tx pgx.Tx, appends ...eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if tx == nil {
		return nil, &eventstore.ValidationError{Field: "tx", Reason: "must not be nil"}
	}
	return s.appendStreams(ctx, tx, appends)
}

// storeAppendInput is a validated append flattened into the statement's
// parameter arrays.
type storeAppendInput struct {
	appends []eventstore.StreamAppend

	streamIDs []string
	expected  []int64

	evStream  []int32 // 1-based index into streamIDs
	evPos     []int64 // 1-based offset within the stream's append
	ids       []pgtype.UUID
	types     []string
	schemaVer []int32
	data      []string  // JSON text, cast to jsonb by the statement
	metadata  []*string // nil = SQL NULL

	callerIDs bool // some event IDs came from the caller
}

// storePrepareAppend validates appends (eventstore.ValidateAppend, with
// the store's size limit, and each stream at most once) and flattens them
// with storeFlattenAppends.
func (s *Store) storePrepareAppend(appends []eventstore.StreamAppend) (*storeAppendInput, error) {
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
	return storeFlattenAppends(appends)
}

// storeFlattenAppends turns appends, each already checked by
// eventstore.ValidateAppend, into the statements' parameter arrays. Events
// without an ID get a new one; an ID used twice is a validation error.
func storeFlattenAppends(appends []eventstore.StreamAppend) (*storeAppendInput, error) {
	total := 0
	for _, a := range appends {
		total += len(a.Events)
	}
	in := &storeAppendInput{
		appends:   appends,
		streamIDs: make([]string, len(appends)),
		expected:  make([]int64, len(appends)),
		evStream:  make([]int32, 0, total),
		evPos:     make([]int64, 0, total),
		ids:       make([]pgtype.UUID, 0, total),
		types:     make([]string, 0, total),
		schemaVer: make([]int32, 0, total),
		data:      make([]string, 0, total),
		metadata:  make([]*string, 0, total),
	}
	// Caller-supplied IDs must be distinct: a linear search for the few
	// events of a typical append, a map beyond.
	var idAt map[eventstore.EventID]int
	if total > storeLinearIDCheck {
		idAt = make(map[eventstore.EventID]int, total)
	}
	firstUse := func(id eventstore.EventID) (int, bool) {
		if idAt != nil {
			k, dup := idAt[id]
			return k, dup
		}
		for k, other := range in.ids {
			if other.Bytes == id {
				return k, true
			}
		}
		return 0, false
	}
	for i, a := range appends {
		in.streamIDs[i] = a.StreamID
		in.expected[i] = int64(a.Expected)
		for j, ev := range a.Events {
			id := ev.ID
			if id.IsZero() {
				id = eventstore.NewEventID()
			} else {
				in.callerIDs = true
				if k, dup := firstUse(id); dup {
					return nil, &eventstore.ValidationError{
						Field:  storeEventField(len(appends), i, j, "id"),
						Reason: fmt.Sprintf("%s is used twice in this append (first at event %d)", id, k),
					}
				}
			}
			if idAt != nil {
				idAt[id] = len(in.ids)
			}
			var md *string
			if !ev.Metadata.IsZero() {
				b, err := json.Marshal(ev.Metadata)
				if err != nil { // cannot happen: strings only
					return nil, &eventstore.ValidationError{Field: storeEventField(len(appends), i, j, "metadata"), Reason: err.Error()}
				}
				m := string(b)
				md = &m
			}
			in.evStream = append(in.evStream, int32(i+1))
			in.evPos = append(in.evPos, int64(j+1))
			in.ids = append(in.ids, pgtype.UUID{Bytes: id, Valid: true})
			in.types = append(in.types, ev.Type)
			in.schemaVer = append(in.schemaVer, int32(max(ev.SchemaVersion, 1)))
			in.data = append(in.data, string(ev.Data))
			in.metadata = append(in.metadata, md)
		}
	}
	return in, nil
}

func storeEventField(nAppends, i, j int, field string) string {
	if nAppends == 1 {
		return fmt.Sprintf("events[%d].%s", j, field)
	}
	return fmt.Sprintf("appends[%d].events[%d].%s", i, j, field)
}

// storeConflict describes why an attempt inserted nothing.
type storeConflict struct {
	pgErr *pgconn.PgError // the unique violation or deadlock; nil when an expectation failed
}

// appendStreams is the common body of the four append methods. tx is nil
// for an append in its own (implicit) transaction on the pool.
func (s *Store) appendStreams(ctx context.Context, tx pgx.Tx, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in, err := s.storePrepareAppend(appends)
	if err != nil {
		return nil, err
	}
	var db storeDBTX = s.pool
	if tx != nil {
		db = tx
	}
	var (
		lastConflict *storeConflict
		lastUnsent   error // the last error of an attempt that never reached the server
	)
	for attempt := 0; attempt < storeMaxAppendAttempts; attempt++ {
		res, conflict, err := s.storeAppendOnce(ctx, tx, in)
		if err != nil {
			if verr := storeInvalidDataError(err); verr != nil {
				return nil, verr
			}
			var acquireErr *storeAcquireError
			switch {
			case errors.As(err, &acquireErr):
				return nil, storeWrapError(storeAppendOp(in)+": acquire a connection", acquireErr.err)
			case tx == nil && pgconn.SafeToRetry(err) && ctx.Err() == nil:
				lastUnsent = err
				continue // nothing reached the server
			case tx == nil && storeOutcomeUnknown(err):
				// Inside a caller's transaction nothing can have committed:
				// the caller's commit has not happened.
				return nil, storeWrapError(storeAppendOp(in)+": outcome unknown, retrying with the same event ids is safe", err)
			}
			return nil, storeWrapError(storeAppendOp(in), err)
		}
		if conflict == nil {
			if tx == nil {
				s.watchAfterCommit()
			}
			s.notePosition(res[len(res)-1].Position.Global)
			return res, nil
		}
		lastConflict, lastUnsent = conflict, nil
		res, retry, err := s.storeResolveConflict(ctx, db, in)
		if err != nil || !retry {
			return res, err
		}
	}
	if lastUnsent != nil {
		// The last attempts never reached the server: not a conflict.
		return nil, storeWrapError(fmt.Sprintf("%s: nothing was sent after %d attempts", storeAppendOp(in), storeMaxAppendAttempts), lastUnsent)
	}
	// Every attempt lost a race; report the first stream as contended.
	a := in.appends[0]
	err = &eventstore.ConcurrencyError{StreamID: a.StreamID, Expected: a.Expected, Actual: -1}
	if lastConflict != nil && lastConflict.pgErr != nil {
		return nil, fmt.Errorf("%w (after %d attempts; last: %s)", err, storeMaxAppendAttempts, lastConflict.pgErr.Message)
	}
	return nil, err
}

// storeOutcomeUnknown reports whether err, returned by an append statement
// on an acquired connection, leaves it open whether the append committed:
// the connection broke or the server shut the session down. Ordinary SQL
// errors and errors raised before anything was sent are definite failures;
// anything unrecognised counts as unknown, so that callers retry (safe
// with the same event IDs) rather than assume the append failed.
func storeOutcomeUnknown(err error) bool {
	if pgErr := storePgError(err); pgErr != nil {
		// 08: connection exception; 57: operator intervention (the
		// backend was terminated, the server is shutting down), except a
		// cancelled statement, which rolled back.
		class := pgErr.Code[:2]
		return (class == "08" || class == "57") && pgErr.Code != "57014"
	}
	return !pgconn.SafeToRetry(err)
}

// storeInvalidDataError returns a [*eventstore.ValidationError] when err
// says the server refused the events' JSON: eventstore.ValidateAppend
// accepts JSON that jsonb cannot store, such as numbers beyond numeric's
// range (1e200000, SQLSTATE 22003). It returns nil for other errors. The
// statement failed as a whole, so nothing was stored.
func storeInvalidDataError(err error) error {
	pgErr := storePgError(err)
	if pgErr == nil {
		return nil
	}
	switch pgErr.Code {
	case storeCodeNumericOutOfRange, storeCodeInvalidTextRepresentation,
		storeCodeCharacterNotInRepertoire, storeCodeUntranslatableCharacter:
	default:
		return nil
	}
	reason := pgErr.Message
	if pgErr.Detail != "" {
		reason += " (" + pgErr.Detail + ")"
	}
	return &eventstore.ValidationError{Field: "events data", Reason: "rejected by PostgreSQL: " + reason}
}

// storeAcquireError is a failure to acquire a connection for an append:
// nothing was sent.
type storeAcquireError struct{ err error }

func (e *storeAcquireError) Error() string { return "acquire a connection: " + e.err.Error() }
func (e *storeAcquireError) Unwrap() error { return e.err }

func storeAppendOp(in *storeAppendInput) string {
	if len(in.streamIDs) == 1 {
		return fmt.Sprintf("append to stream %q", in.streamIDs[0])
	}
	return fmt.Sprintf("append to %d streams", len(in.streamIDs))
}

// storeAppendOnce runs the append statement once. It returns the results,
// or a conflict when nothing was inserted because an expectation failed or
// a unique key or deadlock aborted the statement, or another error. Inside
// tx the statement runs under a savepoint, pipelined with it, and the
// savepoint is rolled back after a failure so tx stays usable.
func (s *Store) storeAppendOnce(ctx context.Context, tx pgx.Tx, in *storeAppendInput) ([]eventstore.AppendResult, *storeConflict, error) {
	sql, args := in.statement(s.plans.Load())
	if tx == nil {
		// Acquire explicitly, so that a failure to get a connection (nothing
		// was sent) is told apart from a failure of the statement.
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return nil, nil, &storeAcquireError{err: err}
		}
		defer conn.Release()
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return storeClassifyAppendError(err)
		}
		res, ok, err := storeScanAppend(rows, in)
		if err != nil {
			return storeClassifyAppendError(err)
		}
		if !ok {
			return nil, &storeConflict{}, nil
		}
		return res, nil, nil
	}

	b := &pgx.Batch{}
	b.Queue(storeSavepointSQL)
	b.Queue(sql, args...)
	// The notification is delivered when tx commits, and dropped if it
	// rolls back; the store cannot see that commit to notify after it.
	b.Queue(storeNotifySQL)
	b.Queue(storeReleaseSQL)
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
			res, ok, err = storeScanAppend(rows, in)
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
			return nil, &storeConflict{}, nil
		}
		return res, nil, nil
	}
	if savepoint && storePgError(err) != nil {
		// The statement failed on the server: undo it so tx stays usable.
		if _, rerr := tx.Exec(ctx, storeRollbackSQL); rerr != nil {
			return nil, nil, fmt.Errorf("roll back to savepoint after %w: %w", err, rerr)
		}
	}
	return storeClassifyAppendError(err)
}

// storeClassifyAppendError turns the errors an append resolves itself
// (unique violations on the two keys, deadlocks) into a conflict and passes
// every other error through.
func storeClassifyAppendError(err error) ([]eventstore.AppendResult, *storeConflict, error) {
	if pgErr := storePgError(err); pgErr != nil {
		switch {
		case pgErr.Code == storeCodeUniqueViolation &&
			(pgErr.ConstraintName == storeStreamVersionKey || pgErr.ConstraintName == storeEventIDKey),
			pgErr.Code == storeCodeDeadlock:
			return nil, &storeConflict{pgErr: pgErr}, nil
		}
	}
	return nil, nil, err
}

// statement returns the append statement for in, in the form p holds,
// and its arguments.
func (in *storeAppendInput) statement(p *storePlanSet) (string, []any) {
	if len(in.streamIDs) == 1 && len(in.ids) == 1 {
		return p.sql[storeStmtAppendOneEvent], []any{in.streamIDs[0], in.expected[0], in.ids[0], in.types[0], in.schemaVer[0], in.data[0], in.metadata[0]}
	}
	if len(in.streamIDs) == 1 {
		return p.sql[storeStmtAppendOne], []any{in.streamIDs[0], in.expected[0], in.ids, in.types, in.schemaVer, in.data, in.metadata}
	}
	return p.sql[storeStmtAppend], []any{in.streamIDs, in.expected, in.evStream, in.evPos, in.ids, in.types, in.schemaVer, in.data, in.metadata}
}

// storeScanAppend reads the result of in.statement. ok is false when
// nothing was inserted because an expectation failed.
func storeScanAppend(rows pgx.Rows, in *storeAppendInput) (res []eventstore.AppendResult, ok bool, err error) {
	defer rows.Close()
	res = make([]eventstore.AppendResult, len(in.streamIDs))
	if len(in.streamIDs) == 1 {
		r := &res[0]
		var (
			version, global int64
			txid            uint64
		)
		for rows.Next() {
			if err := rows.Scan(&version, &global, &txid); err != nil {
				return nil, false, err
			}
			if version > r.Version {
				r.StreamID = in.streamIDs[0]
				r.Version = version
				r.Position = eventstore.Position{Transaction: txid, Global: global}
			}
		}
		if err := rows.Err(); err != nil {
			return nil, false, err
		}
		return res, r.Version > 0, nil
	}
	ok = true
	var (
		idx, current int64
		version      *int64
		global       *int64
		txid         *uint64
	)
	for rows.Next() {
		if err := rows.Scan(&idx, &current, &version, &global, &txid); err != nil {
			return nil, false, err
		}
		if version == nil || global == nil || txid == nil {
			ok = false
			continue
		}
		r := &res[idx-1]
		if *version > r.Version {
			r.StreamID = in.streamIDs[idx-1]
			r.Version = *version
			r.Position = eventstore.Position{Transaction: *txid, Global: *global}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	return res, ok, nil
}

// storeStoredEvent is an event found by the idempotent-retry lookup.
type storeStoredEvent struct {
	found         bool
	streamID      string
	version       int64
	typ           string
	schemaVersion int32
	sameData      bool
	position      eventstore.Position
}

// storeResolveConflict decides what an attempt that inserted nothing means:
// an idempotent retry of an earlier append (success), a duplicate event ID,
// a concurrency conflict, or a lost race worth retrying.
func (s *Store) storeResolveConflict(ctx context.Context, db storeDBTX, in *storeAppendInput) ([]eventstore.AppendResult, bool, error) {
	b := &pgx.Batch{}
	b.Queue(s.sql(storeStmtCurrentVersions), in.streamIDs)
	if in.callerIDs {
		b.Queue(storeLookupEventsSQL, in.ids, in.data)
	}
	br := db.SendBatch(ctx, b)
	current := make([]int64, len(in.streamIDs))
	ordered := make([]bool, len(in.streamIDs))
	stored := make([]storeStoredEvent, len(in.ids))
	err := func() error {
		defer br.Close()
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var (
			idx, v int64
			ok     bool
		)
		if _, err := pgx.ForEachRow(rows, []any{&idx, &v, &ok}, func() error {
			current[idx-1], ordered[idx-1] = v, ok
			return nil
		}); err != nil {
			return err
		}
		if !in.callerIDs {
			return nil
		}
		if rows, err = br.Query(); err != nil {
			return err
		}
		var e storeStoredEvent
		_, err = pgx.ForEachRow(rows, []any{&idx, &e.streamID, &e.version, &e.typ, &e.schemaVersion, &e.sameData, &e.position.Global, &e.position.Transaction}, func() error {
			e.found = true
			stored[idx-1] = e
			return nil
		})
		return err
	}()
	if err != nil {
		return nil, false, storeWrapError(storeAppendOp(in)+": check conflict", err)
	}
	res, retry, err := storeDecideConflict(in, stored, current, ordered)
	return res, retry, err
}

// storeDecideConflict is the pure decision of storeResolveConflict: given
// what the append's event IDs are stored as (stored, parallel to in.ids),
// each stream's current version and whether its last event passes the
// order check (see storeOrderedSQL), it returns the original results of an
// idempotent retry, or an error, or retry=true for a lost race.
//
// A failed order check is a concurrency conflict even when the version
// check holds: retrying the statement in the same transaction would fail
// the same way, only a new transaction (a new transaction id) can append.
func storeDecideConflict(in *storeAppendInput, stored []storeStoredEvent, current []int64, ordered []bool) ([]eventstore.AppendResult, bool, error) {
	res := make([]eventstore.AppendResult, len(in.appends))
	retried, first := 0, 0
	for i, a := range in.appends {
		evs := stored[first : first+len(a.Events)]
		ids := in.ids[first : first+len(a.Events)]
		first += len(a.Events)
		found := 0
		for _, e := range evs {
			if e.found {
				found++
			}
		}
		if found == 0 {
			continue
		}
		if found < len(evs) { // part of it stored: report an ID that is
			k := slices.IndexFunc(evs, func(e storeStoredEvent) bool { return e.found })
			return nil, false, &eventstore.DuplicateEventError{EventID: ids[k].Bytes, StreamID: a.StreamID}
		}
		for j := range evs {
			if !storeSamePlace(a, evs, j, in.types, in.schemaVer, first-len(a.Events)) {
				return nil, false, &eventstore.DuplicateEventError{EventID: ids[j].Bytes, StreamID: a.StreamID}
			}
		}
		last := evs[len(evs)-1]
		res[i] = eventstore.AppendResult{StreamID: a.StreamID, Version: last.version, Position: last.position}
		retried++
	}
	switch {
	case retried == len(in.appends):
		return res, false, nil
	case retried > 0:
		// Part of this append is an earlier append, part is new: not a
		// retry of one atomic append.
		for i, a := range in.appends {
			if res[i].Version > 0 {
				return nil, false, &eventstore.DuplicateEventError{EventID: in.ids[storeFirstEvent(in, i)].Bytes, StreamID: a.StreamID}
			}
		}
	}
	for i, a := range in.appends {
		if !a.Expected.Check(current[i]) {
			return nil, false, &eventstore.ConcurrencyError{StreamID: a.StreamID, Expected: a.Expected, Actual: current[i]}
		}
	}
	for i, a := range in.appends {
		if !ordered[i] {
			return nil, false, fmt.Errorf("%w (its last event was committed by a transaction that took its id after this one: retry the whole transaction)",
				&eventstore.ConcurrencyError{StreamID: a.StreamID, Expected: a.Expected, Actual: current[i]})
		}
	}
	return nil, true, nil
}

func storeFirstEvent(in *storeAppendInput, stream int) int {
	n := 0
	for _, a := range in.appends[:stream] {
		n += len(a.Events)
	}
	return n
}

// storeSamePlace reports whether evs[j] is stored as event j of append a
// would have been: in the same stream, with the same type, schema version
// and jsonb-equal data, right after evs[j-1], and the first event at the
// version the expectation implies (Exact, NoStream) or anywhere (Any,
// StreamExists). base is the index of a's first event in the flattened
// arrays.
func storeSamePlace(a eventstore.StreamAppend, evs []storeStoredEvent, j int, types []string, schemaVer []int32, base int) bool {
	e := evs[j]
	if e.streamID != a.StreamID || e.typ != types[base+j] || e.schemaVersion != schemaVer[base+j] || !e.sameData {
		return false
	}
	switch {
	case j > 0:
		return e.version == evs[j-1].version+1
	case a.Expected >= 0:
		return e.version == int64(a.Expected)+1
	default: // Any, StreamExists: the caller did not say where
		return true
	}
}
