package postgres

import (
	"context"
	"errors"
	"github.com/chronicle-go/chronicle/postgres/internal/projections"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// ProjectionStoreConfig configures a [ProjectionStore]. The zero value (or
// a nil *ProjectionStoreConfig) gives the defaults.
type ProjectionStoreConfig struct {
	// LeaseConnConfig is the connection configuration of the dedicated
	// connections that hold projection leases (session advisory locks) and
	// run the batches' transactions. Set it when the pool goes through a
	// transaction-pooling proxy such as PgBouncer, where session advisory
	// locks do not work, to reach the server directly (or through a
	// session-pooling proxy); a connection is then dialled for every
	// acquisition attempt. Defaults to taking the connections from the
	// pool: the lock is tried on a pooled connection, which leaves the pool
	// (pgxpool.Conn.Hijack) when the lock is granted.
	LeaseConnConfig *pgx.ConnConfig
}

// ProjectionStore is the PostgreSQL [projectionstore.Storage]: checkpoints,
// leadership and dead letters in the tables of migration 2
// (chronicle.projection_checkpoints, chronicle.projection_dead_letters),
// in the same database as the events.
//
// # Exactly-once effect
//
// A [projection.Transactional] projection's batch runs in one transaction
// on the lease's connection: the handler's writes (through
// [ProjectionTx], [ProjectionTxHandler] or [OnProjectionTx]) and the
// compare-and-set of the checkpoint commit together or not at all.
//
// # Leadership
//
// A lease is a session advisory lock, keyed by the projection's name and
// partition, held by a connection dedicated to the partition, and the very
// connection that runs its transactions. A holder that dies, or whose
// connection is killed, loses the lock at once and cannot commit anything
// more: its open transaction dies with the connection. Another runner
// acquires the lock at its next attempt
// ([projection.Config.AcquireInterval]) and continues from the committed
// checkpoint. The checkpoint's compare-and-set is a second fence.
//
// A ProjectionStore is safe for concurrent use. It does not own the pool.
type ProjectionStore struct {
	s *projections.Store
}

var (
	_ projectionstore.Storage      = (*ProjectionStore)(nil)
	_ projectionstore.EventCounter = (*ProjectionStore)(nil)
)

// NewProjectionStore returns a ProjectionStore that runs its queries on
// pool. A nil cfg means the defaults. The schema must exist: apply package
// migrations first.
func NewProjectionStore(pool *pgxpool.Pool, cfg *ProjectionStoreConfig) (*ProjectionStore, error) {
	if pool == nil {
		return nil, &eventstore.ValidationError{Field: "pool", Reason: "must not be nil"}
	}
	c := projections.Config{WrapError: wrapError}
	if cfg != nil {
		c.LeaseConnConfig = cfg.LeaseConnConfig
	}
	return &ProjectionStore{s: projections.New(pool, c)}, nil
}

// ErrNoProjectionTx reports a handler that needs the transaction of a
// projection batch but runs without one: the projection is not
// [projection.Transactional], or its storage is not a [ProjectionStore].
var ErrNoProjectionTx = errors.New("no projection transaction in context: the projection must be Transactional and run on a postgres.ProjectionStore")

// ProjectionTx returns the transaction of the projection batch ctx
// belongs to: in a [projection.Transactional] projection run on a
// [ProjectionStore], the handler's (and the reset hook's) ctx carries the
// transaction that commits with the checkpoint. Write the read model
// through it, never through another connection, for an exactly-once
// effect. Do not commit or roll it back: the runner does (both return an
// error).
func ProjectionTx(ctx context.Context) (pgx.Tx, bool) {
	return projections.TxFromContext(ctx)
}

// ProjectionTxHandler adapts fn to a [projection.Handler] that receives
// every event with the batch's transaction. Without one it fails with
// [ErrNoProjectionTx], a permanent failure.
func ProjectionTxHandler(fn func(ctx context.Context, tx pgx.Tx, ev projection.Event) error) projection.Handler {
	return projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
		tx, ok := ProjectionTx(ctx)
		if !ok {
			return projection.Permanent(ErrNoProjectionTx)
		}
		return fn(ctx, tx, ev)
	})
}

