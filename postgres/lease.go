package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
)

const projTryLockSQL = `SELECT pg_try_advisory_lock($1)`

const projUnlockSQL = `SELECT pg_advisory_unlock($1)`

// projNameLockSQL serialises, per projection name, the first claims of a
// projection's partitions, so that runners configured with different
// partition counts cannot both pass the check of projMismatchSQL. It is a
// transaction lock in the two-int key space, which never collides with the
// bigint session locks of partitions (PostgreSQL tells them apart); the
// class id is arbitrary, the second key is [projNameLockKey].
const projNameLockSQL = `SELECT pg_advisory_xact_lock(1128809811, $1)`

// projNameLockKey is the second key of projNameLockSQL for a projection.
// Two names with one key only wait for each other.
func projNameLockKey(name string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return int32(h.Sum32())
}

const projClaimSQL = `
INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions, holder, holder_since)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (projection, partition) DO UPDATE SET holder = EXCLUDED.holder, holder_since = now()`

const projCheckpointSQL = `
SELECT ` + projCheckpointColumns + `
FROM chronicle.projection_checkpoints c
WHERE c.projection = $1 AND c.partition = $2`

// projCASSQL moves a checkpoint only if it is still where its holder last
// saw it.
const projCASSQL = `
UPDATE chronicle.projection_checkpoints c
SET transaction_id = $5::xid8,
    global_position = $6,
    updated_at = CASE WHEN c.transaction_id = $5::xid8 AND c.global_position = $6 THEN c.updated_at ELSE now() END,
    error = NULLIF($7, ''),
    rebuild_requested = c.rebuild_requested AND NOT $8
WHERE c.projection = $1 AND c.partition = $2
  AND c.transaction_id = $3::xid8 AND c.global_position = $4
RETURNING ` + projCheckpointColumns

const projPositionSQL = `
SELECT transaction_id, global_position FROM chronicle.projection_checkpoints
WHERE projection = $1 AND partition = $2`

const projParkSQL = `
INSERT INTO chronicle.projection_dead_letters
    (projection, partition, event_id, stream_id, stream_version, transaction_id, global_position, event_type, error, attempts)
VALUES ($1, $2, $3, $4, $5, $6::xid8, $7, $8, $9, $10)
ON CONFLICT (projection, event_id) DO UPDATE
SET partition = EXCLUDED.partition, stream_id = EXCLUDED.stream_id, stream_version = EXCLUDED.stream_version,
    transaction_id = EXCLUDED.transaction_id, global_position = EXCLUDED.global_position,
    event_type = EXCLUDED.event_type, error = EXCLUDED.error, attempts = EXCLUDED.attempts,
    status = 'parked', parked_at = now(), updated_at = now()`

const projSettleSQL = `
UPDATE chronicle.projection_dead_letters
SET status = $2,
    attempts = $3,
    error = CASE WHEN $2 = 'parked' THEN $4 ELSE error END,
    parked_at = CASE WHEN $2 = 'parked' THEN now() ELSE parked_at END,
    updated_at = now()
WHERE id = $1 AND status = 'retry'`

const projClearDeadLettersSQL = `
DELETE FROM chronicle.projection_dead_letters
WHERE projection = $1 AND partition = $2 AND status IN ('parked', 'retry')`

const projRetryRequestsSQL = `
SELECT ` + projDeadLetterColumns + `
FROM chronicle.projection_dead_letters
WHERE projection = $1 AND partition = $2 AND status = 'retry'
ORDER BY id
LIMIT 100`

