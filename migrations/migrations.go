package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the pgx/v5 database/sql driver
)

//go:embed *.sql
var files embed.FS

// MigrationsTable is the table in which golang-migrate records the applied
// version. It lives in the connection's default schema (usually public) so
// that it exists before the first migration creates the chronicle schema;
// its name keeps it apart from an application's own migrations table.
const MigrationsTable = "chronicle_schema_migrations"

// ErrDirty reports that a previous migration failed half-way. Inspect the
// database, then use [Force] to set the version that is really applied.
var ErrDirty = errors.New("schema is dirty")

// DirtyError is returned when the schema is dirty. It matches [ErrDirty].
type DirtyError struct {
	// Version is the version whose migration failed.
	Version uint
}

func (e *DirtyError) Error() string {
	return fmt.Sprintf("schema is dirty at version %d: a migration failed half-way; fix the database, then force the version that is really applied", e.Version)
}

// Is matches [ErrDirty].
func (e *DirtyError) Is(target error) bool { return target == ErrDirty }

// FS returns the embedded migration files, in golang-migrate's format
// (NNNNNN_name.up.sql / .down.sql). The same files are in this package's
// folder for the stock migrate CLI.
func FS() fs.FS { return files }

// Latest returns the highest migration version embedded in this build.
func Latest() uint {
	entries, _ := fs.ReadDir(files, ".")
	var latest uint
	for _, e := range entries {
		var v uint
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// Up applies every migration not yet applied. Applying when already up to
// date is a no-op. Concurrent callers are safe: golang-migrate serialises
// them with an advisory lock.
func Up(ctx context.Context, databaseURL string) error {
	return run(ctx, databaseURL, func(m *migrate.Migrate) error { return m.Up() })
}

// Down reverts every applied migration, dropping the chronicle schema and
// all events in it. Reverting an empty database is a no-op.
func Down(ctx context.Context, databaseURL string) error {
	return run(ctx, databaseURL, func(m *migrate.Migrate) error { return m.Down() })
}

// Steps applies n migrations up (n > 0) or reverts -n migrations (n < 0).
func Steps(ctx context.Context, databaseURL string, n int) error {
	return run(ctx, databaseURL, func(m *migrate.Migrate) error { return m.Steps(n) })
}

// Force records version as applied and clears the dirty flag without
// running any migration. Use it after repairing a failed migration by hand.
// A version of -1 means no migration is applied.
func Force(ctx context.Context, databaseURL string, version int) error {
	return run(ctx, databaseURL, func(m *migrate.Migrate) error { return m.Force(version) })
}

// Version returns the applied version (0 when none) and whether the schema
// is dirty.
func Version(ctx context.Context, databaseURL string) (version uint, dirty bool, err error) {
	err = run(ctx, databaseURL, func(m *migrate.Migrate) error {
		v, d, err := m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			return nil
		}
		version, dirty = v, d
		return err
	})
	return version, dirty, err
}

func run(ctx context.Context, databaseURL string, op func(*migrate.Migrate) error) error {
	dbURL, err := driverURL(databaseURL)
	if err != nil {
		return err
	}
	src, err := iofs.New(files, ".")
	if err != nil {
		return fmt.Errorf("open embedded migrations: %w", err)
	}
	type result struct {
		m   *migrate.Migrate
		err error
	}
	opened := make(chan result, 1)
	go func() {
		m, err := open(dbURL, src)
		opened <- result{m, err}
	}()
	var m *migrate.Migrate
	select {
	case r := <-opened:
		if r.err != nil {
			return fmt.Errorf("connect to database: %w", redactErr(r.err, databaseURL))
		}
		m = r.m
	case <-ctx.Done():
		go func() {
			if r := <-opened; r.m != nil {
				r.m.Close()
			}
		}()
		return ctx.Err()
	}
	defer m.Close()

	stop := context.AfterFunc(ctx, func() {
		select {
		case m.GracefulStop <- true:
		default:
		}
	})
	defer stop()

	// Up, Down and Steps refuse a dirty schema with migrate.ErrDirty;
	// Force is the way out.
	err = op(m)
	var de migrate.ErrDirty
	switch {
	case err == nil, errors.Is(err, migrate.ErrNoChange):
		return ctx.Err()
	case errors.As(err, &de):
		return &DirtyError{Version: uint(de.Version)}
	default:
		return fmt.Errorf("migrate: %w", err)
	}
}

// open connects golang-migrate's pgx/v5 driver through database/sql. Unlike
// migrate.NewWithSourceInstance with a URL, it closes the *sql.DB when the
// connection fails (the URL path leaks it: golang-migrate/migrate#1366).
func open(dbURL string, src source.Driver) (*migrate.Migrate, error) {
	db, err := sql.Open("pgx/v5", dbURL)
	if err != nil {
		return nil, err
	}
	driver, err := migratepgx.WithInstance(db, &migratepgx.Config{MigrationsTable: MigrationsTable})
	if err != nil {
		db.Close()
		return nil, err
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", driver)
	if err != nil {
		driver.Close()
		return nil, err
	}
	return m, nil
}

// driverURL checks a postgres:// URL and adds a connect timeout.
func driverURL(databaseURL string) (string, error) {
	if databaseURL == "" {
		return "", errors.New("no database url: pass --database-url or set DATABASE_URL")
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		// url.Error quotes the whole input, password included: keep only
		// the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("invalid database url: %w", err)
	}
	switch u.Scheme {
	case "postgres", "postgresql", "pgx5":
	default:
		return "", fmt.Errorf("invalid database url: scheme %q, want postgres://", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("invalid database url: no host")
	}
	u.Scheme = "postgres"
	q := u.Query()
	for k := range q {
		if strings.HasPrefix(k, "x-") { // golang-migrate's own parameters
			q.Del(k)
		}
	}
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "10")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// redactErr removes the password of databaseURL from err's message.
func redactErr(err error, databaseURL string) error {
	u, perr := url.Parse(databaseURL)
	if perr != nil || u.User == nil {
		return err
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
}
