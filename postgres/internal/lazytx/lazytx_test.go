package lazytx_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/postgres/internal/lazytx"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) (context.Context, *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, postgrestest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `CREATE TABLE lazy (n int)`); err != nil {
		t.Fatal(err)
	}
	return ctx, conn
}

// txStatus is the server's transaction status of conn: 'I' idle, 'T' in
// a transaction.
func txStatus(conn *pgx.Conn) byte { return conn.PgConn().TxStatus() }

func TestUnusedNeverBegins(t *testing.T) {
	t.Parallel()
	ctx, conn := setup(t)
	tx := lazytx.New(ctx, conn, nil)
	if tx.Begun() != nil || tx.Open() || txStatus(conn) != 'I' {
		t.Fatalf("unused Tx: begun %v, open %v, status %c; want none", tx.Begun(), tx.Open(), txStatus(conn))
	}
	if tx.Conn() != conn {
		t.Fatal("Conn is not the connection")
	}
}

func TestFirstUseBeginsOneTransaction(t *testing.T) {
	t.Parallel()
	ctx, conn := setup(t)
	tx := lazytx.New(ctx, conn, nil)
	uses := []struct {
		name string
		use  func() error
	}{
		{"Exec", func() error { _, err := tx.Exec(ctx, `INSERT INTO lazy VALUES (1)`); return err }},
		{"Query", func() error {
			rows, err := tx.Query(ctx, `INSERT INTO lazy VALUES (2) RETURNING n`)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		}},
		{"QueryRow", func() error { var n int; return tx.QueryRow(ctx, `INSERT INTO lazy VALUES (3) RETURNING n`).Scan(&n) }},
		{"SendBatch", func() error {
			b := &pgx.Batch{}
			b.Queue(`INSERT INTO lazy VALUES (4)`)
			return tx.SendBatch(ctx, b).Close()
		}},
		{"CopyFrom", func() error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"lazy"}, []string{"n"}, pgx.CopyFromRows([][]any{{5}}))
			return err
		}},
	}
	var first pgx.Tx
	for _, u := range uses {
		if err := u.use(); err != nil {
			t.Fatalf("%s: %v", u.name, err)
		}
		if first == nil {
			first = tx.Begun()
		}
		if tx.Begun() == nil || tx.Begun() != first || !tx.Open() || txStatus(conn) != 'T' {
			t.Fatalf("after %s: begun %v (first %v), open %v, status %c", u.name, tx.Begun(), first, tx.Open(), txStatus(conn))
		}
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM lazy`).Scan(&n); err != nil || n != 5 {
		t.Fatalf("rows in the transaction = %d, %v; want 5", n, err)
	}
	// The owner rolls back: nothing was committed.
	if err := tx.Begun().Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	tx.Ended()
	if tx.Open() {
		t.Fatal("Open after Ended")
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM lazy`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows after rollback = %d, %v; want 0", n, err)
	}
}

func TestSavepointAndLargeObjects(t *testing.T) {
	t.Parallel()
	ctx, conn := setup(t)
	tx := lazytx.New(ctx, conn, nil)
	sp, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Exec(ctx, `INSERT INTO lazy VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if err := sp.Rollback(ctx); err != nil { // the savepoint only
		t.Fatal(err)
	}
	if tx.Begun() == nil || txStatus(conn) != 'T' {
		t.Fatal("Begin did not begin the outer transaction")
	}
	los := tx.LargeObjects()
	if _, err := los.Create(ctx, 0); err != nil {
		t.Fatalf("large object in the transaction: %v", err)
	}
	if err := tx.Begun().Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestUsersCannotEndIt(t *testing.T) {
	t.Parallel()
	ctx, conn := setup(t)
	tx := lazytx.New(ctx, conn, nil)
	if _, err := tx.Exec(ctx, `INSERT INTO lazy VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); !errors.Is(err, lazytx.ErrManaged) {
		t.Fatalf("Commit = %v, want ErrManaged", err)
	}
	if err := tx.Rollback(ctx); !errors.Is(err, lazytx.ErrManaged) {
		t.Fatalf("Rollback = %v, want ErrManaged", err)
	}
	if txStatus(conn) != 'T' {
		t.Fatal("the transaction ended")
	}
}

func TestBeginFailureReachesEveryUse(t *testing.T) {
	t.Parallel()
	ctx, conn := setup(t)
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	errBegin := errors.New("begin failed")
	wrapped := 0
	tx := lazytx.New(ctx, conn, func(err error) error { wrapped++; return errors.Join(errBegin, err) })
	if _, err := tx.Exec(ctx, `SELECT 1`); !errors.Is(err, errBegin) {
		t.Fatalf("Exec = %v", err)
	}
	rows, err := tx.Query(ctx, `SELECT 1`)
	if !errors.Is(err, errBegin) || rows.Next() || !errors.Is(rows.Err(), errBegin) {
		t.Fatalf("Query = %v, rows err %v", err, rows.Err())
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT 1`).Scan(&n); !errors.Is(err, errBegin) {
		t.Fatalf("QueryRow = %v", err)
	}
	br := tx.SendBatch(ctx, &pgx.Batch{})
	if _, err := br.Exec(); !errors.Is(err, errBegin) {
		t.Fatalf("SendBatch Exec = %v", err)
	}
	if err := br.Close(); !errors.Is(err, errBegin) {
		t.Fatalf("SendBatch Close = %v", err)
	}
	if _, err := tx.Prepare(ctx, "s", `SELECT 1`); !errors.Is(err, errBegin) {
		t.Fatalf("Prepare = %v", err)
	}
	if _, err := tx.Begin(ctx); !errors.Is(err, errBegin) {
		t.Fatalf("Begin = %v", err)
	}
	if tx.Begun() != nil || tx.Open() || wrapped != 1 {
		t.Fatalf("after a failed begin: begun %v, open %v, %d wraps (want nil, false, 1: Begin is tried once)", tx.Begun(), tx.Open(), wrapped)
	}
}