// Acquire implements [projection.Storage]: it tries the partition's
// session advisory lock and, when granted, keeps the connection as the
// lease's own (see [ProjectionStore]). It returns a nil Lease when another
// session holds the lock.
func (s *ProjectionStore) Acquire(ctx context.Context, key projection.Key, partitions int, holder string) (projection.Lease, error) {
	if err := projection.ValidateName(key.Projection); err != nil {
		return nil, err
	}
	switch {
	case partitions < 1 || partitions > 1024:
		return nil, &eventstore.ValidationError{Field: "partitions", Reason: fmt.Sprintf("%d is not between 1 and 1024", partitions)}
	case key.Partition < 0 || key.Partition >= partitions:
		return nil, &eventstore.ValidationError{Field: "partition", Reason: fmt.Sprintf("%d is not between 0 and %d", key.Partition, partitions-1)}
	}
	holder = projErrorText(holder)
	lockKey := projLockKey(key)

	var (
		conn   *pgx.Conn
		pooled *pgxpool.Conn
		err    error
	)
	if s.leaseCfg != nil {
		conn, err = pgx.ConnectConfig(ctx, s.leaseCfg)
	} else if pooled, err = s.pool.Acquire(ctx); err == nil {
		conn = pooled.Conn()
	}
	if err != nil {
		return nil, wrapError("acquire projection lease: connect", err)
	}
	// giveBack returns the connection to the pool only when it certainly
	// holds no lock of ours; otherwise it closes it.
	giveBack := func(maybeLocked bool) {
		if maybeLocked {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), projTimeout)
			defer cancel()
			var unlocked bool
			if err := conn.QueryRow(uctx, projUnlockSQL, lockKey).Scan(&unlocked); err != nil || !unlocked {
				if pooled != nil {
					conn = pooled.Hijack()
					pooled = nil
				}
				_ = conn.Close(uctx) // closing the session releases its locks
				return
			}
		}
		if pooled != nil {
			pooled.Release()
		} else {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), projTimeout)
			defer cancel()
			_ = conn.Close(cctx)
		}
	}

	var locked bool
	if err := conn.QueryRow(ctx, projTryLockSQL, lockKey).Scan(&locked); err != nil {
		giveBack(true)
		return nil, wrapError("acquire projection lease", err)
	}
	if !locked {
		giveBack(false)
		return nil, nil
	}
	if err := projClaim(ctx, conn, key, partitions, holder); err != nil {
		giveBack(true)
		return nil, err
	}
	if pooled != nil {
		conn = pooled.Hijack()
	}
	return &projLease{key: key, lockKey: lockKey, holder: holder, conn: conn, done: make(chan struct{})}, nil
}

// projClaim checks that the stored partition count of the projection is
// partitions and records holder as the partition's holder, in one
// transaction serialised with the other claims of the projection.
func projClaim(ctx context.Context, conn *pgx.Conn, key projection.Key, partitions int, holder string) error {
	// Read committed, whatever the session's default: the check's
	// snapshot is taken after the lock is granted, so it sees the claims
	// committed by whoever held the lock before.
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, projNameLockSQL, projNameLockKey(key.Projection)); err != nil {
			return err
		}
		var stored int
		err := tx.QueryRow(ctx, projMismatchSQL, key.Projection, partitions).Scan(&stored)
		switch {
		case err == nil:
			return &projection.PartitionsMismatchError{Projection: key.Projection, Stored: stored, Configured: partitions}
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		_, err = tx.Exec(ctx, projClaimSQL, key.Projection, key.Partition, partitions, holder)
		return err
	})
	if pe := (*projection.PartitionsMismatchError)(nil); err != nil && !errors.As(err, &pe) {
		return wrapError("acquire projection lease", err)
	}
	return err
}

// projLease is a held projection partition: a session advisory lock and
// the dedicated connection that holds it.
type projLease struct {
	key     projection.Key
	lockKey int64
	holder  string
	conn    *pgx.Conn

	done     chan struct{}
	doneOnce sync.Once
	relOnce  sync.Once
	relErr   error
}

var _ projection.Lease = (*projLease)(nil)

// lost closes done when the lease's connection has died; it returns err.
func (l *projLease) lost(err error) error {
	if l.conn.IsClosed() {
		l.doneOnce.Do(func() { close(l.done) })
	}
	return err
}

