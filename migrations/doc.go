// Package migrations holds Chronicle's PostgreSQL schema as SQL files in
// golang-migrate's format, embedded in the binary, and applies them.
//
// The files create the chronicle schema and its tables. They are applied
// with golang-migrate's iofs source and pgx/v5 driver, so the same folder
// also works with the stock migrate CLI:
//
//	migrate -path migrations -database 'pgx5://user:pass@host/db?x-migrations-table=chronicle_schema_migrations' up
//
// From Go, call [Up] at start-up (it is a no-op when the schema is current
// and safe to run from several processes at once); from a shell, run
// `chronicle migrate up`.
//
// # Versions
//
// golang-migrate records the applied version in [MigrationsTable]. When a
// migration fails half-way the schema is marked dirty and every other
// operation fails with an error matching [ErrDirty] until [Force] records
// the version that is really applied.
package migrations
