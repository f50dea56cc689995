package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/lazytx"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// Acquire implements [projectionstore.Storage]: it tries the partition's
// session advisory lock and, when granted, keeps the connection as the
// lease's own. It returns a nil Lease when another session holds the lock.
func (s *Store) Acquire(ctx context.Context, key projectionstore.Key, partitions int, holder string) (projectionstore.Lease, error) {
	if err := projection.ValidateName(key.Projection); err != nil {
		return nil, err
	}
	if err := validatePartitions(partitions, false); err != nil {
		return nil, err
	}
	if key.Partition < 0 || key.Partition >= partitions {
		return nil, &eventstore.ValidationError{Field: "partition", Reason: fmt.Sprintf("%d is not between 0 and %d", key.Partition, partitions-1)}
	}
	c, err := s.connect(ctx)
	if err != nil {
		return nil, s.wrap("acquire projection lease: connect", err)
	}
	lk := lockKey(key)
	var locked bool
	if err := c.conn.QueryRow(ctx, tryLockSQL, lk).Scan(&locked); err != nil {
		c.giveBack(ctx, lk, true)
		return nil, s.wrap("acquire projection lease", err)
	}
	if !locked {
		c.giveBack(ctx, lk, false)
		return nil, nil
	}
	holder = errorText(holder)
	if err := s.claim(ctx, c.conn, key, partitions, holder); err != nil {
		c.giveBack(ctx, lk, true)
		return nil, err
	}
	return &lease{s: s, key: key, lockKey: lk, holder: holder, conn: c.keep(), done: make(chan struct{})}, nil
}

// leaseConn is a connection trying a lock: from the pool, or dialled.
type leaseConn struct {
	conn   *pgx.Conn
	pooled *pgxpool.Conn // nil for a dialled connection
}

func (s *Store) connect(ctx context.Context) (leaseConn, error) {
	if s.leaseCfg != nil {
		conn, err := pgx.ConnectConfig(ctx, s.leaseCfg)
		return leaseConn{conn: conn}, err
	}
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return leaseConn{}, err
	}
	return leaseConn{conn: pooled.Conn(), pooled: pooled}, nil
}

// keep takes the connection out of the pool, for the lease.
func (c leaseConn) keep() *pgx.Conn {
	if c.pooled != nil {
		return c.pooled.Hijack()
	}
	return c.conn
}

// giveBack returns the connection to the pool only when it certainly holds
// no lock of ours; otherwise it closes it, which releases its locks.
func (c leaseConn) giveBack(ctx context.Context, lk int64, maybeLocked bool) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if maybeLocked {
		var unlocked bool
		if err := c.conn.QueryRow(cctx, unlockSQL, lk).Scan(&unlocked); err != nil || !unlocked {
			_ = c.keep().Close(cctx)
			return
		}
	}
	if c.pooled != nil {
		c.pooled.Release()
		return
	}
	_ = c.conn.Close(cctx)
}

// claim checks that the stored partition count of the projection is
// partitions and records holder as the partition's holder, in one
// transaction serialised with the other claims of the projection.
func (s *Store) claim(ctx context.Context, conn *pgx.Conn, key projectionstore.Key, partitions int, holder string) error {
	// Read committed, whatever the session's default: the check's
	// snapshot is taken after the lock is granted, so it sees the claims
	// committed by whoever held the lock before.
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if err := checkPartitions(ctx, tx, key.Projection, partitions); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, claimSQL, key.Projection, key.Partition, partitions, holder)
		return err
	})
	return s.wrapUnlessTyped("acquire projection lease", err)
}

// lease is a held projection partition: a session advisory lock and the
// dedicated connection that holds it, and runs the partition's
// transactions.
type lease struct {
	s       *Store
	key     projectionstore.Key
	lockKey int64
	holder  string
	conn    *pgx.Conn

	idleTimeout string // the session's idle_in_transaction_session_timeout, as last set

	done     chan struct{}
	doneOnce sync.Once
	relOnce  sync.Once
	relErr   error
}

var _ projectionstore.Lease = (*lease)(nil)

// lost closes done when the lease's connection has died; it returns err.
func (l *lease) lost(err error) error {
	if l.conn.IsClosed() {
		l.doneOnce.Do(func() { close(l.done) })
	}
	return err
}

func (l *lease) alive() error {
	select {
	case <-l.done:
		return projection.ErrLeaseLost
	default:
		return nil
	}
}

// Done implements [projectionstore.Lease].
func (l *lease) Done() <-chan struct{} { return l.done }