func (l *projLease) Done() <-chan struct{} { return l.done }

func (l *projLease) Transactional() bool { return true }

func (l *projLease) alive() error {
	select {
	case <-l.done:
		return projection.ErrLeaseLost
	default:
		return nil
	}
}

func (l *projLease) Checkpoint(ctx context.Context) (projection.Checkpoint, error) {
	if err := l.alive(); err != nil {
		return projection.Checkpoint{}, err
	}
	cp, err := projScanCheckpoint(l.conn.QueryRow(ctx, projCheckpointSQL, l.key.Projection, l.key.Partition))
	if err != nil {
		return projection.Checkpoint{}, l.lost(wrapError("read projection checkpoint", err))
	}
	cp.Holder = l.holder
	return cp, nil
}

func (l *projLease) casArgs(c projection.Commit) []any {
	return []any{l.key.Projection, l.key.Partition, c.From.Transaction, c.From.Global, c.To.Transaction, c.To.Global,
		projErrorText(c.Error), c.Rebuilt}
}

// conflict builds the error of a compare-and-set that matched no row.
func (l *projLease) conflict(ctx context.Context, db dbtx, c projection.Commit) error {
	var actual eventstore.Position
	err := db.QueryRow(ctx, projPositionSQL, l.key.Projection, l.key.Partition).Scan(&actual.Transaction, &actual.Global)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return l.lost(wrapError("commit projection checkpoint", err))
	}
	return &projection.CheckpointConflictError{Key: l.key, Expected: c.From, Actual: actual}
}

func (l *projLease) Commit(ctx context.Context, c projection.Commit) (projection.Checkpoint, error) {
	if err := l.alive(); err != nil {
		return projection.Checkpoint{}, err
	}
	// The work's transaction begins at its first use; a batch whose
	// handlers do not touch the database commits its checkpoint alone.
	lazy := &projLazyTx{ctx: ctx, conn: l.conn}
	committed := false
	defer l.watch(ctx, lazy)()
	defer func() {
		if tx := lazy.started(); tx != nil && !committed {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), projTimeout)
			defer cancel()
			_ = tx.Rollback(rctx) // fails only when the connection is gone, which rolls back too
			l.lost(nil)
		}
	}()
	if c.Work != nil {
		if err := c.Work(context.WithValue(ctx, projTxKey{}, pgx.Tx(lazy))); err != nil {
			return projection.Checkpoint{}, l.lost(err)
		}
	}
	tx := lazy.started()
	if tx == nil && c.Park == nil && c.Settle == nil && !c.Rebuilt {
		// A checkpoint alone: one statement, no transaction.
		cp, err := projScanCheckpoint(l.conn.QueryRow(ctx, projCASSQL, l.casArgs(c)...))
		if errors.Is(err, pgx.ErrNoRows) {
			return projection.Checkpoint{}, l.conflict(ctx, l.conn, c)
		}
		if err != nil {
			return projection.Checkpoint{}, l.lost(wrapError("commit projection checkpoint", err))
		}
		cp.Holder = l.holder
		return cp, nil
	}
	if tx == nil {
		var err error
		if tx, err = lazy.begin(ctx); err != nil {
			return projection.Checkpoint{}, l.lost(err)
		}
	}
	b := &pgx.Batch{}
	if dl := c.Park; dl != nil {
		b.Queue(projParkSQL, l.key.Projection, l.key.Partition, [16]byte(dl.EventID), dl.StreamID, dl.StreamVersion,
			dl.Position.Transaction, dl.Position.Global, dl.Type, projErrorText(dl.Error), dl.Attempts)
	}
	if st := c.Settle; st != nil {
		if !st.Status.Valid() {
			return projection.Checkpoint{}, &eventstore.ValidationError{Field: "settlement status", Reason: fmt.Sprintf("%q is not a status", st.Status)}
		}
		b.Queue(projSettleSQL, st.ID, string(st.Status), st.Attempts, projErrorText(st.Error))
	}
	if c.Rebuilt {
		b.Queue(projClearDeadLettersSQL, l.key.Projection, l.key.Partition)
	}
	b.Queue(projCASSQL, l.casArgs(c)...)
	br := tx.SendBatch(ctx, b)
	for range b.Len() - 1 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return projection.Checkpoint{}, l.lost(wrapError("commit projection checkpoint", err))
		}
	}
	cp, err := projScanCheckpoint(br.QueryRow())
	closeErr := br.Close()
	if errors.Is(err, pgx.ErrNoRows) {
		return projection.Checkpoint{}, l.conflict(ctx, tx, c)
	}
	if err = cmpErr(err, closeErr); err != nil {
		return projection.Checkpoint{}, l.lost(wrapError("commit projection checkpoint", err))
	}
	if err := tx.Commit(ctx); err != nil {
		return projection.Checkpoint{}, l.lost(wrapError("commit projection transaction", err))
	}
	committed = true
	cp.Holder = l.holder
	return cp, nil
}

