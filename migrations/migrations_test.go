package migrations_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

func TestMain(m *testing.M) {
	// When a migration operation fails half-way (here: a role without the
	// privilege to revert), golang-migrate leaves the goroutines that
	// prefetch the migrations it will not run blocked on a pipe nobody
	// reads (migrate.go readUp/readDown and Migration.Buffer); nothing in
	// its API releases them. They are upstream's, and only after a failure.
	goleak.VerifyTestMain(postgrestest.ReportSkips(m),
		goleak.IgnoreAnyFunction("github.com/golang-migrate/migrate/v4.(*Migration).Buffer"),
		goleak.IgnoreAnyFunction("github.com/golang-migrate/migrate/v4.(*Migrate).readUp"),
		goleak.IgnoreAnyFunction("github.com/golang-migrate/migrate/v4.(*Migrate).readDown"),
	)
}

// emptyDatabases hands out empty databases: these tests apply the
// migrations themselves.
var emptyDatabases = mustEmptyTemplate()

func mustEmptyTemplate() *postgrestest.Template {
	tpl, err := postgrestest.New(&postgrestest.Config{
		Key:     "empty",
		Migrate: func(context.Context, string) error { return nil },
	})
	if err != nil {
		panic(err)
	}
	return tpl
}

// setup returns an empty database's URL and a context bounded by the test.
func setup(t *testing.T) (context.Context, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, emptyDatabases.DatabaseURL(t)
}

func exec1(t *testing.T, ctx context.Context, databaseURL, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryInt(t *testing.T, ctx context.Context, databaseURL, sql string) int64 {
	t.Helper()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func hasEventsTable(t *testing.T, ctx context.Context, databaseURL string) bool {
	t.Helper()
	return queryInt(t, ctx, databaseURL, "SELECT count(*) FROM pg_tables WHERE schemaname = 'chronicle' AND tablename = 'events'") == 1
}

func wantVersion(t *testing.T, ctx context.Context, databaseURL string, want uint) {
	t.Helper()
	v, dirty, err := migrations.Version(ctx, databaseURL)
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v != want || dirty {
		t.Fatalf("Version = %d dirty = %v, want %d clean", v, dirty, want)
	}
}

const insertEvent = `INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, data)
VALUES (gen_random_uuid(), 'account-1', 1, 'Deposited', '{"amount": 1}')`

func TestUpCreatesEventsTable(t *testing.T) {
	t.Parallel()
	ctx, db := setup(t)
	if hasEventsTable(t, ctx, db) {
		t.Fatal("empty database already has chronicle.events")
	}
	wantVersion(t, ctx, db, 0)
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if !hasEventsTable(t, ctx, db) {
		t.Fatal("Up did not create chronicle.events")
	}
	wantVersion(t, ctx, db, migrations.Latest())
	exec1(t, ctx, db, insertEvent)
}

func TestUpTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	ctx, db := setup(t)
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("first Up: %v", err)
	}
	exec1(t, ctx, db, insertEvent)
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	wantVersion(t, ctx, db, migrations.Latest())
	if n := queryInt(t, ctx, db, "SELECT count(*) FROM chronicle.events"); n != 1 {
		t.Errorf("after a second Up the events table holds %d rows, want the 1 written before", n)
	}
}

func TestDownThenUp(t *testing.T) {
	t.Parallel()
	ctx, db := setup(t)
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up: %v", err)
	}
	exec1(t, ctx, db, insertEvent)
	if err := migrations.Down(ctx, db); err != nil {
		t.Fatalf("Down: %v", err)
	}
	wantVersion(t, ctx, db, 0)
	// The schema stays, holding only the version table.
	if n := queryInt(t, ctx, db, "SELECT count(*) FROM pg_class WHERE relnamespace = 'chronicle'::regnamespace AND relkind IN ('r', 'p') AND relname <> 'schema_migrations'"); n != 0 {
		t.Errorf("Down left %d tables in the chronicle schema besides the version table", n)
	}
	if err := migrations.Down(ctx, db); err != nil {
		t.Fatalf("Down on an empty database: %v", err)
	}
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	wantVersion(t, ctx, db, migrations.Latest())
	if n := queryInt(t, ctx, db, "SELECT count(*) FROM chronicle.events"); n != 0 {
		t.Errorf("events table holds %d rows after Down and Up, want 0", n)
	}
}