// Transactional implements [projectionstore.Lease]: the work runs in the
// batch's transaction.
func (l *lease) Transactional() bool { return true }

// Checkpoint implements [projectionstore.Lease].
func (l *lease) Checkpoint(ctx context.Context) (projectionstore.Checkpoint, error) {
	if err := l.alive(); err != nil {
		return projectionstore.Checkpoint{}, err
	}
	cp, err := scanCheckpoint(l.conn.QueryRow(ctx, checkpointSQL, l.key.Projection, l.key.Partition))
	if err != nil {
		return projectionstore.Checkpoint{}, l.lost(l.s.wrap("read projection checkpoint", err))
	}
	cp.Holder = l.holder
	return cp, nil
}

func (l *lease) casArgs(c projectionstore.Commit) []any {
	return []any{l.key.Projection, l.key.Partition, c.From.Transaction, c.From.Global, c.To.Transaction, c.To.Global,
		errorText(c.Error), c.Rebuilt}
}

// conflict builds the error of a compare-and-set that matched no row.
func (l *lease) conflict(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, c projectionstore.Commit) error {
	var actual eventstore.Position
	err := q.QueryRow(ctx, positionSQL, l.key.Projection, l.key.Partition).Scan(&actual.Transaction, &actual.Global)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return l.lost(l.s.wrap("commit projection checkpoint", err))
	}
	return &projection.CheckpointConflictError{Key: l.key, Expected: c.From, Actual: actual}
}

// Commit implements [projectionstore.Lease]. c.Work finds the batch's
// transaction in its ctx ([TxFromContext]): a [lazytx.Tx] on the lease's
// connection, begun at its first use. A commit whose work never used it,
// with nothing else to write, is the checkpoint's compare-and-set alone,
// one statement; anything else commits in the transaction.
func (l *lease) Commit(ctx context.Context, c projectionstore.Commit) (projectionstore.Checkpoint, error) {
	if err := l.alive(); err != nil {
		return projectionstore.Checkpoint{}, err
	}
	if st := c.Settle; st != nil && !st.Status.Valid() {
		return projectionstore.Checkpoint{}, &eventstore.ValidationError{Field: "settlement status", Reason: fmt.Sprintf("%q is not a status", st.Status)}
	}
	if err := l.setIdleTimeout(ctx); err != nil {
		return projectionstore.Checkpoint{}, l.lost(err)
	}
	lazy := lazytx.New(ctx, l.conn, func(err error) error { return l.s.wrap("begin projection transaction", err) })
	defer l.watch(ctx, lazy.Open)()
	committed := false
	defer func() {
		if tx := lazy.Begun(); tx != nil && !committed {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			defer cancel()
			_ = tx.Rollback(rctx) // fails only when the connection is gone, which rolls back too
			lazy.Ended()
			l.lost(nil)
		}
	}()
	if c.Work != nil {
		if err := c.Work(context.WithValue(ctx, txKey{}, pgx.Tx(lazy))); err != nil {
			return projectionstore.Checkpoint{}, l.lost(err)
		}
	}
	tx := lazy.Begun()
	if tx == nil && c.Park == nil && c.Settle == nil && !c.Rebuilt {
		return l.casAlone(ctx, c)
	}
	tx, err := lazy.BeginNow(ctx)
	if err != nil {
		return projectionstore.Checkpoint{}, l.lost(err)
	}
	cp, err := l.commitIn(ctx, tx, c)
	if err != nil {
		return projectionstore.Checkpoint{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return projectionstore.Checkpoint{}, l.lost(l.s.wrap("commit projection transaction", err))
	}
	committed = true
	lazy.Ended()
	cp.Holder = l.holder
	return cp, nil
}

// casAlone moves the checkpoint in one statement, outside a transaction,
// without waiting for the WAL flush (see casAloneSQL).
func (l *lease) casAlone(ctx context.Context, c projectionstore.Commit) (projectionstore.Checkpoint, error) {
	cp, err := scanCheckpoint(l.conn.QueryRow(ctx, casAloneSQL, l.casArgs(c)...))
	if errors.Is(err, pgx.ErrNoRows) {
		return projectionstore.Checkpoint{}, l.conflict(ctx, l.conn, c)
	}
	if err != nil {
		return projectionstore.Checkpoint{}, l.lost(l.s.wrap("commit projection checkpoint", err))
	}
	cp.Holder = l.holder
	return cp, nil
}

// commitIn runs the statements of c in tx, in one round trip: the dead
// letter's change, then the checkpoint's compare-and-set.
func (l *lease) commitIn(ctx context.Context, tx pgx.Tx, c projectionstore.Commit) (projectionstore.Checkpoint, error) {
	b := &pgx.Batch{}
	if dl := c.Park; dl != nil {
		b.Queue(parkSQL, l.key.Projection, l.key.Partition, [16]byte(dl.EventID), dl.StreamID, dl.StreamVersion,
			dl.Position.Transaction, dl.Position.Global, dl.Type, errorText(dl.Error), dl.Attempts)
	}
	if st := c.Settle; st != nil {
		b.Queue(settleSQL, st.ID, string(st.Status), st.Attempts, errorText(st.Error))
	}
	if c.Rebuilt {
		b.Queue(clearDeadLettersSQL, l.key.Projection, l.key.Partition)
	}
	b.Queue(casSQL, l.casArgs(c)...)
	br := tx.SendBatch(ctx, b)
	for range b.Len() - 1 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return projectionstore.Checkpoint{}, l.lost(l.s.wrap("commit projection checkpoint", err))
		}
	}
	cp, err := scanCheckpoint(br.QueryRow())
	closeErr := br.Close()
	if errors.Is(err, pgx.ErrNoRows) {
		return projectionstore.Checkpoint{}, l.conflict(ctx, tx, c)
	}
	if err == nil {
		err = closeErr
	}
	if err != nil {
		return projectionstore.Checkpoint{}, l.lost(l.s.wrap("commit projection checkpoint", err))
	}
	return cp, nil
}

