package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

// TestAppendTxDeadlockReturnsAtOnce has two caller transactions each
// append to a stream of their own, then to the other's: PostgreSQL breaks
// the deadlock by aborting one statement, and its AppendTx returns at once
// with an error telling the caller to retry the whole transaction (no
// retry inside a transaction whose own locks cause the deadlock), while
// the other transaction goes on and commits.
func TestAppendTxDeadlockReturnsAtOnce(t *testing.T) {
	t.Parallel()
	for _, streams := range []bool{false, true} {
		name := "AppendTx"
		if streams {
			name = "AppendStreamsTx"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, pool := setupStore(t, nil)
			ctx := t.Context()
			appendTx := func(tx pgx.Tx, stream string) error {
				if streams {
					_, err := s.AppendStreamsTx(ctx, tx, eventstore.StreamAppend{StreamID: stream, Expected: eventstore.Any, Events: testEvents("E", 1)})
					return err
				}
				_, err := s.AppendTx(ctx, tx, stream, eventstore.Any, testEvents("E", 1)...)
				return err
			}
			txs := make([]pgx.Tx, 2)
			for i, stream := range []string{"deadlock-a", "deadlock-b"} {
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = tx.Rollback(context.Background()) }()
				if err := appendTx(tx, stream); err != nil {
					t.Fatal(err)
				}
				txs[i] = tx
			}
			type outcome struct {
				i       int
				err     error
				elapsed time.Duration
			}
			done := make(chan outcome, 2)
			for i, other := range []string{"deadlock-b", "deadlock-a"} {
				go func() {
					start := time.Now()
					err := appendTx(txs[i], other)
					done <- outcome{i, err, time.Since(start)}
				}()
			}
			// The victim returns first (after deadlock_timeout, 1s by
			// default); it rolls back, which lets the other finish.
			victim := <-done
			if !errors.Is(victim.err, eventstore.ErrTransactionConflict) {
				t.Fatalf("deadlocked append: %v, want an error matching ErrTransactionConflict", victim.err)
			}
			var tce *eventstore.TransactionConflictError
			if !errors.As(victim.err, &tce) || tce.Reason != "deadlock with another transaction" {
				t.Fatalf("deadlocked append: %#v, want a TransactionConflictError for a deadlock", victim.err)
			}
			if victim.elapsed > 4*time.Second {
				t.Errorf("the deadlocked append returned after %s: it must not retry inside the transaction", victim.elapsed)
			}
			if err := txs[victim.i].Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			winner := <-done
			if winner.err != nil {
				t.Fatalf("the other transaction's append: %v", winner.err)
			}
			if err := txs[winner.i].Commit(ctx); err != nil {
				t.Fatal(err)
			}
			// The victim's first append rolled back with it: each stream
			// holds one event of the winner.
			for _, stream := range []string{"deadlock-a", "deadlock-b"} {
				if v, err := s.StreamVersion(ctx, stream); err != nil || v != 1 {
					t.Errorf("%s at version %d (%v), want 1", stream, v, err)
				}
			}
		})
	}
}

// TestAppendConflictCheckConnectionLost terminates the connection of an
// append's conflict check (the statement wrote nothing because the
// expectation failed, and the store then reads why): the error says the
// outcome is unknown and that a retry with the same event IDs is safe,
// never a bare driver error.
func TestAppendConflictCheckConnectionLost(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(postgrestest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	admin := adminConn(t)
	killBatches := make(chan struct{}, 1)
	cfg.ConnConfig.Tracer = &batchKiller{admin: admin, armed: killBatches}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := newStoreOn(t, pool, &Config{PollOnly: true})
	ctx := t.Context()
	if _, err := s.Append(ctx, "acc", eventstore.NoStream, testEvents("E", 1)...); err != nil {
		t.Fatal(err)
	}
	killBatches <- struct{}{}
	_, err = s.Append(ctx, "acc", eventstore.NoStream, testEvents("E", 1)...)
	var oue *eventstore.OutcomeUnknownError
	if !errors.Is(err, eventstore.ErrOutcomeUnknown) || !errors.As(err, &oue) {
		t.Fatalf("append whose conflict check lost its connection: %v, want an error matching ErrOutcomeUnknown", err)
	}
}

// batchKiller terminates the backend of the first batch sent after a
// value arrives on armed (the append's conflict check is a batch), before
// the batch reaches the server.
type batchKiller struct {
	admin *pgx.Conn
	armed chan struct{}
}

func (k *batchKiller) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	select {
	case <-k.armed:
		pid := conn.PgConn().PID()
		if _, err := k.admin.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, pid); err != nil {
			panic(err)
		}
	default:
	}
	return ctx
}

func (k *batchKiller) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
}
func (k *batchKiller) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
}
func (k *batchKiller) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (k *batchKiller) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestAppendTxOnFinishedTransaction appends inside a transaction that is
// already committed, rolled back, or aborted by an earlier error: each is a
// validation error on tx (matching ErrInvalidInput), not a driver error.
func TestAppendTxOnFinishedTransaction(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()
	for _, c := range []struct {
		name   string
		finish func(pgx.Tx) error
		reason string
	}{
		{"committed", func(tx pgx.Tx) error { return tx.Commit(ctx) }, "is already committed or rolled back"},
		{"rolled back", func(tx pgx.Tx) error { return tx.Rollback(ctx) }, "is already committed or rolled back"},
		{"aborted", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `SELECT 1/0`)
			if err == nil {
				return errors.New("division by zero did not fail")
			}
			return nil
		}, "is aborted by an earlier error: roll it back"},
	} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.finish(tx); err != nil {
			t.Fatal(err)
		}
		for _, appendTx := range []func() error{
			func() error {
				_, err := s.AppendTx(ctx, tx, "finished", eventstore.Any, testEvents("E", 1)...)
				return err
			},
			func() error {
				_, err := s.AppendStreamsTx(ctx, tx, eventstore.StreamAppend{StreamID: "finished", Expected: eventstore.Any, Events: testEvents("E", 2)})
				return err
			},
		} {
			err := appendTx()
			var ve *eventstore.ValidationError
			if !errors.Is(err, eventstore.ErrInvalidInput) || !errors.As(err, &ve) || ve.Field != "tx" || ve.Reason != c.reason {
				t.Errorf("%s: append = %v, want a validation error on tx: %s", c.name, err, c.reason)
			}
		}
		_ = tx.Rollback(ctx)
	}
	if _, err := s.StreamVersion(ctx, "finished"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("StreamVersion after the refused appends: %v, want not found", err)
	}
}
