package migrations

import (
	"context"
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migrator applies Chronicle's migrations through a connection: one it
// opened from a URL ([Open]), one it acquires from a pool for each
// operation ([NewFromPool]), or the caller's ([NewFromConn]). Its methods
// are safe to call from several processes at once: each operation holds
// a PostgreSQL advisory lock, the same one the stock migrate CLI takes.
// A Migrator is not safe for concurrent use by several goroutines when it
// wraps one connection (as a *pgx.Conn is not).
type Migrator struct {
	pool  *pgxpool.Pool
	conn  *pgx.Conn
	owned bool // conn was opened by Open: Close closes it
	// redact removes the URL's password from errors (Open only).
	redact func(error) error
}

// Open connects to databaseURL (a postgres:// URL; connecting gives up
// after 10 seconds unless it sets connect_timeout) and returns a Migrator
// on that connection. Close it when done. Errors never contain the URL's
// password.
func Open(ctx context.Context, databaseURL string) (*Migrator, error) {
	u, err := driverURL(databaseURL)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", redactErr(err, databaseURL))
	}
	return &Migrator{conn: conn, owned: true, redact: func(err error) error { return redactErr(err, databaseURL) }}, nil
}

// NewFromPool returns a Migrator that acquires one connection of pool for
// each operation and releases it afterwards. The pool stays the caller's.
func NewFromPool(pool *pgxpool.Pool) (*Migrator, error) {
	if pool == nil {
		return nil, errors.New("migrations: nil pool")
	}
	return &Migrator{pool: pool}, nil
}

// NewFromConn returns a Migrator working on conn, which stays the
// caller's: Close does not close it. conn must not be inside a
// transaction, and must not be used by anything else while an operation
// runs. As always with pgx, cancelling ctx during a query closes conn.
func NewFromConn(conn *pgx.Conn) (*Migrator, error) {
	if conn == nil {
		return nil, errors.New("migrations: nil connection")
	}
	return &Migrator{conn: conn}, nil
}

// Close closes the connection that [Open] made; it does nothing for
// Migrators on a pool or on the caller's connection.
func (m *Migrator) Close(ctx context.Context) error {
	if m.owned {
		return m.conn.Close(ctx)
	}
	return nil
}

// Up applies every migration not yet applied and returns those it
// applied, in order: none when the schema is already current.
func (m *Migrator) Up(ctx context.Context) ([]Migration, error) {
	d, err := m.run(ctx, func(g *migrate.Migrate) error { return g.Up() })
	return d.applied, err
}

// Down reverts every applied migration, dropping Chronicle's tables and
// every event in them, and returns the migrations it reverted, newest
// first. The chronicle schema itself stays, holding the version table.
func (m *Migrator) Down(ctx context.Context) ([]Migration, error) {
	d, err := m.run(ctx, func(g *migrate.Migrate) error { return g.Down() })
	return d.undone, err
}

// Steps applies n migrations (n > 0) or reverts -n migrations (n < 0) and
// returns those it applied or reverted. Asking for more than there is
// fails with an error matching [ErrNoSuchVersion], before any change.
func (m *Migrator) Steps(ctx context.Context, n int) ([]Migration, error) {
	if n == 0 {
		return nil, nil
	}
	d, err := m.run(ctx, func(g *migrate.Migrate) error {
		return checkSteps(g, n)
	})
	if n > 0 {
		return d.applied, err
	}
	return d.undone, err
}

// checkSteps refuses steps beyond the embedded migrations, then runs them.
// The version is read again under golang-migrate's lock; reading it here
// first only gives a clear error instead of "file does not exist".
func checkSteps(g *migrate.Migrate, n int) error {
	v, _, err := g.Version()
	cur := -1
	switch {
	case errors.Is(err, migrate.ErrNilVersion):
	case err != nil:
		return err
	default:
		cur = int(v)
	}
	above, below := 0, 0
	for _, mg := range List() {
		if int(mg.Version) > cur {
			above++
		} else {
			below++
		}
	}
	switch {
	case n > above && above == 0:
		return fmt.Errorf("%w: cannot apply %d more: version %d is the latest", ErrNoSuchVersion, n, Latest())
	case n > above:
		return fmt.Errorf("%w: cannot apply %d: only %d not applied (at version %d, latest %d)", ErrNoSuchVersion, n, above, max(cur, 0), Latest())
	case -n > below && below == 0:
		return fmt.Errorf("%w: cannot revert %d: no migration is applied", ErrNoSuchVersion, -n)
	case -n > below:
		return fmt.Errorf("%w: cannot revert %d: only %d applied (at version %d)", ErrNoSuchVersion, -n, below, cur)
	}
	return g.Steps(n)
}

// Force records version as applied and clears the dirty flag without
// running any migration. Use it after repairing a failed migration by
// hand. version must be -1 (no migration applied) or the version of an
// embedded migration; anything else fails with an error matching
// [ErrNoSuchVersion].
func (m *Migrator) Force(ctx context.Context, version int) error {
	if version != -1 {
		if _, ok := find(version); !ok {
			return fmt.Errorf("%w: cannot force version %d: known versions are -1 (none) and %s", ErrNoSuchVersion, version, knownVersions())
		}
	}
	_, err := m.run(ctx, func(g *migrate.Migrate) error { return g.Force(version) })
	return err
}