// idleGrace is added to the batch's remaining time in the session's
// idle_in_transaction_session_timeout, so that the client's deadline
// normally ends the transaction first.
const idleGrace = time.Second

// setIdleTimeout makes the server end (with the session) a transaction
// left idle longer than the time ctx has left, rounded up to the second,
// plus [idleGrace] (without a deadline, the server's setting applies): a frozen or partitioned process cannot hold back the
// cluster's transaction horizon beyond its batch timeout. The setting is
// the session's, changed only when the batch timeout changes.
func (l *lease) setIdleTimeout(ctx context.Context) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil // the server's setting applies
	}
	d := max(time.Until(deadline), 0).Truncate(time.Second) + time.Second + idleGrace
	ms := strconv.FormatInt(d.Milliseconds(), 10)
	if ms == l.idleTimeout {
		return nil
	}
	if _, err := l.conn.Exec(ctx, setIdleTimeoutSQL, ms); err != nil {
		return l.s.wrap("set projection transaction timeout", err)
	}
	l.idleTimeout = ms
	return nil
}

// watchGrace is how long a batch's work may run on after its ctx is done
// (its deadline, or a shutdown) before its transaction is ended by closing
// the lease's connection.
const watchGrace = time.Second

// watch ends the transaction of a Commit whose work outlives ctx (a
// handler that ignores it, blocked on something else while the
// transaction is idle): an open transaction holds back every tailing
// reader of the cluster. It closes the lease's socket, which makes the
// server roll the transaction back and release the advisory lock; the
// lease is lost. The returned func stops watching; call it when Commit
// returns.
func (l *lease) watch(ctx context.Context, open func() bool) (stop func()) {
	var (
		mu       sync.Mutex
		finished = make(chan struct{})
	)
	stopAfter := context.AfterFunc(ctx, func() {
		t := time.NewTimer(watchGrace)
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
		if !open() {
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

// RetryRequests implements [projectionstore.Lease].
func (l *lease) RetryRequests(ctx context.Context) ([]projectionstore.DeadLetter, error) {
	if err := l.alive(); err != nil {
		return nil, err
	}
	rows, err := l.conn.Query(ctx, retryRequestsSQL, l.key.Projection, l.key.Partition)
	if err != nil {
		return nil, l.lost(l.s.wrap("read dead letter retries", err))
	}
	dls, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, l.lost(l.s.wrap("read dead letter retries", err))
	}
	return dls, nil
}

// Release implements [projectionstore.Lease]: it unlocks and closes the
// lease's connection (which rolls back a transaction left open).
func (l *lease) Release(ctx context.Context) error {
	l.relOnce.Do(func() {
		if !l.conn.IsClosed() {
			// Unlock first: the server ends a closed session's locks
			// asynchronously, and a standby should not wait for that.
			var unlocked bool
			err := l.conn.QueryRow(ctx, unlockSQL, l.lockKey).Scan(&unlocked)
			if cerr := l.conn.Close(ctx); err == nil {
				err = cerr
			}
			if err != nil {
				l.relErr = l.s.wrap("release projection lease", err)
			}
		}
		l.doneOnce.Do(func() { close(l.done) })
	})
	return l.relErr
}
