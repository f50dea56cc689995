package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"
)

// readOnPool runs the read fn on a connection from pool. When fn fails
// and its connection is dead afterwards (it was terminated by an
// administrator, a restart or a failover while it sat in the pool, or broke
// before the query reached the server), fn runs once more, on a
// connection that answered a ping: reads are idempotent, and a user should
// not see the first read on each stale pooled connection fail after a
// restart. Errors of a live connection (SQL errors, a cancelled ctx) are
// returned as they are.
func readOnPool(ctx context.Context, pool *pgxpool.Pool, fn func(*pgxpool.Conn) error) error {
	dead, err := readOnce(ctx, pool, fn, false)
	if err == nil || !dead || ctx.Err() != nil {
		return err
	}
	_, err = readOnce(ctx, pool, fn, true)
	return err
}

// readOnce runs fn on an acquired connection and reports whether the
// connection was closed when fn returned. With live set, it first
// discards pooled connections that fail a ping (a pool emptied by a
// restart holds one stale connection per slot).
func readOnce(ctx context.Context, pool *pgxpool.Pool, fn func(*pgxpool.Conn) error, live bool) (dead bool, err error) {
	conn, err := acquireConn(ctx, pool, live)
	if err != nil {
		return false, err
	}
	defer conn.Release() // a closed connection is destroyed, not pooled again
	err = fn(conn)
	return err != nil && conn.Conn().IsClosed(), err
}

// acquireConn acquires a connection; with live set, one that answers a
// ping, trying at most as many connections as the pool holds, plus one.
func acquireConn(ctx context.Context, pool *pgxpool.Pool, live bool) (*pgxpool.Conn, error) {
	if !live {
		return pool.Acquire(ctx)
	}
	var errs []error
	for range pool.Config().MaxConns + 1 {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		if err := conn.Ping(ctx); err != nil {
			errs = append(errs, err)
			conn.Release()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		return conn, nil
	}
	return nil, errors.Join(errs...)
}
