package postgrestest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/migrations"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(ReportSkips(m))
}

func TestChooseSource(t *testing.T) {
	t.Parallel()
	dockerUp := func() error { return nil }
	dockerDown := func() error { return errors.New("cannot connect to the docker daemon") }
	mustNotProbe := func() error { panic("docker probed although the env URL is set") }
	tests := []struct {
		name       string
		envURL     string
		ci         bool
		probe      func() error
		want       source
		wantReason []string
	}{
		{name: "env wins", envURL: "postgres://h/db", probe: mustNotProbe, want: sourceEnv},
		{name: "env wins in ci", envURL: "postgres://h/db", ci: true, probe: mustNotProbe, want: sourceEnv},
		{name: "docker", probe: dockerUp, want: sourceContainer},
		{name: "docker in ci", ci: true, probe: dockerUp, want: sourceContainer},
		{name: "nothing skips", probe: dockerDown, want: sourceSkip,
			wantReason: []string{"no PostgreSQL: set CHRONICLE_TEST_DATABASE_URL or start Docker", "cannot connect to the docker daemon"}},
		{name: "nothing fails in ci", ci: true, probe: dockerDown, want: sourceFail,
			wantReason: []string{"no PostgreSQL: set CHRONICLE_TEST_DATABASE_URL or start Docker", "CI=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, reason := chooseSource(tt.envURL, tt.ci, tt.probe)
			if got != tt.want {
				t.Fatalf("chooseSource = %v, want %v", got, tt.want)
			}
			if len(tt.wantReason) == 0 && reason != "" {
				t.Errorf("reason = %q, want none", reason)
			}
			for _, w := range tt.wantReason {
				if !strings.Contains(reason, w) {
					t.Errorf("reason = %q, want it to contain %q", reason, w)
				}
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr string
	}{
		{in: "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable"},
		{in: "postgresql://u@localhost/postgres"},
		{in: "mysql://u@localhost/db", wantErr: `scheme "mysql"`},
		{in: "host=localhost dbname=postgres", wantErr: "want postgres://"},
		{in: "postgres:///postgres", wantErr: "no host"},
		{in: "postgres://u:p@[::1/x", wantErr: "invalid url"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			_, err := checkURL(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkURL: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkURL error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), ":p@") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	if _, err := New(&Config{Migrate: migrations.Up}); err == nil || !strings.Contains(err.Error(), "Config.Key") {
		t.Errorf("New with Migrate and no Key: error = %v, want one naming Config.Key", err)
	}
	a, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(&Config{})
	if err != nil {
		t.Fatal(err)
	}
	if a.name != b.name {
		t.Errorf("nil and zero Config give different templates: %s, %s", a.name, b.name)
	}
	c, err := New(&Config{Migrate: migrations.Up, Key: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if c.name == a.name {
		t.Errorf("a custom Key reuses the default template %s", c.name)
	}
	if len(a.name) > 63 || len(c.name+"_build") > 63 {
		t.Errorf("template names too long for PostgreSQL: %s, %s", a.name, c.name)
	}
}

// databaseState returns the current database's name and whether the
// events table exists.
func databaseState(t *testing.T, ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (name string, hasEvents bool) {
	t.Helper()
	err := q.QueryRow(ctx, "SELECT current_database(), to_regclass('chronicle.events') IS NOT NULL").Scan(&name, &hasEvents)
	if err != nil {
		t.Fatal(err)
	}
	return name, hasEvents
}

func databaseExists(t *testing.T, ctx context.Context, admin, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

// TestDatabasesAreIsolatedAndDropped gets two databases in subtests, checks
// they differ, are migrated and isolated, and that each is dropped when its
// test ends.
func TestDatabasesAreIsolatedAndDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := AdminURL(t)

	var (
		mu    sync.Mutex
		names []string
	)
	t.Run("group", func(t *testing.T) {
		for _, sub := range []string{"a", "b"} {
			t.Run(sub, func(t *testing.T) {
				t.Parallel()
				pool := Pool(t)
				name, hasEvents := databaseState(t, ctx, pool)
				if !hasEvents {
					t.Fatalf("database %s has no chronicle.events table", name)
				}
				version, dirty, err := migrations.Version(ctx, DatabaseURLOf(t, pool))
				if err != nil {
					t.Fatal(err)
				}
				if version != migrations.Latest() || dirty {
					t.Errorf("version = %d dirty = %v, want %d clean", version, dirty, migrations.Latest())
				}
				// Writes in one database are invisible in the other.
				if _, err := pool.Exec(ctx, "CREATE TABLE only_in_"+sub+" (x int)"); err != nil {
					t.Fatal(err)
				}
				var others int
				if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'only_in_%'").Scan(&others); err != nil {
					t.Fatal(err)
				}
				if others != 1 {
					t.Errorf("database %s sees %d only_in_* tables, want 1", name, others)
				}
				if !databaseExists(t, ctx, admin, name) {
					t.Errorf("database %s not in pg_database while in use", name)
				}
				mu.Lock()
				names = append(names, name)
				mu.Unlock()
			})
		}
	})
	if len(names) != 2 {
		t.Fatalf("got %d database names, want 2", len(names))
	}
	if names[0] == names[1] {
		t.Fatalf("both tests got database %s", names[0])
	}
	for _, name := range names {
		if databaseExists(t, ctx, admin, name) {
			t.Errorf("database %s still exists after its test ended", name)
		}
	}
}

// DatabaseURLOf rebuilds a URL for the pool's database.
func DatabaseURLOf(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	cfg := pool.Config().ConnConfig
	return withDatabase(AdminURL(t), cfg.Database)
}

func TestDatabaseURLIsMigratedAndDroppedWithOpenConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := AdminURL(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		u := DatabaseURL(t)
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		// Left open on purpose: the cleanup must drop the database anyway.
		t.Cleanup(func() { conn.Close(context.Background()) })
		var hasEvents bool
		name, hasEvents = databaseState(t, ctx, conn)
		if !hasEvents {
			t.Fatalf("database %s has no chronicle.events table", name)
		}
	})
	if databaseExists(t, ctx, admin, name) {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestCustomTemplate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key := "postgrestest-custom-" + migrationsHash()[:8]
	tpl, err := New(&Config{
		Key: key,
		Migrate: func(ctx context.Context, databaseURL string) error {
			if err := migrations.Up(ctx, databaseURL); err != nil {
				return err
			}
			conn, err := pgx.Connect(ctx, databaseURL)
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, "CREATE TABLE app_accounts (id text PRIMARY KEY, balance numeric NOT NULL)")
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	pool := tpl.Pool(t)
	if _, err := pool.Exec(ctx, "INSERT INTO app_accounts VALUES ('a', 1)"); err != nil {
		t.Fatalf("custom migration not applied: %v", err)
	}
	if _, hasEvents := databaseState(t, ctx, pool); !hasEvents {
		t.Error("chronicle.events missing from the custom template")
	}
}

func TestTemplateFailureIsReported(t *testing.T) {
	t.Parallel()
	AdminURL(t) // skip without PostgreSQL
	tpl, err := New(&Config{
		Key: "postgrestest-failing-" + randomHex(4),
		Migrate: func(context.Context, string) error {
			return errors.New("boom")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = buildTemplate(AdminURL(t), tpl.name, tpl.migrate)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("buildTemplate error = %v, want the migration's error", err)
	}
	if databaseExists(t, ctx, AdminURL(t), tpl.name) {
		t.Errorf("a failed build published template %s", tpl.name)
	}
	dropDatabase(ctx, AdminURL(t), tpl.name+"_build") //nolint:errcheck
}

// TestConcurrentTemplateBuilds builds one new template from several
// sessions at once, as parallel test processes do: the advisory lock lets
// one build it and the others find it.
func TestConcurrentTemplateBuilds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := AdminURL(t)
	name := templateName("postgrestest-concurrent-" + randomHex(8))
	var (
		mu     sync.Mutex
		builds int
	)
	migrate := func(ctx context.Context, databaseURL string) error {
		mu.Lock()
		builds++
		mu.Unlock()
		return migrations.Up(ctx, databaseURL)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		id := pgx.Identifier{name}.Sanitize()
		for _, sql := range []string{"ALTER DATABASE " + id + " WITH IS_TEMPLATE false", "DROP DATABASE " + id} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Errorf("remove test template: %v", err)
			}
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = buildTemplate(admin, name, migrate) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if builds != 1 {
		t.Errorf("template migrated %d times, want 1", builds)
	}
	clone := "chronicle_test_" + randomHex(8)
	if err := createDatabase(ctx, admin, clone, name); err != nil {
		t.Fatal(err)
	}
	defer dropDatabase(ctx, admin, clone) //nolint:errcheck
	conn, err := pgx.Connect(ctx, withDatabase(admin, clone))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, hasEvents := databaseState(t, ctx, conn); !hasEvents {
		t.Error("clone of the concurrently built template has no chronicle.events")
	}
}

func TestDatabasesBoundIdleTransactions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	want := IdleInTransactionTimeout.String() // "20s", as SHOW prints it
	conn, err := pgx.Connect(ctx, DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	for name, db := range map[string]interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}{"DatabaseURL": conn, "Pool": Pool(t)} {
		var got string
		if err := db.QueryRow(ctx, "SHOW idle_in_transaction_session_timeout").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: idle_in_transaction_session_timeout = %q, want %q", name, got, want)
		}
	}
	// A test can still lengthen it for its own session.
	var got string
	if err := conn.QueryRow(ctx, "SELECT set_config('idle_in_transaction_session_timeout', '5min', false)").Scan(&got); err != nil || got != "5min" {
		t.Fatalf("override = %q, %v", got, err)
	}
}
