package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/migrations"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

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

// mustRun runs the CLI and fails t unless it exits with wantCode.
func mustRun(t *testing.T, env map[string]string, wantCode int, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := run(t, env, args...)
	if code != wantCode {
		t.Fatalf("chronicle %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, stdout, stderr)
	}
	return stdout, stderr
}

func wantContains(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s = %q, want it to contain %q", what, got, want)
	}
}

func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	db := emptyDatabases.DatabaseURL(t)
	latest := migrations.Latest()

	out, _ := mustRun(t, nil, 0, "migrate", "version", "--database-url", db)
	wantContains(t, "version on an empty database", out, "version 0")

	out, _ = mustRun(t, nil, 0, "migrate", "up", "--database-url", db)
	wantContains(t, "up", out, fmt.Sprintf("up to date at version %d", latest))
	for _, m := range migrations.List() {
		wantContains(t, "up", out, "applied "+m.String()+"\n")
	}

	// DATABASE_URL works as well as the flag; up again is a no-op.
	env := map[string]string{"DATABASE_URL": db}
	out, _ = mustRun(t, env, 0, "migrate", "up")
	if want := fmt.Sprintf("nothing to apply: schema is up to date at version %d\n", latest); out != want {
		t.Errorf("second up printed %q, want %q", out, want)
	}
	out, _ = mustRun(t, env, 0, "migrate", "version")
	wantContains(t, "version", out, fmt.Sprintf("version %d (latest %d)", latest, latest))
	out, _ = mustRun(t, nil, 0, "version", "--database-url", db)
	wantContains(t, "chronicle version", out, fmt.Sprintf("database schema version %d (up to date)", latest))

	// At the latest version, one more step is a clear error.
	_, stderr := mustRun(t, env, 1, "migrate", "steps", "1")
	wantContains(t, "steps 1 at the latest", stderr, fmt.Sprintf("version %d is the latest", latest))
	if strings.Contains(stderr, "file does not exist") {
		t.Errorf("steps 1 at the latest version: %q", stderr)
	}
	out, _ = mustRun(t, env, 0, "migrate", "steps", "-1")
	wantContains(t, "steps -1", out, fmt.Sprintf("reverted %s", migrations.List()[len(migrations.List())-1]))
	wantContains(t, "steps -1", out, "schema is at version")
	out, _ = mustRun(t, nil, 0, "version", "--database-url", db)
	wantContains(t, "chronicle version behind", out, "behind")
	out, _ = mustRun(t, env, 0, "migrate", "steps", "1")
	wantContains(t, "steps 1", out, fmt.Sprintf("schema is at version %d", latest))

	// force accepts only known versions.
	_, stderr = mustRun(t, env, 2, "migrate", "force", "99")
	wantContains(t, "force 99", stderr, "unknown version 99")

	// down refuses without --yes, says what it would drop, drops nothing.
	_, stderr = mustRun(t, env, 1, "migrate", "down")
	for _, want := range []string{"refusing migrate down without --yes", "000001_events", "ALL EVENTS", "nothing was changed", "--yes"} {
		wantContains(t, "down without --yes", stderr, want)
	}
	out, _ = mustRun(t, env, 0, "migrate", "version")
	wantContains(t, "version after a refused down", out, fmt.Sprintf("version %d", latest))
	_, stderr = mustRun(t, env, 2, "migrate", "up", "--yes")
	wantContains(t, "up --yes", stderr, "--yes only confirms migrate down")

	out, _ = mustRun(t, env, 0, "migrate", "down", "--yes")
	wantContains(t, "down", out, "reverted every migration")
	wantContains(t, "down", out, "reverted 000001_events")
	out, _ = mustRun(t, env, 0, "migrate", "version")
	wantContains(t, "version after down", out, "version 0")
	out, _ = mustRun(t, env, 0, "migrate", "down", "--yes")
	wantContains(t, "down on an empty schema", out, "nothing to revert")
	mustRun(t, env, 0, "migrate", "up")
}

func TestMigrateDirtySchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.DatabaseURL(t)
	latest := migrations.Latest()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "UPDATE "+migrations.Schema+"."+migrations.MigrationsTable+" SET dirty = true")
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": db}

	out, stderr := mustRun(t, env, 1, "migrate", "version")
	wantContains(t, "version stdout", out, fmt.Sprintf("version %d (dirty)", latest))
	wantContains(t, "version stderr", stderr, "schema is dirty")
	wantContains(t, "version stderr", stderr, fmt.Sprintf("chronicle migrate force %d", latest))

	_, stderr = mustRun(t, env, 1, "migrate", "up")
	wantContains(t, "up stderr", stderr, "chronicle migrate: schema is dirty")
	wantContains(t, "up stderr", stderr, "to fix:")

	out, _ = mustRun(t, env, 0, "migrate", "force", fmt.Sprint(latest))
	wantContains(t, "force", out, fmt.Sprintf("forced version %d", latest))
	out, _ = mustRun(t, env, 0, "migrate", "up")
	wantContains(t, "up after force", out, fmt.Sprintf("version %d", latest))
}

func TestStreamsCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.DatabaseURL(t)
	env := map[string]string{"DATABASE_URL": db}

	out, _ := mustRun(t, env, 0, "streams", "head")
	wantContains(t, "head of an empty store", out, "head: none")

	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var events []eventstore.Event
	for i := range 3 {
		events = append(events, eventstore.Event{Type: "Deposited", Data: fmt.Appendf(nil, `{"amount": %d}`, i+1)})
	}
	res, err := store.Append(ctx, "account-1", eventstore.NoStream, events...)
	if err != nil {
		t.Fatal(err)
	}

	out, _ = mustRun(t, env, 0, "streams", "read", "account-1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "VERSION") {
		t.Fatalf("streams read printed %d lines, want a header and 3 events:\n%s", len(lines), out)
	}
	for i, line := range lines[1:] {
		wantContains(t, "event line", line, fmt.Sprintf(`{"amount": %d}`, i+1))
		if !strings.HasPrefix(line, fmt.Sprint(i+1)) {
			t.Errorf("line %q does not start with version %d", line, i+1)
		}
	}

	out, _ = mustRun(t, env, 0, "streams", "read", "account-1", "--backward", "--limit", "1", "--json")
	wantContains(t, "json", out, `"stream_version":3`)
	wantContains(t, "json", out, `"data":{"amount":3}`)
	if n := strings.Count(out, "\n"); n != 1 {
		t.Errorf("--limit 1 printed %d lines: %s", n, out)
	}

	// Head stops below the oldest transaction still open anywhere on the
	// server, so on a shared server it may lag: wait for it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ = mustRun(t, env, 0, "streams", "head")
		if strings.Contains(out, "head: "+res.Position.String()) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantContains(t, "head", out, "head: "+res.Position.String())
	wantContains(t, "head", out, "tail lag:")

	_, stderr := mustRun(t, env, 1, "streams", "read", "account-404")
	if want := "chronicle streams: stream \"account-404\": stream not found\n"; stderr != want {
		t.Errorf("missing stream: stderr %q, want %q (one prefix)", stderr, want)
	}
	_, stderr = mustRun(t, env, 1, "streams", "read", "bad\xffid")
	wantContains(t, "invalid stream id", stderr, "invalid")
}

func TestStreamsList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.DatabaseURL(t)
	env := map[string]string{"DATABASE_URL": db}

	out, _ := mustRun(t, env, 0, "streams", "list")
	if out != "no streams\n" {
		t.Errorf("list on an empty store printed %q", out)
	}

	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Config{PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Created in this order: account-1 .. account-3, then order-1.
	for _, id := range []string{"account-1", "account-2", "account-3", "order-1"} {
		if _, err := store.Append(ctx, id, eventstore.NoStream, eventstore.Event{Type: "Opened", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Append(ctx, "account-1", eventstore.Exact(1), eventstore.Event{Type: "Deposited", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	ids := func(out string) []string {
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			if strings.HasPrefix(line, "more: ") {
				continue
			}
			got = append(got, strings.Fields(line)[0])
		}
		return got
	}
	out, _ = mustRun(t, env, 0, "streams", "list")
	if got := ids(out); strings.Join(got, " ") != "order-1 account-3 account-2 account-1" {
		t.Errorf("list = %v, want newest first:\n%s", got, out)
	}
	if strings.Contains(out, "more:") {
		t.Errorf("a single page announces more:\n%s", out)
	}
	wantContains(t, "list", out, "account-1  2        live ")
	wantContains(t, "list header", out, "STREAM     VERSION  STATUS  CREATED AT")

	// Pages of two, with the prefix: the last line gives the next page.
	out, _ = mustRun(t, env, 0, "streams", "list", "--prefix", "account-", "--limit", "2")
	if got := ids(out); strings.Join(got, " ") != "account-3 account-2" {
		t.Fatalf("first page = %v:\n%s", got, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	next, ok := strings.CutPrefix(lines[len(lines)-1], "more: chronicle ")
	if !ok {
		t.Fatalf("a full page does not say how to get the next one:\n%s", out)
	}
	args := strings.Fields(strings.ReplaceAll(next, `"`, ""))
	out, _ = mustRun(t, env, 0, args...)
	if got := ids(out); strings.Join(got, " ") != "account-1" {
		t.Errorf("second page (%v) = %v:\n%s", args, got, out)
	}

	out, _ = mustRun(t, env, 0, "streams", "list", "--prefix", "invoice-")
	wantContains(t, "empty prefix", out, `no streams with prefix "invoice-"`)
	out, _ = mustRun(t, env, 0, "streams", "list", "--prefix", "order-", "--json")
	wantContains(t, "json", out, `"stream_id":"order-1","version":1,"status":"live"`)
}
