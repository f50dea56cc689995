package migrations

// The statements this package runs itself; golang-migrate runs the
// migration files. The version table's name is fixed ([Schema].
// [MigrationsTable]), so every statement is a constant.
const (
	// sqlDatabaseName feeds the advisory lock id, as golang-migrate's
	// pgx/v5 driver computes it, so that this package and the stock migrate
	// CLI exclude each other.
	sqlDatabaseName = `SELECT current_database()`

	sqlLock   = `SELECT pg_advisory_lock($1::bigint)`
	sqlUnlock = `SELECT pg_advisory_unlock($1::bigint)`

	// sqlState says what exists: the chronicle schema, the version table
	// in it, and a version table of an older Chronicle
	// (chronicle_schema_migrations, found through the search path as the
	// old code created it in the connection's default schema) with the
	// schema it is in and whether its columns are exactly golang-migrate's.
	sqlState = `
SELECT to_regnamespace('chronicle') IS NOT NULL,
       to_regclass('chronicle.schema_migrations') IS NOT NULL,
       legacy.nspname,
       coalesce(legacy.shape, '') = 'version bigint not null, dirty boolean not null'
  FROM (SELECT 1) AS one
  LEFT JOIN (
       SELECT n.nspname,
              (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
                                 CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY a.attnum)
                 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS shape
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = to_regclass('chronicle_schema_migrations') AND c.relkind = 'r'
  ) AS legacy ON true`

	sqlCreateSchema = `CREATE SCHEMA chronicle`

	// sqlCreateVersionTable is golang-migrate's own definition of the
	// table, so that the stock CLI finds what it would have created.
	sqlCreateVersionTable = `CREATE TABLE chronicle.schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)`

	// sqlLegacyRows counts the rows of the old version table: golang-migrate
	// keeps exactly one (or none).
	sqlLegacyRows = `SELECT count(*) FROM chronicle_schema_migrations`

	// Moving the old table keeps its row (and its privileges): the move is
	// two catalog updates in one transaction.
	sqlMoveLegacy   = `ALTER TABLE chronicle_schema_migrations SET SCHEMA chronicle`
	sqlRenameLegacy = `ALTER TABLE chronicle.chronicle_schema_migrations RENAME TO schema_migrations`

	sqlVersion       = `SELECT version, dirty FROM chronicle.schema_migrations LIMIT 1`
	sqlLegacyVersion = `SELECT version, dirty FROM chronicle_schema_migrations LIMIT 1`
	sqlTruncate      = `TRUNCATE chronicle.schema_migrations`
	sqlSetVersion    = `INSERT INTO chronicle.schema_migrations (version, dirty) VALUES ($1, $2)`
)
