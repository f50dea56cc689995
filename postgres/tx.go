package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
	"github.com/chronicle-go/chronicle/snapshot"
)

// TxStore is a view of a [Store] inside the caller's transaction, returned
// by [Store.InTx]. It implements [eventstore.Store], so that code written
// against that interface, such as the aggregate repository (see
// aggregate.Repository.With), can run inside a transaction that also
// writes the caller's own rows:
//
//   - Append and AppendStreams run [Store.AppendTx] and
//     [Store.AppendStreamsTx] on the transaction: the events commit or
//     roll back with it, and every note on those methods applies (the
//     savepoint, the isolation level, the per-stream order check).
//   - ReadStream, ReadStreamPayloads, StreamVersion, ReadAll and Head run
//     on the transaction, so they see what it sees: its own uncommitted
//     events included, for the stream reads. ReadAll and Head never return
//     uncommitted events, the transaction's own included: they stop at
//     the transaction-id horizon, which an open transaction holds back.
//     Unlike the Store's reads, they are not retried on a fresh connection
//     when the connection is lost: the transaction is lost with it.
//   - Watch is the Store's.
//
// Unlike a Store, a TxStore is not safe for concurrent use, because a
// pgx.Tx is not: use it from one goroutine, for the life of the
// transaction. It is cheap to make; make one per transaction.
type TxStore struct {
	store *Store
	tx    pgx.Tx
}

var (
	_ eventstore.Store         = (*TxStore)(nil)
	_ eventstore.PayloadReader = (*TxStore)(nil)
)

// InTx returns a view of s that works inside tx, a transaction the caller
// began (on s's pool or another connection to the same database) and will
// commit or roll back; see [TxStore]. Bind an aggregate repository to it
// with aggregate.Repository.With. Its methods fail with an error
// matching [eventstore.ErrInvalidInput] when tx (or s) is nil.
func (s *Store) InTx(tx pgx.Tx) *TxStore { return &TxStore{store: s, tx: tx} }

// Tx returns the transaction t works in.
func (t *TxStore) Tx() pgx.Tx { return t.tx }

// check returns a validation error when t cannot run statements.
func (t *TxStore) check() error {
	switch {
	case t == nil || t.store == nil:
		return &eventstore.ValidationError{Field: "store", Reason: "must not be nil"}
	case t.tx == nil:
		return &eventstore.ValidationError{Field: "tx", Reason: "must not be nil"}
	}
	return nil
}

// Append is [Store.AppendTx] on t's transaction.
func (t *TxStore) Append(ctx context.Context, streamID string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if err := t.check(); err != nil {
		return eventstore.AppendResult{}, err
	}
	return t.store.AppendTx(ctx, t.tx, streamID, expected, events...)
}

// AppendStreams is [Store.AppendStreamsTx] on t's transaction.
func (t *TxStore) AppendStreams(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	return t.store.AppendStreamsTx(ctx, t.tx, appends...)
}

// ReadStream is [Store.ReadStream] on t's transaction: it sees the events
// the transaction appended.
func (t *TxStore) ReadStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	return t.readStream(ctx, streamID, opts, false)
}

// ReadStreamPayloads is [Store.ReadStreamPayloads] on t's transaction; see
// [eventstore.PayloadReader].
func (t *TxStore) ReadStreamPayloads(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	return t.readStream(ctx, streamID, opts, true)
}

// readStream is Store.readStream on the transaction, with the same
// validation and statements.
func (t *TxStore) readStream(ctx context.Context, streamID string, opts eventstore.ReadStreamOptions, payloads bool) ([]eventstore.Record, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	q, err := newStreamRead(streamID, opts, payloads)
	if err != nil {
		return nil, err
	}
	recs, err := q.run(ctx, t.tx)
	if err == nil && len(recs) == 0 {
		err = closedReadError(ctx, t.tx, streamID) // lifecycle.go
	}
	if err != nil {
		return nil, lifecycleError(fmt.Sprintf("read stream %q in transaction", streamID), err)
	}
	return recs, nil
}

// ReadAll is [Store.ReadAll] on t's transaction. It returns committed
// events only: the transaction's own appear once it has committed, to
// readers outside it.
func (t *TxStore) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Record, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if err := validateReadAll(after, limit); err != nil {
		return nil, err
	}
	recs, err := readAll(ctx, t.tx, after, limit)
	if err != nil {
		return nil, wrapError("read all in transaction", err)
	}
	return recs, nil
}

// Head is [Store.Head] on t's transaction.
func (t *TxStore) Head(ctx context.Context) (eventstore.Position, error) {
	if err := t.check(); err != nil {
		return eventstore.Position{}, err
	}
	var p eventstore.Position
	err := t.tx.QueryRow(ctx, eventsql.HeadSQL).Scan(&p.Transaction, &p.Global)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Position{}, nil
	}
	if err != nil {
		return eventstore.Position{}, wrapError("read head in transaction", err)
	}
	return p, nil
}

// StreamVersion is [Store.StreamVersion] on t's transaction: it counts the
// events the transaction appended.
func (t *TxStore) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	var v int64
	err := t.tx.QueryRow(ctx, eventsql.StreamVersionSQL, streamID).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		v, err = missingStreamVersion(ctx, t.tx, streamID) // lifecycle.go
	}
	if err != nil {
		return 0, lifecycleError(fmt.Sprintf("read version of stream %q in transaction", streamID), err)
	}
	return v, nil
}

// Watch is [Store.Watch]: the transaction plays no part in it. A nil
// store's channel is closed at once.
func (t *TxStore) Watch(ctx context.Context) <-chan struct{} {
	if t == nil || t.store == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return t.store.Watch(ctx)
}

// TxSnapshotStore is a view of a [SnapshotStore] inside the caller's
// transaction, returned by [SnapshotStore.InTx]: a snapshot it saves
// commits or rolls back with the transaction, so a snapshot of events the
// transaction appended can never outlive them. It implements
// [snapshot.Store] and [snapshot.StreamLoader] (with a [TxStore] on the
// same transaction).
//
// Save runs under a savepoint (one more round trip), so that a failed
// save leaves the transaction usable: a snapshot is only ever an
// optimisation. Load and Delete are plain statements of the transaction:
// like any failed statement, a failure aborts it. A saved snapshot keeps
// its row locked until the transaction ends.
//
// Like a [TxStore], it is not safe for concurrent use.
type TxSnapshotStore struct {
	snaps *SnapshotStore
	tx    pgx.Tx
}

var (
	_ snapshot.Store        = (*TxSnapshotStore)(nil)
	_ snapshot.StreamLoader = (*TxSnapshotStore)(nil)
	_ snapshot.TxBinder     = (*SnapshotStore)(nil)
)

// InTx returns a view of s that works inside tx; see [TxSnapshotStore].
// Its methods fail with an error matching [eventstore.ErrInvalidInput]
// when tx (or s) is nil.
func (s *SnapshotStore) InTx(tx pgx.Tx) *TxSnapshotStore {
	return &TxSnapshotStore{snaps: s, tx: tx}
}

// BindTx implements [snapshot.TxBinder], for aggregate.Repository.With:
// given a [*TxStore] of a [Store] on the same pool as s, it returns
// s.InTx on that transaction. Any other store is refused.
func (s *SnapshotStore) BindTx(events eventstore.Store) (snapshot.Store, bool) {
	ts, ok := events.(*TxStore)
	if !ok || ts == nil || ts.store == nil || ts.tx == nil || s == nil || ts.store.pool != s.pool {
		return nil, false
	}
	return s.InTx(ts.tx), true
}

// The savepoint that isolates a snapshot save inside the caller's
// transaction.
const (
	txSnapshotSavepointSQL = `SAVEPOINT chronicle_snapshot`
	txSnapshotReleaseSQL   = `RELEASE SAVEPOINT chronicle_snapshot`
	txSnapshotRollbackSQL  = `ROLLBACK TO SAVEPOINT chronicle_snapshot; RELEASE SAVEPOINT chronicle_snapshot`
)

func (t *TxSnapshotStore) check() error {
	switch {
	case t == nil || t.snaps == nil:
		return &eventstore.ValidationError{Field: "snapshot store", Reason: "must not be nil"}
	case t.tx == nil:
		return &eventstore.ValidationError{Field: "tx", Reason: "must not be nil"}
	}
	return nil
}

