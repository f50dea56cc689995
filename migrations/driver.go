package migrations

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/golang-migrate/migrate/v4/database"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// driver is golang-migrate's database driver over one *pgx.Conn. It does
// what golang-migrate's pgx/v5 driver does (same version table format,
// same advisory lock id, each migration file sent as one multi-statement
// query) but on a connection the caller may own, and with the version
// table always in the chronicle schema. It also records which migrations
// an operation applied or reverted.
type driver struct {
	ctx    context.Context
	conn   *pgx.Conn
	lockID string

	// Bookkeeping of the running operation, from golang-migrate's calls:
	// it sets the version dirty, runs one migration, sets it clean.
	clean   int    // the last clean version seen
	pending string // what the running migration does, for errors
	applied []Migration
	undone  []Migration
}

var _ database.Driver = (*driver)(nil)

func newDriver(ctx context.Context, conn *pgx.Conn, lockID string) *driver {
	return &driver{ctx: ctx, conn: conn, lockID: lockID, clean: database.NilVersion}
}

// Open is not used: migrators are built on a connection, never from a URL
// through golang-migrate's registry.
func (d *driver) Open(string) (database.Driver, error) {
	return nil, errors.New("migrations: driver cannot open urls")
}

// Close does nothing: the connection belongs to the [Migrator].
func (d *driver) Close() error { return nil }

func (d *driver) Lock() error {
	if _, err := d.conn.Exec(d.ctx, sqlLock, d.lockID); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	return nil
}

func (d *driver) Unlock() error {
	if _, err := d.conn.Exec(d.ctx, sqlUnlock, d.lockID); err != nil {
		return fmt.Errorf("release the migration lock: %w", err)
	}
	return nil
}

func (d *driver) Run(migration io.Reader) error {
	body, err := io.ReadAll(migration)
	if err != nil {
		return fmt.Errorf("%s: read: %w", d.pending, err)
	}
	// No arguments: pgx sends the file with the simple protocol, as one
	// multi-statement query that PostgreSQL runs as one implicit
	// transaction.
	if _, err := d.conn.Exec(d.ctx, string(body)); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Position > 0 {
			return fmt.Errorf("%s: line %d: %w", d.pending, lineOf(string(body), int(pe.Position)), err)
		}
		return fmt.Errorf("%s: %w", d.pending, err)
	}
	return nil
}

// lineOf returns the line of the 1-based character position pos in s.
func lineOf(s string, pos int) int {
	line, i := 1, 0
	for _, r := range s {
		i++
		if i >= pos {
			break
		}
		if r == '\n' {
			line++
		}
	}
	return line
}

func (d *driver) SetVersion(version int, dirty bool) error {
	if dirty {
		d.pending = d.describe(version)
	} else {
		d.record(version)
	}
	err := pgx.BeginFunc(d.ctx, d.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(d.ctx, sqlTruncate); err != nil {
			return err
		}
		// Like golang-migrate: a dirty "no version" is written too, so a
		// failed revert of the first migration stays visible.
		if version >= 0 || (version == database.NilVersion && dirty) {
			if _, err := tx.Exec(d.ctx, sqlSetVersion, version, dirty); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record version %d in %s.%s: %w", version, Schema, MigrationsTable, err)
	}
	return nil
}

// describe names the migration that runs after the version is set dirty
// at version: applying version, or reverting the clean one.
func (d *driver) describe(version int) string {
	if version > d.clean {
		return "apply migration " + migrationName(uint(version))
	}
	if d.clean >= 0 {
		return "revert migration " + migrationName(uint(d.clean))
	}
	return fmt.Sprintf("migration to version %d", version)
}

// record notes the migration that a clean version completes.
func (d *driver) record(version int) {
	switch {
	case version > d.clean:
		d.applied = append(d.applied, lookup(uint(version)))
	case version < d.clean:
		d.undone = append(d.undone, lookup(uint(d.clean)))
	}
	d.clean = version
}

func (d *driver) Version() (int, bool, error) {
	v, dirty, err := readVersion(d.ctx, d.conn)
	if err == nil && !dirty {
		d.clean = v
	}
	return v, dirty, err
}

// readVersion reads the version table; a database without one (and
// without the table of an older Chronicle) is at no version.
func readVersion(ctx context.Context, conn *pgx.Conn) (version int, dirty bool, err error) {
	for _, q := range []string{sqlVersion, sqlLegacyVersion} {
		var v int64
		err = conn.QueryRow(ctx, q).Scan(&v, &dirty)
		var pe *pgconn.PgError
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return database.NilVersion, false, nil
		case errors.As(err, &pe) && pe.Code == "42P01": // undefined_table
			continue
		case err != nil:
			return 0, false, fmt.Errorf("read version from %s.%s: %w", Schema, MigrationsTable, err)
		}
		return int(v), dirty, nil
	}
	return database.NilVersion, false, nil
}

// Drop is golang-migrate's "drop everything": not offered.
func (d *driver) Drop() error {
	return errors.New("migrations: drop is not supported; use Down")
}
