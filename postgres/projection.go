package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
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

// ProjectionStore is the PostgreSQL [projection.Storage]: checkpoints,
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
	pool     *pgxpool.Pool
	leaseCfg *pgx.ConnConfig
}

var (
	_ projection.Storage      = (*ProjectionStore)(nil)
	_ projection.EventCounter = (*ProjectionStore)(nil)
)

// NewProjectionStore returns a ProjectionStore that runs its queries on
// pool. A nil cfg means the defaults. The schema must exist: apply package
// migrations first.
func NewProjectionStore(pool *pgxpool.Pool, cfg *ProjectionStoreConfig) (*ProjectionStore, error) {
	if pool == nil {
		return nil, &eventstore.ValidationError{Field: "pool", Reason: "must not be nil"}
	}
	s := &ProjectionStore{pool: pool}
	if cfg != nil && cfg.LeaseConnConfig != nil {
		s.leaseCfg = cfg.LeaseConnConfig.Copy()
	}
	return s, nil
}

// projTxKey is the context key of a projection batch's transaction.
type projTxKey struct{}

// ErrNoProjectionTx reports a handler that needs the transaction of a
// projection batch but runs without one: the projection is not
// [projection.Transactional], or its storage is not a [ProjectionStore].
var ErrNoProjectionTx = errors.New("no projection transaction in context: the projection must be Transactional and run on a postgres.ProjectionStore")

// ProjectionTx returns the transaction of the projection batch ctx
// belongs to: in a [projection.Transactional] projection run on a
// [ProjectionStore], the handler's (and the reset hook's) ctx carries the
// transaction that commits with the checkpoint. Write the read model
// through it, never through another connection, for an exactly-once
// effect. Do not commit or roll it back.
func ProjectionTx(ctx context.Context) (pgx.Tx, bool) {
	tx, ok := ctx.Value(projTxKey{}).(pgx.Tx)
	return tx, ok
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

// projLockKey is the session advisory lock key of a projection partition:
// FNV-1a (64 bits) of a prefix, the name and the partition. Other
// applications' advisory locks on the same database are unlikely to
// collide with it.
func projLockKey(key projection.Key) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("chronicle.projection\x00" + key.Projection + "\x00" + strconv.Itoa(key.Partition)))
	return int64(h.Sum64())
}

// projMaxErrorLen bounds the stored error messages, in bytes.
const projMaxErrorLen = 4000

