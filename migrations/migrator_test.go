package migrations_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

// ordinaryRole creates a role without any special privilege (no
// superuser, no CREATEDB, no CREATEROLE) and a database it owns, where it
// may not create anything in public (as on PostgreSQL 15 for a role that
// does not own the database's public schema). It returns the admin URL
// of that database and the role's URL.
func ordinaryRole(t *testing.T, ctx context.Context) (adminDB, roleDB string) {
	t.Helper()
	admin := postgrestest.AdminURL(t)
	suffix := uniqueSuffix()
	role, dbName := "chronicle_app_"+suffix, "chronicle_roledb_"+suffix
	exec1(t, ctx, admin, "CREATE ROLE "+role+" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD 'app-password'")
	exec1(t, ctx, admin, "CREATE DATABASE "+dbName+" OWNER "+role)
	t.Cleanup(func() {
		ctx := context.Background()
		exec1(t, ctx, admin, "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
		exec1(t, ctx, admin, "DROP ROLE IF EXISTS "+role)
	})
	au, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	au.Path = "/" + dbName
	adminDB = au.String()
	exec1(t, ctx, adminDB, "ALTER SCHEMA public OWNER TO CURRENT_USER")
	exec1(t, ctx, adminDB, "REVOKE ALL ON SCHEMA public FROM PUBLIC")
	exec1(t, ctx, adminDB, "GRANT USAGE ON SCHEMA public TO PUBLIC")
	ru := *au
	ru.User = url.UserPassword(role, "app-password")
	return adminDB, ru.String()
}

func TestMigrateAsOrdinaryRole(t *testing.T) {
	t.Parallel()
	ctx, _ := setup(t)
	adminDB, roleDB := ordinaryRole(t, ctx)
	if err := migrations.Up(ctx, roleDB); err != nil {
		t.Fatalf("Up as the database owner without any other privilege: %v", err)
	}
	wantVersion(t, ctx, roleDB, migrations.Latest())
	exec1(t, ctx, roleDB, insertEvent)
	if n := queryInt(t, ctx, adminDB, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 0 {
		t.Errorf("migrating created %d tables in public", n)
	}
	if n := queryInt(t, ctx, adminDB, "SELECT count(*) FROM pg_tables WHERE schemaname = 'chronicle' AND tablename = 'schema_migrations'"); n != 1 {
		t.Error("no version table chronicle.schema_migrations")
	}
	if err := migrations.Down(ctx, roleDB); err != nil {
		t.Fatalf("Down as the role: %v", err)
	}
	if err := migrations.Up(ctx, roleDB); err != nil {
		t.Fatalf("Up again as the role: %v", err)
	}
	wantVersion(t, ctx, roleDB, migrations.Latest())
}

func TestErrorsSayWhatFailed(t *testing.T) {
	t.Parallel()
	ctx, _ := setup(t)
	adminDB, roleDB := ordinaryRole(t, ctx)
	// The role connects but may not create the chronicle schema.
	u, _ := url.Parse(adminDB)
	dbName := strings.TrimPrefix(u.Path, "/")
	ru, _ := url.Parse(roleDB)
	exec1(t, ctx, adminDB, "ALTER DATABASE "+dbName+" OWNER TO CURRENT_USER")
	exec1(t, ctx, adminDB, "REVOKE CREATE ON DATABASE "+dbName+" FROM PUBLIC")
	exec1(t, ctx, adminDB, "GRANT CONNECT ON DATABASE "+dbName+" TO "+ru.User.Username())
	err := migrations.Up(ctx, roleDB)
	if err == nil {
		t.Fatal("Up without the right to create a schema succeeded")
	}
	if strings.Contains(err.Error(), "connect to database") {
		t.Errorf("error %q speaks of connecting, although the connection worked", err)
	}
	for _, want := range []string{"create schema chronicle", "permission denied"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	// Reading the version needs no privilege beyond connecting.
	if v, _, err := migrations.Version(ctx, roleDB); err != nil || v != 0 {
		t.Errorf("Version = %d, %v; want 0, nil", v, err)
	}
}

// legacyInstall makes db look like a database migrated by an older
// Chronicle: the version table public.chronicle_schema_migrations.
func legacyInstall(t *testing.T, ctx context.Context, db string) {
	t.Helper()
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up: %v", err)
	}
	exec1(t, ctx, db, "ALTER TABLE chronicle.schema_migrations SET SCHEMA public")
	exec1(t, ctx, db, "ALTER TABLE public.schema_migrations RENAME TO chronicle_schema_migrations")
}

func TestLegacyVersionTableIsMoved(t *testing.T) {
	t.Parallel()
	ctx, db := setup(t)
	legacyInstall(t, ctx, db)
	exec1(t, ctx, db, insertEvent)
	// Reading does not move anything.
	wantVersion(t, ctx, db, migrations.Latest())
	if n := queryInt(t, ctx, db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'chronicle_schema_migrations'"); n != 1 {
		t.Fatal("Version moved the old version table")
	}
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up on an older install: %v", err)
	}
	if n := queryInt(t, ctx, db, "SELECT count(*) FROM pg_tables WHERE tablename = 'chronicle_schema_migrations'"); n != 0 {
		t.Error("the old version table is still there")
	}
	wantVersion(t, ctx, db, migrations.Latest())
	if n := queryInt(t, ctx, db, "SELECT count(*) FROM chronicle.schema_migrations"); n != 1 {
		t.Errorf("chronicle.schema_migrations holds %d rows, want 1", n)
	}
	// Up re-ran nothing: the event written before is still there.
	if n := queryInt(t, ctx, db, "SELECT count(*) FROM chronicle.events"); n != 1 {
		t.Errorf("events table holds %d rows, want 1", n)
	}
}

func TestForeignLegacyTableIsLeftAlone(t *testing.T) {
	t.Parallel()
	ctx, db := setup(t)
	exec1(t, ctx, db, "CREATE TABLE public.chronicle_schema_migrations (id serial PRIMARY KEY, name text)")
	err := migrations.Up(ctx, db)
	if !errors.Is(err, migrations.ErrLegacyTable) {
		t.Fatalf("Up next to a foreign chronicle_schema_migrations: error = %v, want ErrLegacyTable", err)
	}
	if n := queryInt(t, ctx, db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'chronicle_schema_migrations'"); n != 1 {
		t.Error("the foreign table was moved")
	}
	if hasEventsTable(t, ctx, db) {
		t.Error("Up created chronicle.events although it refused")
	}
}

func TestMigratorFromPoolAndConn(t *testing.T) {
	t.Parallel()
	ctx, db := setup(t)
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	m, err := migrations.NewFromPool(pool)
	if err != nil {
		t.Fatal(err)
	}
	applied, err := m.Up(ctx)
	if err != nil {
		t.Fatalf("Up from a pool: %v", err)
	}
	if !slices.Equal(applied, migrations.List()) {
		t.Errorf("Up applied %v, want %v", applied, migrations.List())
	}
	if again, err := m.Up(ctx); err != nil || len(again) != 0 {
		t.Errorf("second Up = %v, %v; want nothing applied", again, err)
	}
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("pool unusable after the migrations: %v", err)
	}

	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	c, err := migrations.NewFromConn(conn)
	if err != nil {
		t.Fatal(err)
	}
	if v, dirty, err := c.Version(ctx); err != nil || dirty || v != migrations.Latest() {
		t.Fatalf("Version from a conn = %d, %v, %v", v, dirty, err)
	}
	if _, err := c.Steps(ctx, 1); !errors.Is(err, migrations.ErrNoSuchVersion) {
		t.Errorf("Steps(1) at the latest version: error = %v, want ErrNoSuchVersion", err)
	}
	for _, v := range []int{-2, 0, int(migrations.Latest()) + 1, 99} {
		if err := c.Force(ctx, v); !errors.Is(err, migrations.ErrNoSuchVersion) {
			t.Errorf("Force(%d): error = %v, want ErrNoSuchVersion", v, err)
		}
	}
	undone, err := c.Down(ctx)
	if err != nil {
		t.Fatalf("Down from a conn: %v", err)
	}
	want := slices.Clone(migrations.List())
	slices.Reverse(want)
	if !slices.Equal(undone, want) {
		t.Errorf("Down reverted %v, want %v", undone, want)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Errorf("the caller's connection is unusable after Close: %v", err)
	}
	if _, err := migrations.NewFromConn(nil); err == nil {
		t.Error("NewFromConn(nil) succeeded")
	}
	if _, err := migrations.NewFromPool(nil); err == nil {
		t.Error("NewFromPool(nil) succeeded")
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	list := migrations.List()
	if len(list) == 0 || list[len(list)-1].Version != migrations.Latest() {
		t.Fatalf("List() = %v, Latest() = %d", list, migrations.Latest())
	}
	if got := list[0].String(); got != "000001_events" {
		t.Errorf("first migration = %q, want 000001_events", got)
	}
}

func TestUpAsApplicationRoleWhenCurrent(t *testing.T) {
	t.Parallel()
	ctx, _ := setup(t)
	adminDB, ownerDB := ordinaryRole(t, ctx)
	if err := migrations.Up(ctx, ownerDB); err != nil {
		t.Fatalf("Up as the owner: %v", err)
	}
	admin := postgrestest.AdminURL(t)
	app := "chronicle_app_ro_" + uniqueSuffix()
	exec1(t, ctx, admin, "CREATE ROLE "+app+" LOGIN PASSWORD 'app-password'")
	t.Cleanup(func() {
		exec1(t, context.Background(), adminDB, "DROP OWNED BY "+app)
		exec1(t, context.Background(), admin, "DROP ROLE IF EXISTS "+app)
	})
	exec1(t, ctx, adminDB, "GRANT USAGE ON SCHEMA chronicle TO "+app)
	exec1(t, ctx, adminDB, "GRANT SELECT ON chronicle.schema_migrations TO "+app)
	u, _ := url.Parse(adminDB)
	u.User = url.UserPassword(app, "app-password")
	appDB := u.String()

	if err := migrations.Up(ctx, appDB); err != nil {
		t.Fatalf("Up as an application role on a current schema: %v", err)
	}
	wantVersion(t, ctx, appDB, migrations.Latest())
	err := migrations.Down(ctx, appDB)
	if err == nil {
		t.Fatal("Down as the application role succeeded")
	}
	if strings.Contains(err.Error(), "connect to database") || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Down as the application role: error %q, want a permission error that does not speak of connecting", err)
	}
	wantVersion(t, ctx, ownerDB, migrations.Latest())
}

// uniqueSuffix is a random lower-case suffix for role and database names,
// which are cluster-wide.
func uniqueSuffix() string { return strings.ToLower(rand.Text()[:12]) }
