package migrations

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Where golang-migrate records the applied version: the table
// chronicle.schema_migrations, next to Chronicle's own tables, never in
// public (where PostgreSQL 15 and later let only the database owner create
// tables). The stock migrate CLI finds it with
// x-migrations-table="chronicle"."schema_migrations" and
// x-migrations-table-quoted=1; see the package documentation.
const (
	// Schema is the PostgreSQL schema of Chronicle's tables and of the
	// version table.
	Schema = "chronicle"
	// MigrationsTable is the version table's name, in [Schema].
	MigrationsTable = "schema_migrations"
)

// ErrDirty reports that a previous migration failed half-way. Inspect the
// database, then use [Force] to set the version that is really applied.
var ErrDirty = errors.New("schema is dirty")

// ErrNoSuchVersion reports a request beyond the embedded migrations: a
// [Force] to a version that does not exist, or [Steps] past the latest or
// the first migration. Nothing is changed.
var ErrNoSuchVersion = errors.New("no such migration")

// ErrLegacyTable reports a table named chronicle_schema_migrations (where
// older Chronicle versions kept the version) that is not golang-migrate's
// version table, so it is not moved into the chronicle schema.
var ErrLegacyTable = errors.New("unexpected chronicle_schema_migrations table")

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

// Migration is one embedded migration.
type Migration struct {
	// Version is its number, e.g. 2 for 000002_projections.up.sql.
	Version uint
	// Name is the part of the file name after the number, e.g.
	// "projections".
	Name string
}

// String returns the migration's file name stem, e.g. "000002_projections".
func (m Migration) String() string { return fmt.Sprintf("%06d_%s", m.Version, m.Name) }

// List returns the embedded migrations, oldest first.
func List() []Migration {
	entries, _ := fs.ReadDir(files, ".")
	var list []Migration
	for _, e := range entries {
		stem, ok := strings.CutSuffix(e.Name(), ".up.sql")
		if !ok {
			continue
		}
		num, name, _ := strings.Cut(stem, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			continue
		}
		list = append(list, Migration{Version: uint(v), Name: name})
	}
	slices.SortFunc(list, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	return list
}

// Latest returns the highest migration version embedded in this build.
func Latest() uint {
	list := List()
	if len(list) == 0 {
		return 0
	}
	return list[len(list)-1].Version
}

func find(version int) (Migration, bool) {
	for _, m := range List() {
		if int(m.Version) == version {
			return m, true
		}
	}
	return Migration{}, false
}

// lookup returns the embedded migration of version, or one without a name.
func lookup(version uint) Migration {
	m, ok := find(int(version))
	if !ok {
		return Migration{Version: version, Name: "unknown"}
	}
	return m
}

func migrationName(version uint) string { return lookup(version).String() }

func knownVersions() string {
	var vs []string
	for _, m := range List() {
		vs = append(vs, strconv.FormatUint(uint64(m.Version), 10))
	}
	return strings.Join(vs, ", ")
}

// Up applies every migration not yet applied. Applying when already up to
// date is a no-op. Concurrent callers are safe: they serialise on an
// advisory lock. The role needs CREATE on the database the first time
// (to create the chronicle schema), as the database owner has; see
// [Migrator] to apply through an existing pool or connection.
func Up(ctx context.Context, databaseURL string) error {
	return withURL(ctx, databaseURL, func(m *Migrator) error {
		_, err := m.Up(ctx)
		return err
	})
}

// Down reverts every applied migration, dropping Chronicle's tables and
// all events in them. Reverting an empty database is a no-op.
func Down(ctx context.Context, databaseURL string) error {
	return withURL(ctx, databaseURL, func(m *Migrator) error {
		_, err := m.Down(ctx)
		return err
	})
}

// Steps applies n migrations up (n > 0) or reverts -n migrations (n < 0).
// See [Migrator.Steps].
func Steps(ctx context.Context, databaseURL string, n int) error {
	return withURL(ctx, databaseURL, func(m *Migrator) error {
		_, err := m.Steps(ctx, n)
		return err
	})
}

// Force records version as applied and clears the dirty flag without
// running any migration. Use it after repairing a failed migration by hand.
// A version of -1 means no migration is applied. See [Migrator.Force].
func Force(ctx context.Context, databaseURL string, version int) error {
	return withURL(ctx, databaseURL, func(m *Migrator) error { return m.Force(ctx, version) })
}

// Version returns the applied version (0 when none) and whether the schema
// is dirty.
func Version(ctx context.Context, databaseURL string) (version uint, dirty bool, err error) {
	err = withURL(ctx, databaseURL, func(m *Migrator) error {
		version, dirty, err = m.Version(ctx)
		return err
	})
	return version, dirty, err
}

// withURL runs f on a Migrator connected to databaseURL.
func withURL(ctx context.Context, databaseURL string, f func(*Migrator) error) error {
	m, err := Open(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer m.Close(context.WithoutCancel(ctx))
	return f(m)
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