// projErrorText makes a handler's error message storable as text: valid
// UTF-8, no NUL, bounded.
func projErrorText(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	msg = strings.ReplaceAll(msg, "\x00", "")
	if len(msg) > projMaxErrorLen {
		cut := projMaxErrorLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

const projCheckpointColumns = `c.projection, c.partition, c.partitions, c.transaction_id, c.global_position,
       c.updated_at, coalesce(c.holder, ''), c.rebuild_requested, coalesce(c.error, ''),
       (SELECT count(*) FROM chronicle.projection_dead_letters d
        WHERE d.projection = c.projection AND d.partition = c.partition AND d.status IN ('parked', 'retry'))`

const projCheckpointsSQL = `
SELECT ` + projCheckpointColumns + `
FROM chronicle.projection_checkpoints c
WHERE $1 = '' OR c.projection = $1
ORDER BY c.projection, c.partition`

// projHeldLocksSQL lists the advisory locks with a bigint key held in this
// database: classid holds the key's high 32 bits, objid its low 32 bits.
const projHeldLocksSQL = `
SELECT (classid::bigint << 32) | objid::bigint
FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 1 AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`

func projScanCheckpoint(row pgx.Row) (projection.Checkpoint, error) {
	var cp projection.Checkpoint
	var parked int64
	err := row.Scan(&cp.Projection, &cp.Partition, &cp.Partitions, &cp.Position.Transaction, &cp.Position.Global,
		&cp.UpdatedAt, &cp.Holder, &cp.RebuildRequested, &cp.Error, &parked)
	cp.Parked = int(parked)
	cp.UpdatedAt = cp.UpdatedAt.UTC()
	return cp, err
}

// Checkpoints implements [projection.Storage]. A checkpoint's Holder is
// set only while its holder's advisory lock is held.
func (s *ProjectionStore) Checkpoints(ctx context.Context, name string) ([]projection.Checkpoint, error) {
	if name != "" {
		if err := projection.ValidateName(name); err != nil {
			return nil, err
		}
	}
	rows, err := s.pool.Query(ctx, projCheckpointsSQL, name)
	if err != nil {
		return nil, wrapError("read projection checkpoints", err)
	}
	cps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (projection.Checkpoint, error) { return projScanCheckpoint(row) })
	if err != nil {
		return nil, wrapError("read projection checkpoints", err)
	}
	if len(cps) == 0 {
		return nil, nil
	}
	rows, err = s.pool.Query(ctx, projHeldLocksSQL)
	if err != nil {
		return nil, wrapError("read projection locks", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, wrapError("read projection locks", err)
	}
	held := make(map[int64]bool, len(keys))
	for _, k := range keys {
		held[k] = true
	}
	for i := range cps {
		if !held[projLockKey(projection.Key{Projection: cps[i].Projection, Partition: cps[i].Partition})] {
			cps[i].Holder = ""
		}
	}
	return cps, nil
}

const projMismatchSQL = `
SELECT partitions FROM chronicle.projection_checkpoints
WHERE projection = $1 AND partitions <> $2
LIMIT 1`

const projRequestRebuildSQL = `
UPDATE chronicle.projection_checkpoints SET rebuild_requested = true
WHERE projection = $1`

const projCreateRebuildSQL = `
INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions, rebuild_requested)
SELECT $1, p, $2, true FROM generate_series(0, $2 - 1) AS p
ON CONFLICT (projection, partition) DO UPDATE SET rebuild_requested = true`

// RequestRebuild implements [projection.Storage]: it marks the projection's
// partitions for rebuild, for their holders to reset and replay. It is
// what `chronicle projections rebuild NAME` does.
func (s *ProjectionStore) RequestRebuild(ctx context.Context, name string, partitions int) error {
	if err := projection.ValidateName(name); err != nil {
		return err
	}
	if partitions < 0 || partitions > 1024 {
		return &eventstore.ValidationError{Field: "partitions", Reason: fmt.Sprintf("%d is not between 0 and 1024", partitions)}
	}
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if partitions == 0 {
			tag, err := tx.Exec(ctx, projRequestRebuildSQL, name)
			if err != nil {
				return wrapError("request rebuild", err)
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("%w: %q has no checkpoints", projection.ErrUnknownProjection, name)
			}
			return nil
		}
		// The same per-name lock as a first claim (lease.go), so the check
		// and the insert cannot race a runner claiming another count.
		if _, err := tx.Exec(ctx, projNameLockSQL, projNameLockKey(name)); err != nil {
			return wrapError("request rebuild", err)
		}
		var stored int
		err := tx.QueryRow(ctx, projMismatchSQL, name, partitions).Scan(&stored)
		switch {
		case err == nil:
			return &projection.PartitionsMismatchError{Projection: name, Stored: stored, Configured: partitions}
		case !errors.Is(err, pgx.ErrNoRows):
			return wrapError("request rebuild", err)
		}
		if _, err := tx.Exec(ctx, projCreateRebuildSQL, name, partitions); err != nil {
			return wrapError("request rebuild", err)
		}
		return nil
	})
}

const projCountEventsSQL = `
SELECT count(*) FROM chronicle.events
WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
  AND (transaction_id, global_position) <= ($3::xid8, $4::bigint)`

// CountEvents implements [projection.EventCounter]: it counts the events
// in (after, upTo] in SQL, for status reports.
func (s *ProjectionStore) CountEvents(ctx context.Context, after, upTo eventstore.Position) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, projCountEventsSQL, after.Transaction, after.Global, upTo.Transaction, upTo.Global).Scan(&n); err != nil {
		return 0, wrapError("count events", err)
	}
	return n, nil
}

// projTimeout bounds the statements run while releasing a lease.
const projTimeout = 5 * time.Second