func TestSteps(t *testing.T) {
	t.Parallel()
	ctx, db := setup(t)
	latest := migrations.Latest()
	n := len(upVersions(t))
	if err := migrations.Steps(ctx, db, n); err != nil {
		t.Fatalf("Steps(%d): %v", n, err)
	}
	wantVersion(t, ctx, db, latest)
	if err := migrations.Steps(ctx, db, -1); err != nil {
		t.Fatalf("Steps(-1): %v", err)
	}
	wantVersion(t, ctx, db, previousVersion(t, latest))
	if err := migrations.Steps(ctx, db, 1); err != nil {
		t.Fatalf("Steps(1): %v", err)
	}
	wantVersion(t, ctx, db, latest)
	err := migrations.Steps(ctx, db, 1)
	if !errors.Is(err, migrations.ErrNoSuchVersion) || strings.Contains(err.Error(), "file does not exist") || !strings.Contains(err.Error(), "latest") {
		t.Errorf("Steps(1) beyond the latest version: error = %v, want ErrNoSuchVersion saying the version is the latest", err)
	}
	wantVersion(t, ctx, db, latest)
	if err := migrations.Steps(ctx, db, -n-1); !errors.Is(err, migrations.ErrNoSuchVersion) {
		t.Errorf("Steps(%d) below the first migration: error = %v, want ErrNoSuchVersion", -n-1, err)
	}
	wantVersion(t, ctx, db, latest)
}

// upVersions lists the versions of the migration files in this folder.
func upVersions(t *testing.T) []uint {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var vs []uint
	for _, e := range entries {
		n, _, ok := strings.Cut(e.Name(), "_")
		if !ok || !strings.HasSuffix(e.Name(), ".up.sql") {
			continue
		}
		if x, err := strconv.ParseUint(n, 10, 64); err == nil {
			vs = append(vs, uint(x))
		}
	}
	return vs
}

// previousVersion returns the migration version just below v, or 0.
func previousVersion(t *testing.T, v uint) uint {
	t.Helper()
	var prev uint
	for _, x := range upVersions(t) {
		if x < v && x > prev {
			prev = x
		}
	}
	return prev
}

func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	ctx, db := setup(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = migrations.Up(ctx, db) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Up #%d: %v", i, err)
		}
	}
	wantVersion(t, ctx, db, migrations.Latest())
	exec1(t, ctx, db, insertEvent)
}

func TestDirtyThenForce(t *testing.T) {
	t.Parallel()
	ctx, db := setup(t)
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up: %v", err)
	}
	latest := migrations.Latest()
	// What a migration failing half-way leaves behind.
	exec1(t, ctx, db, "UPDATE chronicle.schema_migrations SET dirty = true")

	v, dirty, err := migrations.Version(ctx, db)
	if err != nil || v != latest || !dirty {
		t.Fatalf("Version = %d, %v, %v; want %d, dirty, no error", v, dirty, err, latest)
	}
	for name, op := range map[string]func() error{
		"Up":    func() error { return migrations.Up(ctx, db) },
		"Down":  func() error { return migrations.Down(ctx, db) },
		"Steps": func() error { return migrations.Steps(ctx, db, -1) },
	} {
		err := op()
		if !errors.Is(err, migrations.ErrDirty) {
			t.Fatalf("%s on a dirty schema: error = %v, want ErrDirty", name, err)
		}
		var de *migrations.DirtyError
		if !errors.As(err, &de) || de.Version != latest {
			t.Errorf("%s: error %v is not a *DirtyError at version %d", name, err, latest)
		}
		if !strings.Contains(err.Error(), "force") {
			t.Errorf("%s: error %q does not say how to get out (force)", name, err)
		}
	}
	if err := migrations.Force(ctx, db, int(latest)); err != nil {
		t.Fatalf("Force: %v", err)
	}
	wantVersion(t, ctx, db, latest)
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("Up after Force: %v", err)
	}
	exec1(t, ctx, db, insertEvent)
}

