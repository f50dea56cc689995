package postgres

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// errProjTxManaged is returned when a handler tries to end the batch's
// transaction itself.
var errProjTxManaged = errors.New("the projection runner commits or rolls back the batch's transaction: return an error from the handler to roll it back")

// projLazyTx is the pgx.Tx handed to a batch's handlers. It begins the
// transaction on the lease's connection at its first use, so that a batch
// whose handlers never touch the database costs one statement (the
// checkpoint's compare-and-set) instead of three round trips. Handlers
// cannot commit or roll it back: the runner does.
type projLazyTx struct {
	ctx  context.Context // the batch's context, for LargeObjects and its deadline
	conn *pgx.Conn
	tx   pgx.Tx      // nil until first use
	err  error       // the error of Begin
	open atomic.Bool // a transaction was begun, for the watchdog's goroutine
}

// projIdleGrace is added to the batch's remaining time in the session's
// idle_in_transaction_session_timeout, so that the client's deadline
// normally ends the transaction first.
const projIdleGrace = time.Second

// projBeginSQL begins a transaction that the server ends by itself (with
// the session) if it stays idle longer than the time ctx has left: a
// frozen or partitioned process cannot hold back the cluster's
// transaction horizon beyond its batch timeout. Without a deadline it is
// a plain BEGIN. The timeout is an integer formatted here, in
// milliseconds, never input.
func projBeginSQL(ctx context.Context) string {
	deadline, ok := ctx.Deadline()
	if !ok {
		return "BEGIN"
	}
	ms := max(time.Until(deadline)+projIdleGrace, projIdleGrace).Milliseconds()
	return "BEGIN; SET LOCAL idle_in_transaction_session_timeout = " + strconv.FormatInt(ms, 10)
}

var _ pgx.Tx = (*projLazyTx)(nil)

// begin begins the transaction once.
func (t *projLazyTx) begin(ctx context.Context) (pgx.Tx, error) {
	if t.tx == nil && t.err == nil {
		t.tx, t.err = t.conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: projBeginSQL(t.ctx)})
		if t.err == nil {
			t.open.Store(true)
		} else {
			t.err = wrapError("begin projection transaction", t.err)
		}
	}
	return t.tx, t.err
}

// started returns the transaction if it was begun.
func (t *projLazyTx) started() pgx.Tx { return t.tx }

func (t *projLazyTx) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Begin(ctx)
}

func (t *projLazyTx) Commit(context.Context) error { return errProjTxManaged }

func (t *projLazyTx) Rollback(context.Context) error { return errProjTxManaged }

func (t *projLazyTx) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		return 0, err
	}
	return tx.CopyFrom(ctx, tableName, columnNames, rowSrc)
}

func (t *projLazyTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	tx, err := t.begin(ctx)
	if err != nil {
		return projErrBatch{err}
	}
	return tx.SendBatch(ctx, b)
}

func (t *projLazyTx) LargeObjects() pgx.LargeObjects {
	tx, err := t.begin(t.ctx)
	if err != nil {
		// LargeObjects cannot fail; its methods will, on the closed
		// transaction of a fresh failed Begin.
		return pgx.LargeObjects{}
	}
	return tx.LargeObjects()
}

func (t *projLazyTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Prepare(ctx, name, sql)
}

func (t *projLazyTx) Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.Exec(ctx, sql, arguments...)
}

func (t *projLazyTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := t.begin(ctx)
	if err != nil {
		return projErrRows{err}, err
	}
	return tx.Query(ctx, sql, args...)
}

func (t *projLazyTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	tx, err := t.begin(ctx)
	if err != nil {
		return projErrRows{err}
	}
	return tx.QueryRow(ctx, sql, args...)
}

func (t *projLazyTx) Conn() *pgx.Conn { return t.conn }

// projErrRows is the pgx.Rows (and pgx.Row) of a query that could not be
// sent.
type projErrRows struct{ err error }

func (r projErrRows) Close()                                       {}
func (r projErrRows) Err() error                                   { return r.err }
func (r projErrRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r projErrRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (r projErrRows) Next() bool                                   { return false }
func (r projErrRows) Scan(...any) error                            { return r.err }
func (r projErrRows) Values() ([]any, error)                       { return nil, r.err }
func (r projErrRows) RawValues() [][]byte                          { return nil }
func (r projErrRows) Conn() *pgx.Conn                              { return nil }
func (r projErrRows) TypeMap() *pgtype.Map                         { return nil }

// projErrBatch is the pgx.BatchResults of a batch that could not be sent.
type projErrBatch struct{ err error }

func (b projErrBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b projErrBatch) Query() (pgx.Rows, error)         { return projErrRows{b.err}, b.err }
func (b projErrBatch) QueryRow() pgx.Row                { return projErrRows{b.err} }
func (b projErrBatch) Close() error                     { return b.err }
func (b projErrBatch) Tx() pgx.Tx                       { return nil }