// Save is [SnapshotStore.Save] in t's transaction, under a savepoint: when
// the statement fails, the transaction is as it was before and stays
// usable. (A cancelled ctx is different: pgx then closes the connection,
// which ends the transaction.)
func (t *TxSnapshotStore) Save(ctx context.Context, snap snapshot.Snapshot) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := snapshot.Validate(snap, t.snaps.maxSize); err != nil {
		return err
	}
	var takenAt *time.Time
	if !snap.TakenAt.IsZero() {
		tt := snap.TakenAt.UTC()
		takenAt = &tt
	}
	op := fmt.Sprintf("save snapshot of stream %q in transaction", snap.StreamID)
	// The savepoint goes first, on its own: pgx prepares the statements of
	// a batch before running any, and a statement that fails to prepare
	// (a missing table, say) would abort the transaction before a
	// savepoint queued with it had been set.
	if _, err := t.tx.Exec(ctx, txSnapshotSavepointSQL); err != nil {
		return wrapError(op, err)
	}
	b := &pgx.Batch{}
	b.Queue(snapshotSaveSQL, snap.StreamID, snap.Type, snap.Version, int32(snap.SchemaVersion), snap.Data, takenAt)
	b.Queue(txSnapshotReleaseSQL)
	br := t.tx.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil && pgError(err) != nil {
		// The statement failed on the server: undo it so the transaction
		// stays usable.
		if _, rerr := t.tx.Exec(ctx, txSnapshotRollbackSQL); rerr != nil {
			return wrapError(op, fmt.Errorf("roll back to savepoint after %w: %w", err, rerr))
		}
	}
	return wrapError(op, err)
}

// Load is [SnapshotStore.Load] in t's transaction: it sees a snapshot the
// transaction saved.
func (t *TxSnapshotStore) Load(ctx context.Context, streamID string) (snapshot.Snapshot, error) {
	if err := t.check(); err != nil {
		return snapshot.Snapshot{}, err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return snapshot.Snapshot{}, err
	}
	snap := snapshot.Snapshot{StreamID: streamID}
	var schema int32
	err := t.tx.QueryRow(ctx, snapshotLoadSQL, streamID).Scan(&snap.Type, &snap.Version, &schema, &snap.Data, &snap.TakenAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return snapshot.Snapshot{}, fmt.Errorf("stream %q: %w", streamID, snapshot.ErrNotFound)
	}
	if err != nil {
		return snapshot.Snapshot{}, wrapError(fmt.Sprintf("load snapshot of stream %q in transaction", streamID), err)
	}
	snap.SchemaVersion = int(schema)
	snap.TakenAt = snap.TakenAt.UTC()
	return snap, nil
}

// Delete is [SnapshotStore.Delete] in t's transaction.
func (t *TxSnapshotStore) Delete(ctx context.Context, streamID string) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := eventstore.ValidateStreamID(streamID); err != nil {
		return err
	}
	if _, err := t.tx.Exec(ctx, snapshotDeleteSQL, streamID); err != nil {
		return wrapError(fmt.Sprintf("delete snapshot of stream %q in transaction", streamID), err)
	}
	return nil
}

// LoadStream is [SnapshotStore.LoadStream] in t's transaction. events must
// be a [*TxStore] on the same transaction; any other store gets an error
// matching [errors.ErrUnsupported].
func (t *TxSnapshotStore) LoadStream(ctx context.Context, events eventstore.Store, streamID, typ string, schemaVersion int, limit int) (snapshot.StreamLoad, error) {
	if err := t.check(); err != nil {
		return snapshot.StreamLoad{}, err
	}
	if ts, ok := events.(*TxStore); !ok || ts == nil || ts.tx != t.tx {
		return snapshot.StreamLoad{}, fmt.Errorf("postgres snapshot store: events are not in a postgres.TxStore on the same transaction: %w", errors.ErrUnsupported)
	}
	return loadStream(ctx, t.tx, fmt.Sprintf("load snapshot and events of stream %q in transaction", streamID), streamID, typ, schemaVersion, limit)
}
