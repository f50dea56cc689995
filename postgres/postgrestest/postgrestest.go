package postgrestest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/migrations"
)

// IdleInTransactionTimeout is the idle_in_transaction_session_timeout of
// the databases that [DatabaseURL], [Pool] and [Template] hand out: the
// server ends a session whose transaction stays idle longer, so that a
// test that forgets a transaction (or hangs holding one) cannot hold back,
// for long, the transaction horizon that every tailing reader of the
// shared server waits for. See "Open transactions" in the package
// documentation.
const IdleInTransactionTimeout = 20 * time.Second

// DatabaseURL returns the URL of a fresh database, migrated to Chronicle's
// latest schema, private to t and dropped when t ends. It skips t (or
// fails it when CI=true) when no PostgreSQL is available.
//
// It is [Template.DatabaseURL] on the default template (nil [Config]).
func DatabaseURL(t testing.TB) string {
	t.Helper()
	return defaultTemplate.DatabaseURL(t)
}

// Pool returns a *pgxpool.Pool connected to a fresh database as
// [DatabaseURL] does, closed when t ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return defaultTemplate.Pool(t)
}

// AdminURL returns the URL of the server's maintenance database, as a
// superuser (or the role of [EnvDatabaseURL]), for tests that need
// pg_terminate_backend and the like. Do not drop or alter other tests'
// databases through it. It skips or fails like [DatabaseURL].
func AdminURL(t testing.TB) string {
	t.Helper()
	return theServer.get(t)
}

// Config configures a [Template]. The zero Config (or nil) gives
// Chronicle's own schema.
type Config struct {
	// Migrate brings the empty database at databaseURL to the schema the
	// tests need. It runs once per Key on a server, to build the template
	// database, not once per test; it must not leave connections open.
	// Defaults to [migrations.Up], Chronicle's schema.
	Migrate func(ctx context.Context, databaseURL string) error

	// Key identifies the schema Migrate produces. The template is built
	// once per Key and kept on the server, so a later test run with the
	// same Key reuses it: change Key whenever the schema changes (a hash of
	// the migration files, or the latest migration version, is a good
	// Key). It must be set when Migrate is set. Defaults to a hash of
	// Chronicle's embedded migration files.
	Key string
}

// Template hands out databases cloned from one migrated template database.
// Create it once (a package-level variable is fine: [New] does no I/O) and
// call its methods from any number of parallel tests and test processes.
type Template struct {
	name    string // template database name
	migrate func(ctx context.Context, databaseURL string) error

	once sync.Once
	err  error
}

var defaultTemplate = mustDefaultTemplate()

func mustDefaultTemplate() *Template {
	tpl, err := New(nil)
	if err != nil {
		panic(err) // cannot happen: the default config is valid
	}
	return tpl
}

// New returns a Template for the schema cfg describes. A nil cfg means
// Chronicle's schema, the one [DatabaseURL] uses. New does no I/O: the
// server is found and the template built on first use.
func New(cfg *Config) (*Template, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	migrate, key := cfg.Migrate, cfg.Key
	switch {
	case migrate == nil && key == "":
		migrate, key = migrations.Up, "chronicle:"+migrationsHash()
	case migrate == nil:
		migrate = migrations.Up
	case key == "":
		return nil, errors.New("postgrestest: Config.Key must be set when Config.Migrate is set")
	}
	return &Template{name: templateName(key), migrate: migrate}, nil
}

// DatabaseURL returns the URL of a fresh database cloned from the template,
// private to t and dropped (connections and all) when t ends. It skips t,
// or fails it when CI=true, when no PostgreSQL is available, and fails t
// when the template cannot be built.
func (tpl *Template) DatabaseURL(t testing.TB) string {
	t.Helper()
	admin := theServer.get(t)
	tpl.once.Do(func() { tpl.err = buildTemplate(admin, tpl.name, tpl.migrate) })
	if tpl.err != nil {
		t.Fatal(tpl.err)
	}
	name := "chronicle_test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := createDatabase(ctx, admin, name, tpl.name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dropDatabase(ctx, admin, name); err != nil {
			t.Errorf("postgrestest: %v", err)
		}
	})
	return withDatabase(admin, name)
}

// Pool returns a *pgxpool.Pool connected to a fresh database as
// [Template.DatabaseURL] does, closed when t ends.
func (tpl *Template) Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := tpl.DatabaseURL(t)
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatalf("postgrestest: open pool: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop registered by DatabaseURL
	return pool
}

// withDatabase returns admin with its database replaced by name.
func withDatabase(admin, name string) string {
	u, err := url.Parse(admin)
	if err != nil {
		panic(err) // checked when the server was found
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// connect opens one connection to the admin database. Connections are not
// pooled across tests on purpose: a pool kept for the whole process would
// leave goroutines behind that goleak reports.
func connect(ctx context.Context, admin string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, fmt.Errorf("postgrestest: connect to the admin database: %w", err)
	}
	return conn, nil
}

// createDatabase clones template into a new database name, retrying while
// something still holds a connection to the template.
func createDatabase(ctx context.Context, admin, name, template string) error {
	conn, err := connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		_, err = conn.Exec(ctx, sql)
		if !isObjectInUse(err) {
			break
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("postgrestest: create database from template %s: %w", template, err)
		}
	}
	if err != nil {
		return fmt.Errorf("postgrestest: create database from template %s: %w", template, err)
	}
	// Database settings are not copied from the template: set the
	// safety net on every clone.
	set := "ALTER DATABASE " + pgx.Identifier{name}.Sanitize() + " SET idle_in_transaction_session_timeout = " +
		strconv.FormatInt(IdleInTransactionTimeout.Milliseconds(), 10)
	if _, err := conn.Exec(ctx, set); err != nil {
		return fmt.Errorf("postgrestest: configure database %s: %w", name, err)
	}
	return nil
}

func dropDatabase(ctx context.Context, admin, name string) error {
	conn, err := connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// isObjectInUse reports SQLSTATE 55006: "source database is being accessed
// by other users".
func isObjectInUse(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006"
}