// Version returns the applied version (0 when none) and whether the schema
// is dirty. It only reads: a role without any write privilege can call it.
func (m *Migrator) Version(ctx context.Context) (version uint, dirty bool, err error) {
	err = m.with(ctx, func(conn *pgx.Conn) error {
		v, d, err := readVersion(ctx, conn)
		if err != nil {
			return err
		}
		version, dirty = uint(max(v, 0)), d
		return nil
	})
	return version, dirty, m.clean(err)
}

// with runs f on the Migrator's connection.
func (m *Migrator) with(ctx context.Context, f func(*pgx.Conn) error) error {
	if m.pool == nil {
		return f(m.conn)
	}
	c, err := m.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to database: %w", err)
	}
	defer c.Release()
	err = f(c.Conn())
	if err != nil && !c.Conn().IsClosed() {
		// An advisory lock may still be held after a failure: never hand
		// such a connection back to the pool.
		_ = c.Conn().Close(context.WithoutCancel(ctx))
	}
	return err
}

func (m *Migrator) clean(err error) error {
	if err != nil && m.redact != nil {
		return m.redact(err)
	}
	return err
}

// run prepares the version table, then runs op through golang-migrate on
// the connection, and translates its errors.
func (m *Migrator) run(ctx context.Context, op func(*migrate.Migrate) error) (*driver, error) {
	d := &driver{clean: database.NilVersion}
	err := m.with(ctx, func(conn *pgx.Conn) error {
		var dbName string
		if err := conn.QueryRow(ctx, sqlDatabaseName).Scan(&dbName); err != nil {
			return fmt.Errorf("read the database name: %w", err)
		}
		lockID, err := database.GenerateAdvisoryLockId(dbName, Schema, MigrationsTable)
		if err != nil {
			return err
		}
		*d = *newDriver(ctx, conn, lockID)
		if err := prepare(ctx, d); err != nil {
			return err
		}
		src, err := iofs.New(files, ".")
		if err != nil {
			return fmt.Errorf("open embedded migrations: %w", err)
		}
		g, err := migrate.NewWithInstance("iofs", src, "chronicle", d)
		if err != nil {
			return err
		}
		defer g.Close()
		stop := context.AfterFunc(ctx, func() {
			select {
			case g.GracefulStop <- true:
			default:
			}
		})
		defer stop()
		return translate(ctx, op(g))
	})
	return d, m.clean(err)
}

// translate maps golang-migrate's errors to this package's.
func translate(ctx context.Context, err error) error {
	var de migrate.ErrDirty
	switch {
	case err == nil, errors.Is(err, migrate.ErrNoChange):
		return ctx.Err()
	case errors.As(err, &de):
		return &DirtyError{Version: uint(de.Version)}
	case errors.Is(err, ErrNoSuchVersion):
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("migrate: %w (%w)", ctx.Err(), err)
	}
	return fmt.Errorf("migrate: %w", err)
}

// prepare makes sure chronicle.schema_migrations exists before
// golang-migrate reads it: it creates the chronicle schema when missing,
// moves the version table of an older Chronicle (chronicle_schema_migrations
// in the connection's default schema) into it when that table is
// golang-migrate's, or creates an empty one. It holds the migration lock,
// so concurrent migrators (and the stock CLI) wait for each other.
func prepare(ctx context.Context, d *driver) (err error) {
	if err := d.Lock(); err != nil {
		return err
	}
	defer func() {
		if uerr := d.Unlock(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	var (
		hasSchema, hasTable, legacyOurs bool
		legacySchema                    *string
	)
	if err := d.conn.QueryRow(ctx, sqlState).Scan(&hasSchema, &hasTable, &legacySchema, &legacyOurs); err != nil {
		return fmt.Errorf("inspect the database: %w", err)
	}
	if hasTable {
		return nil
	}
	const where = Schema + "." + MigrationsTable
	return pgx.BeginFunc(ctx, d.conn, func(tx pgx.Tx) error {
		// Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE
		// privilege on the database even when the schema exists.
		if !hasSchema {
			if _, err := tx.Exec(ctx, sqlCreateSchema); err != nil {
				return fmt.Errorf("create schema %s (the role needs CREATE on the database, e.g. as its owner): %w", Schema, err)
			}
		}
		if legacySchema == nil {
			if _, err := tx.Exec(ctx, sqlCreateVersionTable); err != nil {
				return fmt.Errorf("create version table %s: %w", where, err)
			}
			return nil
		}
		old := *legacySchema + ".chronicle_schema_migrations"
		var rows int64
		if legacyOurs {
			if err := tx.QueryRow(ctx, sqlLegacyRows).Scan(&rows); err != nil {
				return fmt.Errorf("read version table %s: %w", old, err)
			}
		}
		if !legacyOurs || rows > 1 {
			return fmt.Errorf("%w: table %s is not golang-migrate's version table (columns version bigint, dirty boolean, at most one row); move or rename it, or create %s by hand", ErrLegacyTable, old, where)
		}
		if *legacySchema != Schema {
			if _, err := tx.Exec(ctx, sqlMoveLegacy); err != nil {
				return fmt.Errorf("move version table %s to schema %s (the role must own it): %w", old, Schema, err)
			}
		}
		if _, err := tx.Exec(ctx, sqlRenameLegacy); err != nil {
			return fmt.Errorf("rename version table %s.chronicle_schema_migrations to %s: %w", Schema, where, err)
		}
		return nil
	})
}
