package projections

import (
	"context"

	"github.com/jackc/pgx/v5"
)

type txKey struct{}

// TxFromContext returns the transaction of the batch ctx belongs to.
func TxFromContext(ctx context.Context) (pgx.Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(pgx.Tx)
	return tx, ok
}
