// Package migrations holds Chronicle's PostgreSQL schema as SQL files in
// golang-migrate's format, embedded in the binary, and applies them.
//
// The files create the chronicle schema and its tables. They are applied
// with golang-migrate, through a driver of this package that works on a
// pgx connection (opened from a URL, acquired from a *pgxpool.Pool, or the
// caller's *pgx.Conn), so the same folder also works with the stock
// migrate CLI, once the schema exists:
//
//	psql "$URL" -c 'CREATE SCHEMA IF NOT EXISTS chronicle'
//	migrate -path migrations -database 'pgx5://user:pass@host/db?x-migrations-table=%22chronicle%22.%22schema_migrations%22&x-migrations-table-quoted=1' up
//
// From Go, call [Up] at start-up (it is a no-op when the schema is current
// and safe to run from several processes at once), or [Migrator.Up] on a
// [NewFromPool] or [NewFromConn] migrator; from a shell, run
// `chronicle migrate up`. No superuser is needed: the role that owns the
// database can apply them.
//
// # Versions
//
// golang-migrate records the applied version in [Schema].[MigrationsTable]
// (chronicle.schema_migrations), never in public. A version table of an
// older Chronicle (chronicle_schema_migrations in the default schema) is
// moved there by the first operation that writes, when it is
// golang-migrate's table; see docs/operations.md. When a
// migration fails half-way the schema is marked dirty and every other
// operation fails with an error matching [ErrDirty] until [Force] records
// the version that is really applied.
package migrations
