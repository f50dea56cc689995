package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// This file holds the store's diagnostics: what package health and
// `chronicle doctor` report about the database, beside [Store.TailLag].

// OpenTransaction is a transaction that holds a transaction id and is
// still running (or is prepared): it holds back the read horizon of
// [Store.ReadAll] in every database of the cluster until it ends.
type OpenTransaction struct {
	// PID is the backend's process id (pg_terminate_backend takes it), or
	// 0 for a prepared transaction.
	PID int
	// Database is the database the transaction runs in.
	Database string
	// User is the role running it.
	User string
	// ApplicationName is the session's application_name.
	ApplicationName string
	// ClientAddr is the client's address, or "" for a local socket.
	ClientAddr string
	// State is the backend's state: "active", "idle in transaction", …, or
	// "prepared" for a prepared transaction.
	State string
	// Age is how long the transaction has been open.
	Age time.Duration
	// StateAge is how long the backend has been in State.
	StateAge time.Duration
	// Query is the start of the backend's current (or, when idle, last)
	// statement, at most [OpenTransactionQueryLen] bytes; for a prepared
	// transaction, its global identifier.
	Query string
}

// OpenTransactionQueryLen bounds [OpenTransaction.Query], in characters.
const OpenTransactionQueryLen = 200

// healthOpenTransactionsSQL lists the transactions holding a transaction
// id, in every database of the cluster, oldest id first: the first one is
// what [Store.TailLag] measures.
const healthOpenTransactionsSQL = `
SELECT pid, datname, usename, application_name, client_addr, state, age_s, state_age_s, query
FROM (
    SELECT pid,
           coalesce(datname, '') AS datname,
           coalesce(usename, '') AS usename,
           coalesce(application_name, '') AS application_name,
           coalesce(host(client_addr), '') AS client_addr,
           coalesce(state, '') AS state,
           coalesce(extract(epoch FROM clock_timestamp() - xact_start), 0)::float8 AS age_s,
           coalesce(extract(epoch FROM clock_timestamp() - state_change), 0)::float8 AS state_age_s,
           left(coalesce(query, ''), $2) AS query,
           age(backend_xid) AS xid_age
    FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
    UNION ALL
    SELECT 0, database, owner::text, '', '', 'prepared',
           extract(epoch FROM clock_timestamp() - prepared)::float8,
           extract(epoch FROM clock_timestamp() - prepared)::float8,
           left(gid, $2),
           age(transaction)
    FROM pg_prepared_xacts
) t
ORDER BY xid_age DESC, age_s DESC
LIMIT $1`

// OpenTransactions returns up to limit of the transactions that hold the
// read horizon back (see [Store.TailLag]), oldest transaction id first,
// in every database of the cluster. The first is the one to end (or
// terminate, with pg_terminate_backend(PID)) for tailing readers to see
// newer events. A limit below 1 means 1.
//
// As for TailLag, the role needs pg_read_all_stats (or pg_monitor) to see
// the transactions of other roles.
func (s *Store) OpenTransactions(ctx context.Context, limit int) ([]OpenTransaction, error) {
	limit = max(limit, 1)
	rows, err := s.pool.Query(ctx, healthOpenTransactionsSQL, limit, OpenTransactionQueryLen)
	if err != nil {
		return nil, wrapError("read open transactions", err)
	}
	txs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OpenTransaction, error) {
		var (
			tx          OpenTransaction
			pid         int32
			age, stAge  float64
			application string
		)
		err := row.Scan(&pid, &tx.Database, &tx.User, &application, &tx.ClientAddr, &tx.State, &age, &stAge, &tx.Query)
		tx.PID, tx.ApplicationName = int(pid), application
		tx.Age = time.Duration(age * float64(time.Second))
		tx.StateAge = time.Duration(stAge * float64(time.Second))
		return tx, err
	})
	if err != nil {
		return nil, wrapError("read open transactions", err)
	}
	return txs, nil
}

// SchemaVersion is the schema version recorded by the migrations (package
// migrations, golang-migrate's table chronicle.schema_migrations).
type SchemaVersion struct {
	// Version is the applied version, 0 when none is.
	Version uint
	// Dirty reports a migration that failed half-way.
	Dirty bool
}

// The version table, and where Chronicle kept it before it moved into the
// chronicle schema (found through the search path, as the migrations
// do); the next `chronicle migrate up` moves it.
const (
	healthSchemaVersionSQL       = `SELECT version, dirty FROM chronicle.schema_migrations LIMIT 1`
	healthLegacySchemaVersionSQL = `SELECT version, dirty FROM chronicle_schema_migrations LIMIT 1`
)

