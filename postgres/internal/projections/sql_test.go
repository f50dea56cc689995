package projections

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(postgrestest.ReportSkips(m)) }

// casAloneSQL moves the checkpoint like casSQL and switches
// synchronous_commit off for its own transaction only: inside a
// transaction block the setting shows until the block ends, and a session
// that ran it on its own keeps its setting.
func TestCASAloneCommitsWithoutFlush(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := postgrestest.Pool(t)
	if _, err := pool.Exec(ctx, `INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions) VALUES ('p', 0, 1)`); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// The test clusters run with synchronous_commit off: this session
	// takes PostgreSQL's default.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		t.Fatal(err)
	}
	args := func(from, to int64) []any { return []any{"p", 0, uint64(0), from, uint64(0), to, "", false} }

	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var setting string
	if _, err := tx.Exec(ctx, casSQL, args(0, 1)...); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "SHOW synchronous_commit").Scan(&setting); err != nil || setting != "on" {
		t.Fatalf("after casSQL in a transaction: synchronous_commit %q, %v; want on", setting, err)
	}
	if _, err := tx.Exec(ctx, casAloneSQL, args(1, 2)...); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "SHOW synchronous_commit").Scan(&setting); err != nil || setting != "off" {
		t.Fatalf("after casAloneSQL in a transaction: synchronous_commit %q, %v; want off", setting, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	cp, err := scanCheckpoint(conn.QueryRow(ctx, casAloneSQL, args(2, 3)...))
	if err != nil || cp.Position.Global != 3 {
		t.Fatalf("casAloneSQL alone: checkpoint %+v, %v; want moved to 3", cp, err)
	}
	if err := conn.QueryRow(ctx, "SHOW synchronous_commit").Scan(&setting); err != nil || setting != "on" {
		t.Fatalf("after casAloneSQL alone: the session's synchronous_commit is %q, %v; want on", setting, err)
	}
	if _, err := scanCheckpoint(conn.QueryRow(ctx, casAloneSQL, args(2, 4)...)); err != pgx.ErrNoRows {
		t.Fatalf("casAloneSQL from a stale position: %v, want no row (a conflict)", err)
	}
}