// projWatchGrace is how long a batch's work may run on after its ctx is
// done (its deadline, or a shutdown) before its transaction is ended by
// closing the lease's connection.
const projWatchGrace = time.Second

// watch ends the transaction of a Commit whose work outlives ctx (a
// handler that ignores it, blocked on something else while the
// transaction is idle): an open transaction holds back every tailing
// reader of the cluster. It closes the lease's socket, which makes the
// server roll the transaction back and release the advisory lock; the
// lease is lost. The returned func stops watching; call it when Commit
// returns.
func (l *projLease) watch(ctx context.Context, lazy *projLazyTx) (stop func()) {
	var (
		mu       sync.Mutex
		finished = make(chan struct{})
	)
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.NewTimer(projWatchGrace)
		defer t.Stop()
		select {
		case <-finished:
			return
		case <-t.C:
		}
		mu.Lock() // Commit has not returned while mu is held and finished open
		defer mu.Unlock()
		select {
		case <-finished:
			return
		default:
		}
		if !lazy.open.Load() {
			return // no transaction: nothing holds the horizon back
		}
		// net.Conn.Close is safe to call concurrently with the Commit's
		// goroutine, whose next use of the connection fails.
		_ = l.conn.PgConn().Conn().Close()
		l.doneOnce.Do(func() { close(l.done) })
	})
	return func() {
		mu.Lock()
		close(finished)
		mu.Unlock()
		stopAfter()
	}
}

// cmpErr returns the first non-nil error.
func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (l *projLease) RetryRequests(ctx context.Context) ([]projection.DeadLetter, error) {
	if err := l.alive(); err != nil {
		return nil, err
	}
	rows, err := l.conn.Query(ctx, projRetryRequestsSQL, l.key.Projection, l.key.Partition)
	if err != nil {
		return nil, l.lost(wrapError("read dead letter retries", err))
	}
	dls, err := pgx.CollectRows(rows, projScanDeadLetter)
	if err != nil {
		return nil, l.lost(wrapError("read dead letter retries", err))
	}
	return dls, nil
}

// Release closes the lease's connection, which releases its advisory lock
// (and rolls back a transaction left open).
func (l *projLease) Release(ctx context.Context) error {
	l.relOnce.Do(func() {
		if !l.conn.IsClosed() {
			// Unlock first: the server ends a closed session's locks
			// asynchronously, and a standby should not wait for that.
			var unlocked bool
			err := l.conn.QueryRow(ctx, projUnlockSQL, l.lockKey).Scan(&unlocked)
			if cerr := l.conn.Close(ctx); err == nil {
				err = cerr
			}
			if err != nil {
				l.relErr = wrapError("release projection lease", err)
			}
		}
		l.doneOnce.Do(func() { close(l.done) })
	})
	return l.relErr
}