// SchemaVersion returns the schema version recorded by the migrations,
// from chronicle.schema_migrations (or from the table of an older
// Chronicle, chronicle_schema_migrations). Compare it with
// migrations.Latest. It fails with an error matching [ErrSchemaMissing]
// when neither table exists: no migration was ever applied.
func (s *Store) SchemaVersion(ctx context.Context) (SchemaVersion, error) {
	var err error
	for _, q := range []string{healthSchemaVersionSQL, healthLegacySchemaVersionSQL} {
		var (
			v     int64
			dirty bool
		)
		err = s.pool.QueryRow(ctx, q).Scan(&v, &dirty)
		switch pe := pgError(err); {
		case errors.Is(err, pgx.ErrNoRows):
			return SchemaVersion{}, nil
		case pe != nil && (pe.Code == codeUndefinedTable || pe.Code == codeInvalidSchemaName):
			continue
		case err != nil:
			return SchemaVersion{}, wrapError("read schema version", err)
		case v < 0: // golang-migrate's "nil version"
			return SchemaVersion{Dirty: dirty}, nil
		}
		return SchemaVersion{Version: uint(v), Dirty: dirty}, nil
	}
	return SchemaVersion{}, wrapError("read schema version", err)
}

// TableSize is the disk usage of one table of the chronicle schema.
type TableSize struct {
	// Name is the table's name, without the schema.
	Name string
	// Rows is the planner's estimate of the number of rows (from the last
	// VACUUM or ANALYZE), or -1 when the table was never analysed.
	Rows int64
	// TableBytes is the size of the table's data, TOAST included.
	TableBytes int64
	// IndexBytes is the size of all its indexes.
	IndexBytes int64
	// Indexes are the table's indexes, largest first.
	Indexes []IndexSize
}

// TotalBytes is TableBytes plus IndexBytes.
func (t TableSize) TotalBytes() int64 { return t.TableBytes + t.IndexBytes }

// IndexSize is the disk usage of one index.
type IndexSize struct {
	// Name is the index's name, without the schema.
	Name string
	// Bytes is its size.
	Bytes int64
}

// healthTableSizesSQL lists the chronicle schema's tables with their
// sizes, and their indexes as parallel arrays, largest first.
const healthTableSizesSQL = `
SELECT c.relname,
       c.reltuples::bigint,
       pg_table_size(c.oid),
       pg_indexes_size(c.oid),
       coalesce(array_agg(ic.relname ORDER BY pg_relation_size(ic.oid) DESC, ic.relname)
                FILTER (WHERE ic.oid IS NOT NULL), '{}'),
       coalesce(array_agg(pg_relation_size(ic.oid) ORDER BY pg_relation_size(ic.oid) DESC, ic.relname)
                FILTER (WHERE ic.oid IS NOT NULL), '{}')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indrelid = c.oid
LEFT JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE n.nspname = 'chronicle' AND c.relkind IN ('r', 'p')
GROUP BY c.oid, c.relname, c.reltuples
ORDER BY pg_total_relation_size(c.oid) DESC, c.relname`

// TableSizes returns the size of every table of the chronicle schema and
// of its indexes, largest table first.
func (s *Store) TableSizes(ctx context.Context) ([]TableSize, error) {
	rows, err := s.pool.Query(ctx, healthTableSizesSQL)
	if err != nil {
		return nil, wrapError("read table sizes", err)
	}
	sizes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TableSize, error) {
		var (
			ts      TableSize
			names   []string
			idxSize []int64
		)
		if err := row.Scan(&ts.Name, &ts.Rows, &ts.TableBytes, &ts.IndexBytes, &names, &idxSize); err != nil {
			return ts, err
		}
		if len(names) != len(idxSize) {
			return ts, fmt.Errorf("table %s: %d index names for %d sizes", ts.Name, len(names), len(idxSize))
		}
		for i := range names {
			ts.Indexes = append(ts.Indexes, IndexSize{Name: names[i], Bytes: idxSize[i]})
		}
		return ts, nil
	})
	if err != nil {
		return nil, wrapError("read table sizes", err)
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("read table sizes: %w", ErrSchemaMissing)
	}
	return sizes, nil
}

// Ping checks that the database answers, through the store's pool.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return wrapError("ping database", err)
	}
	return nil
}
