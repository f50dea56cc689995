// Package lazytx is a speed trick, isolated: a pgx.Tx that begins its
// transaction at its first use.
//
// A projection batch runs its handlers with the batch's transaction, then
// commits the checkpoint in it. Many batches never use the transaction (a
// projection that handles a few event types skips the others, and most
// live batches hold one event): with [Tx], such a batch costs one
// statement (the checkpoint's compare-and-set) instead of three round
// trips (BEGIN, the compare-and-set, COMMIT).
//
// It earns its place by measurement: BenchmarkProjectionCatchUp in
// package postgres (a transactional projection whose handler does not
// touch the database, 30,000 events, batches of 10) catches up 1.0 to 2.0
// times as fast with it as with a plain pgx.Tx (1.7 times in the median of
// six interleaved pairs, see docs/projections.md); with batches of 1,000
// the two are within noise.
// Remove it when that stops being true.
package lazytx

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// ErrManaged is returned by [Tx.Commit] and [Tx.Rollback]: the owner of
// the Tx ends the transaction, not its users.
var ErrManaged = errors.New("the projection runner commits or rolls back the batch's transaction: return an error from the handler to roll it back")

// Tx is a pgx.Tx that begins a transaction on its connection at the first
// statement (or Begin, CopyFrom, SendBatch, LargeObjects, Prepare) sent
// through it. Its users cannot commit or roll it back; its owner does,
// through [Tx.Begun]. A Tx is used by one goroutine at a time, except
// [Tx.Open], which is safe to call from any.
type Tx struct {
	ctx  context.Context // for LargeObjects, which takes none
	conn *pgx.Conn
	wrap func(error) error
	tx   pgx.Tx // nil until first use
	err  error  // the error of Begin
	open atomic.Bool
}

var _ pgx.Tx = (*Tx)(nil)

// New returns a Tx on conn that has not begun. wrap, when not nil,
// translates the error of a failed Begin.
func New(ctx context.Context, conn *pgx.Conn, wrap func(error) error) *Tx {
	return &Tx{ctx: ctx, conn: conn, wrap: wrap}
}

// BeginNow begins the transaction if it has not begun, and returns it.
func (t *Tx) BeginNow(ctx context.Context) (pgx.Tx, error) {
	if t.tx == nil && t.err == nil {
		t.tx, t.err = t.conn.Begin(ctx)
		if t.err == nil {
			t.open.Store(true)
		} else if t.wrap != nil {
			t.err = t.wrap(t.err)
		}
	}
	return t.tx, t.err
}

// Begun returns the transaction if it has begun, or nil.
func (t *Tx) Begun() pgx.Tx { return t.tx }

// Open reports whether a transaction was begun and not yet marked ended
// with [Tx.Ended].
func (t *Tx) Open() bool { return t.open.Load() }

// Ended records that the owner committed or rolled back the transaction.
func (t *Tx) Ended() { t.open.Store(false) }

// Begin begins the transaction if needed, then a savepoint in it.
func (t *Tx) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := t.BeginNow(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Begin(ctx)
}

// Commit returns [ErrManaged].
func (t *Tx) Commit(context.Context) error { return ErrManaged }

// Rollback returns [ErrManaged].
func (t *Tx) Rollback(context.Context) error { return ErrManaged }

// CopyFrom begins the transaction if needed, then copies in it.
func (t *Tx) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	tx, err := t.BeginNow(ctx)
	if err != nil {
		return 0, err
	}
	return tx.CopyFrom(ctx, tableName, columnNames, rowSrc)
}

// SendBatch begins the transaction if needed, then sends b in it.
func (t *Tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	tx, err := t.BeginNow(ctx)
	if err != nil {
		return errBatch{err}
	}
	return tx.SendBatch(ctx, b)
}

// LargeObjects begins the transaction if needed (with the ctx given to
// [New]), then returns its large objects.
func (t *Tx) LargeObjects() pgx.LargeObjects {
	tx, err := t.BeginNow(t.ctx)
	if err != nil {
		// LargeObjects cannot fail; its methods will, on the closed
		// transaction of a fresh failed Begin.
		return pgx.LargeObjects{}
	}
	return tx.LargeObjects()
}

// Prepare begins the transaction if needed, then prepares in it.
func (t *Tx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	tx, err := t.BeginNow(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Prepare(ctx, name, sql)
}

// Exec begins the transaction if needed, then executes sql in it.
func (t *Tx) Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error) {
	tx, err := t.BeginNow(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.Exec(ctx, sql, arguments...)
}

// Query begins the transaction if needed, then queries in it.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := t.BeginNow(ctx)
	if err != nil {
		return errRows{err}, err
	}
	return tx.Query(ctx, sql, args...)
}

// QueryRow begins the transaction if needed, then queries in it.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	tx, err := t.BeginNow(ctx)
	if err != nil {
		return errRows{err}
	}
	return tx.QueryRow(ctx, sql, args...)
}

// Conn returns the connection.
func (t *Tx) Conn() *pgx.Conn { return t.conn }

// errRows is the pgx.Rows (and pgx.Row) of a query that could not be sent.
type errRows struct{ err error }

func (r errRows) Close()                                       {}
func (r errRows) Err() error                                   { return r.err }
func (r errRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r errRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (r errRows) Next() bool                                   { return false }
func (r errRows) Scan(...any) error                            { return r.err }
func (r errRows) Values() ([]any, error)                       { return nil, r.err }
func (r errRows) RawValues() [][]byte                          { return nil }
func (r errRows) Conn() *pgx.Conn                              { return nil }
func (r errRows) TypeMap() *pgtype.Map                         { return nil }

// errBatch is the pgx.BatchResults of a batch that could not be sent.
type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return errRows(b), b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRows(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }
