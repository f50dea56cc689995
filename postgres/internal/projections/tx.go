package projections

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// ErrTxManaged is returned when a handler tries to end the batch's
// transaction itself.
var ErrTxManaged = errors.New("the projection runner commits or rolls back the batch's transaction: return an error from the handler to roll it back")

// managedTx is the batch's transaction as handlers see it: a real pgx.Tx
// whose Commit and Rollback are the runner's.
type managedTx struct{ pgx.Tx }

// Commit refuses: the runner commits.
func (managedTx) Commit(context.Context) error { return ErrTxManaged }

// Rollback refuses: the runner rolls back.
func (managedTx) Rollback(context.Context) error { return ErrTxManaged }

type txKey struct{}

func withTx(ctx context.Context, tx pgx.Tx) context.Context {
	return context.WithValue(ctx, txKey{}, pgx.Tx(managedTx{tx}))
}

// TxFromContext returns the transaction of the batch ctx belongs to.
func TxFromContext(ctx context.Context) (pgx.Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(pgx.Tx)
	return tx, ok
}