// OnProjectionTx registers with h a typed handler of the events of Go
// type T that receives the batch's transaction, as [projection.On] does.
//
//	h := projection.NewHandlers(registry)
//	postgres.OnProjectionTx(h, func(ctx context.Context, tx pgx.Tx, ev projection.Event, e DepositCompleted) error {
//		_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $2 WHERE account_id = $1`, e.AccountID, e.Amount)
//		return err
//	})
func OnProjectionTx[T any](h *projection.Handlers, fn func(ctx context.Context, tx pgx.Tx, ev projection.Event, e T) error) {
	if fn == nil {
		projection.On[T](h, nil)
		return
	}
	projection.On(h, func(ctx context.Context, ev projection.Event, e T) error {
		tx, ok := ProjectionTx(ctx)
		if !ok {
			return projection.Permanent(ErrNoProjectionTx)
		}
		return fn(ctx, tx, ev, e)
	})
}

// ProjectionTxReset adapts fn to a [projection.Projection.Reset] hook that
// clears the read model in the rebuild's transaction.
func ProjectionTxReset(fn func(ctx context.Context, tx pgx.Tx, partition int) error) func(ctx context.Context, partition int) error {
	return func(ctx context.Context, partition int) error {
		tx, ok := ProjectionTx(ctx)
		if !ok {
			return ErrNoProjectionTx
		}
		return fn(ctx, tx, partition)
	}
}

// Acquire implements [projectionstore.Storage]: it tries the partition's
// session advisory lock and, when granted, keeps the connection as the
// lease's own (see [ProjectionStore]). It returns a nil Lease when another
// session holds the lock.
func (s *ProjectionStore) Acquire(ctx context.Context, key projectionstore.Key, partitions int, holder string) (projectionstore.Lease, error) {
	return s.s.Acquire(ctx, key, partitions, holder)
}

// Checkpoints implements [projectionstore.Storage]. A checkpoint's Holder
// is set only while its holder's advisory lock is held.
func (s *ProjectionStore) Checkpoints(ctx context.Context, name string) ([]projectionstore.Checkpoint, error) {
	return s.s.Checkpoints(ctx, name)
}

// RequestRebuild implements [projectionstore.Storage]: it marks the
// projection's partitions for rebuild, for their holders to reset and
// replay. It is what `chronicle projections rebuild NAME` does.
func (s *ProjectionStore) RequestRebuild(ctx context.Context, name string, partitions int) error {
	return s.s.RequestRebuild(ctx, name, partitions)
}

// Heartbeat implements [projectionstore.Storage], in the table
// chronicle.projection_instances (migration 5), with the database's
// clock.
func (s *ProjectionStore) Heartbeat(ctx context.Context, name, holder string, ttl time.Duration) ([]string, error) {
	return s.s.Heartbeat(ctx, name, holder, ttl)
}

// Leave implements [projectionstore.Storage].
func (s *ProjectionStore) Leave(ctx context.Context, name, holder string) error {
	return s.s.Leave(ctx, name, holder)
}

// CountEvents implements [projectionstore.EventCounter]: it counts the
// events of a partition in (after, upTo] in SQL, for status reports.
func (s *ProjectionStore) CountEvents(ctx context.Context, after, upTo eventstore.Position, partition, partitions int) (int64, error) {
	return s.s.CountEvents(ctx, after, upTo, partition, partitions)
}

// DeadLetters implements [projectionstore.DeadLetterStore]: the dead
// letters matching filter, in ID order.
func (s *ProjectionStore) DeadLetters(ctx context.Context, filter projectionstore.DeadLetterFilter) ([]projectionstore.DeadLetter, error) {
	return s.s.DeadLetters(ctx, filter)
}

// RetryDeadLetter implements [projectionstore.DeadLetterStore]: the dead
// letter becomes "retry", and the holder of its partition handles its
// event again at its next poll.
func (s *ProjectionStore) RetryDeadLetter(ctx context.Context, id int64) error {
	return s.s.RetryDeadLetter(ctx, id)
}

// SkipDeadLetter implements [projectionstore.DeadLetterStore].
func (s *ProjectionStore) SkipDeadLetter(ctx context.Context, id int64) error {
	return s.s.SkipDeadLetter(ctx, id)
}
