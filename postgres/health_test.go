package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
)

// holdWritingTransaction opens a transaction on a connection of its own
// named app, gives it a transaction id (as a write does) and leaves it idle
// after running query. It returns the backend's pid; the transaction is
// rolled back when t ends.
func holdWritingTransaction(t *testing.T, s *Store, app, query string) int {
	t.Helper()
	ctx := t.Context()
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = app
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, query); err != nil {
		t.Fatal(err)
	}
	return int(conn.PgConn().PID())
}

func TestOpenTransactions(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	ctx := t.Context()

	long := "SELECT '" + strings.Repeat("x", 2*OpenTransactionQueryLen) + "'"
	pid := holdWritingTransaction(t, s, "health-test-holder", long)
	time.Sleep(20 * time.Millisecond) // a measurable age

	txs, err := s.OpenTransactions(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(txs, func(tx OpenTransaction) bool { return tx.PID == pid })
	if i < 0 {
		t.Fatalf("pid %d not among the open transactions %+v", pid, txs)
	}
	got := txs[i]
	if got.ApplicationName != "health-test-holder" || got.State != "idle in transaction" {
		t.Errorf("application %q, state %q; want health-test-holder, idle in transaction", got.ApplicationName, got.State)
	}
	if got.Age < 20*time.Millisecond || got.StateAge <= 0 || got.StateAge > got.Age {
		t.Errorf("age %s, state age %s: want age >= 20ms and 0 < state age <= age", got.Age, got.StateAge)
	}
	if len(got.Query) != OpenTransactionQueryLen || !strings.HasPrefix(long, got.Query) {
		t.Errorf("query %q: want the first %d characters of the statement", got.Query, OpenTransactionQueryLen)
	}
	if got.Database == "" || got.User == "" {
		t.Errorf("database %q, user %q: want both", got.Database, got.User)
	}
	for j := 1; j < len(txs); j++ {
		if txs[j].Age > txs[j-1].Age+time.Second {
			t.Errorf("transactions not oldest first: %s after %s", txs[j].Age, txs[j-1].Age)
		}
	}

	// A read-only transaction has no transaction id: it holds no horizon.
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	ro, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Rollback(ctx)
	if _, err := ro.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	txs, err = s.OpenTransactions(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(txs, func(tx OpenTransaction) bool { return tx.PID == int(conn.Conn().PgConn().PID()) }) {
		t.Error("a read-only transaction is listed as holding the horizon")
	}
	if one, err := s.OpenTransactions(ctx, 0); err != nil || len(one) != 1 {
		t.Errorf("limit 0: %d transactions, %v; want 1", len(one), err)
	}
}

func TestSchemaVersion(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()

	got, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (SchemaVersion{Version: migrations.Latest()}); got != want {
		t.Errorf("fresh database: %+v, want %+v", got, want)
	}

	if _, err := pool.Exec(ctx, `UPDATE chronicle.schema_migrations SET version = 1, dirty = true`); err != nil {
		t.Fatal(err)
	}
	if got, err = s.SchemaVersion(ctx); err != nil || got != (SchemaVersion{Version: 1, Dirty: true}) {
		t.Errorf("after setting version 1 dirty: %+v, %v", got, err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM chronicle.schema_migrations`); err != nil {
		t.Fatal(err)
	}
	if got, err = s.SchemaVersion(ctx); err != nil || got != (SchemaVersion{}) {
		t.Errorf("empty version table: %+v, %v; want version 0", got, err)
	}
	// Where an older Chronicle kept the version: in the search path.
	if _, err := pool.Exec(ctx, `DROP TABLE chronicle.schema_migrations;
		CREATE TABLE chronicle_schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
		INSERT INTO chronicle_schema_migrations VALUES (2, false)`); err != nil {
		t.Fatal(err)
	}
	if got, err = s.SchemaVersion(ctx); err != nil || got != (SchemaVersion{Version: 2}) {
		t.Errorf("legacy version table: %+v, %v; want version 2", got, err)
	}
	if _, err := pool.Exec(ctx, `DROP TABLE chronicle_schema_migrations`); err != nil {
		t.Fatal(err)
	}
	if _, err = s.SchemaVersion(ctx); !errors.Is(err, ErrSchemaMissing) {
		t.Errorf("no version table: %v, want ErrSchemaMissing", err)
	}
}

func TestTableSizes(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()
	events := make([]eventstore.Event, 200)
	for i := range events {
		events[i] = eventstore.Event{Type: "Filled", Data: []byte(`{"text":"` + strings.Repeat("y", 500) + `"}`)}
	}
	if _, err := s.Append(ctx, "sized-1", eventstore.NoStream, events...); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE chronicle.events`); err != nil {
		t.Fatal(err)
	}

	sizes, err := s.TableSizes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(sizes, func(ts TableSize) bool { return ts.Name == "events" })
	if i < 0 {
		t.Fatalf("no events table among %+v", sizes)
	}
	ev := sizes[i]
	if ev.Rows != 200 || ev.TableBytes < 200*500 || ev.IndexBytes <= 0 {
		t.Errorf("events: %d rows, %d table bytes, %d index bytes; want 200 rows, >= 100000 bytes, indexes > 0", ev.Rows, ev.TableBytes, ev.IndexBytes)
	}
	var sum int64
	for _, idx := range ev.Indexes {
		sum += idx.Bytes
	}
	if sum != ev.IndexBytes || !slices.ContainsFunc(ev.Indexes, func(x IndexSize) bool { return x.Name == eventsql.StreamVersionKey }) {
		t.Errorf("indexes %+v: want %s among them, sizes summing to %d", ev.Indexes, eventsql.StreamVersionKey, ev.IndexBytes)
	}
	for j := 1; j < len(sizes); j++ {
		if sizes[j].TotalBytes() > sizes[j-1].TotalBytes() {
			t.Errorf("tables not largest first: %s (%d) after %s (%d)", sizes[j].Name, sizes[j].TotalBytes(), sizes[j-1].Name, sizes[j-1].TotalBytes())
		}
	}
	if i := slices.IndexFunc(sizes, func(ts TableSize) bool { return ts.Name == "projection_checkpoints" }); i < 0 {
		t.Errorf("no projection_checkpoints among %+v", sizes)
	}

	if _, err := pool.Exec(ctx, `DROP SCHEMA chronicle CASCADE`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TableSizes(ctx); !errors.Is(err, ErrSchemaMissing) {
		t.Errorf("no schema: %v, want ErrSchemaMissing", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}