func TestBadURLs(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-pw"
	tests := []struct {
		name    string
		url     string
		wantErr string
	}{
		{name: "empty", url: "", wantErr: "no database url"},
		{name: "wrong scheme", url: "mysql://root:" + secret + "@localhost/db", wantErr: `scheme "mysql"`},
		{name: "no host", url: "postgres://u:" + secret + "@/db", wantErr: "no host"},
		{name: "garbage", url: "::" + secret + "::not a url", wantErr: "invalid database url"},
		{name: "bad port", url: "postgres://u:" + secret + "@localhost:99999999/db", wantErr: "invalid port"},
		{name: "keyword form", url: "host=localhost password=" + secret, wantErr: "invalid database url"},
		{name: "unreachable", url: "postgres://u:" + secret + "@127.0.0.1:1/db?sslmode=disable", wantErr: "connect to database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ops := map[string]func() error{
				"Up":      func() error { return migrations.Up(ctx, tt.url) },
				"Down":    func() error { return migrations.Down(ctx, tt.url) },
				"Force":   func() error { return migrations.Force(ctx, tt.url, 1) },
				"Version": func() error { _, _, err := migrations.Version(ctx, tt.url); return err },
			}
			for name, op := range ops {
				err := op()
				if err == nil {
					t.Fatalf("%s(%q) succeeded, want an error", name, tt.url)
				}
				if ctx.Err() != nil {
					t.Fatalf("%s(%q) did not fail before the 30s deadline: %v", name, tt.url, err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("%s error = %q, want it to contain %q", name, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("%s error leaks the password: %q", name, err)
				}
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A role of our own with a known password, in a private database.
	db := emptyDatabases.DatabaseURL(t)
	role := "chronicle_pw_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	exec1(t, ctx, db, "CREATE ROLE "+role+" LOGIN PASSWORD 'right-password'")
	t.Cleanup(func() { exec1(t, context.Background(), db, "DROP ROLE IF EXISTS "+role) })

	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "wr0ng-s3cret"
	u.User = url.UserPassword(role, secret)
	if conn, err := pgx.Connect(ctx, u.String()); err == nil {
		conn.Close(ctx)
		t.Skip("the server accepted a wrong password (trust authentication): nothing to test")
	}
	_, _, err = migrations.Version(ctx, u.String())
	if err == nil {
		t.Fatal("Version with a wrong password succeeded")
	}
	if !strings.Contains(err.Error(), "connect to database") || !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("error = %q, want a connect error saying password authentication failed", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error leaks the password: %q", err)
	}
}

// schemaFingerprint describes everything the migrations create, from the
// catalogs, so two databases can be compared.
const schemaFingerprint = `
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT 'column ' || table_schema || '.' || table_name || '.' || column_name || ' ' || data_type ||
         ' null=' || is_nullable || ' default=' || coalesce(column_default, '') ||
         ' identity=' || is_identity || ' pos=' || ordinal_position AS line
    FROM information_schema.columns WHERE table_schema = 'chronicle'
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'chronicle'::regnamespace
  UNION ALL
  SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'chronicle'
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid)
    FROM pg_proc p WHERE p.pronamespace = 'chronicle'::regnamespace
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(oid)
    FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'chronicle'::regnamespace)
  UNION ALL
  SELECT 'migrations ' || version || ' dirty=' || dirty FROM chronicle.schema_migrations
) lines`

func fingerprint(t *testing.T, ctx context.Context, databaseURL string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, schemaFingerprint).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// buildMigrateTool builds the stock golang-migrate CLI with the pgx5 driver
// from the module cache (the version go.mod requires).
func buildMigrateTool(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "migrate")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.Command("go", "build", "-tags", "pgx5", "-o", bin, "github.com/golang-migrate/migrate/v4/cmd/migrate")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := "cannot build the stock migrate tool: " + err.Error() + "\n" + string(out)
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// TestStockMigrateTool applies the migrations folder with the stock migrate
// CLI and checks the result equals what Up produces.
func TestStockMigrateTool(t *testing.T) {
	t.Parallel()
	ctx, viaCLI := setup(t)
	viaAPI := emptyDatabases.DatabaseURL(t)
	bin := buildMigrateTool(t)

	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(viaCLI)
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme = "pgx5"
	q := u.Query()
	q.Set("x-migrations-table", `"chronicle"."schema_migrations"`)
	q.Set("x-migrations-table-quoted", "1")
	u.RawQuery = q.Encode()
	// The documented first step: the stock tool creates its version table
	// before any migration, so the schema must exist.
	exec1(t, ctx, viaCLI, "CREATE SCHEMA IF NOT EXISTS chronicle")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-path", dir, "-database", u.String()}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("migrate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("up")
	if err := migrations.Up(ctx, viaAPI); err != nil {
		t.Fatalf("Up: %v", err)
	}
	wantVersion(t, ctx, viaCLI, migrations.Latest())
	got, want := fingerprint(t, ctx, viaCLI), fingerprint(t, ctx, viaAPI)
	if got != want {
		t.Fatalf("schema applied by the migrate tool differs from migrations.Up:\n--- migrate tool\n%s\n--- migrations.Up\n%s", got, want)
	}
	if !strings.Contains(got, "chronicle.events") {
		t.Fatalf("fingerprint does not mention chronicle.events: %s", got)
	}
	// Up through the API after the tool is a no-op; down through the tool
	// reverts what the API sees.
	if err := migrations.Up(ctx, viaCLI); err != nil {
		t.Fatalf("Up after the migrate tool: %v", err)
	}
	run("down", "-all")
	wantVersion(t, ctx, viaCLI, 0)
	if hasEventsTable(t, ctx, viaCLI) {
		t.Error("migrate down -all left chronicle.events")
	}
}
