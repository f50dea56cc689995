package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
	"github.com/chronicle-go/chronicle/projection/projectionstore/storagetest"
)

// TestProjectionStoreConformance runs the projection storage suite, each
// case on a database of its own, with a second store on another pool as
// another process.
func TestProjectionStoreConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, storagetest.Config{Transactional: true, New: func(t *testing.T) storagetest.Subject {
		url := postgrestest.DatabaseURL(t)
		newStore := func() (*pgxpool.Pool, *postgres.ProjectionStore) {
			pool, err := pgxpool.New(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			ps, err := postgres.NewProjectionStore(pool, nil)
			if err != nil {
				t.Fatal(err)
			}
			return pool, ps
		}
		pool, ps := newStore()
		_, other := newStore()
		if _, err := pool.Exec(context.Background(), `CREATE TABLE marks (marker text PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		return storagetest.Subject{
			Storage: ps,
			Other:   other,
			Write: func(ctx context.Context, marker string) error {
				tx, ok := postgres.ProjectionTx(ctx)
				if !ok {
					return errors.New("no transaction in the work's context")
				}
				_, err := tx.Exec(ctx, `INSERT INTO marks VALUES ($1)`, marker)
				return err
			},
			Written: func(ctx context.Context, marker string) (bool, error) {
				var ok bool
				err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM marks WHERE marker = $1)`, marker).Scan(&ok)
				return ok, err
			},
		}
	}})
}

// TestProjectionLeaseConnections checks what is particular to the
// PostgreSQL leases: handlers cannot end the batch's transaction, and a
// connection that tried a lock goes back to the pool holding none.
func TestProjectionLeaseConnections(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	other, err := postgres.NewProjectionStore(e.newPool("other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	key := projectionstore.Key{Projection: "p", Partition: 1}
	l1, err := e.ps.Acquire(ctx, key, 2, "one")
	if err != nil || l1 == nil {
		t.Fatalf("Acquire = %v, %v", l1, err)
	}
	if l2, err := other.Acquire(ctx, key, 2, "two"); err != nil || l2 != nil {
		t.Fatalf("second Acquire = %v, %v; want nil, nil", l2, err)
	}
	to := eventstore.Position{Transaction: 5, Global: 7}
	if _, err := l1.Commit(ctx, projectionstore.Commit{To: to}); err != nil {
		t.Fatal(err)
	}
	if _, err := l1.Commit(ctx, projectionstore.Commit{From: to, To: to, Work: func(ctx context.Context) error {
		tx, _ := postgres.ProjectionTx(ctx)
		if _, err := tx.Exec(ctx, `INSERT INTO proj_balances VALUES ('rolled-back', 1, 1)`); err != nil {
			return err
		}
		if err := tx.Rollback(ctx); err == nil || !strings.Contains(err.Error(), "runner commits") {
			return fmt.Errorf("Rollback = %v", err)
		}
		return tx.Commit(ctx)
	}}); err == nil || !strings.Contains(err.Error(), "runner commits") {
		t.Fatalf("commit with work committing = %v", err)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM proj_balances`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("failed work left %d rows (%v)", n, err)
	}
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The pool's connections hold no lock: a connection that tried and
	// failed was returned clean.
	var locks int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks); err != nil || locks != 0 {
		t.Fatalf("%d advisory locks left (%v)", locks, err)
	}
}
